package session

import (
	"encoding/binary"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/jackc/pgerrcode"

	"github.com/tenantproxy/tenantproxy/internal/pgerr"
	"github.com/tenantproxy/tenantproxy/policy"
)

// opKind is a request sent to a backend whose replies the relay still expects, in order.
type opKind uint8

const (
	opQuery          opKind = iota // simple Query: replies until ReadyForQuery
	opSync                         // Sync: ReadyForQuery
	opParse                        // ParseComplete
	opBind                         // BindComplete
	opDescribeStmt                 // ParameterDescription, then RowDescription or NoData
	opDescribePortal               // RowDescription or NoData
	opExecute                      // rows, then CommandComplete, EmptyQueryResponse or PortalSuspended
	opClose                        // CloseComplete
	opSynthetic                    // bytes the relay emits itself when this op reaches the head
)

// op is one entry of a backend's queue of expected replies.
type op struct {
	kind    opKind
	swallow bool   // replies are the relay's own business and never reach the client
	poison  bool   // the request was refused: its error is replaced by the refusal below
	code    string // refusal SQLSTATE
	msg     string // refusal message
	pos     int    // refusal Position, when the refusal is the server's own error (a syntax error)
	synth   []byte // for opSynthetic
	stmt    uint64 // prepared statement id of opParse, or of opClose when the relay evicts it
	name    string // the client's name for the statement of opParse
	sets    []Setting
	verify  bool // the tripwire's identity check: its one row must be true
	quiet   bool // an error is expected (the relay's own abort of a batch) and ignored
	replay  bool // a Parse the relay replays: its success is swallowed, its error is the client's
	// setup and carried describe a simple Query that carries the tenant switch ahead of the client's
	// statement (applyContext): setup counts the switch's statements whose replies are still due (the
	// relay's own), carried is the byte length of the switch, by which the Position of an error in the
	// client's statement is corrected.
	setup      int
	carried    int
	prevCtx    string  // for a carried switch: the backend's context before it
	prevTenant *Tenant // and whose it was
	errored    bool
}

// The statement the relay sends in place of a refused one: it fails to parse, has no effect, and its
// error marks the exact position of the refusal in the reply stream, so the backend's own transaction
// state (aborted, skip-to-Sync) matches PostgreSQL's behaviour for a failed statement.
const poisonSQL = "tenantproxy_refused_statement"

// poisonStmt names the poison when it stands in for a Parse: a failed named Parse creates nothing and,
// unlike the unnamed statement, destroys nothing of the client's.
const poisonStmt = "tenantproxy_poison"

// beState is where a backend is in its life. setState (state.go) is the only writer, and a state is also
// list membership: a backend is in the pool's idle list exactly while beIdle, and the pool's counts per
// state follow from the transitions.
//
//	beNew ──▶ beIdle ◀──▶ beLeased ──▶ beCancelWait ──▶ beIdle | beLeased | beReset
//	  │          │            │    └──▶ beReset ──(ROLLBACK, DISCARD ALL)──▶ beIdle | beLeased
//	  └──────────┴────────────┴──────────────────────────────▶ beClosed (from any state)
type beState uint8

const (
	beNew        beState = iota // connected, not yet handed to the pool
	beIdle                      // in the pool's idle list, carrying the context ctx
	beLeased                    // linked to a session (lease), serving its transaction
	beCancelWait                // released while a cancel request for it is in flight: unused until it completes
	beReset                     // its client left: finishing what it sent, then rolling back and discarding (resetStep)
	beClosed                    // gone
	numBeStates
)

func (st beState) String() string {
	return [...]string{"new", "idle", "leased", "cancel_wait", "reset", "closed"}[st]
}

// resetStep is what a backend in beReset waits for.
type resetStep uint8

const (
	resetFinish   resetStep = iota // the replies of what its client sent before leaving
	resetRollback                  // ROLLBACK of the transaction the client left open
	resetDiscard                   // DISCARD ALL of session state that would outlive the client
)

func (r resetStep) String() string { return [...]string{"finish", "rollback", "discard"}[r] }

// backend is one server connection of the shared pool.
type backend struct {
	e      *Engine
	c      sock
	pid    uint32
	secret []byte
	state  beState

	// Context: the tenant setup and client settings currently applied on the server side ("" for none).
	ctx         string
	ctxTenant   *Tenant // whose context ctx is (nil for none), for the fair queue's affinity
	settingsSQL string
	prepared    map[uint64]*lruNode // server-side statements by id
	lru         lruList

	client *Session
	q      replyQueue // the replies the server still owes
	status byte       // last ReadyForQuery status

	// Reply stream framing.
	hdr     [5]byte
	hdrN    int
	remain  int
	curType byte
	action  uint8
	capture []byte

	created   time.Time
	lastUsed  time.Time
	lastRecv  time.Time
	busySince time.Time // when the queue of expected replies last became non-empty
	copyIn    bool      // the server waits for COPY data
	// unnamedSeq counts what destroys the server's unnamed statement (a Parse of it, a simple Query):
	// a session's unnamed statement is still there only if the count is what it was after its Parse.
	unnamedSeq uint64
	cancels    int // cancel requests in flight
	// cancelDue is a client's cancel request that arrived while the relay's own statements (the tenant
	// setup, a replayed Parse) were ahead of the client's in the queue: it is sent once the client's own
	// request reaches the front, so that a cancel only ever cancels the client's statement.
	cancelDue bool
	resetStep resetStep // in beReset, the step under way
	setupErr  string
	needReset bool // session state may survive: reset before the next tenant
	// closeNeeded marks a backend to close instead of serving again (admin RECONNECT, a changed context).
	closeNeeded bool
	verifyNext  bool // run the tripwire's identity check when the backend is next idle
	rolledBack  bool // the last CommandComplete before ReadyForQuery was a ROLLBACK
}

const (
	actForward uint8 = iota
	actDrop
	actCapture
)

func (b *backend) opsEmpty() bool { return b.q.empty() }

// push queues the reply expectation of a request just written to the server.
func (b *backend) push(o op) {
	if _, wasEmpty := b.q.push(o); wasEmpty {
		b.busySince = b.e.l.now
	}
}

func (b *backend) headOp() *op { return b.q.front() }

// pop ends the front op: the relay's synthetic replies behind it go out, and a client's cancel request
// that waited for its own request to reach the server is sent.
func (b *backend) pop() {
	b.q.pop()
	b.emitSynthetic()
	if b.cancelDue {
		b.cancelIfDue()
	}
}

// emitSynthetic writes the relay's own replies that have reached the head of the queue.
func (b *backend) emitSynthetic() {
	b.q.popSynthetic(b.emitOne)
}

func (b *backend) emitOne(o *op) {
	if b.client != nil {
		b.client.c.queue(o.synth)
	}
}

// handleEvent is the backend socket's readiness callback.
func (b *backend) handleEvent(ev uint32) {
	if ev&evOut != 0 {
		b.c.flush()
		if b.c.err != nil {
			b.fail("write: "+b.c.err.Error(), pgerrcode.ConnectionFailure)
			return
		}
		if b.client != nil && b.c.pending() < highWater {
			b.client.resumeReading()
		}
	}
	if ev&(evIn|evErr) == 0 {
		return
	}
	buf := b.e.l.rbuf
	n, err := b.c.read(buf)
	if err != nil {
		b.fail("server closed the connection unexpectedly", pgerrcode.ConnectionFailure)
		return
	}
	if n == 0 {
		return
	}
	b.lastRecv = b.e.l.now
	b.feed(buf[:n])
	if b.c.closed {
		return
	}
	if s := b.client; s != nil {
		s.c.flush()
		if s.c.pending() >= highWater {
			b.c.setEvents(b.c.events &^ evIn) // backpressure: stop reading until the client drains
		}
		if s.c.err != nil {
			s.gone("write to client: " + s.c.err.Error())
			return
		}
	}
	b.afterReplies()
}

// feed runs the reply stream through the framing state machine.
func (b *backend) feed(data []byte) {
	for len(data) > 0 && !b.c.closed {
		if b.remain > 0 {
			n := b.remain
			if n > len(data) {
				n = len(data)
			}
			switch b.action {
			case actForward:
				if b.client != nil {
					b.client.c.queue(data[:n])
				}
			case actCapture:
				b.capture = append(b.capture, data[:n]...)
			}
			b.remain -= n
			data = data[n:]
			if b.remain == 0 {
				b.endMessage()
			}
			continue
		}
		// A whole small message in view: the common case, handled without the header copy.
		if b.hdrN == 0 && len(data) >= 5 {
			copy(b.hdr[:], data[:5])
			data = data[5:]
		} else {
			k := copy(b.hdr[b.hdrN:], data)
			b.hdrN += k
			data = data[k:]
			if b.hdrN < 5 {
				return
			}
			b.hdrN = 0
		}
		length := int(binary.BigEndian.Uint32(b.hdr[1:]))
		if length < 4 || length > 1<<30 {
			b.fail("protocol violation from server: bad message length", pgerrcode.ProtocolViolation)
			return
		}
		b.curType = b.hdr[0]
		b.remain = length - 4
		b.action = b.classify(b.curType)
		switch b.action {
		case actForward:
			if b.client != nil {
				b.client.c.queue(b.hdr[:])
			}
		case actCapture:
			b.capture = append(b.capture[:0], b.hdr[:]...)
		}
		if b.remain == 0 {
			b.endMessage()
		}
	}
}

// classify decides what happens to a reply message from its type alone.
func (b *backend) classify(t byte) uint8 {
	switch t {
	case msgReadyForQuery, msgErrorResponse, msgParameterStatus:
		return actCapture
	case msgNotification:
		if b.client == nil {
			return actDrop
		}
		return actCapture
	}
	if h := b.headOp(); h != nil && h.setup > 0 {
		return actDrop // the replies of a carried switch's statements are the relay's
	}
	switch t {
	case msgCommandComplete:
		if b.client != nil && (len(b.client.pendingSets) > 0 || (b.headOp() != nil && len(b.headOp().sets) > 0)) {
			return actCapture // its tag tells whether the transaction was rolled back
		}
	}
	h := b.headOp()
	if h != nil && h.verify && t == msgDataRow {
		return actCapture
	}
	if h == nil || h.swallow || b.client == nil {
		return actDrop
	}
	return actForward
}

// endMessage does the bookkeeping once a reply message is complete.
func (b *backend) endMessage() {
	t := b.curType
	switch t {
	case msgReadyForQuery:
		b.onReady()
		return
	case msgErrorResponse:
		b.onError()
		return
	case msgParameterStatus:
		b.onParameterStatus()
		return
	case msgNotification:
		b.onNotification()
		return
	case msgNotice:
		return
	case msgDataRow:
		if h := b.headOp(); h != nil && h.verify && b.action == actCapture {
			b.checkIdentity()
			return
		}
	case msgCopyInResponse, msgCopyBothResp:
		b.copyIn = true
		if b.client == nil && b.state == beReset {
			// The client left before the server asked for its data: end the COPY now.
			b.queueCopyFail()
			b.c.flush()
		}
	case msgCommandComplete:
		if h := b.headOp(); h != nil && h.setup > 0 {
			h.setup--
			return
		}
		b.copyIn = false
		if b.action == actCapture {
			b.rolledBack = string(b.capture[5:]) == "ROLLBACK\x00"
			if h := b.headOp(); h != nil && !h.swallow && b.client != nil {
				b.client.c.queue(b.capture)
			}
		}
	}
	h := b.headOp()
	if h == nil {
		return
	}
	var done bool
	switch h.kind {
	case opParse:
		done = t == msgParseComplete
		if done && h.stmt != 0 && !h.replay && b.client != nil {
			if st := b.client.stmts[h.name]; st != nil && st.id == h.stmt {
				b.e.stmtParsed(b.client.tenant.Name, st)
			}
		}
	case opBind:
		done = t == msgBindComplete
	case opDescribeStmt, opDescribePortal:
		done = t == msgRowDesc || t == msgNoData
	case opExecute:
		done = t == msgCommandComplete || t == msgEmptyQuery || t == msgPortalSuspended
		if t == msgCommandComplete && len(h.sets) > 0 && b.client != nil {
			b.client.addPending(h.sets)
			b.client.followEncoding() // the server switches client_encoding at once, also in a transaction
		}
	case opClose:
		done = t == msgCloseComplete
	}
	if done {
		b.pop()
	}
}

func (b *backend) onReady() {
	if len(b.capture) < 6 {
		b.fail("protocol violation from server: short ReadyForQuery", pgerrcode.ProtocolViolation)
		return
	}
	b.status = b.capture[5]
	// Extended-protocol ops left before a Sync's ReadyForQuery were skipped by the server.
	h := b.q.readyFront()
	if h == nil {
		b.fail("protocol violation from server: unexpected ReadyForQuery", pgerrcode.ProtocolViolation)
		return
	}
	forward := !h.swallow && b.client != nil
	if h.carried > 0 && h.errored && b.setupErr == "" {
		// The client's statement failed, and the server undid the switch it carried with the rest of the
		// Query's transaction: the backend is back in the context it had, settings included (they were
		// equal).
		b.ctx, b.ctxTenant = h.prevCtx, h.prevTenant
	}
	if (h.swallow || h.carried > 0) && b.setupErr != "" {
		// The tenant context could not be applied: the backend is unusable for this client.
		msg := b.setupErr
		b.pop()
		if s := b.detach(); s != nil {
			s.fatal(pgerrcode.ConnectionFailure, "tenantproxy: could not apply the tenant context: "+msg)
		}
		b.close(pgerr.CloseSetupFailed)
		return
	}
	if s := b.client; s != nil && !h.swallow {
		if !h.errored && len(h.sets) > 0 {
			s.addPending(h.sets)
			s.followEncoding()
		}
		// Settings take effect as the server keeps them: when their transaction ends, unless it was
		// rolled back (the tag of a ROLLBACK, and of a COMMIT of a failed transaction, is ROLLBACK).
		if len(s.pendingSets) > 0 && b.status == txIdle {
			if !b.rolledBack {
				s.applySets(s.pendingSets)
			}
			s.pendingSets = s.pendingSets[:0]
			s.followEncoding() // a ROLLBACK switched client_encoding back
		}
		b.settingsSQL = s.settingsSQL
		if b.status == txIdle && !s.xactStart.IsZero() {
			s.stats.XactCount++
			s.stats.XactTime += b.e.l.now.Sub(s.xactStart)
			s.xactStart = time.Time{}
		}
	}
	b.rolledBack = false
	b.pop()
	if forward {
		b.client.c.queue(b.capture)
	}
}

func (b *backend) onError() {
	body := b.capture[5:]
	code, msg := errorFields(body)
	b.e.m.errored(code, "server")
	h := b.headOp()
	if h == nil {
		// An error outside any request: the server is going away (e.g. 57P01 on shutdown).
		if s := b.client; s != nil {
			s.c.queue(b.capture)
		}
		b.fail(msg, code)
		return
	}
	h.errored = true
	b.copyIn = false
	if (h.kind == opBind || h.kind == opDescribeStmt) && h.stmt != 0 && b.client != nil && staleStatement(code, msg) {
		b.e.retireStatement(b.client.tenant.Name, h.stmt)
	}
	switch {
	case h.poison && code == pgerrcode.SyntaxError && strings.Contains(msg, poisonSQL):
		if s := b.client; s != nil {
			s.c.setBuf(appendRefusal(s.c.buf(), Verdict{Code: h.code, Message: h.msg, Position: h.pos}))
		}
	case h.quiet:
	case h.verify:
		b.verifyNext = true // interrupted (a late cancel signal): check again when next idle
	case h.replay:
		// The statement no longer parses on this backend (the schema changed since): the client learns
		// why, in place of its Bind or Describe, which the server now skips.
		if b.client != nil {
			b.client.c.queue(b.capture)
		}
	case h.setup > 0 && code == pgerrcode.QueryCanceled && b.client != nil:
		// The client's cancel reached its Query while the switch it carried still ran: the client's
		// statement is cancelled, as it asked, and the server undid the switch (onReady).
		b.client.c.queue(b.capture)
	case h.swallow || h.setup > 0:
		if b.setupErr == "" {
			b.setupErr = code + " " + msg
		}
		b.e.log.Warn("backend setup statement failed", zap.Uint32("backend_pid", b.pid), zap.String("sqlstate", code), zap.String("error", msg))
	case b.client != nil && h.carried > 0:
		b.client.c.setBuf(appendShiftedError(b.client.c.buf(), b.capture, h.carried))
	case b.client != nil:
		b.client.c.queue(b.capture)
	}
	if h.kind == opQuery || h.kind == opSync {
		return // ReadyForQuery follows
	}
	// The failed request and every message up to the next Sync, which the server now skips (simple
	// Query messages included), leave no trace: statements they would have prepared or closed stay as
	// they were.
	b.q.failBatch(b.skipped)
	if b.cancelDue {
		b.cancelIfDue()
	}
}

// skipped undoes what a request the server skipped after an error would have done to the prepared
// statements.
func (b *backend) skipped(o *op) {
	switch {
	case o.kind == opParse && o.stmt != 0:
		b.removePrepared(o.stmt)
		if !o.swallow && b.client != nil {
			b.client.forgetFailedParse(o.name, o.stmt)
		}
	case o.kind == opClose && o.stmt != 0:
		b.keepPrepared(o.stmt)
	case o.kind == opSynthetic && o.stmt != 0 && b.client != nil:
		b.client.forgetFailedParse(o.name, o.stmt) // PostgreSQL would have skipped this Parse
	}
}

// onParameterStatus keeps the proxy's parser in step with the server's: a backend that reports a
// client-only encoding, standard_conforming_strings off, or another session authorization or superuser
// status has escaped the guard and is closed.
func (b *backend) onParameterStatus() {
	name, rest, ok := cstring(b.capture[5:])
	if !ok {
		b.fail("protocol violation from server: bad ParameterStatus", pgerrcode.ProtocolViolation)
		return
	}
	value, _, _ := cstring(rest)
	bad := ""
	switch name {
	case "standard_conforming_strings":
		if value != "on" {
			bad = "standard_conforming_strings is " + value
		}
	case "client_encoding":
		if policy.IsClientOnlyEncoding(value) {
			bad = "client_encoding is " + value
		}
	case "session_authorization":
		if value != b.e.cfg.PoolRole && b.e.cfg.PoolRole != "" {
			bad = "session_authorization changed to " + value
		}
		return // never shown to clients: they see their own user name
	case "is_superuser":
		if value != "off" {
			bad = "is_superuser is " + value
		}
		return
	}
	if bad != "" {
		b.e.tripwire(b, bad)
		return
	}
	h := b.headOp()
	if b.client != nil && (h == nil || (!h.swallow && h.setup == 0)) {
		b.client.c.queue(b.capture)
	}
}

// checkIdentity reads the tripwire's row: a single boolean column that must be true.
func (b *backend) checkIdentity() {
	body := b.capture[5:]
	ok := len(body) >= 7 && body[0] == 0 && body[1] == 1 && binary.BigEndian.Uint32(body[2:]) == 1 && body[6] == 't'
	if !ok {
		b.e.tripwire(b, "the backend's role, session user, search_path or tenant setting is not its tenant's")
		return
	}
	b.e.m.Verified.Inc()
}

// queueVerify writes the tripwire's identity check for the tenant whose context the backend carries.
func (b *backend) queueVerify(t *Tenant) {
	b.verifyNext = false
	if t.VerifySQL == "" {
		return
	}
	b.c.setBuf(appendQuery(b.c.buf(), t.VerifySQL))
	b.push(op{kind: opQuery, swallow: true, verify: true})
	b.unnamedSeq++
}

// queueQuery writes a simple Query the relay itself sends; its replies are swallowed.
func (b *backend) queueQuery(sql string) {
	b.c.setBuf(appendQuery(b.c.buf(), sql))
	b.push(op{kind: opQuery, swallow: true})
	b.unnamedSeq++
}

// onNotification gives the client a notification of its tenant's channel, under the channel name the
// client used and with the pid of the client's own key; anything else is dropped.
func (b *backend) onNotification() {
	s := b.client
	body := b.capture[5:]
	if s == nil || len(body) < 4 {
		return
	}
	channel, rest, ok := cstring(body[4:])
	payload, _, ok2 := cstring(rest)
	prefix := s.tenant.Name + channelSep
	if !ok || !ok2 || !strings.HasPrefix(channel, prefix) {
		return
	}
	// A notification the client's own backend sent carries the pid the client was given in
	// BackendKeyData, as on a direct connection: a client that ignores its own notifications compares the
	// two. Another backend's pid is never the client's own.
	pid := binary.BigEndian.Uint32(body)
	switch {
	case pid == b.pid:
		pid = s.pid
	case pid == s.pid:
		pid = ^pid
	}
	m, st := beginMsg(s.c.buf(), msgNotification)
	m = binary.BigEndian.AppendUint32(m, pid)
	m = appendCString(m, channel[len(prefix):])
	m = appendCString(m, payload)
	s.c.setBuf(endMsg(m, st))
}

// afterReplies decides, once a read's replies are handled, whether the lease ends.
func (b *backend) afterReplies() {
	if b.c.closed || !b.opsEmpty() {
		return
	}
	switch b.state {
	case beLeased:
		if s := b.client; s != nil {
			s.onBackendIdle()
		}
	case beReset:
		b.e.continueReset(b)
	}
}

// fail closes the backend after an error; its client, if any, gets a FATAL error and is closed.
func (b *backend) fail(reason, code string) {
	if b.c.closed {
		return
	}
	midMessage := b.remain > 0 && b.action == actForward
	if s := b.detach(); s != nil {
		if code == "" {
			code = pgerrcode.ConnectionFailure
		}
		if midMessage {
			// Part of a message already went to the client: anything more would be read as its rest.
			// Closing the connection is the only clear signal left.
			s.closeReason, s.closeDetail = pgerr.CloseServerLost, "in the middle of a message: "+reason
			s.terminate()
		} else {
			s.fatal(code, "tenantproxy: the server connection was lost: "+reason)
		}
	}
	b.closeWith(pgerr.CloseError, reason)
}

// close terminates the server connection and tells the pool why.
func (b *backend) close(reason pgerr.CloseReason) { b.closeWith(reason, "") }

// closeWith is close with the detail of this close (the failure), for the log.
func (b *backend) closeWith(reason pgerr.CloseReason, detail string) {
	if b.c.closed {
		return
	}
	b.c.send([]byte{msgTerminate, 0, 0, 0, 4})
	b.c.close()
	b.e.backendClosed(b, reason, detail)
}
