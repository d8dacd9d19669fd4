package session

import (
	"fmt"
	"strings"

	"github.com/jackc/pgerrcode"
)

// parse handles a Parse message.
func (s *Session) parse(msg []byte) bool {
	name, rest, ok := cstring(msg[5:])
	query, types, ok2 := cstring(rest)
	if !ok || !ok2 || len(types) < 2 || len(types) != 2+4*int(uint16(types[0])<<8|uint16(types[1])) {
		s.fatal(pgerrcode.ProtocolViolation, "tenantproxy: malformed Parse message")
		return true
	}
	s.stats.ParseCount++
	orig := s.check(query, true)
	if s.be == nil && s.parseLocally(name, query, types, orig) {
		return true
	}
	if !s.ensureLease() {
		return false
	}
	s.unsynced = true
	v, fail := s.sqlNames(orig)
	if fail {
		s.poison(opParse, v)
		return true
	}
	if v.Refused {
		s.refuse(opParse, v, query)
		return true
	}
	s.keepNames(orig)
	if v.Pin != "" {
		s.pinFor(v.Pin)
	}
	b := s.be
	if name != "" {
		if _, exists := s.stmts[name]; exists {
			s.poison(opParse, Verdict{Code: pgerrcode.DuplicatePreparedStatement, Message: fmt.Sprintf("prepared statement %q already exists", name)})
			return true
		}
		if len(s.stmts) >= s.e.cfg.MaxClientPreparedStatements || s.stmtBytes+len(query) > s.e.cfg.MaxClientPreparedBytes {
			s.poison(opParse, Verdict{Code: pgerrcode.ConfigurationLimitExceeded, Message: fmt.Sprintf("tenantproxy: too many prepared statements: a client may keep %d statements of %d bytes in all ([pool] max_client_prepared_statements, max_client_prepared_bytes); close some",
				s.e.cfg.MaxClientPreparedStatements, s.e.cfg.MaxClientPreparedBytes)})
			return true
		}
	}
	if v.Rewrite != "" {
		query = v.Rewrite
	}
	st := &stmt{query: query, types: append([]byte(nil), types...), sets: v.Sets, emul: v.Emulate, emulName: v.Name}
	if st.emul != EmulateNone {
		// Answered by the relay at Execute; the server never sees it.
		s.keepStmt(name, st)
		b.pushSynthetic(parseComplete)
		return true
	}
	if name == "" {
		s.unnamed = st
		if v.Rewrite != "" {
			m, start := beginMsg(b.c.buf(), msgParse)
			m = append(m, 0)
			m = appendCString(m, query)
			m = append(m, types...)
			b.c.setBuf(endMsg(m, start))
		} else {
			b.c.queue(msg)
		}
		b.push(op{kind: opParse})
		b.unnamedSeq++
		s.unnamedOn, s.unnamedSeq = b, b.unnamedSeq
		return true
	}
	st.id = s.e.stmtID(s.tenant.Name, query, types)
	s.keepStmt(name, st)
	if b.hasPrepared(st.id) {
		s.e.m.prepHit.Inc()
		b.touch(st.id)
		b.push(op{kind: opSynthetic, synth: parseComplete, stmt: st.id, name: name})
		b.emitSynthetic()
		return true
	}
	s.e.m.prepMiss.Inc()
	s.sendParse(b, st, name)
	return true
}

// parseLocally answers the Parse of a named statement without a backend when the same text, with the same
// parameter types, already parsed for this tenant: a client preparing its statements (pgbench -M
// prepared, drivers' statement caches) then needs no lease, and a Sync that follows is answered locally
// too. The statement is prepared on a backend when first bound there.
func (s *Session) parseLocally(name, query string, types []byte, v Verdict) bool {
	if name == "" || v.Refused || v.Emulate != EmulateNone || v.Pin != "" || len(v.Sets) > 0 || v.Rewrite != "" ||
		len(v.Prepares) > 0 || len(v.Executes) > 0 || s.stmts[name] != nil ||
		len(s.stmts) >= s.e.cfg.MaxClientPreparedStatements || s.stmtBytes+len(query) > s.e.cfg.MaxClientPreparedBytes {
		return false
	}
	en := s.e.stmtIDs[stmtKey{s.tenant.Name, query, string(types)}]
	if en == nil || !en.valid {
		return false
	}
	st := &stmt{id: s.e.stmtID(s.tenant.Name, query, types), query: query, types: append([]byte(nil), types...)}
	s.keepStmt(name, st)
	s.e.m.prepHit.Inc()
	s.c.queue(parseComplete)
	s.localBatch = true
	return true
}

// keepStmt records a statement under the client's name ("" for the unnamed statement).
func (s *Session) keepStmt(name string, st *stmt) {
	if name == "" {
		s.unnamed = st
		return
	}
	if s.stmts == nil {
		s.stmts = make(map[string]*stmt)
	}
	s.stmts[name] = st
	s.stmtBytes += len(st.query)
}

// forget removes a named statement of the client.
func (s *Session) forget(name string, st *stmt) {
	delete(s.stmts, name)
	s.stmtBytes -= len(st.query)
	if st.id != 0 {
		s.e.stmtUnref(s.tenant.Name, st)
	}
}

var (
	parseComplete = []byte{msgParseComplete, 0, 0, 0, 4}
	bindComplete  = []byte{msgBindComplete, 0, 0, 0, 4}
	closeComplete = []byte{msgCloseComplete, 0, 0, 0, 4}
	noData        = []byte{msgNoData, 0, 0, 0, 4}
	noParams      = []byte{msgParamDesc, 0, 0, 0, 6, 0, 0}
)

// sendParse writes Parse for st under its server name and records it as prepared on b. name is the
// client's name for it, or "" for a replay whose reply the client must not see.
func (s *Session) sendParse(b *backend, st *stmt, name string) {
	m, start := beginMsg(b.c.buf(), msgParse)
	m = appendStmtName(m, st.id)
	m = appendCString(m, st.query)
	m = append(m, st.types...)
	b.c.setBuf(endMsg(m, start))
	b.push(op{kind: opParse, stmt: st.id, name: name, swallow: name == "", replay: name == ""})
	b.addPrepared(st.id)
}

// ensurePrepared makes sure b has st: a named statement's Parse is replayed when b lacks it, the unnamed
// statement's when another Parse or a simple Query destroyed it since.
func (s *Session) ensurePrepared(b *backend, st *stmt) {
	if st.id == 0 {
		if s.unnamedOn == b && s.unnamedSeq == b.unnamedSeq {
			return
		}
		m, start := beginMsg(b.c.buf(), msgParse)
		m = append(m, 0)
		m = appendCString(m, st.query)
		m = append(m, st.types...)
		b.c.setBuf(endMsg(m, start))
		b.push(op{kind: opParse, swallow: true, replay: true})
		b.unnamedSeq++
		s.unnamedOn, s.unnamedSeq = b, b.unnamedSeq
		s.e.m.prepReplay.Inc()
		return
	}
	if b.hasPrepared(st.id) {
		b.touch(st.id)
		return
	}
	s.e.m.prepReplay.Inc()
	s.sendParse(b, st, "")
}

// lookupStmt finds a statement by the client's name, or refuses the message as PostgreSQL would. A client
// never reaches an unnamed statement that it did not parse itself.
func (s *Session) lookupStmt(name string) *stmt {
	if name == "" {
		if s.unnamed != nil {
			return s.unnamed
		}
		s.poison(opParse, Verdict{Code: pgerrcode.InvalidSQLStatementName, Message: "unnamed prepared statement does not exist"})
		return nil
	}
	if st := s.stmts[name]; st != nil {
		return st
	}
	s.poison(opParse, Verdict{Code: pgerrcode.InvalidSQLStatementName, Message: fmt.Sprintf("prepared statement %q does not exist", name)})
	return nil
}

// bind handles Bind, rewriting a named statement to its server name.
func (s *Session) bind(msg []byte) bool {
	portal, rest, ok := cstringView(msg[5:])
	name, tail, ok2 := cstringView(rest)
	if !ok || !ok2 {
		s.fatal(pgerrcode.ProtocolViolation, "tenantproxy: malformed Bind message")
		return true
	}
	if !s.ensureLease() {
		return false
	}
	s.stats.BindCount++
	s.unsynced = true
	b := s.be
	st := s.lookupStmt(name)
	if st == nil {
		return true
	}
	if st.emul != EmulateNone || len(st.sets) > 0 {
		if s.portals == nil {
			s.portals = make(map[string]*stmt)
		}
		s.portals[strings.Clone(portal)] = st
	} else if s.portals != nil {
		delete(s.portals, portal)
	}
	if st.emul != EmulateNone {
		b.pushSynthetic(bindComplete)
		return true
	}
	s.ensurePrepared(b, st)
	if st.id == 0 {
		b.c.queue(msg)
	} else {
		m, start := beginMsg(b.c.buf(), msgBind)
		m = appendCString(m, portal)
		m = appendStmtName(m, st.id)
		m = append(m, tail...)
		b.c.setBuf(endMsg(m, start))
	}
	b.push(op{kind: opBind, stmt: st.id})
	return true
}

// describe handles Describe of a statement or a portal.
func (s *Session) describe(msg []byte) bool {
	body := msg[5:]
	name, _, ok := "", []byte(nil), len(body) >= 2 && (body[0] == 'S' || body[0] == 'P')
	if ok {
		name, _, ok = cstringView(body[1:])
	}
	if !ok {
		s.fatal(pgerrcode.ProtocolViolation, "tenantproxy: malformed Describe message")
		return true
	}
	if !s.ensureLease() {
		return false
	}
	s.unsynced = true
	b := s.be
	if body[0] == 'P' {
		if st := s.portals[name]; st != nil && st.emul != EmulateNone {
			b.pushSynthetic(noData)
			return true
		}
		b.c.queue(msg)
		b.push(op{kind: opDescribePortal})
		return true
	}
	st := s.lookupStmt(name)
	if st == nil {
		return true
	}
	if st.emul != EmulateNone {
		b.pushSynthetic(append(append([]byte(nil), noParams...), noData...))
		return true
	}
	s.ensurePrepared(b, st)
	if st.id == 0 {
		b.c.queue(msg)
	} else {
		m, start := beginMsg(b.c.buf(), msgDescribe)
		m = append(m, 'S')
		m = appendStmtName(m, st.id)
		b.c.setBuf(endMsg(m, start))
	}
	b.push(op{kind: opDescribeStmt, stmt: st.id})
	return true
}

// execute handles Execute: a portal of an emulated statement is answered by the relay, a portal of a
// SET has its settings tracked once the server completes it.
func (s *Session) execute(msg []byte) bool {
	portal, _, ok := cstringView(msg[5:])
	if !ok {
		s.fatal(pgerrcode.ProtocolViolation, "tenantproxy: malformed Execute message")
		return true
	}
	if !s.ensureLease() {
		return false
	}
	s.unsynced = true
	o := op{kind: opExecute}
	if st := s.portals[portal]; st != nil {
		if st.emul != EmulateNone {
			s.e.m.emulated.Inc()
			s.be.pushSynthetic(appendCommandComplete(nil, s.emulateEffect(st.emul, st.emulName)))
			return true
		}
		o.sets = st.sets
	}
	s.be.c.queue(msg)
	s.be.push(o)
	s.stats.QueryCount++
	return true
}

// closeMsg handles Close: a named statement is forgotten by the relay and answered locally.
func (s *Session) closeMsg(msg []byte) bool {
	body := msg[5:]
	if len(body) < 2 {
		s.fatal(pgerrcode.ProtocolViolation, "tenantproxy: malformed Close message")
		return true
	}
	name, _, ok := cstringView(body[1:])
	if !ok {
		s.fatal(pgerrcode.ProtocolViolation, "tenantproxy: malformed Close message")
		return true
	}
	if body[0] == 'S' && name != "" {
		if st := s.stmts[name]; st != nil {
			s.forget(name, st)
		}
		if s.be == nil {
			s.c.queue(closeComplete)
			return true
		}
		s.unsynced = true
		s.be.pushSynthetic(closeComplete)
		return true
	}
	if body[0] == 'S' && s.unnamed != nil && s.unnamed.emul != EmulateNone {
		s.unnamed = nil
		if s.be == nil {
			s.c.queue(closeComplete)
			return true
		}
		s.unsynced = true
		s.be.pushSynthetic(closeComplete)
		return true
	}
	if body[0] == 'P' && s.portals != nil {
		delete(s.portals, name)
	}
	return s.forwardExt(msg, opClose)
}

// forwardExt forwards an extended-protocol message that needs no rewriting.
func (s *Session) forwardExt(msg []byte, kind opKind) bool {
	if !s.ensureLease() {
		return false
	}
	s.unsynced = true
	s.be.c.queue(msg)
	s.be.push(op{kind: kind})
	return true
}

// forgetFailedParse drops the client's name for a statement whose Parse the server refused or skipped.
func (s *Session) forgetFailedParse(name string, id uint64) {
	if st := s.stmts[name]; st != nil && st.id == id && id != 0 {
		s.forget(name, st)
	}
}

// dropStatements releases every statement reference the client holds.
func (s *Session) dropStatements() {
	for _, st := range s.stmts {
		if st.id != 0 {
			s.e.stmtUnref(s.tenant.Name, st)
		}
	}
	s.stmts = nil
	s.stmtBytes = 0
	s.unnamed = nil
	s.portals = nil
}

// pushSynthetic queues a reply of the relay's own, in order with the server's replies: it goes out as
// soon as every reply due before it has.
func (b *backend) pushSynthetic(msg []byte) {
	b.push(op{kind: opSynthetic, synth: msg})
	b.emitSynthetic()
}
