package session_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/session"
)

// A client's cancel request that arrives while the relay's own tenant setup still runs on the server,
// ahead of the client's first statement, waits for the client's statement: sent at once it would cancel
// the setup, and the session would end with "could not apply the tenant context". Found by
// TestOwnCancelNeverEndsTheSession under load.
func TestCancelDuringTenantSetupWaitsForTheClientsStatement(t *testing.T) {
	r := newRig(t, nil)
	slow := testTenant("slow")
	slow.SetupSQL += "; " + sleepSQL // the server holds the setup until the test wakes it
	r.e.SetTenants([]session.Tenant{testTenant("acme"), slow})
	c := r.connect(info("slow"))

	m := r.fs.mark()
	c.send(&pgproto3.Query{String: "SELECT 1"})
	r.fs.waitForMessage(t, m, "Q RESET ALL")
	pid := r.fs.pids()[0]
	deadline := time.Now().Add(waitLimit)
	for !r.fs.conn(pid).isSleeping() {
		if time.Now().After(deadline) {
			t.Fatal("the setup never reached the server")
		}
		time.Sleep(time.Millisecond)
	}
	r.e.Cancel(c.pid, c.secret)
	r.e.Stats() // the loop has handled the cancel
	if calls := r.fs.cancelCalls(); len(calls) != 0 {
		t.Fatalf("the cancel reached the server while the setup ran: %v", calls)
	}
	select {
	case r.fs.wake <- struct{}{}:
	case <-time.After(waitLimit):
		t.Fatal("the setup stopped waiting: the cancel reached it")
	}
	// The cancel goes out once the client's own statement is next; the fake finished it already, so the
	// statement completes, as on a direct connection whose query was done before the cancel came.
	equal(t, "client's statement", c.untilReady(), selectReply("1", 'I'))
	for len(r.fs.cancelCalls()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the deferred cancel was never sent")
		}
		time.Sleep(time.Millisecond)
	}
	equal(t, "session goes on", c.query("SELECT 2"), selectReply("2", 'I'))
}
