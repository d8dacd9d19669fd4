package integration

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
	"github.com/tenantproxy/tenantproxy/internal/app"
)

// startOwnedProxy starts a proxy whose shutdown the test drives: shutdown runs App.Shutdown once, and
// the test's cleanup runs it if the test did not.
func startOwnedProxy(t *testing.T, configure func(*config.Config)) (p *proxytest.Proxy, shutdown func(time.Duration)) {
	t.Helper()
	cfg := fx.Config(configure)
	a, err := app.Start(cfg, zap.NewNop(), "test")
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	var once sync.Once
	shutdown = func(d time.Duration) { once.Do(func() { a.Shutdown(d) }) }
	t.Cleanup(func() { shutdown(time.Second) })
	host, port, _ := net.SplitHostPort(a.Addr())
	n, _ := strconv.Atoi(port)
	return &proxytest.Proxy{App: a, F: fx, Cfg: cfg, Host: host, Port: n}, shutdown
}

// TestShutdownDrainsOpenTransactions shuts the proxy down while one client is idle and another is in a
// transaction: the idle client is closed with 57P01 at once, new connections are refused, the open
// transaction may still COMMIT and its client is closed with 57P01 right after; a transaction still open
// when the timeout passes is closed with 57P01 and rolled back.
func TestShutdownDrainsOpenTransactions(t *testing.T) {
	for _, pm := range poolModes {
		for _, c := range []struct {
			name    string
			commit  bool
			timeout time.Duration
		}{{"CommitBeforeTimeout", true, 5 * time.Second}, {"TimeoutPasses", false, 1500 * time.Millisecond}} {
			t.Run(string(pm)+"/"+c.name, func(t *testing.T) {
				p, shutdown := startOwnedProxy(t, func(cfg *config.Config) {
					cfg.Pool.Mode = pm
					cfg.Backend.PoolSize = 2
				})
				ctx := testContext(t, 30*time.Second)
				name := marker(t)
				inTx := dialRaw(t, ctx, p.TenantURL("acme"))
				idle := dialRaw(t, ctx, p.TenantURL("globex"))
				if err := idle.query("SELECT 1", 5*time.Second); err != nil {
					t.Fatal(err)
				}
				if err := inTx.query("BEGIN; INSERT INTO employees (name) VALUES ('"+name+"')", 5*time.Second); err != nil {
					t.Fatal(err)
				}

				start := time.Now()
				done := make(chan struct{})
				go func() {
					defer close(done)
					shutdown(c.timeout)
				}()

				pe, err := idle.waitFatal(2 * time.Second)
				if err != nil || pe.Code != "57P01" {
					t.Fatalf("idle client during shutdown: want 57P01, got %v, %v", pe, err)
				}
				if took := time.Since(start); took > 1500*time.Millisecond {
					t.Errorf("idle client closed %v after shutdown began, want promptly", took)
				}
				if conn, err := dialPgx(ctx, p.TenantURL("globex"), pgx.QueryExecModeCacheStatement, nil); err == nil {
					conn.Close(ctx)
					t.Error("a new connection was accepted during shutdown")
				}

				if c.commit {
					if err := inTx.query("INSERT INTO employees (name) VALUES ('"+name+"'); COMMIT", 5*time.Second); err != nil {
						t.Fatalf("transaction open at shutdown: more work and COMMIT: %v", err)
					}
				}
				pe, err = inTx.waitFatal(c.timeout + 2*time.Second)
				if err != nil || pe.Code != "57P01" {
					t.Fatalf("client of the open transaction: want 57P01, got %v, %v", pe, err)
				}
				if !c.commit && time.Since(start) < c.timeout-300*time.Millisecond {
					t.Errorf("open transaction closed %v after shutdown began, before the %v timeout", time.Since(start), c.timeout)
				}
				select {
				case <-done:
				case <-time.After(c.timeout + 3*time.Second):
					t.Fatal("Shutdown did not return")
				}
				if c.commit && time.Since(start) > c.timeout {
					t.Errorf("Shutdown took %v although every client had gone", time.Since(start))
				}

				want := 0
				if c.commit {
					want = 2
				}
				var n int
				if err := superuser(t, ctx).QueryRow(ctx, "SELECT count(*) FROM acme.employees WHERE name = $1", name).Scan(&n); err != nil || n != want {
					t.Fatalf("rows of the drained transaction: %d (%v), want %d", n, err, want)
				}
			})
		}
	}
}
