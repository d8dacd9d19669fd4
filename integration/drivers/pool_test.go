package drivers

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// The tests of this file pin down, deterministically, what the driver matrix meets only by chance: a
// backend lost after a cancel, a statement cancelled by the late signal of the previous statement's cancel
// request, and pgbench -M prepared waiting forever for a backend.

// cancelRequestCode is the protocol code of a CancelRequest packet.
const cancelRequestCode = 80877102

// slowCancelRelay forwards TCP connections to a PostgreSQL server and stretches the life of CancelRequest
// connections the way a busy server does. PostgreSQL 15 acts on a cancel request in a child process of
// the postmaster that signals the backend twice, kill(pid) and then kill(-pid) for its process group, and
// closes the connection after both: on a loaded machine the second signal can come milliseconds after the
// first one ended the query, and cancel whatever statement the backend runs by then (seen in the matrix:
// postgres.js's COPY right after its cancelled pg_sleep failed with 57014). The relay forwards the request,
// waits until the server closed that connection, then waits for hold, and, when lateSignal is set, sends
// the same request again, like the late kill(-pid); only then does it close the proxy's connection. A proxy
// that waits for its cancel request to complete before it uses the backend again is immune to both.
type slowCancelRelay struct {
	host       string
	port       int
	hold       time.Duration
	lateSignal bool
	cancels    chan struct{} // one value per cancel request the server acted on first
}

func startSlowCancelRelay(t *testing.T, server string, hold time.Duration, lateSignal bool) *slowCancelRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	addr := ln.Addr().(*net.TCPAddr)
	r := &slowCancelRelay{host: addr.IP.String(), port: addr.Port, hold: hold, lateSignal: lateSignal, cancels: make(chan struct{}, 16)}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r.serve(c, server)
			}()
		}
	}()
	return r
}

func (r *slowCancelRelay) serve(c net.Conn, server string) {
	var first [8]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		return
	}
	if binary.BigEndian.Uint32(first[4:]) == cancelRequestCode {
		req := make([]byte, binary.BigEndian.Uint32(first[:]))
		copy(req, first[:])
		if _, err := io.ReadFull(c, req[8:]); err != nil {
			return
		}
		if sendCancel(server, req) != nil {
			return
		}
		r.cancels <- struct{}{}
		time.Sleep(r.hold)
		if r.lateSignal {
			sendCancel(server, req)
		}
		return
	}
	s, err := net.Dial("tcp", server)
	if err != nil {
		return
	}
	defer s.Close()
	if _, err := s.Write(first[:]); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		io.Copy(s, c)
		s.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(c, s)
	c.Close()
	<-done
}

// sendCancel sends a CancelRequest packet to server and waits until the server has acted on it.
func sendCancel(server string, req []byte) error {
	s, err := net.DialTimeout("tcp", server, 5*time.Second)
	if err != nil {
		return err
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Write(req); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, s) // the server closes the connection after acting on the request
	return err
}

// waitCancel waits until the relay has passed a CancelRequest to the server.
func (r *slowCancelRelay) waitCancel(timeout time.Duration) error {
	select {
	case <-r.cancels:
		return nil
	case <-time.After(timeout):
		return errors.New("no cancel request reached the server")
	}
}

// startProxyBehind starts a proxy of f whose backends are reached through relay, with a pool of poolSize in
// mode, and a short wait_timeout: the verdict on a client that would wait for a lost backend.
func startProxyBehind(t *testing.T, f *proxytest.Fixture, relay *slowCancelRelay, mode string, poolSize int) *proxytest.Proxy {
	t.Helper()
	return f.Start(t, func(c *config.Config) {
		c.Pool.Mode = config.PoolMode(mode)
		c.Backend.PoolSize = poolSize
		c.Backend.Host, c.Backend.Port = relay.host, relay.port
		c.Pool.WaitTimeout.Duration = 2 * time.Second
	})
}

// connectCancelling connects with pgx to url; a context that ends during a query makes pgx send a
// CancelRequest, as the matrix's pgx scenario does.
func connectCancelling(t *testing.T, ctx context.Context, url string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: 4 * time.Second}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// cancelSleep runs pg_sleep(10) on conn and cancels it after 300 ms; the error must be 57014.
func cancelSleep(t *testing.T, ctx context.Context, conn *pgx.Conn) {
	t.Helper()
	sleepCtx, stop := context.WithTimeout(ctx, 300*time.Millisecond)
	defer stop()
	_, err := conn.Exec(sleepCtx, sqlSleep)
	if got := sqlstate(err); got != "57014" {
		t.Fatalf("cancelled %s: want SQLSTATE 57014, got %q (%v)", sqlSleep, got, err)
	}
}

// fixtureForPoolTests is the package's fixture, or one of t's own when TP_DSN_A points the other tests at
// a proxy of the environment.
func fixtureForPoolTests(t *testing.T) *proxytest.Fixture {
	if fixture != nil {
		return fixture
	}
	return proxytest.NewFixture(t)
}

// TestBackendReturnsToPoolWhenClientLeavesDuringCancel: a client leaves while the proxy's cancel request to
// the server is still in flight (psql exits right after the error of a query it cancelled on SIGINT; any
// client may quit while its query runs, and the proxy then cancels the query itself). Once the cancel
// request completes, the pool must get its backend back; the test fails when the backend stays in reset,
// lost to every later client.
func TestBackendReturnsToPoolWhenClientLeavesDuringCancel(t *testing.T) {
	f := fixtureForPoolTests(t)
	cases := []struct {
		name string
		mode string
		// clientCancels makes the client cancel its query and quit once it has the error; otherwise the
		// client quits while the query runs.
		clientCancels bool
	}{
		{name: "session mode, the client cancels then quits", mode: "session", clientCancels: true},
		{name: "session mode, the client quits during a query", mode: "session"},
		{name: "transaction mode, the client cancels then quits", mode: "transaction", clientCancels: true},
		{name: "transaction mode, the client quits during a query", mode: "transaction"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			relay := startSlowCancelRelay(t, net.JoinHostPort(f.Cluster.Host, strconv.Itoa(f.Cluster.Port)), time.Second, false)
			p := startProxyBehind(t, f, relay, tc.mode, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn := connectCancelling(t, ctx, p.TenantURL(f.Tenants[0]))
			if tc.clientCancels {
				cancelSleep(t, ctx, conn)
				conn.PgConn().Close(ctx)
			} else {
				running := make(chan error, 1)
				go func() {
					_, err := conn.Exec(ctx, sqlSleep)
					running <- err
				}()
				time.Sleep(300 * time.Millisecond)
				conn.PgConn().Conn().Close()
				<-running
			}
			if err := relay.waitCancel(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			target{proxy: p}.checkPoolSettles(t)

			next, err := pgx.Connect(ctx, p.TenantURL(f.Tenants[0]))
			if err != nil {
				t.Fatal(err)
			}
			defer next.Close(ctx)
			var one int
			if err := next.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
				t.Fatalf("the next client on the pool of one after the cancel: %v", err)
			}
		})
	}
}

// TestStatementAfterCancelIsNotCancelledByALateSignal: the server may still deliver the signal of a cancel
// request after the cancelled query ended, until it closes the cancel connection (see slowCancelRelay). The
// client's next statement must not be cancelled by it: the proxy knows when its cancel request completed
// and can hold the backend until then, as it already does in transaction pooling by not leasing a backend
// with a cancel in flight.
func TestStatementAfterCancelIsNotCancelledByALateSignal(t *testing.T) {
	f := fixtureForPoolTests(t)
	for _, mode := range poolModes {
		t.Run(mode, func(t *testing.T) {
			relay := startSlowCancelRelay(t, net.JoinHostPort(f.Cluster.Host, strconv.Itoa(f.Cluster.Port)), 200*time.Millisecond, true)
			p := startProxyBehind(t, f, relay, mode, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn := connectCancelling(t, ctx, p.TenantURL(f.Tenants[0]))
			defer conn.Close(ctx)
			cancelSleep(t, ctx, conn)
			if _, err := conn.Exec(ctx, "SELECT pg_sleep(0.5)"); err != nil {
				t.Fatalf("the statement after the cancelled one: %v", err)
			}
		})
	}
}

// TestPgbenchPreparedWithMoreClientsThanBackendsInOneThread runs pgbench -M prepared in transaction pooling
// with three clients in one pgbench thread over a pool of two backends. pgbench prepares a script command
// synchronously (Parse, Sync, wait) when a client first runs it, so the whole thread waits while one client
// prepares BEGIN outside any transaction; when the two other clients already hold the two backends in their
// open transactions, and their next statements can only come from that same waiting thread, no backend ever
// comes free unless the proxy can answer such a Parse without a backend. The run must complete its
// transactions without errors, as it does against PostgreSQL directly.
func TestPgbenchPreparedWithMoreClientsThanBackendsInOneThread(t *testing.T) {
	f := fixture
	if f == nil { // TP_DSN_A points the other tests at a proxy of the environment
		f = proxytest.NewFixture(t)
	}
	pgbench, err := clientProgram("pgbench")
	if err != nil {
		t.Fatal(err)
	}
	p := f.Start(t, func(c *config.Config) {
		c.Pool.Mode = "transaction"
		c.Backend.PoolSize = 2
		c.Pool.WaitTimeout.Duration = 3 * time.Second // the verdict on a client that never gets a backend
	})
	script := filepath.Join(t.TempDir(), "tenant.sql")
	if err := os.WriteFile(script, []byte(`\set id random(1, 5)
BEGIN;
SELECT name, email FROM employees WHERE id = :id;
UPDATE employees SET email = email WHERE id = :id;
END;
`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, pgbench, "-n", "-M", "prepared", "-f", script, "-c", "3", "-j", "1", "-T", "2",
		p.TenantURL(f.Tenants[0])).CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench -M prepared -c 3 -j 1 over a pool of 2: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`number of failed transactions: (\d+)`).FindSubmatch(out)
	if m == nil || string(m[1]) != "0" {
		t.Fatalf("pgbench reported failed transactions:\n%s", out)
	}
	t.Logf("%s", out)
}
