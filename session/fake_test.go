package session_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tenantproxy/tenantproxy/policy"
	"github.com/tenantproxy/tenantproxy/policy/sessionguard"
	"github.com/tenantproxy/tenantproxy/session"
)

// The relay's state machine is tested against fakeServer, a scripted PostgreSQL: each Dial opens a
// socketpair, the Engine owns one end, and a goroutine serves the other with pgproto3. It answers the
// statements the tests use the way PostgreSQL does (transaction status, skip-to-Sync after an error,
// prepared statements and portals, the poison statement's syntax error) and records every message it
// receives, so a test can assert what reached the server and in which order.

const (
	// poolRole is the role the fake backends log in as.
	poolRole = "tenantproxy_pool"
	// poisonSQL is the statement the relay sends in place of a refused one.
	poisonSQL = "tenantproxy_refused_statement"
	// sleepSQL is held by the fake server until released with wake or cancelled.
	sleepSQL = "SELECT pg_sleep(10)"
	// waitLimit bounds every wait of a test.
	waitLimit = 5 * time.Second
)

// serverParams are the ParameterStatus values a fake backend reports at login.
var serverParams = map[string]string{
	"server_version": "15.0 (fake)", "server_encoding": "UTF8", "client_encoding": "UTF8",
	"DateStyle": "ISO, MDY", "integer_datetimes": "on", "standard_conforming_strings": "on",
	"TimeZone": "UTC", "IntervalStyle": "postgres", "is_superuser": "off",
	"session_authorization": poolRole, "application_name": "",
}

// fakeServer is a session.Dialer whose backends are served in-process.
type fakeServer struct {
	mu         sync.Mutex
	nextPID    uint32
	conns      map[uint32]*fakeConn
	log        []string // "pid|message" in arrival order
	cancels    []cancelCall
	dials      int
	live       int           // backends connected now
	maxLive    int           // the most connected at once
	dialGate   chan struct{} // when set, Dial waits for it (or for its context)
	cancelGate chan struct{} // when set, Cancel waits for it before it reaches the server
	dialErr    error
	dropped    string        // a column that no longer exists: texts naming it fail to parse from now on
	wake       chan struct{} // each value lets one held query complete
	wg         sync.WaitGroup
}

// cancelCall is one Dialer.Cancel call.
type cancelCall struct {
	pid    uint32
	secret []byte
}

func newFakeServer() *fakeServer {
	return &fakeServer{nextPID: 5000, conns: map[uint32]*fakeConn{}, wake: make(chan struct{}, 16)}
}

// Dial implements session.Dialer.
func (fs *fakeServer) Dial(ctx context.Context) (*session.BackendConn, error) {
	fs.mu.Lock()
	gate, derr := fs.dialGate, fs.dialErr
	fs.dials++
	fs.mu.Unlock()
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
	f := os.NewFile(uintptr(fds[1]), "fake-server")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		syscall.Close(fds[0])
		return nil, err
	}
	fs.mu.Lock()
	fs.nextPID++
	pid := fs.nextPID
	fc := &fakeConn{
		fs: fs, pid: pid, secret: []byte{byte(pid >> 8), byte(pid), 0xca, 0xfe}, conn: conn,
		be: pgproto3.NewBackend(conn, conn), status: 'I',
		stmts: map[string]string{}, portals: map[string]string{}, cancel: make(chan struct{}, 1),
	}
	live := 1 // this one, and every other the relay has not closed yet
	for _, o := range fs.conns {
		if !o.done && !o.closedByRelay() {
			live++
		}
	}
	fs.maxLive = max(fs.maxLive, live)
	fs.conns[pid] = fc
	fs.live++
	fs.mu.Unlock()
	fs.wg.Add(1)
	go fc.serve()
	params := make(map[string]string, len(serverParams))
	for k, v := range serverParams {
		params[k] = v
	}
	return &session.BackendConn{Fd: fds[0], PID: pid, Secret: append([]byte(nil), fc.secret...), Params: params}, nil
}

// Cancel implements session.Dialer: it interrupts the held query of the backend with pid and secret.
func (fs *fakeServer) Cancel(ctx context.Context, pid uint32, secret []byte) error {
	fs.mu.Lock()
	fs.cancels = append(fs.cancels, cancelCall{pid, append([]byte(nil), secret...)})
	gate := fs.cancelGate
	fc := fs.conns[pid]
	fs.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fc == nil || !bytes.Equal(fc.secret, secret) {
		return nil
	}
	fc.mu.Lock()
	delivered := false
	if fc.sleeping {
		select {
		case fc.cancel <- struct{}{}:
			delivered = true
		default:
		}
	}
	fc.mu.Unlock()
	if delivered {
		// Like PostgreSQL, the cancelled query's error usually reaches the relay before the cancel
		// request's connection is done with: return once the server has answered.
		deadline := time.Now().Add(waitLimit)
		for fc.isSleeping() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func (fc *fakeConn) isSleeping() bool {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.sleeping
}

// inject sends messages from the server on its own, as PostgreSQL sends a NotificationResponse.
func (fc *fakeConn) inject(msgs ...pgproto3.BackendMessage) {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	for _, m := range msgs {
		fc.be.Send(m)
	}
	fc.be.Flush()
}

// record notes a message received by backend pid.
func (fs *fakeServer) record(pid uint32, m string) {
	fs.mu.Lock()
	fs.log = append(fs.log, fmt.Sprintf("%d|%s", pid, m))
	fs.mu.Unlock()
}

// messages returns what the server received, without the backend pids, optionally from one backend.
func (fs *fakeServer) messages(pid ...uint32) []string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var out []string
	for _, l := range fs.log {
		p, m, _ := strings.Cut(l, "|")
		if len(pid) == 0 || p == fmt.Sprint(pid[0]) {
			out = append(out, m)
		}
	}
	return out
}

// mark returns the current length of the log, to look only at what arrives after it.
func (fs *fakeServer) mark() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return len(fs.log)
}

// since returns the messages received after mark m.
func (fs *fakeServer) since(m int) []string {
	all := fs.messages()
	if m > len(all) {
		return nil
	}
	return all[m:]
}

// sinceWithPID returns the log entries ("pid|message") after mark m.
func (fs *fakeServer) sinceWithPID(m int) []string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]string(nil), fs.log[m:]...)
}

// waitFor polls until the messages after mark m satisfy ok.
func (fs *fakeServer) waitFor(t testing.TB, m int, what string, ok func([]string) bool) []string {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		got := fs.since(m)
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("server never received %s; it got:\n%s", what, strings.Join(got, "\n"))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitForMessage waits until the server received a message starting with prefix after mark m.
func (fs *fakeServer) waitForMessage(t testing.TB, m int, prefix string) {
	t.Helper()
	fs.waitFor(t, m, fmt.Sprintf("%q", prefix), func(got []string) bool { return indexPrefix(got, prefix) >= 0 })
}

func (fs *fakeServer) cancelCalls() []cancelCall {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]cancelCall(nil), fs.cancels...)
}

func (fs *fakeServer) pids() []uint32 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var out []uint32
	for p := range fs.conns {
		out = append(out, p)
	}
	return out
}

func (fs *fakeServer) conn(pid uint32) *fakeConn {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.conns[pid]
}

func (fs *fakeServer) dialCount() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.dials
}

// close ends every fake backend and waits for their goroutines.
func (fs *fakeServer) close(t testing.TB) {
	fs.mu.Lock()
	for _, c := range fs.conns {
		c.conn.Close()
	}
	fs.mu.Unlock()
	done := make(chan struct{})
	go func() { fs.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Errorf("fake server goroutines did not end")
	}
}

// fakeConn is one backend connection served by the fake.
type fakeConn struct {
	fs       *fakeServer
	pid      uint32
	secret   []byte
	conn     net.Conn
	be       *pgproto3.Backend
	status   byte
	skipping bool // an extended-protocol error: ignore messages until Sync
	stmts    map[string]string
	portals  map[string]string

	done     bool // serve returned; guarded by fs.mu
	mu       sync.Mutex
	sleeping bool
	cancel   chan struct{}
	wmu      sync.Mutex // serializes writes of the serving goroutine and of inject
}

func (fc *fakeConn) serve() {
	defer fc.fs.wg.Done()
	defer func() {
		fc.fs.mu.Lock()
		fc.fs.live--
		fc.done = true
		fc.fs.mu.Unlock()
	}()
	defer fc.conn.Close()
	for {
		msg, err := fc.be.Receive()
		if err != nil {
			return
		}
		fc.fs.record(fc.pid, describeFrontend(msg))
		if _, ok := msg.(*pgproto3.Terminate); ok {
			return
		}
		fc.wmu.Lock()
		fc.handle(msg)
		err = fc.be.Flush()
		fc.wmu.Unlock()
		if err != nil {
			return
		}
	}
}

func (fc *fakeConn) handle(msg pgproto3.FrontendMessage) {
	switch m := msg.(type) {
	case *pgproto3.Query:
		fc.simpleQuery(m.String)
	case *pgproto3.Sync:
		fc.skipping = false
		delete(fc.portals, "")
		fc.be.Send(&pgproto3.ReadyForQuery{TxStatus: fc.status})
	case *pgproto3.Flush:
	case *pgproto3.FunctionCall:
		fc.fail("XX000", "fake server: a FunctionCall reached the server")
		fc.be.Send(&pgproto3.ReadyForQuery{TxStatus: fc.status})
	default:
		if !fc.skipping {
			fc.extended(msg)
		}
	}
}

// extended answers one extended-protocol message outside skip mode.
func (fc *fakeConn) extended(msg pgproto3.FrontendMessage) {
	switch m := msg.(type) {
	case *pgproto3.Parse:
		if err := fc.parseError(m.Query); err != nil {
			fc.extError(err)
			return
		}
		if _, ok := fc.stmts[m.Name]; ok && m.Name != "" {
			fc.extError(&pgproto3.ErrorResponse{Code: "42P05", Message: fmt.Sprintf("prepared statement %q already exists", m.Name)})
			return
		}
		fc.stmts[m.Name] = m.Query
		fc.be.Send(&pgproto3.ParseComplete{})
	case *pgproto3.Bind:
		q, ok := fc.stmts[m.PreparedStatement]
		if !ok {
			fc.extError(missingStmt(m.PreparedStatement))
			return
		}
		fc.portals[m.DestinationPortal] = q
		fc.be.Send(&pgproto3.BindComplete{})
	case *pgproto3.Describe:
		var q string
		var ok bool
		if m.ObjectType == 'S' {
			if q, ok = fc.stmts[m.Name]; !ok {
				fc.extError(missingStmt(m.Name))
				return
			}
			fc.be.Send(&pgproto3.ParameterDescription{})
		} else if q, ok = fc.portals[m.Name]; !ok {
			fc.extError(&pgproto3.ErrorResponse{Code: "34000", Message: fmt.Sprintf("portal %q does not exist", m.Name)})
			return
		}
		if isSelect(q) {
			fc.be.Send(rowDesc())
		} else {
			fc.be.Send(&pgproto3.NoData{})
		}
	case *pgproto3.Execute:
		q, ok := fc.portals[m.Portal]
		if !ok {
			fc.extError(&pgproto3.ErrorResponse{Code: "34000", Message: fmt.Sprintf("portal %q does not exist", m.Portal)})
			return
		}
		msgs, errResp := fc.run(q, false)
		if errResp != nil {
			fc.extError(errResp)
			return
		}
		for _, r := range msgs {
			fc.be.Send(r)
		}
	case *pgproto3.Close:
		if m.ObjectType == 'S' {
			delete(fc.stmts, m.Name)
		} else {
			delete(fc.portals, m.Name)
		}
		fc.be.Send(&pgproto3.CloseComplete{})
	default:
		fc.extError(&pgproto3.ErrorResponse{Code: "08P01", Message: fmt.Sprintf("fake server: unexpected %T", msg)})
	}
}

// extError reports an extended-protocol error; the server then skips messages until Sync.
func (fc *fakeConn) extError(e *pgproto3.ErrorResponse) {
	fc.fail(e.Code, e.Message)
	fc.skipping = true
}

// fail sends an ErrorResponse and aborts an open transaction.
func (fc *fakeConn) fail(code, message string) {
	fc.be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: message})
	if fc.status == 'T' {
		fc.status = 'E'
	}
}

func missingStmt(name string) *pgproto3.ErrorResponse {
	if name == "" {
		return &pgproto3.ErrorResponse{Code: "26000", Message: "unnamed prepared statement does not exist"}
	}
	return &pgproto3.ErrorResponse{Code: "26000", Message: fmt.Sprintf("prepared statement %q does not exist", name)}
}

// parseError is the error PostgreSQL's parser or analyzer reports for the few texts tests use to fail.
func (fc *fakeConn) parseError(q string) *pgproto3.ErrorResponse {
	fc.fs.mu.Lock()
	dropped := fc.fs.dropped
	fc.fs.mu.Unlock()
	switch {
	case dropped != "" && strings.Contains(q, dropped):
		return &pgproto3.ErrorResponse{Code: "42703", Message: fmt.Sprintf("column %q does not exist", dropped)}
	case strings.HasPrefix(q, poisonSQL):
		return &pgproto3.ErrorResponse{Code: "42601", Message: fmt.Sprintf("syntax error at or near %q", poisonSQL)}
	case strings.Contains(q, "bad_column"):
		return &pgproto3.ErrorResponse{Code: "42703", Message: `column "bad_column" does not exist`}
	}
	return nil
}

// simpleQuery answers a Query message, statement by statement, like PostgreSQL.
func (fc *fakeConn) simpleQuery(sql string) {
	delete(fc.stmts, "") // a simple Query destroys the unnamed statement, as in PostgreSQL
	delete(fc.portals, "")
	if sql == sleepSQL {
		fc.sleep()
		return
	}
	for _, stmt := range strings.Split(sql, ";") {
		stmt = strings.TrimSpace(stmt)
		if stmt == "" {
			continue
		}
		if err := fc.parseError(stmt); err != nil {
			fc.fail(err.Code, err.Message)
			break
		}
		msgs, errResp := fc.run(stmt, true)
		for _, r := range msgs {
			fc.be.Send(r)
		}
		if errResp != nil {
			fc.fail(errResp.Code, errResp.Message)
			break
		}
	}
	fc.be.Send(&pgproto3.ReadyForQuery{TxStatus: fc.status})
}

// sleep holds a query until the test releases it (wake) or a cancel request arrives.
func (fc *fakeConn) sleep() {
	fc.mu.Lock()
	fc.sleeping = true
	fc.mu.Unlock()
	select {
	case <-fc.fs.wake:
		fc.be.Send(rowDesc())
		fc.be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("")}})
		fc.be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
	case <-fc.cancel:
		fc.fail("57014", "canceling statement due to user request")
	case <-time.After(waitLimit):
		fc.fail("XX000", "fake server: the held query was never released")
	}
	fc.be.Send(&pgproto3.ReadyForQuery{TxStatus: fc.status})
	fc.be.Flush()
	fc.mu.Lock()
	fc.sleeping = false
	fc.mu.Unlock()
}

func isSelect(q string) bool {
	return strings.HasPrefix(strings.ToUpper(strings.TrimSpace(q)), "SELECT")
}

func rowDesc() *pgproto3.RowDescription {
	return &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("?column?"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}}
}

// run executes one statement; withDesc adds the RowDescription a simple Query sends.
func (fc *fakeConn) run(stmt string, withDesc bool) ([]pgproto3.BackendMessage, *pgproto3.ErrorResponse) {
	upper := strings.ToUpper(strings.TrimSpace(stmt))
	word, _, _ := strings.Cut(upper, " ")
	cc := func(tag string) []pgproto3.BackendMessage {
		return []pgproto3.BackendMessage{&pgproto3.CommandComplete{CommandTag: []byte(tag)}}
	}
	switch {
	case word == "BEGIN" || word == "START":
		if fc.status == 'I' {
			fc.status = 'T'
		}
		return cc("BEGIN"), nil
	case word == "COMMIT" || word == "END":
		tag := "COMMIT"
		if fc.status == 'E' {
			tag = "ROLLBACK"
		}
		fc.status = 'I'
		return cc(tag), nil
	case word == "ROLLBACK":
		fc.status = 'I'
		return cc("ROLLBACK"), nil
	case fc.status == 'E':
		return nil, &pgproto3.ErrorResponse{Code: "25P02", Message: "current transaction is aborted, commands ignored until end of transaction block"}
	case upper == "DISCARD ALL":
		if fc.status != 'I' {
			return nil, &pgproto3.ErrorResponse{Code: "25001", Message: "DISCARD ALL cannot run inside a transaction block"}
		}
		fc.stmts, fc.portals = map[string]string{}, map[string]string{}
		return cc("DISCARD ALL"), nil
	case strings.Contains(stmt, "1/0"):
		return nil, &pgproto3.ErrorResponse{Code: "22012", Message: "division by zero"}
	case word == "SELECT":
		value := strings.TrimSpace(stmt[len("SELECT"):])
		if strings.HasPrefix(upper, "SELECT CURRENT_USER =") {
			value = "t" // the tripwire's identity check
		}
		var out []pgproto3.BackendMessage
		if withDesc {
			out = append(out, rowDesc())
		}
		out = append(out, &pgproto3.DataRow{Values: [][]byte{[]byte(value)}})
		return append(out, cc("SELECT 1")...), nil
	}
	return cc(word), nil
}

// describeFrontend renders a frontend message for the log.
func describeFrontend(msg pgproto3.FrontendMessage) string {
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

// describeBackend renders a backend message as the tests compare it.
func describeBackend(msg pgproto3.BackendMessage) string {
	switch m := msg.(type) {
	case *pgproto3.ReadyForQuery:
		return fmt.Sprintf("ReadyForQuery %c", m.TxStatus)
	case *pgproto3.CommandComplete:
		return "CommandComplete " + string(m.CommandTag)
	case *pgproto3.ErrorResponse:
		return fmt.Sprintf("ErrorResponse %s %s %s", m.Severity, m.Code, m.Message)
	case *pgproto3.DataRow:
		vals := make([]string, len(m.Values))
		for i, v := range m.Values {
			vals[i] = string(v)
		}
		return "DataRow " + strings.Join(vals, ",")
	case *pgproto3.ParameterStatus:
		return fmt.Sprintf("ParameterStatus %s=%s", m.Name, m.Value)
	case *pgproto3.ParseComplete:
		return "ParseComplete"
	case *pgproto3.BindComplete:
		return "BindComplete"
	case *pgproto3.CloseComplete:
		return "CloseComplete"
	case *pgproto3.NoData:
		return "NoData"
	case *pgproto3.ParameterDescription:
		return "ParameterDescription"
	case *pgproto3.RowDescription:
		return "RowDescription"
	case *pgproto3.EmptyQueryResponse:
		return "EmptyQueryResponse"
	case *pgproto3.PortalSuspended:
		return "PortalSuspended"
	case *pgproto3.BackendKeyData:
		return "BackendKeyData"
	case *pgproto3.NotificationResponse:
		return fmt.Sprintf("NotificationResponse %s %s", m.Channel, m.Payload)
	case *pgproto3.NoticeResponse:
		return fmt.Sprintf("NoticeResponse %s %s", m.Code, m.Message)
	}
	return fmt.Sprintf("%T", msg)
}

// rig is an Engine wired to a fakeServer, with the tenants acme and globex.
type rig struct {
	t    *testing.T
	e    *session.Engine
	fs   *fakeServer
	cfg  session.Config
	logs *observer.ObservedLogs
}

// tenantContext is the context of a test tenant, as the router would build it.
func tenantContext(name string) policy.Context {
	return policy.Context{Role: "tenant_" + name, SearchPath: []string{name, "public"}, Setting: "tenantproxy.tenant", Tenant: name}
}

// testTenant builds a tenant the way routing.RelayTenants does.
func testTenant(name string) session.Tenant {
	x := tenantContext(name)
	return session.Tenant{Name: name, Schema: name, SetupSQL: x.SetupSQL(), VerifySQL: x.VerifySQL(poolRole), AllowedSchemas: x.AllowedSchemas()}
}

// newGuard returns the production guard.
func newGuard() *sessionguard.Guard {
	return sessionguard.New(policy.NewGuard(policy.GuardConfig{TenantSetting: "tenantproxy.tenant"}))
}

// newRig starts an Engine in transaction mode with a pool of one backend; mod adjusts its Config.
func newRig(t *testing.T, mod func(*session.Config)) *rig {
	t.Helper()
	fs := newFakeServer()
	core, logs := observer.New(zapcore.InfoLevel)
	cfg := session.Config{
		Mode: "transaction", PoolSize: 1, WaitTimeout: 10 * time.Second, MaxPreparedStatements: 100,
		PoolRole: poolRole, Dialer: fs, Guard: newGuard(), Logger: zap.New(core),
	}
	if mod != nil {
		mod(&cfg)
	}
	return startRig(t, fs, logs, cfg)
}

func startRig(t *testing.T, fs *fakeServer, logs *observer.ObservedLogs, cfg session.Config) *rig {
	t.Helper()
	e, err := session.New(cfg)
	if err != nil {
		t.Fatalf("session.New: %v", err)
	}
	e.SetTenants([]session.Tenant{testTenant("acme"), testTenant("globex"), testTenant("initech")})
	e.Start()
	r := &rig{t: t, e: e, fs: fs, cfg: cfg, logs: logs}
	t.Cleanup(func() {
		e.Close()
		fs.close(t)
	})
	return r
}

// client is a test client attached to the Engine, speaking the protocol through pgproto3.
type client struct {
	t      testing.TB
	conn   net.Conn
	fe     *pgproto3.Frontend
	pid    uint32
	secret uint32
	params map[string]string
}

// info returns the ClientInfo of a user of tenant, app profile, application_name "test".
func info(tenant string) session.ClientInfo {
	return session.ClientInfo{User: "alice", Tenant: tenant, Profile: "app", Addr: "127.0.0.1:9", Params: map[string]string{"application_name": "test"}, Opened: time.Now()}
}

// attach hands the Engine one end of a socketpair and returns the client on the other end, without
// reading anything.
func attach(t testing.TB, e interface {
	Attach(int, session.ClientInfo) error
}, ci session.ClientInfo) *client {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[1]), "client")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := e.Attach(fds[0], ci); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	return &client{t: t, conn: conn, fe: pgproto3.NewFrontend(conn, conn), params: map[string]string{}}
}

// connect attaches a client and reads the relay's greeting up to ReadyForQuery.
func (r *rig) connect(ci session.ClientInfo) *client {
	r.t.Helper()
	return greeted(r.t, attach(r.t, r.e, ci))
}

// greeted reads the relay's greeting to a client just attached, up to ReadyForQuery.
func greeted(t testing.TB, c *client) *client {
	t.Helper()
	for {
		msg := c.receive()
		switch m := msg.(type) {
		case *pgproto3.ParameterStatus:
			c.params[m.Name] = m.Value
		case *pgproto3.BackendKeyData:
			c.pid, c.secret = m.ProcessID, binary.BigEndian.Uint32(m.SecretKey)
		case *pgproto3.ReadyForQuery:
			if m.TxStatus != 'I' {
				t.Fatalf("greeting ends with ReadyForQuery %c", m.TxStatus)
			}
			return c
		default:
			t.Fatalf("unexpected greeting message %s", describeBackend(msg))
		}
	}
}

// send writes messages to the relay.
func (c *client) send(msgs ...pgproto3.FrontendMessage) {
	c.t.Helper()
	for _, m := range msgs {
		c.fe.Send(m)
	}
	if err := c.fe.Flush(); err != nil {
		c.t.Fatalf("client write: %v", err)
	}
}

// sendRaw writes bytes as they are.
func (c *client) sendRaw(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("client write: %v", err)
	}
}

// receive reads one message, failing the test after waitLimit.
func (c *client) receive() pgproto3.BackendMessage {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(waitLimit))
	msg, err := c.fe.Receive()
	if err != nil {
		c.t.Fatalf("client read: %v", err)
	}
	return msg
}

// untilReady reads messages up to and including ReadyForQuery.
func (c *client) untilReady() []string {
	c.t.Helper()
	var out []string
	for {
		c.conn.SetReadDeadline(time.Now().Add(waitLimit))
		msg, err := c.fe.Receive()
		if err != nil {
			c.t.Fatalf("client read: %v, after %v", err, out)
		}
		out = append(out, describeBackend(msg))
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return out
		}
	}
}

// query sends a simple Query and returns the replies up to ReadyForQuery.
func (c *client) query(sql string) []string {
	c.t.Helper()
	c.send(&pgproto3.Query{String: sql})
	return c.untilReady()
}

// closedWith reads the relay's last message, which must be a FATAL ErrorResponse, then the end of the
// stream. It returns the message as describeBackend renders it.
func (c *client) closedWith() string {
	c.t.Helper()
	msg := c.receive()
	got := describeBackend(msg)
	c.conn.SetReadDeadline(time.Now().Add(waitLimit))
	if extra, err := c.fe.Receive(); err == nil {
		c.t.Fatalf("after %s the relay sent %s instead of closing", got, describeBackend(extra))
	} else if isTimeout(err) {
		c.t.Fatalf("after %s the relay did not close the connection", got)
	}
	return got
}

// silent checks that the relay sends nothing for d.
func (c *client) silent(d time.Duration) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(d))
	msg, err := c.fe.Receive()
	if err == nil {
		c.t.Fatalf("expected no message, got %s", describeBackend(msg))
	}
	if !isTimeout(err) {
		c.t.Fatalf("expected no message, got error %v", err)
	}
}

func (c *client) close() { c.conn.Close() }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// waitStats polls Engine.Stats until ok.
func (r *rig) waitStats(what string, ok func(session.Stats) bool) session.Stats {
	r.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		s := r.e.Stats()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("stats never reached %s: %+v", what, s)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// indexPrefix returns the index of the first message starting with prefix, or -1.
func indexPrefix(msgs []string, prefix string) int {
	for i, m := range msgs {
		if strings.HasPrefix(m, prefix) {
			return i
		}
	}
	return -1
}

// withoutVerify drops the tripwire's identity checks, which run when the relay sees fit.
func withoutVerify(msgs []string) []string {
	var out []string
	for _, m := range msgs {
		if !strings.HasPrefix(m, "Q SELECT current_user = ") {
			out = append(out, m)
		}
	}
	return out
}

// countPrefix counts the messages starting with prefix.
func countPrefix(msgs []string, prefix string) int {
	n := 0
	for _, m := range msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

// setupOf is the setup Query the relay writes for tenant with the client's settings of info("...").
func setupOf(tenant string, settings string) string {
	return "Q RESET ALL; " + testTenant(tenant).SetupSQL + "; " + settings
}

// defaultSettings is what the relay replays for a client of info(): its application_name.
const defaultSettings = `SET "application_name" TO 'test'; `

// verifyOf is the tripwire's identity check for tenant.
func verifyOf(tenant string) string { return "Q " + testTenant(tenant).VerifySQL }

// equal compares two transcripts and fails with both.
func equal(t testing.TB, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// openBackends makes the pool open n backends, which it does only on demand, and leaves them idle with no
// tenant context, as fresh ones: n clients of different tenants each pin a backend at once (LISTEN), then
// leave, and the relay discards their state.
func (r *rig) openBackends(n int) {
	r.t.Helper()
	tenants := []string{"acme", "globex", "initech"}
	var cs []*client
	for i := 0; i < n; i++ {
		c := r.connect(info(tenants[i%len(tenants)]))
		c.query("LISTEN fill")
		cs = append(cs, c)
	}
	for _, c := range cs {
		c.close()
	}
	r.waitStats(fmt.Sprintf("%d idle backends", n), func(s session.Stats) bool { return s.Backends == n && s.Idle == n })
}

// liveBackends reports how many fake backends are connected now, and the most that ever were at once.
func (fs *fakeServer) liveBackends() (now, most int) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.live, fs.maxLive
}

// closedByRelay reports whether the relay has ended this connection, before the serving goroutine has
// seen it: a Terminate waits to be read, or the stream is at its end. The relay writes Terminate and
// closes at once, so this is exact at any instant, unlike the goroutine's own bookkeeping.
func (fc *fakeConn) closedByRelay() bool {
	sc, ok := fc.conn.(syscall.Conn)
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
