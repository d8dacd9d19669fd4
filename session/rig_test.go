package session_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
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
	"github.com/tenantproxy/tenantproxy/session/pgmock"
)

// The relay's state machine is tested against pgmock.Server, a scripted PostgreSQL (session/pgmock):
// each Dial opens a socketpair, the Engine owns one end, and a goroutine serves the other. It answers the
// statements the tests use the way PostgreSQL does and records every message it receives, so a test can
// assert what reached the server and in which order. This file holds the rig around it: an Engine wired
// to a Server, test clients on socketpairs, and the helpers that compare transcripts.

const (
	// poolRole is the role the fake backends log in as.
	poolRole = pgmock.DefaultRole
	// poisonSQL is the statement the relay sends in place of a refused one.
	poisonSQL = pgmock.PoisonSQL
	// sleepSQL is held by the fake server until released with Wake or cancelled.
	sleepSQL = pgmock.DefaultSleepSQL
	// waitLimit bounds every wait of a test.
	waitLimit = 5 * time.Second
)

// serverParams are the ParameterStatus values a fake backend reports at login.
var serverParams = pgmock.New(pgmock.Config{}).Params()

// newFakeServer returns the fake server the rig uses: held queries wait for Wake or a cancel, and a
// cancel request returns a little after the cancelled query's error, as PostgreSQL's usually does.
func newFakeServer() *pgmock.Server {
	return pgmock.New(pgmock.Config{Role: poolRole, HoldLimit: waitLimit, WaitLimit: waitLimit, CancelSettle: 20 * time.Millisecond})
}

// closeServer ends every fake backend and waits for their goroutines.
func closeServer(t testing.TB, fs *pgmock.Server) {
	t.Helper()
	if err := fs.Close(); err != nil {
		t.Errorf("fake server: %v", err)
	}
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

// rig is an Engine wired to a pgmock.Server, with the tenants acme and globex.
type rig struct {
	t    *testing.T
	e    *session.Engine
	fs   *pgmock.Server
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
func newGuard() session.Guard {
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

func startRig(t *testing.T, fs *pgmock.Server, logs *observer.ObservedLogs, cfg session.Config) *rig {
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
		closeServer(t, fs)
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

// setupOf is the setup Query the relay writes for tenant with the client's settings of info("..."), on
// a backend with no settings of another client's.
func setupOf(tenant string, settings string) string {
	return "Q " + testTenant(tenant).SetupSQL + "; " + settings
}

// resetSetupOf is setupOf on a backend that carries another client's settings.
func resetSetupOf(tenant string, settings string) string {
	return "Q RESET ALL; " + setupOf(tenant, settings)[2:]
}

// carriedOf is the one Query of a simple-protocol statement sql that carries the switch to tenant, on a
// backend that has the client's settings already.
func carriedOf(tenant, sql string) string { return "Q " + testTenant(tenant).SetupSQL + "; " + sql }

// clientStatement is the client's statement of a Query message as the server got it: the last statement
// of a Query that carried a tenant switch, the whole text of any other.
func clientStatement(msg string) string {
	if strings.HasPrefix(msg, "Q SET ROLE ") {
		return "Q " + msg[strings.LastIndex(msg, "; ")+2:]
	}
	return msg
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
