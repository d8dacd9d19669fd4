package session

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/text/encoding"

	"github.com/jackc/pgerrcode"

	"github.com/tenantproxy/tenantproxy/audit"
	"github.com/tenantproxy/tenantproxy/internal/pgerr"
	"github.com/tenantproxy/tenantproxy/internal/pgident"
	"github.com/tenantproxy/tenantproxy/policy"
)

// fingerprint identifies a statement's shape for audit records without its values.
func fingerprint(sql string) string {
	if fp, err := policy.Fingerprint(sql); err == nil {
		return fp
	}
	return "unparsable"
}

// sessState is where a client session is in its life. setState is the only place that changes it.
type sessState uint8

const (
	stIdle    sessState = iota // attached, holding no backend
	stWaiting                  // queued for a backend
	stActive                   // holding a backend
	stClosed                   // gone
)

func (s sessState) String() string {
	return [...]string{"idle", "waiting", "active", "closed"}[s]
}

// Session is one client connection on the loop.
type Session struct {
	e      *Engine
	c      sock
	info   ClientInfo
	tenant *Tenant
	pid    uint32
	secret uint32
	state  sessState
	be     *backend

	in         []byte // client bytes not yet handled
	need       int    // bytes the partial message at the head of in needs
	stalled    bool   // a local answer waits for the backend's replies to drain
	unsynced   bool   // extended-protocol messages sent since the last Sync
	localBatch bool   // messages since the last Sync were answered by the relay, without a backend
	pin        string // session state that keeps the backend with this client
	waitSince  time.Time
	paused     bool // reading from the client is paused

	startup     map[string][]string // tracked startup settings
	settings    map[string][]string // tracked settings now; the startup map itself until settingsOwn
	settingsOwn bool
	settingsSQL string            // SET statements replaying settings
	settingsN   int               // how many statements settingsSQL has
	pendingSets []Setting         // SETs of the open transaction, kept if it commits
	stmts       map[string]*stmt  // protocol-level prepared statements by client name
	stmtBytes   int               // total text size of stmts
	sqlStmts    map[string]bool   // names of the client's SQL-level PREPAREd statements
	decoder     encoding.Encoding // the client's encoding when it is not UTF-8, for the guard
	unnamed     *stmt             // the client's unnamed statement
	unnamedOn   *backend          // where it was last parsed
	unnamedSeq  uint64            // that backend's unnamedSeq right after
	portals     map[string]*stmt  // portals bound to statements with SETs or emulation
	closeReason pgerr.CloseReason // why it closed, once it does
	closeDetail string            // and the particulars: the FATAL error, the failed write

	// Statistics (pgbouncer's SHOW STATS and SHOW CLIENTS): kept on the session, where the hot path
	// already is, and added to its tenant's when it closes (liveStats).
	stats       TenantStats
	xactStart   time.Time // when the open transaction's first message went to a backend
	lastRequest time.Time // when the client last sent something
}

// logger is the Engine's logger with the session's fields. It is made when needed, not kept: an idle
// client costs no logger.
func (s *Session) logger() *zap.Logger {
	return s.e.log.With(zap.String("tenant", s.info.Tenant), zap.String("user", s.info.User), zap.String("addr", s.info.Addr), zap.Uint32("session", s.pid))
}

// auditConn names the session in the audit log.
func (s *Session) auditConn() audit.Conn {
	return audit.Conn{Tenant: s.tenant.Name, User: s.info.User, Addr: s.info.Addr, Session: s.pid}
}

// liveStats is the session's statistics now.
func (s *Session) liveStats() TenantStats {
	st := s.stats
	st.BytesSent = s.c.sent
	return st
}

func (s *Session) handleEvent(ev uint32) {
	if s.state == stClosed {
		return
	}
	if ev&evOut != 0 {
		s.c.flush()
		if s.c.err != nil {
			s.gone("write to client: " + s.c.err.Error())
			return
		}
		if b := s.be; b != nil && s.c.pending() < highWater && b.c.events&evIn == 0 {
			b.c.setEvents(b.c.events | evIn)
		}
	}
	if ev&(evIn|evErr) == 0 {
		return
	}
	if s.paused && ev&evErr == 0 {
		return
	}
	if ev&evErr == 0 && len(s.in) > 0 && s.blocked() {
		// More bytes while the buffered ones cannot move: leave them in the kernel until the session is
		// unblocked. Pausing only now, not whenever a session blocks, spares two epoll_ctl calls for
		// every transaction that queues for a backend.
		s.pauseReading(true)
		return
	}
	l := s.e.l
	if len(s.in) == 0 {
		n, err := s.c.read(l.rbuf)
		if err != nil {
			s.gone(err.Error())
			return
		}
		if n == 0 {
			return
		}
		s.stats.BytesReceived += int64(n)
		s.lastRequest = l.now
		data := l.rbuf[:n]
		k := s.process(data)
		if k < n && s.state != stClosed {
			s.in = append(s.in[:0], data[k:]...)
		}
	} else {
		if free := cap(s.in) - len(s.in); free < 4096 || free < s.need-len(s.in) {
			want := len(s.in) + 16384
			if s.need > want {
				want = s.need
			}
			grown := make([]byte, len(s.in), want)
			copy(grown, s.in)
			s.in = grown
		}
		n, err := s.c.read(s.in[len(s.in):cap(s.in)])
		if err != nil {
			s.gone(err.Error())
			return
		}
		s.stats.BytesReceived += int64(n)
		s.lastRequest = l.now
		s.in = s.in[:len(s.in)+n]
		s.consumeIn()
	}
	s.flushAll()
}

// consumeIn handles what it can of the buffered client bytes.
func (s *Session) consumeIn() {
	if len(s.in) == 0 || s.state == stClosed {
		return
	}
	k := s.process(s.in)
	if s.state == stClosed {
		return
	}
	rest := copy(s.in, s.in[k:])
	s.in = s.in[:rest]
	if rest == 0 && cap(s.in) > 64<<10 {
		s.in = nil
	}
}

// flushAll writes what the session queued for its backend and for itself, and applies backpressure.
func (s *Session) flushAll() {
	if b := s.be; b != nil && !b.c.closed {
		b.c.flush()
		if b.c.err != nil {
			b.fail("write to server: "+b.c.err.Error(), pgerrcode.ConnectionFailure)
		}
	}
	if s.state == stClosed {
		return
	}
	s.c.flush()
	if s.c.err != nil {
		s.gone("write to client: " + s.c.err.Error())
		return
	}
	// Reading stops (in handleEvent) when more bytes arrive while blocked with some already buffered:
	// memory stays bounded. It resumes here once the session can move again.
	if s.paused && !s.blocked() {
		s.pauseReading(false)
	}
}

// blocked reports whether buffered client bytes cannot be handled now: the session waits for a backend,
// for its replies to drain, for a cancel, or for the backend to take what is queued.
func (s *Session) blocked() bool {
	return s.state == stWaiting || s.stalled || s.cancelInFlight() || (s.be != nil && s.be.c.pending() >= highWater)
}

func (s *Session) pauseReading(p bool) {
	if p == s.paused {
		return
	}
	s.paused = p
	if p {
		s.c.setEvents(s.c.events &^ evIn)
	} else {
		s.c.setEvents(s.c.events | evIn)
	}
}

// cancelInFlight reports whether a cancel request for the session's backend has not completed yet. The
// client's next messages wait for it: the server may signal the backend late (PostgreSQL 15 signals it
// twice), and would cancel the next statement instead of the one meant.
func (s *Session) cancelInFlight() bool { return s.be != nil && s.be.cancels > 0 }

// resumeReading is called when the backend has drained its output.
func (s *Session) resumeReading() {
	if s.state != stClosed && s.state != stWaiting && !s.stalled {
		s.consumeIn()
		s.flushAll() // reading resumes unless the session is still blocked
	}
}

// process handles complete messages in data and returns how many bytes it consumed.
func (s *Session) process(data []byte) int {
	off := 0
	max := s.e.cfg.MaxMessageSize
	for s.state != stClosed && s.state != stWaiting && !s.stalled && !s.cancelInFlight() {
		if len(data)-off < 5 {
			s.need = 5
			return off
		}
		t := data[off]
		length := int(binary.BigEndian.Uint32(data[off+1:]))
		if length < 4 {
			s.fatal(pgerrcode.ProtocolViolation, "tenantproxy: invalid message length")
			return off
		}
		if length > max {
			s.fatal(pgerrcode.ProtocolViolation, fmt.Sprintf("tenantproxy: message of %d bytes exceeds the limit of %d ([listen] max_message_size)", length, max))
			return off
		}
		if len(data)-off < 1+length {
			s.need = 1 + length
			return off
		}
		if !s.handle(t, data[off:off+1+length]) {
			return off
		}
		off += 1 + length
	}
	return off
}

// handle acts on one complete client message. It returns false when the message must wait (for a
// backend, or for in-flight replies); the message then stays buffered.
func (s *Session) handle(t byte, msg []byte) bool {
	body := msg[5:]
	if s.be != nil && s.be.q.skipping && t != msgSync && t != msgTerminate {
		// After an error in an extended-protocol batch PostgreSQL discards every message until Sync,
		// simple Queries included; so does the relay, before any of it reaches the server.
		return true
	}
	switch t {
	case msgTerminate:
		s.closeReason = pgerr.CloseClientTerminated
		s.terminate()
		return true
	case msgQuery:
		// A view of the read buffer: the guard copies what it caches, and nothing else keeps it.
		sql, _, ok := cstringView(body)
		if !ok {
			s.fatal(pgerrcode.ProtocolViolation, "tenantproxy: malformed Query message")
			return true
		}
		return s.query(sql, msg)
	case msgFunctionCall:
		if !s.ensureLease() {
			return false
		}
		s.refuse(opQuery, Verdict{Code: pgerrcode.InsufficientPrivilege, Message: "tenantproxy: the FunctionCall protocol message is not allowed: it can call any function by its OID, around the statement guard"}, "<FunctionCall>")
		return true
	case msgParse:
		return s.parse(msg)
	case msgBind:
		return s.bind(msg)
	case msgDescribe:
		return s.describe(msg)
	case msgClose:
		return s.closeMsg(msg)
	case msgExecute:
		return s.execute(msg)
	case msgSync:
		if s.be == nil && s.localBatch {
			// Everything since the last Sync was answered by the relay.
			s.localBatch = false
			s.c.setBuf(appendReady(s.c.buf(), txIdle))
			return true
		}
		s.localBatch = false
		if !s.ensureLease() {
			return false
		}
		s.be.c.queue(msg)
		s.be.push(op{kind: opSync})
		s.unsynced = false
		return true
	case msgFlush:
		if s.be != nil {
			s.be.c.queue(msg)
		}
		return true
	case msgCopyData, msgCopyDone, msgCopyFail:
		// Outside COPY PostgreSQL ignores these; so does the relay when no backend is leased.
		if s.be != nil {
			s.be.c.queue(msg)
		}
		return true
	default:
		s.fatal(pgerrcode.ProtocolViolation, fmt.Sprintf("tenantproxy: invalid frontend message type %q", t))
		return true
	}
}

func (s *Session) query(sql string, msg []byte) bool {
	orig := s.check(sql, false)
	v, fail := s.sqlNames(orig)
	if fail {
		if !s.ensureLease() {
			return false
		}
		s.poison(opQuery, v)
		return true
	}
	if v.Emulate != EmulateNone && !v.Refused {
		if s.be != nil && !s.be.opsEmpty() {
			s.stalled = true
			return false
		}
		if s.be != nil && s.be.status != txIdle {
			// Inside a transaction block PostgreSQL refuses DISCARD ALL; let the server say so.
			if v.Emulate == EmulateDiscardAll {
				s.be.c.queue(msg)
				s.be.push(op{kind: opQuery})
				return true
			}
		}
		s.keepNames(orig)
		s.emulate(v.Emulate, v.Name)
		return true
	}
	if v.Terminate && !v.Refused {
		return s.terminateOwnBackend()
	}
	carry := ""
	if len(msg) == 5+len(sql)+1 && carriable(v) {
		// Only a well-formed message: the server answers one with bytes after the text itself.
		carry = sql
	}
	ok, carried := s.leaseCarrying(carry)
	if !ok {
		return false
	}
	s.stats.QueryCount++
	if carried {
		return true
	}
	if v.Refused {
		s.refuse(opQuery, v, sql)
		return true
	}
	s.keepNames(orig)
	if v.Pin != "" {
		s.pinFor(v.Pin)
	}
	if v.Rewrite != "" {
		s.be.c.setBuf(appendQuery(s.be.c.buf(), v.Rewrite))
	} else {
		s.be.c.queue(msg)
	}
	s.be.push(op{kind: opQuery, sets: v.Sets})
	s.be.unnamedSeq++
	return true
}

// sqlNames decides by the rules of SQL-level prepared statement names, without changing anything: it
// reports true when the statement must fail as PostgreSQL would fail it (the returned verdict carries the
// error): EXECUTE or DEALLOCATE of a name the client never prepared itself — the server's namespace is
// shared with every client the backend served, including the relay's own tp<N> statements. DEALLOCATE of
// a protocol-level statement the relay holds for the client stays emulated; DEALLOCATE of an SQL-level
// statement, and DEALLOCATE ALL by a client that has some, go to the server. keepNames records the effect
// once the statement is sent or answered.
func (s *Session) sqlNames(v Verdict) (Verdict, bool) {
	if v.Refused {
		return v, false
	}
	for _, name := range v.Prepares {
		if reservedStmtName(name) {
			v.Code, v.Message = pgerrcode.InsufficientPrivilege, fmt.Sprintf("tenantproxy: prepared statement names like %q are reserved by the proxy", name)
			return v, true
		}
	}
	for _, name := range v.Executes {
		if !s.sqlStmts[name] && !slices.Contains(v.Prepares, name) {
			v.Code, v.Message = pgerrcode.InvalidSQLStatementName, fmt.Sprintf("prepared statement %q does not exist", name)
			return v, true
		}
	}
	switch v.Emulate {
	case EmulateDeallocate:
		switch {
		case s.stmts[v.Name] != nil:
		case s.sqlStmts[v.Name]:
			v.Emulate = EmulateNone
		default:
			v.Code, v.Message = pgerrcode.InvalidSQLStatementName, fmt.Sprintf("prepared statement %q does not exist", v.Name)
			return v, true
		}
	case EmulateDeallocateAll:
		if len(s.sqlStmts) > 0 {
			v.Emulate = EmulateNone
		}
	}
	return v, false
}

// keepNames records what a statement did to the client's SQL-level statements (orig is the guard's
// verdict before sqlNames).
func (s *Session) keepNames(orig Verdict) {
	for _, name := range orig.Prepares {
		if s.sqlStmts == nil {
			s.sqlStmts = make(map[string]bool)
		}
		s.sqlStmts[name] = true
	}
	switch {
	case orig.Emulate == EmulateDeallocate && s.stmts[orig.Name] == nil:
		delete(s.sqlStmts, orig.Name)
	case orig.Emulate == EmulateDeallocateAll && len(s.sqlStmts) > 0:
		// The server drops every statement of the backend, which the relay then forgets and replays.
		s.sqlStmts = nil
		s.dropStatements()
		if s.be != nil {
			s.be.forgetPrepared()
		}
	}
}

// reservedStmtName reports whether name is in the relay's namespace of server statements (tp<N>).
func reservedStmtName(name string) bool {
	if len(name) < 3 || name[0] != 't' || name[1] != 'p' {
		return false
	}
	for _, c := range name[2:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// refuse answers a statement the guard refused: audited, counted, and the backend's identity is checked
// once the client's batch is done, since the client just tried something.
func (s *Session) refuse(kind opKind, v Verdict, sql string) {
	code, message := v.Code, v.Message
	s.e.m.refused(code)
	s.stats.Refused++
	fp := fingerprint(sql)
	fields := []zap.Field{zap.String("sqlstate", code), zap.String("reason", message), zap.String("fingerprint", fp)}
	text := ""
	if s.e.cfg.AuditStatementText {
		fields = append(fields, zap.String("statement", sql))
		text = sql
	}
	s.e.audit("statement refused", s, fields...)
	audit.Log.Refused(s.auditConn(), code, message, fp, text)
	s.be.verifyNext = true
	s.poison(kind, v)
}

// poison sends the poison statement in place of a refused request; its error becomes the refusal, at
// the place in the reply stream where PostgreSQL would have reported the request's own error.
func (s *Session) poison(kind opKind, v Verdict) {
	b := s.be
	if kind == opQuery {
		b.c.setBuf(appendQuery(b.c.buf(), poisonSQL))
		b.unnamedSeq++
	} else {
		m, st := beginMsg(b.c.buf(), msgParse)
		m = appendCString(m, poisonStmt)
		m = appendCString(m, poisonSQL)
		m = append(m, 0, 0)
		b.c.setBuf(endMsg(m, st))
		s.unsynced = true
	}
	b.push(op{kind: kind, poison: true, code: v.Code, msg: v.Message, pos: v.Position})
}

// emulate answers DISCARD ALL, RESET ALL and DEALLOCATE ALL sent as a simple query, without the server.
func (s *Session) emulate(e Emulation, name string) {
	status := byte(txIdle)
	if s.be != nil {
		status = s.be.status
	}
	s.e.m.emulated.Inc()
	tag := s.emulateEffect(e, name)
	s.c.setBuf(appendReady(appendCommandComplete(s.c.buf(), tag), status))
}

// emulateEffect resets what the client itself set and keeps the tenant context; it returns the command
// tag PostgreSQL would send.
func (s *Session) emulateEffect(e Emulation, name string) string {
	switch e {
	case EmulateDiscardAll:
		s.resetSettings()
		s.dropStatements()
		return "DISCARD ALL"
	case EmulateResetAll:
		s.resetSettings()
		return "RESET"
	case EmulateDeallocateAll:
		s.dropStatements()
		return "DEALLOCATE ALL"
	case EmulateDeallocate:
		if st := s.stmts[name]; st != nil {
			s.forget(name, st)
		}
		return "DEALLOCATE"
	}
	panic(fmt.Sprintf("BUG: emulation %d", e))
}

func (s *Session) check(sql string, parse bool) Verdict {
	return s.e.cfg.Guard.Check(s.textForGuard(sql), s.info.Profile, s.tenant, parse)
}

// pinFor keeps the backend with this client: the statement leaves state that outlives the transaction.
func (s *Session) pinFor(what string) {
	if s.pin == "" && s.e.cfg.Mode == "transaction" {
		s.logger().Info("session pinned to its backend", zap.String("state", what))
	}
	if s.pin == "" {
		s.pin = what
	}
	if s.be != nil {
		s.be.needReset = true
	}
}

// ensureLease makes sure the session holds a backend in its context; false means it now waits in the
// queue.
func (s *Session) ensureLease() bool {
	ok, _ := s.leaseCarrying("")
	return ok
}

// leaseCarrying is ensureLease for a simple Query whose text, when not "", may carry the tenant switch:
// carried reports that the switch and the text went out together as one Query (applyContext), which
// the caller then must not send again.
func (s *Session) leaseCarrying(text string) (ok, carried bool) {
	if s.xactStart.IsZero() {
		s.xactStart = s.e.l.now
	}
	if s.be == nil {
		if s.state == stWaiting {
			return false, false
		}
		if s.tenant.Suspended {
			s.fatal(pgerrcode.AdminShutdown, fmt.Sprintf("tenantproxy: tenant %q is suspended", s.tenant.Name))
			return false, false
		}
		if s.tenant.paused {
			s.e.pool.enqueue(s)
			s.setState(stWaiting)
			s.waitSince = s.e.l.now
			return false, false
		}
		b := s.e.pool.acquire(s)
		if b == nil {
			s.setState(stWaiting)
			s.waitSince = s.e.l.now
			return false, false
		}
		s.granted(b, false)
	}
	// A new lease, and a held backend (session pooling, a pin, an open transaction) after an emulated
	// RESET ALL or DISCARD ALL changed the client's settings, get the client's context once nothing is in
	// flight.
	if b := s.be; (b.settingsSQL != s.settingsSQL || b.ctx != s.tenant.SetupSQL) && b.status == txIdle && b.opsEmpty() && !s.unsynced {
		return true, s.applyContext(b, text)
	}
	return true, false
}

// granted gives the session a backend; later is true when it had to wait for it.
func (s *Session) granted(b *backend, later bool) {
	s.e.lease(s, b)
	s.stats.ServerAssignments++
	if later {
		w := s.e.l.now.Sub(s.waitSince)
		s.stats.WaitTime += w
		s.e.m.LeaseWait.Observe(w.Seconds())
	} else {
		s.e.m.LeaseWait.Observe(0)
	}
	// The context is applied with the first message the session sends on the lease (leaseCarrying),
	// which may carry it.
	if s.pin != "" {
		b.needReset = true
	}
	if later {
		s.consumeIn()
		s.flushAll()
	}
}

// applyContext writes the tenant context and the client's settings ahead of the client's own messages,
// in the same write. It costs the server as little as the guarantees allow:
//
//   - when the backend already carries the client's settings, they are not sent again, and text (a
//     simple Query that may carry the switch, see carriable) goes in the same Query after the switch's
//     three statements: one message, one implicit transaction. Should the switch fail, nothing of the
//     client's runs (a simple Query stops at its first error) and the backend is closed. Should the
//     client's statement fail, the server undoes the switch with it and the backend is back in its
//     previous context, which onReady restores; the session sends nothing more until the Query ends
//     (stalled), so nothing runs in that context. Equal settings are what make this sound: settings
//     that take effect at the start of a transaction (default_transaction_*, the timeouts' timers,
//     client_encoding for the Query's own text) are already the client's when its Query starts. It
//     reports whether it carried text;
//   - otherwise the setup is a Query of its own; a different tenant's context is first dropped by a
//     separate RESET ROLE, so that should the setup fail, the client's messages that follow in the same
//     write run as the pool role, which can read nothing, never as the previous tenant; and RESET ALL
//     comes first only when the backend carries an earlier client's settings that differ from this
//     client's (the relay tracks every setting a client can change, so equal tracked settings are equal
//     settings, and a backend with none, new or after DISCARD ALL, is as RESET ALL leaves it).
func (s *Session) applyContext(b *backend, text string) bool {
	t := s.tenant
	if b.settingsSQL != s.settingsSQL {
		text = ""
	}
	out := b.c.buf()
	if text == "" && b.ctx != "" && b.ctx != t.SetupSQL {
		out = appendQuery(out, "RESET ROLE")
		b.push(op{kind: opQuery, swallow: true})
	}
	b.unnamedSeq++
	m, st := beginMsg(out, msgQuery)
	body := len(m)
	o := op{kind: opQuery, swallow: true}
	if text != "" {
		m = append(m, t.SetupSQL...)
		m = append(m, "; "...)
		o = op{kind: opQuery, setup: t.setupStatements(), carried: len(m) - body, prevCtx: b.ctx, prevTenant: b.ctxTenant}
		m = append(m, text...)
		s.stalled = true
	} else {
		if b.settingsSQL != "" && b.settingsSQL != s.settingsSQL {
			m = append(m, "RESET ALL; "...)
		}
		m = append(m, t.SetupSQL...)
		m = append(m, "; "...)
		m = append(m, s.settingsSQL...)
	}
	m = append(m, 0)
	b.c.setBuf(endMsg(m, st))
	b.push(o)
	b.ctx = t.SetupSQL
	b.ctxTenant = s.tenant
	b.settingsSQL = s.settingsSQL
	b.setupErr = ""
	s.e.m.Switches.Inc()
	s.stats.Switches++
	if r := s.e.cfg.TripwireSampleRate; r > 0 && float64(s.e.rng.Uint64()>>11)/(1<<53) < r {
		b.verifyNext = true
	}
	return text != ""
}

// carriable reports whether a simple Query may carry the tenant switch: one plain statement (the guard's
// Verdict.Plain: no transaction control, which could extend the switch's implicit transaction past the
// Query or roll it back with a later statement, and nothing the relay must act on).
func carriable(v Verdict) bool {
	return v.Plain && !v.Refused && v.Emulate == EmulateNone && v.Pin == "" && v.Rewrite == "" && len(v.Sets) == 0 &&
		len(v.Prepares) == 0 && len(v.Executes) == 0 && !v.Terminate
}

// onBackendIdle runs when every reply the backend owed has arrived.
func (s *Session) onBackendIdle() {
	b := s.be
	s.stats.QueryTime += s.e.l.now.Sub(b.busySince)
	// A backend whose carried switch the server undid is back in another tenant's context, and is
	// switched before anything else runs on it; its identity is checked after that.
	if b.verifyNext && !s.unsynced && b.status != txFailed && b.cancels == 0 && b.ctx == s.tenant.SetupSQL {
		if s.tenant.VerifySQL == "" {
			b.verifyNext = false
		} else {
			b.queueVerify(s.tenant)
			b.c.flush()
			return // called again when the check's reply is in
		}
	}
	if s.stalled {
		s.stalled = false
	}
	if s.e.cfg.Mode == "transaction" && b.status == txIdle && !s.unsynced && s.pin == "" {
		s.release()
		if s.e.draining && len(s.in) == 0 {
			s.fatal(pgerrcode.AdminShutdown, "tenantproxy: the proxy is shutting down")
			return
		}
	}
	s.consumeIn()
	s.flushAll()
}

// release ends the lease and hands the backend back to the pool.
func (s *Session) release() {
	b := s.e.unlease(s)
	s.e.pool.put(b)
	s.e.checkWaits()
}

// terminateOwnBackend answers SELECT pg_terminate_backend(pg_backend_pid()) as PostgreSQL does: the
// session ends with FATAL 57P01, and the backend it holds is closed, never reused (the server rolls back
// an open transaction as the connection ends). Replies still owed for earlier messages come first.
func (s *Session) terminateOwnBackend() bool {
	if b := s.be; b != nil {
		if !b.opsEmpty() {
			s.stalled = true
			return false
		}
		s.e.unlease(s).close(pgerr.CloseTerminated)
	}
	if s.closeReason == "" {
		s.closeReason, s.closeDetail = pgerr.CloseFatal, pgerrcode.AdminShutdown+" pg_terminate_backend of its own backend"
	}
	s.c.send(appendTerminated(nil))
	s.terminate()
	return true
}

// gone handles a client that disappeared.
func (s *Session) gone(detail string) {
	if s.closeReason == "" {
		s.closeReason, s.closeDetail = pgerr.CloseClientGone, detail
	}
	s.terminate()
}

// closeText is the close reason with its detail, for the audit log.
func (s *Session) closeText() string {
	if s.closeDetail == "" {
		return string(s.closeReason)
	}
	return string(s.closeReason) + ": " + s.closeDetail
}

// fatal sends a FATAL error and closes the session.
func (s *Session) fatal(code, message string) {
	if s.state == stClosed {
		return
	}
	if s.closeReason == "" {
		s.closeReason, s.closeDetail = pgerr.CloseFatal, code+" "+message
	}
	s.e.m.errored(code, "proxy")
	s.c.send(appendError(nil, "FATAL", code, message))
	s.terminate()
}

// terminate closes the client and hands its backend, if any, to the reset path.
func (s *Session) terminate() {
	if s.state == stClosed {
		return
	}
	if s.state == stWaiting {
		s.e.pool.unqueue(s)
	}
	if s.be != nil {
		b := s.e.unlease(s)
		if s.e.cfg.Mode == "session" {
			b.needReset = true
		}
		s.e.clientLeft(b, s.unsynced, s.closeReason != pgerr.CloseClientTerminated)
	}
	s.c.flush()
	s.c.close()
	s.setState(stClosed)
	s.e.sessionClosed(s)
}

// resetSettings returns tracked settings to the client's startup values.
func (s *Session) resetSettings() {
	s.pendingSets = nil
	s.decoder = nil
	if v := s.startup["client_encoding"]; len(v) > 0 {
		s.setEncoding(v[0])
	}
	s.settings, s.settingsOwn = s.startup, false // shared until a SET changes it: an idle client keeps one map
	s.rebuildSettingsSQL()
}

// addPending adds the SETs and savepoint commands of a completed statement to those of the open
// transaction: ROLLBACK TO drops the SETs made since its savepoint, RELEASE forgets the savepoint.
func (s *Session) addPending(sets []Setting) {
	for _, st := range sets {
		switch st.Savepoint {
		case NoSavepoint, SavepointDefine:
			s.pendingSets = append(s.pendingSets, st)
			continue
		case CommitChain:
			s.applySets(s.pendingSets)
			s.pendingSets = s.pendingSets[:0]
			continue
		case RollbackChain:
			s.pendingSets = s.pendingSets[:0]
			continue
		}
		i := len(s.pendingSets) - 1
		for ; i >= 0; i-- {
			if p := s.pendingSets[i]; p.Savepoint == SavepointDefine && p.Name == st.Name {
				break
			}
		}
		if i < 0 {
			continue // a savepoint of before the tracked SETs
		}
		if st.Savepoint == SavepointRollback {
			s.pendingSets = s.pendingSets[:i+1]
			continue
		}
		kept := s.pendingSets[:i]
		for _, p := range s.pendingSets[i+1:] {
			if p.Savepoint == NoSavepoint {
				kept = append(kept, p)
			}
		}
		s.pendingSets = kept
	}
}

// applySets records settings the client changed with SET or RESET, once the server accepted them.
func (s *Session) applySets(sets []Setting) {
	if !s.settingsOwn {
		s.settings, s.settingsOwn = maps.Clone(s.startup), true
		if s.settings == nil {
			s.settings = map[string][]string{}
		}
	}
	for _, st := range sets {
		if st.Savepoint != NoSavepoint {
			continue
		}
		name := strings.ToLower(st.Name)
		if st.Reset {
			if v, ok := s.startup[name]; ok {
				s.settings[name] = v
			} else {
				delete(s.settings, name)
			}
			continue
		}
		s.settings[name] = st.Values
	}
	if v := s.settings["client_encoding"]; len(v) > 0 {
		s.setEncoding(v[0])
	} else {
		s.decoder = nil
	}
	s.rebuildSettingsSQL()
}

// rebuildSettingsSQL writes the SET statements that give a backend the client's settings. The tenant's
// statement_timeout applies unless the client set a lower one.
func (s *Session) rebuildSettingsSQL() {
	names := make([]string, 0, len(s.settings)+1)
	for k := range s.settings {
		names = append(names, k)
	}
	limit := time.Duration(0)
	if s.tenant != nil {
		limit = s.tenant.Limits.StatementTimeout
	}
	if limit > 0 {
		if _, ok := s.settings["statement_timeout"]; !ok {
			names = append(names, "statement_timeout")
		}
	}
	sort.Strings(names)
	var sb strings.Builder
	for _, k := range names {
		sb.WriteString("SET ")
		sb.WriteString(pgident.Quote(k))
		sb.WriteString(" TO ")
		values := s.settings[k]
		if k == "statement_timeout" && limit > 0 {
			if len(values) != 1 || !timeoutWithin(values[0], limit) {
				values = []string{strconv.FormatInt(limit.Milliseconds(), 10)}
			}
		}
		for i, v := range values {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(pgident.QuoteLiteral(v))
		}
		sb.WriteString("; ")
	}
	s.settingsSQL = sb.String()
	s.settingsN = len(names)
}

// timeoutWithin reports whether a statement_timeout value, in PostgreSQL's syntax (a number of
// milliseconds, or a number with one of the units us, ms, s, min, h, d), is positive and at most max.
// Anything it cannot read counts as above: the cap applies.
func timeoutWithin(v string, max time.Duration) bool {
	v = strings.TrimSpace(v)
	i := 0
	for i < len(v) && (v[i] >= '0' && v[i] <= '9' || v[i] == '.') {
		i++
	}
	n, err := strconv.ParseFloat(v[:i], 64)
	if err != nil || n <= 0 {
		return false
	}
	var u time.Duration
	switch strings.ToLower(strings.TrimSpace(v[i:])) {
	case "", "ms":
		u = time.Millisecond
	case "us":
		u = time.Microsecond
	case "s":
		u = time.Second
	case "min":
		u = time.Minute
	case "h":
		u = time.Hour
	case "d":
		u = 24 * time.Hour
	default:
		return false
	}
	return time.Duration(n*float64(u)) <= max
}
