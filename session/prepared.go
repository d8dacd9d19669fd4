package session

import (
	"strconv"

	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"
)

// Prepared statements. A client's named statements live on the server under a name the relay chooses:
// "tp" and an id interned from (tenant, query text, parameter types), compared in full, never by hash.
// The same id is shared by every client of one tenant that prepares the same text, so a statement is
// parsed once per backend, and a tenant's statement is never bound for another tenant. A backend that
// lacks a statement gets the Parse replayed ahead of the Bind or Describe, its reply swallowed; Close of a
// named statement is answered by the relay and the server copy stays cached, bounded by a per-backend LRU.

// stmt is one of a client's prepared statements (named, or the unnamed one).
type stmt struct {
	id    uint64 // 0 for the unnamed statement
	query string
	types []byte // the Parse message's parameter type section: int16 count, then int32 OIDs
	// sets are tracked settings the statement changes when executed (a SET sent as a prepared statement).
	sets []Setting
	// emul is set when the relay answers the statement itself (DEALLOCATE, DISCARD ALL, RESET ALL).
	emul     Emulation
	emulName string
}

type stmtKey struct {
	tenant, query, types string
}

type stmtEntry struct {
	id    uint64
	refs  int
	valid bool // a server accepted its Parse: it parses for this tenant
}

// stmtID returns the interned id of a statement, counting a reference.
func (e *Engine) stmtID(tenant, query string, types []byte) uint64 {
	k := stmtKey{tenant, query, string(types)}
	if en, ok := e.stmtIDs[k]; ok {
		en.refs++
		return en.id
	}
	e.nextStmt++
	e.stmtIDs[k] = &stmtEntry{id: e.nextStmt, refs: 1}
	return e.nextStmt
}

// stmtParsed records that a server accepted the statement with this id.
func (e *Engine) stmtParsed(tenant string, st *stmt) {
	if en := e.stmtIDs[stmtKey{tenant, st.query, string(st.types)}]; en != nil && en.id == st.id {
		en.valid = true
	}
}

// stmtUnref drops a client's reference to a statement.
func (e *Engine) stmtUnref(tenant string, st *stmt) {
	k := stmtKey{tenant, st.query, string(st.types)}
	if en, ok := e.stmtIDs[k]; ok && en.id == st.id { // a retired id's entry is gone, or is another id's
		en.refs--
		if en.refs <= 0 {
			delete(e.stmtIDs, k)
		}
	}
}

// retireStatement stops handing out the server statement id of a tenant's statement: the next Parse of
// its text gets a new id, and so a statement the server prepares afresh. PostgreSQL keeps a prepared
// statement's result type: once the tenant's schema changed it ("cached plan must not change result
// type"), the same server statement fails for ever, and a client's re-prepare of the same text must not
// be mapped back onto it (the trap that makes pgbouncer's users reconnect after a migration). Clients that
// hold the old id keep it: their next use fails once, as on PostgreSQL, and their re-prepare gets the new
// one. The old server statements go with the per-backend LRU.
func (e *Engine) retireStatement(tenant string, id uint64) {
	for k, en := range e.stmtIDs {
		if k.tenant == tenant && en.id == id {
			delete(e.stmtIDs, k)
			return
		}
	}
}

// retireTenantStatements retires every statement id of a tenant, after its schema changed (a migration).
func (e *Engine) retireTenantStatements(tenant string) {
	for k := range e.stmtIDs {
		if k.tenant == tenant {
			delete(e.stmtIDs, k)
		}
	}
}

// TenantChanged tells the relay that the tenant's schema changed (a migration committed): the tenant's
// next Parses prepare afresh on the server. Safe from any goroutine.
func (e *Engine) TenantChanged(tenant string) {
	e.l.post(func() { e.retireTenantStatements(tenant) })
}

// TenantChanged tells every shard that the tenant's schema changed.
func (g *Group) TenantChanged(tenant string) {
	for _, e := range g.shards {
		e.TenantChanged(tenant)
	}
}

// staleStatement reports whether an error says that a prepared statement's result type changed under it.
func staleStatement(code, msg string) bool {
	return code == pgerrcode.FeatureNotSupported && msg == "cached plan must not change result type"
}

func appendStmtName(b []byte, id uint64) []byte {
	b = append(b, 't', 'p')
	b = strconv.AppendUint(b, id, 10)
	return append(b, 0)
}

// lruNode is an entry of a backend's prepared-statement LRU.
type lruNode struct {
	id         uint64
	prev, next *lruNode
}

// lruList is a doubly linked list, most recently used first.
type lruList struct {
	head, tail *lruNode
	n          int
}

func (l *lruList) pushFront(n *lruNode) {
	n.prev, n.next = nil, l.head
	if l.head != nil {
		l.head.prev = n
	}
	l.head = n
	if l.tail == nil {
		l.tail = n
	}
	l.n++
}

func (l *lruList) remove(n *lruNode) {
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		l.head = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		l.tail = n.prev
	}
	n.prev, n.next = nil, nil
	l.n--
}

func (b *backend) hasPrepared(id uint64) bool {
	_, ok := b.prepared[id]
	return ok
}

func (b *backend) touch(id uint64) {
	if n := b.prepared[id]; n != nil && b.lru.head != n {
		b.lru.remove(n)
		b.lru.pushFront(n)
	}
}

// addPrepared records a statement as prepared on the server and evicts the least recently used one
// beyond the limit, closing it on the server.
func (b *backend) addPrepared(id uint64) {
	if b.prepared == nil {
		b.prepared = make(map[uint64]*lruNode)
	}
	if _, ok := b.prepared[id]; ok {
		b.touch(id)
		return
	}
	n := &lruNode{id: id}
	b.prepared[id] = n
	b.lru.pushFront(n)
	for b.lru.n > b.e.cfg.MaxPreparedStatements && b.lru.tail != nil {
		old := b.lru.tail
		b.lru.remove(old)
		delete(b.prepared, old.id)
		m, start := beginMsg(b.c.buf(), msgClose)
		m = append(m, 'S')
		m = appendStmtName(m, old.id)
		b.c.setBuf(endMsg(m, start))
		b.push(op{kind: opClose, swallow: true, stmt: old.id})
		b.e.m.prepEvict.Inc()
		b.e.log.Debug("prepared statement evicted", zap.Uint32("backend_pid", b.pid), zap.Uint64("stmt", old.id))
	}
}

// removePrepared forgets a statement whose Parse failed on the server.
func (b *backend) removePrepared(id uint64) {
	if n := b.prepared[id]; n != nil {
		b.lru.remove(n)
		delete(b.prepared, id)
	}
}

// keepPrepared records again a statement whose eviction the server skipped after an error.
func (b *backend) keepPrepared(id uint64) {
	if _, ok := b.prepared[id]; ok {
		return
	}
	n := &lruNode{id: id}
	b.prepared[id] = n
	b.lru.pushFront(n)
}

// forgetPrepared forgets every statement, after the server dropped them (DISCARD ALL).
func (b *backend) forgetPrepared() {
	b.prepared = nil
	b.lru = lruList{}
}
