package session_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/session"
)

// slowSetupRig is a rig with a tenant "slow" whose setup the fake server holds until the test wakes it,
// and a connected client of it.
func slowSetupRig(t *testing.T) (*rig, *client) {
	r := newRig(t, nil)
	slow := testTenant("slow")
	slow.SetupSQL += "; " + sleepSQL
	r.e.SetTenants([]session.Tenant{testTenant("acme"), slow})
	return r, r.connect(info("slow"))
}

func waitSleeping(t *testing.T, r *rig) {
	t.Helper()
	pid := r.fs.PIDs()[0]
	deadline := time.Now().Add(waitLimit)
	for !r.fs.Conn(pid).Sleeping() {
		if time.Now().After(deadline) {
			t.Fatal("the setup never reached the server")
		}
		time.Sleep(time.Millisecond)
	}
}

// A client's cancel request that arrives while the relay's own tenant setup still runs on the server,
// ahead of the client's first statement, waits for the client's statement: sent at once it would cancel
// the setup, and the session would end with "could not apply the tenant context". Found by
// TestOwnCancelNeverEndsTheSession under load.
func TestCancelDuringASeparateSetupWaitsForTheClientsStatement(t *testing.T) {
	r, c := slowSetupRig(t)
	m := r.fs.Mark()
	// An extended-protocol batch gets the setup as a Query of its own, ahead of it.
	c.send(&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	r.fs.WaitForMessage(t, m, "Q SET ROLE")
	waitSleeping(t, r)
	r.e.Cancel(c.pid, c.secret)
	r.e.Stats() // the loop has handled the cancel
	if calls := r.fs.CancelCalls(); len(calls) != 0 {
		t.Fatalf("the cancel reached the server while the setup ran: %v", calls)
	}
	if !r.fs.Conn(r.fs.PIDs()[0]).Sleeping() {
		t.Fatal("the setup stopped waiting: the cancel reached it")
	}
	r.fs.Wake()
	// The cancel goes out once the client's own statement is next; the fake finished it already, so the
	// statement completes, as on a direct connection whose query was done before the cancel came.
	equal(t, "client's statement", c.untilReady(), []string{"ParseComplete", "BindComplete", "DataRow 1", "CommandComplete SELECT 1", "ReadyForQuery I"})
	deadline := time.Now().Add(waitLimit)
	for len(r.fs.CancelCalls()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the deferred cancel was never sent")
		}
		time.Sleep(time.Millisecond)
	}
	equal(t, "session goes on", c.query("SELECT 2"), selectReply("2", 'I'))
}

// A simple Query carries the switch in the same message: a cancel during the switch cancels the client's
// Query, which is what the client asked for; the session goes on, and the server's undoing of the switch
// leaves the backend in the context it had, which the next lease switches from.
func TestCancelDuringACarriedSwitchCancelsTheClientsQuery(t *testing.T) {
	r, c := slowSetupRig(t)
	r.connect(info("acme")).query("SELECT 0") // the backend now has acme's context and the same settings
	m := r.fs.Mark()
	c.send(&pgproto3.Query{String: "SELECT 1"})
	r.fs.WaitForMessage(t, m, `Q SET ROLE "tenant_slow"`)
	waitSleeping(t, r)
	r.e.Cancel(c.pid, c.secret)
	equal(t, "cancelled Query", c.untilReady(), []string{"ErrorResponse ERROR 57014 canceling statement due to user request", "ReadyForQuery I"})
	m = r.fs.Mark()
	r.fs.Wake() // the next switch sleeps too
	equal(t, "session goes on", c.query("SELECT 2"), selectReply("2", 'I'))
	if got := r.fs.Since(m); len(got) != 1 || !strings.HasPrefix(got[0], `Q SET ROLE "tenant_slow"`) {
		t.Errorf("server after the cancelled switch: %v", got)
	}
}

// An error in the client's statement of a Query that carried the switch reaches the client with its
// Position in the client's own text; the server undid the switch, so the next statement switches again.
func TestErrorInACarriedQueryIsTheClientsOwn(t *testing.T) {
	r := newRig(t, nil)
	r.connect(info("acme")).query("SELECT 0")
	c := r.connect(info("globex"))
	c.send(&pgproto3.Query{String: "SELECT bad_column FROM t"})
	msg := c.receive()
	e, ok := msg.(*pgproto3.ErrorResponse)
	if !ok || e.Code != "42703" || e.Position != int32(len("SELECT ")+1) {
		t.Fatalf("got %#v, want 42703 at position %d", msg, len("SELECT ")+1)
	}
	equal(t, "after the error", c.untilReady(), []string{"ReadyForQuery I"})
	m := r.fs.Mark()
	equal(t, "next statement", c.query("SELECT 2"), selectReply("2", 'I'))
	equal(t, "server", r.fs.Since(m), []string{carriedOf("globex", "SELECT 2")})
}
