package session_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/session"
	"github.com/tenantproxy/tenantproxy/session/pgmock"
)

// newGroup starts a Group of n shards over a fake server; mod adjusts its Config.
func newGroup(t *testing.T, n int, mod func(*session.Config)) (*session.Group, *pgmock.Server) {
	t.Helper()
	fs := newFakeServer()
	cfg := session.Config{
		Mode: "transaction", PoolSize: 2, WaitTimeout: 10 * time.Second, MaxPreparedStatements: 100,
		PoolRole: poolRole, Dialer: fs, Guard: newGuard(), Logger: zap.NewNop(),
	}
	if mod != nil {
		mod(&cfg)
	}
	g, err := session.NewGroup(cfg, n)
	if err != nil {
		t.Fatalf("NewGroup: %v", err)
	}
	g.SetTenants([]session.Tenant{testTenant("acme"), testTenant("globex")})
	g.Start()
	t.Cleanup(func() {
		g.Close()
		closeServer(t, fs)
	})
	return g, fs
}

func waitGroupStats(t *testing.T, g *session.Group, what string, ok func(session.Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for s := g.Stats(); !ok(s); s = g.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("stats never reached %s: %+v", what, s)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestShardsForAuto(t *testing.T) {
	cases := []struct {
		name             string
		pool, tenantCap  int
		asked, wantAtMax int
	}{
		{"a pool of one runs one thread", 1, 0, 0, 1},
		{"a small pool runs one thread", 7, 0, 0, 1},
		{"asked for more threads than backends", 3, 0, 8, 3},
		{"a tenant cap of one keeps one thread", 40, 1, 4, 1},
		{"a tenant cap of two allows two", 40, 2, 4, 2},
		{"asked for two", 40, 0, 2, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := session.ShardsFor(session.Config{PoolSize: c.pool, TenantMaxBackends: c.tenantCap}, c.asked)
			if got < 1 || got > c.wantAtMax || (c.asked > 0 && c.asked <= c.wantAtMax && got != c.asked) {
				t.Errorf("ShardsFor(pool %d, cap %d, asked %d) = %d, want 1..%d", c.pool, c.tenantCap, c.asked, got, c.wantAtMax)
			}
		})
	}
}

func TestGroupShardsNeverHoldMoreThanPoolSize(t *testing.T) {
	g, fs := newGroup(t, 2, func(c *session.Config) { c.PoolSize = 4 })
	if g.Shards() != 2 {
		t.Fatalf("Shards() = %d, want 2", g.Shards())
	}
	// Six clients, three per shard, each holding a transaction open: four get a backend, two wait.
	var cs []*client
	for i := 0; i < 6; i++ {
		cs = append(cs, greeted(t, attach(t, g, info("acme"))))
	}
	for _, c := range cs[:4] {
		equal(t, "BEGIN", c.query("BEGIN"), []string{"CommandComplete BEGIN", "ReadyForQuery T"})
	}
	for _, c := range cs[4:] {
		c.send(&pgproto3.Query{String: "BEGIN"})
	}
	waitGroupStats(t, g, "two clients waiting", func(s session.Stats) bool { return s.Waiting == 2 && s.Leased == 4 })
	for _, c := range cs[4:] {
		c.silent(300 * time.Millisecond) // a tick passes: nobody sheds a backend another client holds
	}
	if now, most := fs.Live(); now != 4 || most != 4 {
		t.Fatalf("fake server saw %d backends now, %d at most; want 4 and 4", now, most)
	}
	// The commits free the backends the waiters need, on whichever shard they are.
	for _, c := range cs[:4] {
		equal(t, "COMMIT", c.query("COMMIT"), []string{"CommandComplete COMMIT", "ReadyForQuery I"})
	}
	for _, c := range cs[4:] {
		equal(t, "waited BEGIN", c.untilReady(), []string{"CommandComplete BEGIN", "ReadyForQuery T"})
		equal(t, "COMMIT", c.query("COMMIT"), []string{"CommandComplete COMMIT", "ReadyForQuery I"})
	}
	if _, most := fs.Live(); most > 4 {
		t.Fatalf("the shards held %d backends at once with pool_size 4", most)
	}
}

func TestGroupStarvedShardGetsAnIdleBackendOfAnother(t *testing.T) {
	// pool_size 2 over two shards. The Group opens one backend at start (shard 0's), as one pool would.
	g, fs := newGroup(t, 2, nil)
	waitGroupStats(t, g, "one idle backend", func(s session.Stats) bool { return s.Backends == 1 && s.Idle == 1 })
	holder := greeted(t, attach(t, g, info("acme")))  // shard 0
	other := greeted(t, attach(t, g, info("globex"))) // shard 1, greeted with the parameters shard 0 learnt
	starved := greeted(t, attach(t, g, info("acme"))) // shard 0 again: both shards have one client
	if now, _ := fs.Live(); now != 1 {
		t.Fatalf("%d backends after greeting clients of both shards, want 1", now)
	}
	equal(t, "BEGIN", holder.query("BEGIN"), []string{"CommandComplete BEGIN", "ReadyForQuery T"})
	equal(t, "other shard's first query", other.query("SELECT 0"), selectReply("0", 'I')) // shard 1 opens one
	waitGroupStats(t, g, "two backends, one idle", func(s session.Stats) bool { return s.Backends == 2 && s.Idle == 1 })

	// Shard 0's only backend is held and the budget is spent, while shard 1's backend idles: shard 1 gives
	// its backend up and shard 0 opens one in its place.
	start := time.Now()
	equal(t, "starved shard's query", starved.query("SELECT 1"), selectReply("1", 'I'))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the starved client waited %v", d)
	}
	// Now shard 1 has no backend; its client is served once shard 0 has one to spare.
	equal(t, "COMMIT", holder.query("COMMIT"), []string{"CommandComplete COMMIT", "ReadyForQuery I"})
	equal(t, "other shard's query", other.query("SELECT 2"), selectReply("2", 'I'))
	if _, most := fs.Live(); most > 2 {
		t.Fatalf("the shards held %d backends at once with pool_size 2", most)
	}
}

func TestGroupCancelReachesTheSessionsShard(t *testing.T) {
	g, fs := newGroup(t, 2, nil)
	a := greeted(t, attach(t, g, info("acme")))
	b := greeted(t, attach(t, g, info("acme")))
	if a.pid%2 == b.pid%2 {
		t.Fatalf("cancel keys %d and %d do not name two shards", a.pid, b.pid)
	}
	for _, c := range []*client{a, b} {
		m := fs.Mark()
		c.send(&pgproto3.Query{String: sleepSQL})
		fs.WaitForMessage(t, m, "Q "+sleepSQL)
		g.Cancel(c.pid, c.secret)
		got := c.untilReady()
		if len(got) == 0 || !strings.Contains(got[0], "57014") {
			t.Fatalf("cancelled client got %v", got)
		}
	}
	if n := len(fs.CancelCalls()); n != 2 {
		t.Fatalf("%d cancel requests reached the server, want 2", n)
	}
}

func TestGroupDrainEndsEveryShardsClients(t *testing.T) {
	g, _ := newGroup(t, 2, nil)
	a := greeted(t, attach(t, g, info("acme")))
	b := greeted(t, attach(t, g, info("globex")))
	if g.Clients() != 2 {
		t.Fatalf("Clients() = %d, want 2", g.Clients())
	}
	done := g.Drain(time.Second)
	for _, c := range []*client{a, b} {
		if got := c.closedWith(); !strings.Contains(got, "57P01") {
			t.Errorf("drained client got %s", got)
		}
	}
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("Drain did not finish")
	}
}

func TestGroupFailingDialsAreNotRetriedInATightLoop(t *testing.T) {
	g, fs := newGroup(t, 2, nil)
	holder := greeted(t, attach(t, g, info("acme")))  // shard 0
	other := greeted(t, attach(t, g, info("globex"))) // shard 1
	waiter := greeted(t, attach(t, g, info("acme")))  // shard 0
	equal(t, "other shard's first query", other.query("SELECT 0"), selectReply("0", 'I'))
	waitGroupStats(t, g, "two idle backends", func(s session.Stats) bool { return s.Backends == 2 && s.Idle == 2 })
	equal(t, "BEGIN", holder.query("BEGIN"), []string{"CommandComplete BEGIN", "ReadyForQuery T"})

	// The server stops accepting connections. Shard 0's waiter makes shard 1 give up its idle backend, and
	// shard 0's attempts to open one in its place fail: they are retried at the pool's pace, not at once.
	fs.SetDialError(errors.New("connection refused"))
	before := fs.Dials()
	waiter.send(&pgproto3.Query{String: "BEGIN"})
	time.Sleep(time.Second)
	if n := fs.Dials() - before; n > 10 {
		t.Fatalf("%d connection attempts in a second to a server that refuses them", n)
	}
	equal(t, "COMMIT", holder.query("COMMIT"), []string{"CommandComplete COMMIT", "ReadyForQuery I"})
	equal(t, "waited BEGIN", waiter.untilReady(), []string{"CommandComplete BEGIN", "ReadyForQuery T"})
}
