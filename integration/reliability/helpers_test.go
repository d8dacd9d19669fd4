package reliability

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/goleak"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// poolRole is the role every backend of the fixture's proxies logs in as.
const poolRole = "tenantproxy_pool"

// startProxy starts a proxy over the shared fixture in pool mode with a single backend, so the backend a
// fault touched is the one the next client gets; configure (may be nil) changes the configuration
// further. It first waits until the backends of earlier tests' proxies are gone, so the pool role's
// backends on the server are this proxy's.
func startProxy(t testing.TB, mode config.PoolMode, configure func(*config.Config)) *proxytest.Proxy {
	t.Helper()
	waitNoPoolBackends(t)
	return fx.Start(t, func(c *config.Config) {
		c.Pool.Mode = mode
		c.Backend.PoolSize = 1
		if configure != nil {
			configure(c)
		}
	})
}

// testContext is a context that ends after d or with the test.
func testContext(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond every 50 ms until it holds or d passes; then the test fails with cond's last report.
func waitFor(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, d, last)
		}
	}
}

// sqlstate returns the SQLSTATE of a PostgreSQL error, or "" when err carries none.
func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// superExec runs sql as the superuser in the fixture's database.
func superExec(ctx context.Context, sql string) error {
	return fx.Cluster.Exec(ctx, proxytest.Database, sql)
}

// poolBackend is one server backend of the pool role as pg_stat_activity and pg_locks see it.
type poolBackend struct {
	PID   int
	State string
	InTx  bool
	Locks int
	Query string
}

// poolBackends lists the server's backends logged in as the pool role. It opens a connection of its own,
// so it works across server restarts.
func poolBackends(ctx context.Context) ([]poolBackend, error) {
	conn, err := fx.Cluster.Connect(ctx, proxytest.Database)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT a.pid, coalesce(a.state, ''), a.xact_start IS NOT NULL,
		(SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid)::int, coalesce(a.query, '')
		FROM pg_stat_activity a WHERE a.usename = $1 AND a.backend_type = 'client backend' ORDER BY a.pid`, poolRole)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (poolBackend, error) {
		var b poolBackend
		err := r.Scan(&b.PID, &b.State, &b.InTx, &b.Locks, &b.Query)
		return b, err
	})
}

// waitPoolBackend waits until the pool has exactly one backend on the server and returns its pid.
func waitPoolBackend(t testing.TB) int {
	t.Helper()
	ctx := testContext(t, 15*time.Second)
	var pid int
	waitFor(t, 10*time.Second, "one pool backend on the server", func() (bool, string) {
		bs, err := poolBackends(ctx)
		if err != nil {
			return false, err.Error()
		}
		if len(bs) != 1 {
			return false, fmt.Sprintf("%+v", bs)
		}
		pid = bs[0].PID
		return true, ""
	})
	return pid
}

// waitNoPoolBackends waits until no backend of the pool role is left on the server.
func waitNoPoolBackends(t testing.TB) {
	t.Helper()
	ctx := testContext(t, 15*time.Second)
	waitFor(t, 10*time.Second, "backends of earlier proxies gone", func() (bool, string) {
		bs, err := poolBackends(ctx)
		if err != nil {
			return false, err.Error()
		}
		return len(bs) == 0, fmt.Sprintf("%+v", bs)
	})
}

// checkClean asserts that the proxy is back to a clean state after a fault: the relay leases nothing and
// has no one waiting, every backend of the pool is idle on the server with no transaction and no lock,
// and a new client of each tenant runs a transaction in its own tenant's context and sees no leftovers of
// the fault (advisory locks, temporary tables, LISTEN registrations, SQL prepared statements, cursors).
func checkClean(t testing.TB, p *proxytest.Proxy) {
	t.Helper()
	ctx := testContext(t, 40*time.Second)
	waitFor(t, 10*time.Second, "relay idle", func() (bool, string) {
		s := p.Engine().Stats()
		if s.Leased == 0 && s.Waiting == 0 && s.Dialing == 0 && s.Idle == s.Backends {
			return true, ""
		}
		bs, err := poolBackends(ctx)
		return false, fmt.Sprintf("relay %+v; pool backends on the server %+v %v", s, bs, err)
	})
	waitFor(t, 10*time.Second, "pool backends idle on the server", func() (bool, string) {
		bs, err := poolBackends(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, b := range bs {
			if b.State != "idle" || b.InTx || b.Locks > 0 {
				return false, fmt.Sprintf("%+v", bs)
			}
		}
		return true, ""
	})
	for _, tenant := range fx.Tenants {
		probe(t, ctx, p, tenant)
	}
}

// probe runs one transaction as tenant's app user through p and checks what the backend carries.
func probe(t testing.TB, ctx context.Context, p *proxytest.Proxy, tenant string) {
	t.Helper()
	cfg, err := pgx.ParseConfig(p.TenantURL(tenant))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("probe %s: connect: %v", tenant, err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatalf("probe %s: begin: %v", tenant, err)
	}
	var role, setting string
	var cross, pid, advisory, temp, listening int
	err = tx.QueryRow(ctx, `SELECT current_user, current_setting('tenantproxy.tenant'),
		(SELECT count(*) FROM employees WHERE tenant <> current_setting('tenantproxy.tenant'))::int,
		pg_backend_pid(),
		(SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema())::int,
		(SELECT count(*) FROM pg_listening_channels())::int`).Scan(&role, &setting, &cross, &pid, &temp, &listening)
	if err != nil {
		t.Fatalf("probe %s: %v", tenant, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("probe %s: commit: %v", tenant, err)
	}
	// pg_locks is closed to tenants (init): the backend's advisory locks are counted as the superuser.
	admin, err := fx.Cluster.Connect(ctx, proxytest.Database)
	if err != nil {
		t.Fatalf("probe %s: admin connect: %v", tenant, err)
	}
	defer admin.Close(context.Background())
	if err := admin.QueryRow(ctx, "SELECT count(*)::int FROM pg_locks WHERE pid = $1 AND locktype = 'advisory'", pid).Scan(&advisory); err != nil {
		t.Fatalf("probe %s: advisory locks: %v", tenant, err)
	}
	if role != "tenant_"+tenant || setting != tenant || cross != 0 || advisory != 0 || temp != 0 || listening != 0 {
		t.Fatalf("probe %s: role %s, tenant setting %q, %d rows of other tenants, %d advisory locks, %d temporary tables, %d LISTEN channels",
			tenant, role, setting, cross, advisory, temp, listening)
	}
	for _, c := range []struct{ sql, code string }{
		{"EXECUTE rel_stmt", "26000"}, // a SQL prepared statement of an earlier client
		{"CLOSE rel_cursor", "34000"}, // a cursor WITH HOLD of an earlier client
		{"SHOW application_name", ""}, // must not be an earlier client's setting
	} {
		var v string
		err := conn.QueryRow(ctx, c.sql).Scan(&v)
		if c.code == "" {
			if err != nil || v == "rel-vanish" {
				t.Fatalf("probe %s: %s: %q %v", tenant, c.sql, v, err)
			}
			continue
		}
		if sqlstate(err) != c.code {
			t.Fatalf("probe %s: %s: %v; want %s, nothing left by an earlier client", tenant, c.sql, err, c.code)
		}
	}
}

// leakCheck snapshots the goroutines running now; the returned func fails the test when goroutines
// started since are still there after a grace period (dialers and cancel requests take a moment to end).
func leakCheck(t testing.TB) func() {
	base := goleak.IgnoreCurrent()
	return func() {
		t.Helper()
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if err = goleak.Find(base); err == nil {
				return
			}
		}
		t.Errorf("goroutines left behind: %v", err)
	}
}

// rssBytes is the resident set size of this process, which runs the proxy in-process.
func rssBytes(t testing.TB) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// rawConn is a client connection whose bytes the test writes and reads itself.
type rawConn struct {
	net.Conn
	fe *pgproto3.Frontend
}

// dialRaw connects to the proxy over TCP without saying anything.
func dialRaw(t testing.TB, p *proxytest.Proxy) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort(p.Host, strconv.Itoa(p.Port)), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{Conn: c, fe: pgproto3.NewFrontend(c, c)}
}

// session connects as tenant's app user, authenticates with pgconn and takes the connection over, ready
// for queries.
func session(t testing.TB, ctx context.Context, p *proxytest.Proxy, tenant string) *rawConn {
	t.Helper()
	pc, err := pgconn.Connect(ctx, p.TenantURL(tenant))
	if err != nil {
		t.Fatalf("connect as %s: %v", tenant, err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Conn.Close() })
	return &rawConn{Conn: hc.Conn, fe: pgproto3.NewFrontend(hc.Conn, hc.Conn)}
}

// send writes messages and flushes them.
func (r *rawConn) send(t testing.TB, msgs ...pgproto3.FrontendMessage) {
	t.Helper()
	for _, m := range msgs {
		r.fe.Send(m)
	}
	r.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := r.fe.Flush(); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// write writes raw bytes.
func (r *rawConn) write(t testing.TB, b []byte) {
	t.Helper()
	r.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// until reads messages until stop returns true for one (and returns it), failing the test on an error
// response, the end of the connection, or d passing.
func (r *rawConn) until(t testing.TB, d time.Duration, stop func(pgproto3.BackendMessage) bool) pgproto3.BackendMessage {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(d))
	for {
		m, err := r.fe.Receive()
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			t.Fatalf("unexpected error %s: %s", e.Code, e.Message)
		}
		if stop(m) {
			return m
		}
	}
}

// ready reads until ReadyForQuery and returns its transaction status.
func (r *rawConn) ready(t testing.TB) byte {
	t.Helper()
	m := r.until(t, 10*time.Second, func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.ReadyForQuery); return ok })
	return m.(*pgproto3.ReadyForQuery).TxStatus
}

// query sends a simple query and waits for its ReadyForQuery.
func (r *rawConn) query(t testing.TB, sql string) byte {
	t.Helper()
	r.send(t, &pgproto3.Query{String: sql})
	return r.ready(t)
}

// closedWith reads until the connection ends within d and returns the last error response the proxy
// sent (nil for none). A read timeout fails the test: the proxy must close the connection itself.
func (r *rawConn) closedWith(t testing.TB, d time.Duration) *pgproto3.ErrorResponse {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(d))
	var last *pgproto3.ErrorResponse
	for {
		m, err := r.fe.Receive()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the proxy did not close the connection within %s", d)
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
				t.Fatalf("receive: %v", err)
			}
			return last
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			c := *e
			last = &c
		}
	}
}

// isReset reports a connection reset by the peer.
func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

// expectFatal reads until the proxy closes the connection and checks it said FATAL with code first.
func (r *rawConn) expectFatal(t testing.TB, code string) {
	t.Helper()
	e := r.closedWith(t, 5*time.Second)
	if e == nil {
		t.Fatalf("connection closed without an error; want FATAL %s", code)
	}
	if e.Severity != "FATAL" || e.Code != code {
		t.Fatalf("got %s %s (%s); want FATAL %s", e.Severity, e.Code, e.Message, code)
	}
}
