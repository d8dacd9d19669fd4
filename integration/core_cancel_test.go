package integration

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// cancelAfter runs sql on conn with a context cancelled after d, which makes pgx send a CancelRequest
// through the proxy; it returns how long the query took and its error.
func cancelAfter(ctx context.Context, conn *pgx.Conn, d time.Duration, sql string) (time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	_, err := conn.Exec(cctx, sql)
	return time.Since(start), err
}

// TestCancelStopsTheSleepingQueryInBothPoolModes checks that a CancelRequest through the proxy cancels
// the client's running query with 57014 at once, and that the connection goes on as the same tenant.
func TestCancelStopsTheSleepingQueryInBothPoolModes(t *testing.T) {
	for _, pm := range poolModes {
		t.Run(string(pm), func(t *testing.T) {
			p := startProxy(t, pm, nil)
			ctx := testContext(t, 30*time.Second)
			for _, em := range execModes {
				t.Run(em.name, func(t *testing.T) {
					a := connectPgx(t, ctx, p.TenantURL("acme"), em.mode)
					took, err := cancelAfter(ctx, a, 300*time.Millisecond, "SELECT pg_sleep(10)")
					if got := sqlstate(err); got != "57014" {
						t.Fatalf("cancelled pg_sleep(10): want SQLSTATE 57014, got %q (%v)", got, err)
					}
					// 57014 says the server cancelled it; the bound says the cancel, not the end of the
					// sleep, ended it, with room for a busy machine (2.08 s was seen beside a second make test).
					if took > 8*time.Second {
						t.Fatalf("cancelled pg_sleep(10) returned after %v, want well before the sleep's 10s", took)
					}
					wantIdentity(t, ctx, a, "acme")
				})
			}
		})
	}
}

// TestCancelReachesOnlyItsClientOnASharedBackend has two tenants share the one backend of the pool: A's
// cancel stops A's sleep, and B, which was waiting for the backend and runs on it right after, is not
// cancelled by it.
func TestCancelReachesOnlyItsClientOnASharedBackend(t *testing.T) {
	p := startProxy(t, config.ModeTransaction, func(c *config.Config) { c.Backend.PoolSize = 1 })
	ctx := testContext(t, 30*time.Second)
	for _, em := range execModes {
		t.Run(em.name, func(t *testing.T) {
			a := connectPgx(t, ctx, p.TenantURL("acme"), em.mode)
			b := connectPgx(t, ctx, p.TenantURL("globex"), em.mode)
			var pidA, pidB int
			if err := a.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pidA); err != nil {
				t.Fatal(err)
			}
			type result struct {
				err       error
				took      time.Duration
				pid       int
				completed time.Time
			}
			bDone := make(chan result, 1)
			aStarted := make(chan struct{})
			go func() {
				<-aStarted
				// B queues for the backend A's sleep holds and gets it once A's cancel has ended that.
				time.Sleep(100 * time.Millisecond)
				start := time.Now()
				var pid int
				err := b.QueryRow(ctx, "SELECT pg_backend_pid() FROM (SELECT pg_sleep(1)) s").Scan(&pid)
				bDone <- result{err: err, took: time.Since(start), pid: pid, completed: time.Now()}
			}()
			close(aStarted)
			tookA, errA := cancelAfter(ctx, a, 400*time.Millisecond, "SELECT pg_sleep(10)")
			aReturned := time.Now()
			if got := sqlstate(errA); got != "57014" {
				t.Fatalf("A's cancelled pg_sleep(10): want SQLSTATE 57014, got %q (%v)", got, errA)
			}
			if tookA > 8*time.Second {
				t.Fatalf("A's cancelled pg_sleep(10) returned after %v, want well before the sleep's 10s", tookA)
			}
			r := <-bDone
			if r.err != nil {
				t.Fatalf("B's pg_sleep(1) on the backend A's cancel was meant for failed: %v (SQLSTATE %s)", r.err, sqlstate(r.err))
			}
			pidB = r.pid
			if pidB != pidA {
				t.Fatalf("B ran on backend %d, A on %d: with pool_size 1 they must share one", pidB, pidA)
			}
			if r.completed.Sub(aReturned) < 800*time.Millisecond {
				t.Fatalf("B's pg_sleep(1) ended %v after A's cancel: it did not run after it", r.completed.Sub(aReturned))
			}
			wantIdentity(t, ctx, a, "acme")
			wantIdentity(t, ctx, b, "globex")
		})
	}
}

// TestCancelOfAnIdleClientDoesNothing sends a CancelRequest with the key of an idle client while another
// tenant's query runs on the backend that client last used: the query completes.
func TestCancelOfAnIdleClientDoesNothing(t *testing.T) {
	for _, pm := range poolModes {
		t.Run(string(pm), func(t *testing.T) {
			// In session pooling each client holds its own backend, so A's key must not reach B's either.
			size := 1
			if pm == config.ModeSession {
				size = 2
			}
			p := startProxy(t, pm, func(c *config.Config) { c.Backend.PoolSize = size })
			ctx := testContext(t, 30*time.Second)
			a := connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeCacheStatement)
			b := connectPgx(t, ctx, p.TenantURL("globex"), pgx.QueryExecModeCacheStatement)
			wantIdentity(t, ctx, a, "acme")
			done := make(chan error, 1)
			go func() {
				_, err := b.Exec(ctx, "SELECT pg_sleep(1)")
				done <- err
			}()
			time.Sleep(300 * time.Millisecond)
			for i := 0; i < 3; i++ {
				if err := a.PgConn().CancelRequest(ctx); err != nil {
					t.Fatalf("send A's CancelRequest: %v", err)
				}
			}
			if err := <-done; err != nil {
				t.Fatalf("B's pg_sleep(1) was hit by a cancel sent with idle A's key: %v (SQLSTATE %s)", err, sqlstate(err))
			}
			wantIdentity(t, ctx, a, "acme")
			wantIdentity(t, ctx, b, "globex")
		})
	}
}
