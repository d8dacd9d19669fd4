package reliability

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/config"
)

// A CancelRequest for a query that waits for a backend (the pool is busy) cancels it, as PostgreSQL
// cancels a query it has received but not started: the client gets 57014 once a backend is free instead
// of the query running to its end.
func TestCancelWhileWaitingForABackend(t *testing.T) {
	p := startProxy(t, config.ModeTransaction, nil)
	leaks := leakCheck(t)
	ctx := testContext(t, 30*time.Second)
	holder, err := pgconn.Connect(ctx, p.TenantURL("acme"))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	if _, err := holder.Exec(ctx, "BEGIN").ReadAll(); err != nil {
		t.Fatal(err)
	}
	waiter, err := pgconn.Connect(ctx, p.TenantURL("globex"))
	if err != nil {
		t.Fatal(err)
	}
	defer waiter.Close(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := waiter.Exec(ctx, "SELECT pg_sleep(3)").ReadAll()
		done <- err
	}()
	waitFor(t, 5*time.Second, "the query queued for a backend", func() (bool, string) {
		s := p.Engine().Stats()
		return s.Waiting == 1, ""
	})
	if err := waiter.CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the cancel request is in
	if _, err := holder.Exec(ctx, "COMMIT").ReadAll(); err != nil {
		t.Fatal(err)
	}
	err = <-done
	elapsed := time.Since(start)
	if sqlstate(err) != "57014" {
		t.Errorf("query cancelled while it waited for a backend: %v after %s; want 57014 (canceling statement due to user request) at once", err, elapsed.Round(time.Millisecond))
	}
	waiter.Close(ctx)
	holder.Close(ctx)
	checkClean(t, p)
	leaks()
}
