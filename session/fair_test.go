package session_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/session"
)

// queueWaiters has one client per tag wait, in the order given, behind a holder that keeps the one
// backend in a transaction; it returns the order in which the server then saw their statements.
func queueWaiters(t *testing.T, r *rig, holder *client, waiters []struct{ tenant, tag string }) []string {
	t.Helper()
	var cs []*client
	for i, w := range waiters {
		c := r.connect(info(w.tenant))
		c.send(&pgproto3.Query{String: "SELECT '" + w.tag + "'"})
		r.waitStats("waiters queued in order", func(s session.Stats) bool { return s.Waiting == i+1 })
		cs = append(cs, c)
	}
	m := r.fs.Mark()
	holder.query("COMMIT")
	for _, c := range cs {
		c.untilReady()
	}
	var order []string
	for _, msg := range r.fs.Since(m) {
		if msg = clientStatement(msg); strings.HasPrefix(msg, "Q SELECT '") {
			order = append(order, strings.Trim(strings.TrimPrefix(msg, "Q SELECT "), "'"))
		}
	}
	return order
}

func withLimits(r *rig, limits map[string]session.TenantLimits) {
	var ts []session.Tenant
	for _, name := range []string{"acme", "globex", "initech"} {
		tt := testTenant(name)
		tt.Limits = limits[name]
		ts = append(ts, tt)
	}
	r.e.SetTenants(ts)
}

func TestFairQueueServesTenantsInProportionToTheirWeights(t *testing.T) {
	r := newRig(t, nil)
	withLimits(r, map[string]session.TenantLimits{"acme": {Weight: 2}})
	holder := r.connect(info("initech"))
	holder.query("BEGIN")
	order := queueWaiters(t, r, holder, []struct{ tenant, tag string }{
		{"acme", "a1"}, {"acme", "a2"}, {"acme", "a3"}, {"acme", "a4"}, {"globex", "g1"}, {"globex", "g2"},
	})
	equal(t, "order of service", order, []string{"a1", "a2", "g1", "a3", "a4", "g2"})
}

// The freed backend carries the noisy tenant's context, so affinity would hand it back to the noisy
// tenant every time; the round bounds it: the quiet tenant's one waiter is served after at most one turn
// of the noisy tenant.
func TestAffinityNeverLetsANoisyTenantDelayAQuietOnePastItsTurn(t *testing.T) {
	r := newRig(t, nil)
	holder := r.connect(info("acme"))
	holder.query("BEGIN")
	order := queueWaiters(t, r, holder, []struct{ tenant, tag string }{
		{"acme", "a1"}, {"acme", "a2"}, {"acme", "a3"}, {"acme", "a4"}, {"globex", "g1"},
	})
	equal(t, "order of service", order, []string{"a1", "g1", "a2", "a3", "a4"})
}

// With a free backend of each context, each tenant's transaction gets the backend that already carries
// its context: no switch.
func TestFreedBackendGoesToAWaiterOfItsOwnContext(t *testing.T) {
	r := newRig(t, nil)
	a := r.connect(info("acme"))
	a.query("SELECT 1")
	switches := func() int64 {
		snap, err := r.e.Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, ts := range snap.Tenants {
			n += ts.Stats.Switches
		}
		return n
	}
	before := switches()
	a.query("BEGIN")
	order := queueWaiters(t, r, a, []struct{ tenant, tag string }{{"acme", "a1"}, {"acme", "a2"}})
	equal(t, "order of service", order, []string{"a1", "a2"})
	if n := switches() - before; n != 0 {
		t.Errorf("%d switches for waiters of the backend's own tenant, want 0", n)
	}
}

func TestTenantMaxClientsRefusesWith53300AndRecovers(t *testing.T) {
	r := newRig(t, func(c *session.Config) { c.TenantMaxClients = 5 })
	withLimits(r, map[string]session.TenantLimits{"acme": {MaxClients: 1}})
	first := r.connect(info("acme"))
	second := attach(t, r.e, info("acme"))
	want := `ErrorResponse FATAL 53300 tenantproxy: too many client connections for tenant "acme": max_clients is 1`
	if got := second.closedWith(); got != want {
		t.Errorf("second client got %q, want %q", got, want)
	}
	equal(t, "another tenant", r.connect(info("globex")).query("SELECT 1"), selectReply("1", 'I'))
	first.close()
	r.waitStats("first client gone", func(s session.Stats) bool { return s.Clients == 1 })
	equal(t, "a new client once there is room", r.connect(info("acme")).query("SELECT 2"), selectReply("2", 'I'))
}

func TestTenantMaxBackendsChangesAtRuntime(t *testing.T) {
	r := newRig(t, func(c *session.Config) { c.PoolSize = 2 })
	withLimits(r, map[string]session.TenantLimits{"acme": {MaxBackends: 1}})
	r.openBackends(2)
	a1, a2 := r.connect(info("acme")), r.connect(info("acme"))
	a1.query("BEGIN")
	a2.send(&pgproto3.Query{String: "SELECT 'a2'"})
	r.waitStats("acme's second client waits at its cap beside an idle backend", func(s session.Stats) bool { return s.Waiting == 1 && s.Idle == 1 })
	if err := r.e.SetLimits(context.Background(), "acme", session.TenantLimits{MaxBackends: 2}); err != nil {
		t.Fatal(err)
	}
	equal(t, "served once the cap is raised", a2.untilReady(), selectReply("'a2'", 'I'))
	a1.query("COMMIT")
	if err := r.e.SetLimits(context.Background(), "nobody", session.TenantLimits{}); err == nil {
		t.Error("SetLimits of an unknown tenant succeeded")
	}
}

func TestTenantStatementTimeoutAppliesUnlessTheClientSetsALowerOne(t *testing.T) {
	r := newRig(t, nil)
	withLimits(r, map[string]session.TenantLimits{"acme": {StatementTimeout: 2 * time.Second}})
	cases := []struct {
		name, own, want string
	}{
		{"no setting of its own", "", `SET "statement_timeout" TO '2000'`},
		{"a lower one", "500ms", `SET "statement_timeout" TO '500ms'`},
		{"a higher one", "10s", `SET "statement_timeout" TO '2000'`},
		{"none at all", "0", `SET "statement_timeout" TO '2000'`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ci := info("acme")
			ci.Params = map[string]string{"application_name": tc.name} // a context switch every time
			if tc.own != "" {
				ci.Params["statement_timeout"] = tc.own
			}
			c := r.connect(ci)
			m := r.fs.Mark()
			c.query("SELECT 1")
			setup := ""
			for _, msg := range r.fs.Since(m) {
				if strings.Contains(msg, "SET ROLE") {
					setup = msg
				}
			}
			if !strings.Contains(setup, tc.want) {
				t.Errorf("setup %q lacks %q", setup, tc.want)
			}
			c.close()
		})
	}
}

func TestPauseHoldsATenantsNewTransactionsUntilResume(t *testing.T) {
	r := newRig(t, func(c *session.Config) { c.PoolSize = 2 })
	ctx := context.Background()
	a, g := r.connect(info("acme")), r.connect(info("globex"))
	a.query("BEGIN")
	paused, err := r.e.Pause(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-paused:
		t.Fatal("PAUSE completed while acme still held a backend")
	case <-time.After(50 * time.Millisecond):
	}
	equal(t, "acme's open transaction goes on", a.query("SELECT 1"), selectReply("1", 'T'))
	a.query("COMMIT")
	select {
	case <-paused:
	case <-time.After(waitLimit):
		t.Fatal("PAUSE did not complete once acme released its backend")
	}
	a.send(&pgproto3.Query{String: "SELECT 'held'"})
	r.waitStats("acme waits while paused", func(s session.Stats) bool { return s.Waiting == 1 })
	equal(t, "another tenant is not paused", g.query("SELECT 2"), selectReply("2", 'I'))
	a.silent(50 * time.Millisecond)
	if err := r.e.Resume(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	equal(t, "acme after RESUME", a.untilReady(), selectReply("'held'", 'I'))
}

func TestDisabledTenantRefusesNewClientsOnly(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	old := r.connect(info("acme"))
	if err := r.e.SetDisabled(ctx, "acme", true); err != nil {
		t.Fatal(err)
	}
	if got := attach(t, r.e, info("acme")).closedWith(); !strings.HasPrefix(got, "ErrorResponse FATAL 57P03 ") {
		t.Errorf("new client of a disabled tenant got %q", got)
	}
	equal(t, "a client connected before DISABLE", old.query("SELECT 1"), selectReply("1", 'I'))
	if err := r.e.SetDisabled(ctx, "acme", false); err != nil {
		t.Fatal(err)
	}
	equal(t, "after ENABLE", r.connect(info("acme")).query("SELECT 2"), selectReply("2", 'I'))
}

func TestKillClientAndReconnect(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	a, g := r.connect(info("acme")), r.connect(info("globex"))
	a.query("SELECT 1")
	found, err := r.e.KillClient(ctx, a.pid)
	if err != nil || !found {
		t.Fatalf("KillClient: %v, %v", found, err)
	}
	if got := a.closedWith(); got != "ErrorResponse FATAL 57P01 terminating connection due to administrator command" {
		t.Errorf("killed client got %q", got)
	}
	if found, _ := r.e.KillClient(ctx, a.pid); found {
		t.Error("KillClient found a client that is gone")
	}
	g.query("SELECT 1") // the one backend now carries globex's context
	dials := r.fs.Dials()
	if err := r.e.Reconnect(ctx, "globex"); err != nil {
		t.Fatal(err)
	}
	closed, err := r.e.WaitClose(ctx, "globex")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(waitLimit):
		t.Fatal("WAIT_CLOSE did not complete")
	}
	equal(t, "globex after RECONNECT", g.query("SELECT 2"), selectReply("2", 'I'))
	if n := r.fs.Dials(); n != dials+1 {
		t.Errorf("%d dials after RECONNECT, want %d", n, dials+1)
	}
}

func TestSnapshotCountsWhatTheTenantsDid(t *testing.T) {
	r := newRig(t, func(c *session.Config) { c.PoolSize = 2 })
	ctx := context.Background()
	a := r.connect(info("acme"))
	a.query("SELECT 1")
	a.query("BEGIN")
	a.query("SELECT 2")
	g := r.connect(info("globex"))
	g.query("SELECT 3")
	g.close()
	var snap session.Snapshot
	deadline := time.Now().Add(waitLimit)
	for {
		var err error
		if snap, err = r.e.Snapshot(ctx); err != nil {
			t.Fatal(err)
		}
		if len(snap.Clients) == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	byName := map[string]session.TenantSnapshot{}
	for _, ts := range snap.Tenants {
		byName[ts.Name] = ts
	}
	acme, globex := byName["acme"], byName["globex"]
	if acme.Clients != 1 || acme.ServersActive != 1 || acme.Stats.QueryCount != 3 || acme.Stats.XactCount != 1 {
		t.Errorf("acme: %+v", acme)
	}
	if globex.Clients != 0 || globex.Stats.QueryCount != 1 || globex.Stats.XactCount != 1 || globex.Stats.BytesSent == 0 || globex.Stats.BytesReceived == 0 {
		t.Errorf("globex (its client closed): %+v", globex)
	}
	if len(snap.Clients) != 1 || snap.Clients[0].ID != a.pid || snap.Clients[0].State != "active" || snap.Clients[0].Link == 0 {
		t.Errorf("clients: %+v", snap.Clients)
	}
	if snap.Pool.Leased != 1 || snap.Pool.Open != len(snap.Servers) {
		t.Errorf("pool %+v with servers %+v", snap.Pool, snap.Servers)
	}
	a.query("COMMIT")
}
