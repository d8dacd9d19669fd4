package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// rawClient is a connection through the proxy that the test drives message by message after a normal
// startup, so it can read what the proxy sends unasked and drop the socket without a Terminate.
type rawClient struct {
	conn net.Conn
	fe   *pgproto3.Frontend
}

// dialRaw connects to url and takes the connection over from pgconn; it is closed when the test ends.
func dialRaw(t *testing.T, ctx context.Context, url string) *rawClient {
	t.Helper()
	pc, err := pgconn.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", redact(url), err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Conn.Close() })
	return &rawClient{conn: hc.Conn, fe: hc.Frontend}
}

// query runs sql by the simple protocol and returns its first error once ReadyForQuery has arrived, or
// the error that ended the connection.
func (c *rawClient) query(sql string, timeout time.Duration) error {
	c.conn.SetDeadline(time.Now().Add(timeout))
	defer c.conn.SetDeadline(time.Time{})
	c.fe.Send(&pgproto3.Query{String: sql})
	if err := c.fe.Flush(); err != nil {
		return err
	}
	var first error
	for {
		msg, err := c.fe.Receive()
		if err != nil {
			if first != nil {
				return first
			}
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			if first == nil {
				first = pgconn.ErrorResponseToPgError(m)
			}
		case *pgproto3.ReadyForQuery:
			return first
		}
	}
}

// waitFatal waits up to d for an ErrorResponse the proxy sends without being asked, and then for the
// connection to close.
func (c *rawClient) waitFatal(d time.Duration) (*pgconn.PgError, error) {
	c.conn.SetDeadline(time.Now().Add(d))
	for {
		msg, err := c.fe.Receive()
		if err != nil {
			return nil, fmt.Errorf("no ErrorResponse before the connection ended: %w", err)
		}
		if m, ok := msg.(*pgproto3.ErrorResponse); ok {
			pe := pgconn.ErrorResponseToPgError(m)
			if _, err := c.fe.Receive(); err == nil {
				return pe, fmt.Errorf("the connection stayed open after %s %s", pe.Code, pe.Message)
			}
			return pe, nil
		}
	}
}

// drop closes the socket at once (RST), as a crashed client or a cut network would.
func (c *rawClient) drop() {
	if tc, ok := c.conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.conn.Close()
}

// isConnectionLoss reports whether err is what a client should see when its server connection dies:
// 08006 or 57P01 from the proxy or the server, or the connection itself closing.
func isConnectionLoss(err error) bool {
	switch sqlstate(err) {
	case "08006", "57P01", "08003", "08000":
		return true
	case "":
		return err != nil
	}
	return false
}

// waitActive polls pg_stat_activity until a backend of the pool role runs a query containing text, and
// returns its pid.
func waitActive(t *testing.T, ctx context.Context, su *pgx.Conn, text string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var pid int
		err := su.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE usename = 'tenantproxy_pool'
			AND state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()`, text).Scan(&pid)
		if err == nil {
			return pid
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			t.Fatalf("pg_stat_activity: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no pool backend ran a query containing %q within 5s", text)
	return 0
}

// TestBackendKilledMidQueryErrorsOnlyItsClient terminates, from the server, the backend running one
// client's query: that client gets a connection error and works again (on a new connection), while a
// client of another tenant in a transaction on another backend carries on untouched.
func TestBackendKilledMidQueryErrorsOnlyItsClient(t *testing.T) {
	for _, pm := range poolModes {
		t.Run(string(pm), func(t *testing.T) {
			p := startProxy(t, pm, func(c *config.Config) { c.Backend.PoolSize = 2 })
			ctx := testContext(t, 30*time.Second)
			su := superuser(t, ctx)
			a, err := dialPgx(ctx, p.TenantURL("acme"), pgx.QueryExecModeCacheStatement, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close(ctx)
			b := connectPgx(t, ctx, p.TenantURL("globex"), pgx.QueryExecModeCacheStatement)
			tx, err := b.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var pidB int
			if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pidB); err != nil {
				t.Fatal(err)
			}

			tag := marker(t)
			errA := make(chan error, 1)
			go func() {
				_, err := a.Exec(ctx, fmt.Sprintf("SELECT pg_sleep(10), '%s'", tag))
				errA <- err
			}()
			pid := waitActive(t, ctx, su, tag)
			if pid == pidB {
				t.Fatalf("A's query runs on B's leased backend %d", pid)
			}
			var ok bool
			if err := su.QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&ok); err != nil || !ok {
				t.Fatalf("pg_terminate_backend(%d): %v %v", pid, ok, err)
			}
			select {
			case err := <-errA:
				if !isConnectionLoss(err) {
					t.Fatalf("A's query on the killed backend: want 08006, 57P01 or a closed connection, got %q: %v", sqlstate(err), err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("A's query did not end within 5s of its backend being killed")
			}

			// B's transaction on the other backend goes on and commits.
			var inTx int
			if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&inTx); err != nil || inTx != pidB {
				t.Fatalf("B's transaction after A's backend died: backend %d (was %d), %v", inTx, pidB, err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatalf("B's commit: %v", err)
			}
			wantIdentity(t, ctx, b, "globex")

			// A's next transaction works, on a new connection if the old one was closed.
			if !a.IsClosed() {
				if _, err := a.Exec(ctx, "SELECT 1"); err == nil {
					wantIdentity(t, ctx, a, "acme")
					return
				}
			}
			a2 := connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeCacheStatement)
			wantIdentity(t, ctx, a2, "acme")
		})
	}
}

// TestServerRestartUnderLoad stops and restarts the PostgreSQL server while clients of both tenants
// loop on queries through a transaction-pooling and a session-pooling proxy: they get errors during the
// outage, and within a few seconds of the server's return every client works again, without a proxy
// restart.
func TestServerRestartUnderLoad(t *testing.T) {
	// A cluster of its own: the outage must not touch the other tests' fixture.
	f := proxytest.NewFixture(t)
	ctx := testContext(t, 60*time.Second)
	type looper struct {
		name string
		url  string

		mu          sync.Mutex
		ok, failed  int
		lastOK      time.Time
		lastErr     error
		crossTenant error
	}
	var loopers []*looper
	for _, pm := range poolModes {
		p := f.Start(t, func(c *config.Config) {
			c.Pool.Mode = pm
			c.Backend.PoolSize = 4
			c.Backend.ConnectTimeout.Duration = time.Second
			c.Pool.WaitTimeout.Duration = 2 * time.Second
		})
		for _, tenant := range f.Tenants {
			loopers = append(loopers, &looper{name: string(pm) + "/" + tenant, url: p.TenantURL(tenant)})
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, l := range loopers {
		tenant := l.name[strings.IndexByte(l.name, '/')+1:]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn *pgx.Conn
			defer func() {
				if conn != nil {
					conn.Close(context.Background())
				}
			}()
			for {
				select {
				case <-stop:
					return
				default:
				}
				qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				var err error
				if conn == nil {
					conn, err = pgx.Connect(qctx, l.url)
					if err != nil {
						conn = nil
					}
				}
				var setting, rows string
				if err == nil {
					err = conn.QueryRow(qctx, "SELECT current_setting('tenantproxy.tenant'), string_agg(DISTINCT tenant, ',') FROM employees").Scan(&setting, &rows)
				}
				cancel()
				l.mu.Lock()
				if err != nil {
					l.failed++
					l.lastErr = err
				} else {
					l.ok++
					l.lastOK = time.Now()
					if setting != tenant || rows != tenant {
						l.crossTenant = fmt.Errorf("%s saw tenant %q and rows of %q", l.name, setting, rows)
					}
				}
				l.mu.Unlock()
				if err != nil {
					if conn != nil {
						conn.Close(context.Background())
						conn = nil
					}
					time.Sleep(50 * time.Millisecond)
				} else {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()

	for deadline := time.Now().Add(10 * time.Second); ; {
		working := 0
		for _, l := range loopers {
			l.mu.Lock()
			if l.ok > 0 {
				working++
			}
			l.mu.Unlock()
		}
		if working == len(loopers) {
			break
		}
		if time.Now().After(deadline) {
			for _, l := range loopers {
				l.mu.Lock()
				t.Errorf("%s: %d queries worked before the restart; last error: %v", l.name, l.ok, l.lastErr)
				l.mu.Unlock()
			}
			t.FailNow()
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if err := f.Cluster.StopServer("fast"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := f.Cluster.StartServer(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	deadline := back.Add(10 * time.Second)
	for {
		pending := []string{}
		for _, l := range loopers {
			l.mu.Lock()
			if !l.lastOK.After(back) {
				pending = append(pending, fmt.Sprintf("%s (last error: %v)", l.name, l.lastErr))
			}
			l.mu.Unlock()
		}
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after the server came back these clients still fail: %s", strings.Join(pending, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("every client worked again %v after the server came back", time.Since(back).Round(10*time.Millisecond))
	failed := 0
	for _, l := range loopers {
		l.mu.Lock()
		failed += l.failed
		if l.crossTenant != nil {
			t.Error(l.crossTenant)
		}
		l.mu.Unlock()
	}
	if failed == 0 {
		t.Error("no client saw an error while the server was down")
	}
}

// TestClientDroppedMidTransactionLeavesNoLock drops the socket of a client holding a row lock in an open
// transaction, idle or in the middle of a query: another client can update the row within a few seconds.
func TestClientDroppedMidTransactionLeavesNoLock(t *testing.T) {
	for _, pm := range poolModes {
		t.Run(string(pm), func(t *testing.T) {
			p := startProxy(t, pm, func(c *config.Config) { c.Backend.PoolSize = 2 })
			ctx := testContext(t, 60*time.Second)
			su := superuser(t, ctx)
			for _, c := range []struct {
				name     string
				id       int
				midQuery bool
			}{{"IdleInTransaction", 1, false}, {"MidQuery", 2, true}} {
				t.Run(c.name, func(t *testing.T) {
					a := dialRaw(t, ctx, p.TenantURL("acme"))
					if err := a.query(fmt.Sprintf("BEGIN; UPDATE employees SET email = email WHERE id = %d", c.id), 5*time.Second); err != nil {
						t.Fatalf("A locks row %d: %v", c.id, err)
					}
					if c.midQuery {
						tag := marker(t)
						a.fe.Send(&pgproto3.Query{String: fmt.Sprintf("SELECT pg_sleep(30), '%s'", tag)})
						if err := a.fe.Flush(); err != nil {
							t.Fatal(err)
						}
						waitActive(t, ctx, su, tag)
					}
					a.drop()
					b := connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeCacheStatement)
					uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					defer cancel()
					start := time.Now()
					tag, err := b.Exec(uctx, "UPDATE employees SET email = email WHERE id = $1", c.id)
					if err != nil {
						t.Fatalf("B's update of the row the dropped client had locked: %v after %v (SQLSTATE %s)", err, time.Since(start), sqlstate(err))
					}
					if tag.RowsAffected() != 1 {
						t.Fatalf("B updated %d rows, want 1", tag.RowsAffected())
					}
					if took := time.Since(start); took > 3*time.Second {
						t.Fatalf("B waited %v for the dropped client's row lock", took)
					}
					// The dropped transaction is aborted at once when a query is cancelled, releasing its
					// locks; the proxy's ROLLBACK must follow so the backend leaves the transaction.
					var open []string
					for wait := time.Now().Add(3 * time.Second); ; {
						rows, _ := su.Query(ctx, "SELECT pid || ' ' || state FROM pg_stat_activity WHERE usename = 'tenantproxy_pool' AND state LIKE 'idle in transaction%'")
						open, err = pgx.CollectRows(rows, pgx.RowTo[string])
						if err != nil {
							t.Fatal(err)
						}
						if len(open) == 0 || time.Now().After(wait) {
							break
						}
						time.Sleep(50 * time.Millisecond)
					}
					if len(open) > 0 {
						t.Fatalf("3s after the client dropped, pool backends are still in its transaction: %v", open)
					}
				})
			}
		})
	}
}

// TestPoolExhaustedWaitTimeout holds the one backend of the pool in an open transaction: another client
// gets 53300 naming wait_timeout after about a second.
func TestPoolExhaustedWaitTimeout(t *testing.T) {
	for _, pm := range poolModes {
		t.Run(string(pm), func(t *testing.T) {
			p := startProxy(t, pm, func(c *config.Config) {
				c.Backend.PoolSize = 1
				c.Pool.WaitTimeout.Duration = time.Second
			})
			ctx := testContext(t, 30*time.Second)
			holder := connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeCacheStatement)
			tx, err := holder.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			// In session pooling the backend is leased at connect, so the refusal may come then.
			conn, err := dialPgx(ctx, p.TenantURL("globex"), pgx.QueryExecModeCacheStatement, nil)
			if err == nil {
				defer conn.Close(ctx)
				_, err = conn.Exec(ctx, "SELECT 1")
			}
			took := time.Since(start)
			if got := sqlstate(err); got != "53300" || !strings.Contains(errorMessage(err), "wait_timeout") {
				t.Fatalf("waiting for the held backend: want SQLSTATE 53300 naming wait_timeout, got %q: %v", got, err)
			}
			// The upper bound leaves a busy machine room; a wait that ignored wait_timeout would last
			// until the holder commits, after this check.
			if took < 900*time.Millisecond || took > 5*time.Second {
				t.Fatalf("the wait ended after %v, want about wait_timeout (1s)", took)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatalf("the holder's commit: %v", err)
			}
			wantIdentity(t, ctx, holder, "acme")
		})
	}
}
