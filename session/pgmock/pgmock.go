// Package pgmock is a scripted PostgreSQL backend for testing the relay in-process, after pgx's
// internal/pgmock: a Server implements session.Dialer, and each Dial opens a socketpair whose one end the
// Engine owns while a goroutine serves the other with pgproto3.
//
// A backend answers the statements the relay's tests use the way PostgreSQL does: transaction status
// (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ROLLBACK TO, an aborted transaction refusing everything but its
// end), skip-to-Sync after an error in an extended-protocol batch, prepared statements and portals, the
// relay's poison statement failing to parse, session settings (SET, RESET, RESET ALL, DISCARD ALL,
// current_setting and SHOW read them back), and an empty query. The texts it understands:
//
//	SELECT <anything>               one row whose one text column is <anything> as written
//	SELECT current_setting('name')  one row: the backend's value of the setting
//	SHOW name                       the same
//	SELECT current_user = ...       one row "t" (the relay's tripwire check)
//	... 1/0 ...                     22012 division by zero
//	... bad_column ...              42703 at parse time
//	Config.SleepSQL                 held: see below
//	anything else                   CommandComplete with the statement's first word as its tag
//
// Scripted behaviours:
//   - sleep: the text Config.SleepSQL is held until Wake releases it, a cancel request (Server.Cancel with
//     the backend's key) interrupts it with 57014, Config.SleepFor passes (it then completes normally, as
//     pg_sleep does), or Config.HoldLimit passes (it then fails with XX000); with Config.QueryTime every
//     other simple query takes time too, and a cancel request interrupts it;
//   - inject: Conn.Inject sends messages on the server's own initiative (a NotificationResponse);
//   - fail: FailParse makes texts containing a string fail to parse from then on, DropColumn is the
//     column case of it, SetDialError fails every Dial, Conn.Close ends a backend from the server side;
//   - gates: SetDialGate and SetCancelGate hold Dial and Cancel until a channel is closed;
//   - records: every message a backend receives is logged in arrival order ("pid|message", rendered by
//     DescribeFrontend); Messages, Mark, Since and WaitFor read the log, CancelCalls the cancel requests,
//     Dials the Dial calls and Live the number of connected backends.
//
// It is not PostgreSQL: a simple query is split into statements at every ';' (quotes included), savepoints
// are not tracked by name, and a SET survives the rollback of its transaction. The relay's tests need none
// of that.
//
// The package is test support but imports no testing package: its waits take a TB, which testing.TB
// satisfies.
package pgmock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/session"
)

// Texts and names the backends know.
const (
	// DefaultRole is the role the backends report as session_authorization unless Config.Role says
	// otherwise.
	DefaultRole = "tenantproxy_pool"
	// PoisonSQL is the statement the relay sends in place of a refused one; it fails to parse (42601).
	PoisonSQL = "tenantproxy_refused_statement"
	// DefaultSleepSQL is the query held by a backend unless Config.SleepSQL says otherwise.
	DefaultSleepSQL = "SELECT pg_sleep(10)"
	// DefaultHoldLimit bounds a held query unless Config.HoldLimit says otherwise.
	DefaultHoldLimit = 5 * time.Second
	// DefaultWaitLimit bounds the waits of WaitFor and Close unless Config.WaitLimit says otherwise.
	DefaultWaitLimit = 5 * time.Second
)

// Config configures a Server. The zero value is usable.
type Config struct {
	// Role is reported as session_authorization at login (DefaultRole when empty).
	Role string
	// SleepSQL is the simple-protocol query a backend holds (DefaultSleepSQL when empty).
	SleepSQL string
	// SleepFor, when positive, lets a held query complete on its own after this long, like pg_sleep;
	// otherwise it waits for Wake or a cancel request.
	SleepFor time.Duration
	// SleepResult is the one value of the row a held query returns when it completes ("" by default).
	SleepResult string
	// QueryTime, when positive, is how long every other simple Query takes on the server; a cancel
	// request arriving meanwhile interrupts it with 57014, as PostgreSQL's would. The relay's own
	// statements (tenant setup, ROLLBACK, DISCARD ALL, the tripwire's check) are simple queries too, so a
	// late cancel request can hit them.
	QueryTime time.Duration
	// HoldLimit fails a held query that nothing released after this long (DefaultHoldLimit when zero).
	HoldLimit time.Duration
	// WaitLimit bounds WaitFor, WaitForMessage and Close (DefaultWaitLimit when zero).
	WaitLimit time.Duration
	// CancelSettle is how long Cancel waits, after the interrupted query's error was sent, before it
	// returns: PostgreSQL's error usually reaches the relay before the cancel request's connection is done
	// with. Zero returns as soon as the error is written.
	CancelSettle time.Duration
}

// TB is the part of testing.TB that the waits use.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// CancelCall is one Server.Cancel call.
type CancelCall struct {
	PID    uint32
	Secret []byte
}

// parseFailure makes texts containing match fail to parse.
type parseFailure struct {
	match, code, message string
}

// Server is a session.Dialer whose backends are served in-process. Its methods are safe for concurrent
// use.
type Server struct {
	cfg Config

	mu         sync.Mutex
	nextPID    uint32
	conns      map[uint32]*Conn
	log        []string // "pid|message" in arrival order
	cancels    []CancelCall
	dials      int
	live       int           // backends connected now
	maxLive    int           // the most connected at once
	dialGate   chan struct{} // when set, Dial waits for it (or for its context)
	cancelGate chan struct{} // when set, Cancel waits for it before it reaches the server
	dialErr    error
	failures   []parseFailure
	wake       chan struct{} // each value lets one held query complete
	wg         sync.WaitGroup
}

var _ session.Dialer = (*Server)(nil)

// New returns a Server with no backend yet.
func New(cfg Config) *Server {
	if cfg.Role == "" {
		cfg.Role = DefaultRole
	}
	if cfg.SleepSQL == "" {
		cfg.SleepSQL = DefaultSleepSQL
	}
	if cfg.HoldLimit <= 0 {
		cfg.HoldLimit = DefaultHoldLimit
	}
	if cfg.WaitLimit <= 0 {
		cfg.WaitLimit = DefaultWaitLimit
	}
	return &Server{cfg: cfg, nextPID: 5000, conns: map[uint32]*Conn{}, wake: make(chan struct{}, 16)}
}

// Params returns the ParameterStatus values a backend reports at login.
func (s *Server) Params() map[string]string {
	return map[string]string{
		"server_version": "15.0 (fake)", "server_encoding": "UTF8", "client_encoding": "UTF8",
		"DateStyle": "ISO, MDY", "integer_datetimes": "on", "standard_conforming_strings": "on",
		"TimeZone": "UTC", "IntervalStyle": "postgres", "is_superuser": "off",
		"session_authorization": s.cfg.Role, "application_name": "",
	}
}

// SleepSQL is the query the backends hold.
func (s *Server) SleepSQL() string { return s.cfg.SleepSQL }

// SetDialGate makes Dial wait until gate is closed, or its context ends; nil opens the way again.
func (s *Server) SetDialGate(gate chan struct{}) {
	s.mu.Lock()
	s.dialGate = gate
	s.mu.Unlock()
}

// SetCancelGate makes Cancel wait until gate is closed, or its context ends, before it reaches a backend.
func (s *Server) SetCancelGate(gate chan struct{}) {
	s.mu.Lock()
	s.cancelGate = gate
	s.mu.Unlock()
}

// SetDialError makes every Dial fail with err from now on; nil lets them succeed again.
func (s *Server) SetDialError(err error) {
	s.mu.Lock()
	s.dialErr = err
	s.mu.Unlock()
}

// FailParse makes every text containing match fail to parse with code and message from now on, in Parse
// and in simple queries alike.
func (s *Server) FailParse(match, code, message string) {
	s.mu.Lock()
	s.failures = append(s.failures, parseFailure{match, code, message})
	s.mu.Unlock()
}

// DropColumn makes texts naming column fail as PostgreSQL fails them once the column is dropped: 42703.
func (s *Server) DropColumn(column string) {
	s.FailParse(column, "42703", fmt.Sprintf("column %q does not exist", column))
}

// Wake lets one held query complete (now, or as soon as one is held).
func (s *Server) Wake() {
	select {
	case s.wake <- struct{}{}:
	default: // 16 wakes are pending already: one more changes nothing a test can rely on
	}
}

// Dial implements session.Dialer.
func (s *Server) Dial(ctx context.Context) (*session.BackendConn, error) {
	s.mu.Lock()
	gate, derr := s.dialGate, s.dialErr
	s.dials++
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if derr != nil {
		return nil, derr
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return nil, err
	}
	f := os.NewFile(uintptr(fds[1]), "pgmock-server")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		syscall.Close(fds[0])
		return nil, err
	}
	s.mu.Lock()
	s.nextPID++
	pid := s.nextPID
	c := &Conn{
		s: s, pid: pid, secret: []byte{byte(pid >> 8), byte(pid), 0xca, 0xfe}, conn: nc,
		be: pgproto3.NewBackend(nc, nc), status: 'I', settings: map[string]string{},
		stmts: map[string]string{}, portals: map[string]string{}, cancel: make(chan struct{}, 1),
	}
	live := 1 // this one, and every other the relay has not closed yet
	for _, o := range s.conns {
		if !o.done && !o.closedByRelay() {
			live++
		}
	}
	s.maxLive = max(s.maxLive, live)
	s.conns[pid] = c
	s.live++
	s.mu.Unlock()
	s.wg.Add(1)
	go c.serve()
	return &session.BackendConn{Fd: fds[0], PID: pid, Secret: append([]byte(nil), c.secret...), Params: s.Params()}, nil
}

// Cancel implements session.Dialer: it interrupts the held query of the backend with pid and secret, and
// does nothing when that backend holds none, as PostgreSQL does.
func (s *Server) Cancel(ctx context.Context, pid uint32, secret []byte) error {
	s.mu.Lock()
	s.cancels = append(s.cancels, CancelCall{pid, append([]byte(nil), secret...)})
	gate := s.cancelGate
	c := s.conns[pid]
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if c == nil || !bytes.Equal(c.secret, secret) {
		return nil
	}
	c.mu.Lock()
	delivered := false
	if c.sleeping {
		select {
		case c.cancel <- struct{}{}:
			delivered = true
		default:
		}
	}
	c.mu.Unlock()
	if !delivered {
		return nil
	}
	// Return once the server has answered the interrupted query, as PostgreSQL usually does.
	deadline := time.Now().Add(s.cfg.HoldLimit)
	for c.Sleeping() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Microsecond):
		}
	}
	if d := s.cfg.CancelSettle; d > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
	return nil
}

// record notes a message received by backend pid.
func (s *Server) record(pid uint32, m string) {
	s.mu.Lock()
	s.log = append(s.log, fmt.Sprintf("%d|%s", pid, m))
	s.mu.Unlock()
}

// Messages returns what the server received, as DescribeFrontend renders it, without the backend pids;
// with a pid, only what that backend received.
func (s *Server) Messages(pid ...uint32) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range s.log {
		p, m, _ := strings.Cut(l, "|")
		if len(pid) == 0 || p == fmt.Sprint(pid[0]) {
			out = append(out, m)
		}
	}
	return out
}

// Mark returns the current length of the log, to look only at what arrives after it.
func (s *Server) Mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.log)
}

// Since returns the messages received after mark m.
func (s *Server) Since(m int) []string {
	all := s.Messages()
	if m > len(all) {
		return nil
	}
	return all[m:]
}

// SinceWithPID returns the log entries ("pid|message") after mark m.
func (s *Server) SinceWithPID(m int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m > len(s.log) {
		return nil
	}
	return append([]string(nil), s.log[m:]...)
}

// WaitFor polls until the messages after mark m satisfy ok, and fails tb after Config.WaitLimit.
func (s *Server) WaitFor(tb TB, m int, what string, ok func([]string) bool) []string {
	tb.Helper()
	deadline := time.Now().Add(s.cfg.WaitLimit)
	for {
		got := s.Since(m)
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			tb.Fatalf("server never received %s; it got:\n%s", what, strings.Join(got, "\n"))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// WaitForMessage waits until the server received a message starting with prefix after mark m, or, for a
// prefix "Q ...", a simple Query one of whose statements does.
func (s *Server) WaitForMessage(tb TB, m int, prefix string) {
	tb.Helper()
	s.WaitFor(tb, m, fmt.Sprintf("%q", prefix), func(got []string) bool {
		for _, g := range got {
			if strings.HasPrefix(g, prefix) {
				return true
			}
			// A statement of a simple Query with several.
			if q, ok := strings.CutPrefix(g, "Q "); ok && strings.HasPrefix(prefix, "Q ") {
				for _, stmt := range strings.Split(q, "; ") {
					if strings.HasPrefix("Q "+stmt, prefix) {
						return true
					}
				}
			}
		}
		return false
	})
}

// CancelCalls returns the Cancel calls so far.
func (s *Server) CancelCalls() []CancelCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]CancelCall(nil), s.cancels...)
}

// PIDs returns the pids of every backend dialed so far, closed ones included.
func (s *Server) PIDs() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]uint32, 0, len(s.conns))
	for p := range s.conns {
		out = append(out, p)
	}
	return out
}

// Conn returns the backend with pid, or nil.
func (s *Server) Conn(pid uint32) *Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[pid]
}

// Dials returns how many times Dial was called.
func (s *Server) Dials() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dials
}

// Live reports how many backends are connected now, and the most that ever were at once.
func (s *Server) Live() (now, most int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live, s.maxLive
}

// ErrNotEnded is returned by Close when backend goroutines are still running at its deadline.
var ErrNotEnded = errors.New("pgmock: backend goroutines did not end")

// Close ends every backend and waits up to Config.WaitLimit for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	for _, c := range s.conns {
		c.conn.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(s.cfg.WaitLimit):
		return ErrNotEnded
	}
}

// Conn is one backend connection served by a Server.
type Conn struct {
	s      *Server
	pid    uint32
	secret []byte
	conn   net.Conn
	be     *pgproto3.Backend

	// Owned by the serving goroutine.
	status   byte
	skipping bool // an extended-protocol error: ignore messages until Sync
	stmts    map[string]string
	portals  map[string]string
	settings map[string]string // session settings by lower-case name

	done     bool // serve returned; guarded by s.mu
	mu       sync.Mutex
	sleeping bool
	cancel   chan struct{}
	wmu      sync.Mutex // serializes writes of the serving goroutine and of Inject
}

// PID is the backend's process id.
func (c *Conn) PID() uint32 { return c.pid }

// Secret is the backend's cancel key.
func (c *Conn) Secret() []byte { return append([]byte(nil), c.secret...) }

// Close ends the connection from the server's side, as a server that crashed or was restarted.
func (c *Conn) Close() error { return c.conn.Close() }

// Inject sends messages from the server on its own, as PostgreSQL sends a NotificationResponse.
func (c *Conn) Inject(msgs ...pgproto3.BackendMessage) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for _, m := range msgs {
		c.be.Send(m)
	}
	return c.be.Flush()
}

// Sleeping reports whether the backend is holding a statement (the sleep statement, or QueryTime).
func (c *Conn) Sleeping() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sleeping
}

func (c *Conn) serve() {
	defer c.s.wg.Done()
	defer func() {
		c.s.mu.Lock()
		c.s.live--
		c.done = true
		c.s.mu.Unlock()
	}()
	defer c.conn.Close()
	for {
		msg, err := c.be.Receive()
		if err != nil {
			return
		}
		c.s.record(c.pid, DescribeFrontend(msg))
		if _, ok := msg.(*pgproto3.Terminate); ok {
			return
		}
		c.wmu.Lock()
		c.handle(msg)
		err = c.be.Flush()
		c.wmu.Unlock()
		if err != nil {
			return
		}
	}
}

func (c *Conn) handle(msg pgproto3.FrontendMessage) {
	switch m := msg.(type) {
	case *pgproto3.Query:
		if c.skipping {
			return // PostgreSQL discards simple queries too until Sync
		}
		c.simpleQuery(m.String)
	case *pgproto3.Sync:
		c.skipping = false
		delete(c.portals, "")
		c.be.Send(&pgproto3.ReadyForQuery{TxStatus: c.status})
	case *pgproto3.Flush:
	case *pgproto3.FunctionCall:
		c.fail("XX000", "pgmock: a FunctionCall reached the server")
		c.be.Send(&pgproto3.ReadyForQuery{TxStatus: c.status})
	default:
		if !c.skipping {
			c.extended(msg)
		}
	}
}

// extended answers one extended-protocol message outside skip mode.
func (c *Conn) extended(msg pgproto3.FrontendMessage) {
	switch m := msg.(type) {
	case *pgproto3.Parse:
		if err := c.parseError(m.Query); err != nil {
			c.extError(err)
			return
		}
		if _, ok := c.stmts[m.Name]; ok && m.Name != "" {
			c.extError(&pgproto3.ErrorResponse{Code: "42P05", Message: fmt.Sprintf("prepared statement %q already exists", m.Name)})
			return
		}
		c.stmts[m.Name] = m.Query
		c.be.Send(&pgproto3.ParseComplete{})
	case *pgproto3.Bind:
		q, ok := c.stmts[m.PreparedStatement]
		if !ok {
			c.extError(missingStmt(m.PreparedStatement))
			return
		}
		c.portals[m.DestinationPortal] = q
		c.be.Send(&pgproto3.BindComplete{})
	case *pgproto3.Describe:
		var q string
		var ok bool
		if m.ObjectType == 'S' {
			if q, ok = c.stmts[m.Name]; !ok {
				c.extError(missingStmt(m.Name))
				return
			}
			c.be.Send(&pgproto3.ParameterDescription{})
		} else if q, ok = c.portals[m.Name]; !ok {
			c.extError(&pgproto3.ErrorResponse{Code: "34000", Message: fmt.Sprintf("portal %q does not exist", m.Name)})
			return
		}
		if returnsRows(q) {
			c.be.Send(rowDesc())
		} else {
			c.be.Send(&pgproto3.NoData{})
		}
	case *pgproto3.Execute:
		q, ok := c.portals[m.Portal]
		if !ok {
			c.extError(&pgproto3.ErrorResponse{Code: "34000", Message: fmt.Sprintf("portal %q does not exist", m.Portal)})
			return
		}
		if strings.TrimSpace(q) == "" {
			c.be.Send(&pgproto3.EmptyQueryResponse{})
			return
		}
		msgs, errResp := c.run(q, false)
		if errResp != nil {
			c.extError(errResp)
			return
		}
		for _, r := range msgs {
			c.be.Send(r)
		}
	case *pgproto3.Close:
		if m.ObjectType == 'S' {
			delete(c.stmts, m.Name)
		} else {
			delete(c.portals, m.Name)
		}
		c.be.Send(&pgproto3.CloseComplete{})
	default:
		c.extError(&pgproto3.ErrorResponse{Code: "08P01", Message: fmt.Sprintf("pgmock: unexpected %T", msg)})
	}
}

// extError reports an extended-protocol error; the server then skips messages until Sync.
func (c *Conn) extError(e *pgproto3.ErrorResponse) {
	c.fail(e.Code, e.Message)
	c.skipping = true
}

// fail sends an ErrorResponse and aborts an open transaction.
func (c *Conn) fail(code, message string) {
	c.failWith(&pgproto3.ErrorResponse{Code: code, Message: message})
}

// failWith sends the error e (an ERROR) and fails the open transaction.
func (c *Conn) failWith(e *pgproto3.ErrorResponse) {
	e.Severity, e.SeverityUnlocalized = "ERROR", "ERROR"
	c.be.Send(e)
	if c.status == 'T' {
		c.status = 'E'
	}
}

func missingStmt(name string) *pgproto3.ErrorResponse {
	if name == "" {
		return &pgproto3.ErrorResponse{Code: "26000", Message: "unnamed prepared statement does not exist"}
	}
	return &pgproto3.ErrorResponse{Code: "26000", Message: fmt.Sprintf("prepared statement %q does not exist", name)}
}

// parseError is the error PostgreSQL's parser or analyzer reports for the texts made to fail.
func (c *Conn) parseError(q string) *pgproto3.ErrorResponse {
	c.s.mu.Lock()
	failures := c.s.failures
	c.s.mu.Unlock()
	for _, f := range failures {
		if strings.Contains(q, f.match) {
			return &pgproto3.ErrorResponse{Code: f.code, Message: f.message}
		}
	}
	switch {
	case strings.HasPrefix(q, PoisonSQL):
		return &pgproto3.ErrorResponse{Code: "42601", Message: fmt.Sprintf("syntax error at or near %q", PoisonSQL)}
	case strings.Contains(q, "bad_column"):
		return &pgproto3.ErrorResponse{Code: "42703", Message: `column "bad_column" does not exist`}
	}
	return nil
}

// simpleQuery answers a Query message, statement by statement, like PostgreSQL.
func (c *Conn) simpleQuery(sql string) {
	delete(c.stmts, "") // a simple Query destroys the unnamed statement, as in PostgreSQL
	delete(c.portals, "")
	if sql == c.s.cfg.SleepSQL {
		c.sleep()
		return
	}
	if d := c.s.cfg.QueryTime; d > 0 && c.interruptible(d) {
		c.fail("57014", "canceling statement due to user request")
		c.be.Send(&pgproto3.ReadyForQuery{TxStatus: c.status})
		return
	}
	empty := true
	for _, stmt := range strings.Split(sql, ";") {
		stmt = strings.TrimSpace(stmt)
		if stmt == "" {
			continue
		}
		empty = false
		if stmt == c.s.cfg.SleepSQL {
			if !c.sleepStatement() {
				break
			}
			continue
		}
		if err := c.parseError(stmt); err != nil {
			if i := strings.Index(sql, "bad_column"); i >= 0 {
				err.Position = int32(i + 1) // as PostgreSQL counts it: in the whole Query's text
			}
			c.failWith(err)
			break
		}
		msgs, errResp := c.run(stmt, true)
		for _, r := range msgs {
			c.be.Send(r)
		}
		if errResp != nil {
			c.fail(errResp.Code, errResp.Message)
			break
		}
	}
	if empty {
		c.be.Send(&pgproto3.EmptyQueryResponse{})
	}
	c.be.Send(&pgproto3.ReadyForQuery{TxStatus: c.status})
}

// setSleeping marks the backend as running something a cancel request interrupts. Once it is not, a
// cancel that came too late is dropped, as PostgreSQL drops a cancel for an idle backend.
func (c *Conn) setSleeping(v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeping = v
	if !v {
		select {
		case <-c.cancel:
		default:
		}
	}
}

// interruptible runs for d, or until a cancel request; it reports whether it was cancelled.
func (c *Conn) interruptible(d time.Duration) bool {
	c.setSleeping(true)
	defer c.setSleeping(false)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return false
	case <-c.cancel:
		return true
	}
}

// sleep holds a query until Wake, a cancel request, SleepFor or HoldLimit.
func (c *Conn) sleep() {
	c.sleepStatement()
	c.be.Send(&pgproto3.ReadyForQuery{TxStatus: c.status})
	c.be.Flush()
}

// sleepStatement holds one statement until Wake, SleepFor (its row, and true), a cancel request or
// HoldLimit (its error, and false).
func (c *Conn) sleepStatement() bool {
	c.setSleeping(true)
	defer c.setSleeping(false)
	var done <-chan time.Time
	if d := c.s.cfg.SleepFor; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		done = t.C
	}
	limit := time.NewTimer(c.s.cfg.HoldLimit)
	defer limit.Stop()
	complete := func() bool {
		c.be.Send(rowDesc())
		c.be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte(c.s.cfg.SleepResult)}})
		c.be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
		return true
	}
	select {
	case <-c.s.wake:
		return complete()
	case <-done:
		return complete()
	case <-c.cancel:
		c.fail("57014", "canceling statement due to user request")
	case <-limit.C:
		c.fail("XX000", "pgmock: the held query was never released")
	}
	return false
}

// returnsRows reports whether a statement sends a RowDescription.
func returnsRows(q string) bool {
	w, _, _ := strings.Cut(strings.ToUpper(strings.TrimSpace(q)), " ")
	return w == "SELECT" || w == "SHOW"
}

func rowDesc() *pgproto3.RowDescription {
	return &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("?column?"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}}
}

// run executes one statement; withDesc adds the RowDescription a simple Query sends.
func (c *Conn) run(stmt string, withDesc bool) ([]pgproto3.BackendMessage, *pgproto3.ErrorResponse) {
	stmt = strings.TrimSpace(stmt)
	upper := strings.ToUpper(stmt)
	fields := strings.Fields(upper)
	word, second := "", ""
	if len(fields) > 0 {
		word = fields[0]
	}
	if len(fields) > 1 {
		second = fields[1]
	}
	cc := func(tag string) []pgproto3.BackendMessage {
		return []pgproto3.BackendMessage{&pgproto3.CommandComplete{CommandTag: []byte(tag)}}
	}
	row := func(value string) []pgproto3.BackendMessage {
		var out []pgproto3.BackendMessage
		if withDesc {
			out = append(out, rowDesc())
		}
		out = append(out, &pgproto3.DataRow{Values: [][]byte{[]byte(value)}})
		return append(out, cc("SELECT 1")...)
	}
	switch {
	case word == "ROLLBACK" && second == "TO" || word == "SAVEPOINT" || word == "RELEASE":
		if c.status == 'I' {
			return nil, &pgproto3.ErrorResponse{Code: "25P01", Message: word + " can only be used in transaction blocks"}
		}
		if word == "ROLLBACK" {
			c.status = 'T'
			return cc("ROLLBACK"), nil
		}
		if c.status == 'E' {
			return nil, abortedTx()
		}
		return cc(word), nil
	case word == "BEGIN" || word == "START":
		if c.status == 'I' {
			c.status = 'T'
		}
		return cc("BEGIN"), nil
	case word == "COMMIT" || word == "END":
		tag := "COMMIT"
		if c.status == 'E' {
			tag = "ROLLBACK"
		}
		c.status = 'I'
		return cc(tag), nil
	case word == "ROLLBACK":
		c.status = 'I'
		return cc("ROLLBACK"), nil
	case c.status == 'E':
		return nil, abortedTx()
	case upper == "DISCARD ALL":
		if c.status != 'I' {
			return nil, &pgproto3.ErrorResponse{Code: "25001", Message: "DISCARD ALL cannot run inside a transaction block"}
		}
		c.stmts, c.portals, c.settings = map[string]string{}, map[string]string{}, map[string]string{}
		return cc("DISCARD ALL"), nil
	case strings.Contains(stmt, "1/0"):
		return nil, &pgproto3.ErrorResponse{Code: "22012", Message: "division by zero"}
	case word == "SET" || word == "RESET":
		c.setting(stmt)
		return cc(word), nil
	case word == "SHOW" && len(fields) == 2:
		return row(c.settings[strings.ToLower(fields[1])]), nil
	case word == "SELECT":
		value := strings.TrimSpace(stmt[len("SELECT"):])
		if strings.HasPrefix(upper, "SELECT CURRENT_USER =") {
			value = "t" // the tripwire's identity check
		} else if name, ok := currentSetting(value); ok {
			value = c.settings[name]
		}
		return row(value), nil
	}
	return cc(word), nil
}

func abortedTx() *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Code: "25P02", Message: "current transaction is aborted, commands ignored until end of transaction block"}
}

// setting applies SET name TO value, SET name = value, RESET name or RESET ALL to the session settings.
// Values are kept as written, quotes removed from a single literal; a SET inside a transaction is kept
// even if the transaction rolls back (the tests do not rely on either).
func (c *Conn) setting(stmt string) {
	fields := strings.Fields(stmt)
	if len(fields) < 2 {
		return
	}
	name := strings.ToLower(strings.Trim(fields[1], `"`))
	if strings.EqualFold(fields[0], "RESET") {
		if name == "all" {
			c.settings = map[string]string{}
		} else {
			delete(c.settings, name)
		}
		return
	}
	if name == "session" || name == "local" {
		return // SET SESSION AUTHORIZATION and friends: not tracked
	}
	rest := strings.TrimSpace(strings.Join(fields[2:], " "))
	if r, ok := strings.CutPrefix(strings.ToUpper(rest), "TO "); ok {
		rest = rest[len(rest)-len(r):]
	} else if r, ok := strings.CutPrefix(rest, "="); ok {
		rest = r
	}
	rest = strings.TrimSpace(rest)
	if len(rest) >= 2 && rest[0] == '\'' && rest[len(rest)-1] == '\'' && !strings.Contains(rest[1:len(rest)-1], "'") {
		rest = rest[1 : len(rest)-1]
	}
	c.settings[name] = rest
}

// currentSetting recognises current_setting('name') and returns the setting's lower-case name.
func currentSetting(expr string) (string, bool) {
	rest, ok := strings.CutPrefix(strings.ToLower(expr), "current_setting('")
	if !ok {
		return "", false
	}
	name, tail, ok := strings.Cut(rest, "'")
	return name, ok && tail == ")"
}

// DescribeFrontend renders a frontend message for the log: "Q sql", "P name sql", "B portal stmt",
// "D S|P name", "E portal", "C S|P name", "S" (Sync), "H" (Flush), "F" (FunctionCall), "X" (Terminate).
func DescribeFrontend(msg pgproto3.FrontendMessage) string {
	switch m := msg.(type) {
	case *pgproto3.Query:
		return "Q " + m.String
	case *pgproto3.Parse:
		return fmt.Sprintf("P %s %s", m.Name, m.Query)
	case *pgproto3.Bind:
		return fmt.Sprintf("B %s %s", m.DestinationPortal, m.PreparedStatement)
	case *pgproto3.Describe:
		return fmt.Sprintf("D %c %s", m.ObjectType, m.Name)
	case *pgproto3.Execute:
		return "E " + m.Portal
	case *pgproto3.Close:
		return fmt.Sprintf("C %c %s", m.ObjectType, m.Name)
	case *pgproto3.Sync:
		return "S"
	case *pgproto3.Flush:
		return "H"
	case *pgproto3.FunctionCall:
		return "F"
	case *pgproto3.Terminate:
		return "X"
	}
	return fmt.Sprintf("%T", msg)
}

// closedByRelay reports whether the relay has ended this connection, before the serving goroutine has
// seen it: a Terminate waits to be read, or the stream is at its end. The relay writes Terminate and
// closes at once, so this is exact at any instant, unlike the goroutine's own bookkeeping.
func (c *Conn) closedByRelay() bool {
	sc, ok := c.conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	if err := rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = err == nil && (n == 0 || b[0] == 'X')
	}); err != nil {
		return true // the serving goroutine closed it already
	}
	return closed
}
