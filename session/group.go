package session

import (
	"maps"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Group runs the relay on several OS threads. Each thread runs one Engine (a shard) with its own epoll
// loop, clients and backends, so nothing on the hot path is shared or locked; what the shards share is
// the pool's budget: together they never hold more than pool_size backends.
//
// Why: one relay thread is a serialization point and, like pgbouncer, tops out at one core. On the
// referee's 2-core machine, which also runs PostgreSQL and pgbench, a second thread did not pay: it cost
// about 3 us more CPU per transaction (each loop batches fewer events per wake-up) for the same or lower
// throughput (bench/README.md), so "auto" gives one thread per two cores. Machines with more cores to spare
// for the proxy are where more threads help; that is not measured here.
//
// A client is attached to the shard with the fewest clients and stays there; a cancel key's pid says
// which shard owns the session. A shard whose sessions wait while the budget is spent asks the others to
// close an idle backend (at once when it has no backend at all, else after a tick of waiting), then opens
// its own in the freed room. A per-tenant cap ([pool] tenant_max_backends) is split evenly between the
// shards (so the tenant never holds more than the cap in all), which is why a Group never has more shards
// than that cap.
type Group struct {
	shards []*Engine
	size   int64                              // pool_size
	used   atomic.Int64                       // backends open or being dialed, in all shards
	stats  [][len(backendStates)]atomic.Int64 // per shard, the backends in each state

	mu     sync.Mutex
	params map[string]string        // the server's parameters, as the first backend of any shard reported them
	shared map[string]*tenantShared // per tenant, the counts its limits apply to, by name
}

// backendStates are the state labels of the backend gauge.
var backendStates = [...]string{"idle", "active", "dialing"}

// ShardsFor is how many shards NewGroup uses. For n <= 0 ("auto"): one per two cores the Go runtime
// uses, at most 4, and only as many as leave each shard 4 backends of the pool. Never more than the pool
// size, nor than a tenant's cap (each shard must hold at least 1 of it).
func ShardsFor(cfg Config, n int) int {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0) / 2
		if n > 4 {
			n = 4
		}
		if m := cfg.PoolSize / 4; n > m {
			n = m
		}
	}
	if c := cfg.TenantMaxBackends; c > 0 && c < cfg.PoolSize && n > c {
		n = c
	}
	if n > cfg.PoolSize {
		n = cfg.PoolSize
	}
	if n < 1 {
		n = 1
	}
	return n
}

// NewGroup builds a Group of ShardsFor(cfg, n) shards; Start runs them.
func NewGroup(cfg Config, n int) (*Group, error) {
	n = ShardsFor(cfg, n)
	g := &Group{size: int64(cfg.PoolSize), stats: make([][len(backendStates)]atomic.Int64, n)}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	shardCfg := cfg
	if c := cfg.TenantMaxBackends; c > 0 && c < cfg.PoolSize {
		shardCfg.TenantMaxBackends = c / n
	}
	for i := 0; i < n; i++ {
		e, err := New(shardCfg)
		if err != nil {
			for _, s := range g.shards {
				s.Close()
			}
			return nil, err
		}
		e.g, e.shard = g, i
		g.shards = append(g.shards, e)
	}
	return g, nil
}

// Shards reports how many relay threads the Group runs.
func (g *Group) Shards() int { return len(g.shards) }

// SetDialTimeout bounds each backend connection attempt.
func (g *Group) SetDialTimeout(d time.Duration) {
	for _, e := range g.shards {
		e.SetDialTimeout(d)
	}
}

// Start runs every shard.
func (g *Group) Start() {
	for _, e := range g.shards {
		e.Start()
	}
}

// SetTenants replaces the tenant catalog of every shard. A tenant's counts that its limits apply to are
// shared by the shards.
func (g *Group) SetTenants(ts []Tenant) {
	g.mu.Lock()
	if g.shared == nil {
		g.shared = make(map[string]*tenantShared, len(ts))
	}
	shared := make(map[string]*tenantShared, len(ts))
	for _, t := range ts {
		sh := g.shared[t.Name]
		if sh == nil {
			sh = new(tenantShared)
		}
		shared[t.Name] = sh
	}
	g.shared = shared
	g.mu.Unlock()
	for _, e := range g.shards {
		e.setTenants(ts, shared)
	}
}

// Attach hands an authenticated client to the shard with the fewest clients.
func (g *Group) Attach(fd int, info ClientInfo) error {
	best := g.shards[0]
	for _, e := range g.shards[1:] {
		if e.Clients() < best.Clients() {
			best = e
		}
	}
	return best.Attach(fd, info)
}

// Cancel routes a CancelRequest to the shard that issued the key.
func (g *Group) Cancel(pid, secret uint32) {
	g.shards[pid%uint32(len(g.shards))].Cancel(pid, secret)
}

// Clients reports how many clients are attached to all shards; safe from any goroutine.
func (g *Group) Clients() int {
	n := 0
	for _, e := range g.shards {
		n += e.Clients()
	}
	return n
}

// Drain drains every shard; the channel closes when no client is left in any.
func (g *Group) Drain(timeout time.Duration) <-chan struct{} {
	chans := make([]<-chan struct{}, len(g.shards))
	for i, e := range g.shards {
		chans[i] = e.Drain(timeout)
	}
	return whenAll(chans)
}

// Close closes every shard; safe to call more than once.
func (g *Group) Close() {
	for _, e := range g.shards {
		e.Close()
	}
}

// Stats sums the shards' snapshots.
func (g *Group) Stats() Stats {
	var t Stats
	for _, e := range g.shards {
		s := e.Stats()
		t.Clients += s.Clients
		t.Waiting += s.Waiting
		t.Backends += s.Backends
		t.Idle += s.Idle
		t.Leased += s.Leased
		t.Dialing += s.Dialing
	}
	return t
}

// shed asks every other shard to close an idle backend it does not need, then to let the starved shard
// dial in the freed room (unreserve does that).
func (g *Group) shed(from int) {
	for i, o := range g.shards {
		if i != from {
			o.l.post(func() { o.pool.shedIdle() })
		}
	}
}

// reserve takes room for one more backend: in the Group's budget for a shard, in the pool for a
// standalone Engine. Called on the loop.
func (e *Engine) reserve() bool {
	if e.g == nil {
		return e.pool.opened()+e.pool.dialing < e.cfg.PoolSize
	}
	for {
		n := e.g.used.Load()
		if n >= e.g.size {
			return false
		}
		if e.g.used.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// unreserve gives back the room of a backend closed or never opened, and wakes the other shards that
// wait for room (this shard's own callers dial again themselves when they should). Safe from any
// goroutine.
func (e *Engine) unreserve() {
	if e.g == nil {
		return
	}
	e.g.used.Add(-1)
	for i, o := range e.g.shards {
		if i != e.shard && o.starved.Load() {
			o.l.post(func() { o.pool.maybeDial() })
		}
	}
}

// setStarved records whether the shard's sessions wait for room in the Group's budget. A standalone
// Engine has no budget to starve on; a shard writes the flag only when it changes, since the other
// shards read it.
func (e *Engine) setStarved(v bool) {
	if e.g != nil && e.starved.Load() != v {
		e.starved.Store(v)
	}
}

// publishBackends sets the backend gauges: for a shard, the sum over the Group. Called on the loop.
func (e *Engine) publishBackends() {
	idle := len(e.pool.idle)
	v := [len(backendStates)]int64{int64(idle), int64(e.pool.opened() - idle), int64(e.pool.dialing)}
	if g := e.g; g != nil {
		for k := range v {
			g.stats[e.shard][k].Store(v[k])
			v[k] = 0
			for i := range g.stats {
				v[k] += g.stats[i][k].Load()
			}
		}
	}
	for k, state := range backendStates {
		e.m.Backends.WithLabelValues(state).Set(float64(v[k]))
	}
}

// serverParams returns the server's parameters once a shard has learnt them, else nil.
func (g *Group) serverParams() map[string]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.params
}

// shareServerParams records the parameters a shard learnt from its first backend and hands them to the
// shards that do not know them yet, so that a shard greets its clients without opening a backend of its
// own: the Group opens one backend at start, as a single pool does.
func (g *Group) shareServerParams(from int, p map[string]string) {
	g.mu.Lock()
	if g.params != nil {
		g.mu.Unlock()
		return
	}
	g.params = maps.Clone(p)
	g.mu.Unlock()
	for i, o := range g.shards {
		if i != from {
			o.l.post(func() {
				if o.serverParams == nil {
					o.setServerParams(g.params)
				}
			})
		}
	}
}
