package session

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgerrcode"

	"github.com/tenantproxy/tenantproxy/internal/pgerr"
)

// What the admin console and the status page see of the relay, and the levers they pull. Everything here
// runs on the loop (posted), so the hot path shares nothing with it; a Group merges its shards' answers.

// Snapshot is the relay's state at one moment.
type Snapshot struct {
	Time    time.Time
	Pool    PoolSnapshot
	Tenants []TenantSnapshot // by name
	Clients []ClientSnapshot // by id
	Servers []ServerSnapshot // by pid
}

// PoolSnapshot is the shared pool as a whole.
type PoolSnapshot struct {
	Size                                int // pool_size
	Open, Idle, Leased, Dialing, Resets int // backends by state (Open: all connected)
	Clients, Waiting                    int
	Paused                              bool // PAUSE without a tenant is in force
}

// TenantSnapshot is one tenant: pgbouncer's "database" in SHOW POOLS, STATS and DATABASES.
type TenantSnapshot struct {
	Name   string
	Limits TenantLimits
	// Clients are attached; Waiting wait for a backend; Active hold one or are idle between transactions.
	Clients, Active, Waiting int
	// ServersActive are leased to the tenant's clients; ServersIdle are idle and carry its context.
	ServersActive, ServersIdle int
	// MaxWait is how long the tenant's oldest waiting client has waited.
	MaxWait                     time.Duration
	Paused, Disabled, Suspended bool
	// Stats are the totals since the tenant was first seen by the relay, closed sessions and live ones.
	Stats TenantStats
}

// ClientSnapshot is one client connection (SHOW CLIENTS).
type ClientSnapshot struct {
	ID              uint32 // the pid of its cancel key
	Tenant, User    string
	Addr            string
	TLS             bool
	State           string // "active", "waiting" or "idle"
	ConnectTime     time.Time
	RequestTime     time.Time // last bytes from the client
	Wait            time.Duration
	ApplicationName string
	Prepared        int    // protocol-level prepared statements it holds
	Link            uint32 // the pid of the backend it holds, or 0
	Pin             string // what keeps its backend with it, if anything
}

// ServerSnapshot is one backend connection (SHOW SERVERS).
type ServerSnapshot struct {
	PID         uint32
	State       string // beState's name, e.g. "idle", "leased", "reset"
	Tenant      string // whose context it carries ("" for none)
	ConnectTime time.Time
	RequestTime time.Time // when it was last leased or released
	CloseNeeded bool
	Link        uint32 // the id of the client holding it, or 0
	Prepared    int    // server-side prepared statements on it
	ResetStep   string // in state "reset", the step under way
}

// Error is an admin request the relay refuses, with its SQLSTATE.
type Error struct {
	Code, Message string
}

func (e *Error) Error() string { return e.Message }

// onLoop runs f on the loop and waits for it, or for ctx.
func (e *Engine) onLoop(ctx context.Context, f func()) error {
	done := make(chan struct{})
	if !e.l.post(func() { f(); close(done) }) {
		return ErrClosed
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Snapshot returns the relay's state, taken on the loop.
func (e *Engine) Snapshot(ctx context.Context) (Snapshot, error) {
	var snap Snapshot
	err := e.onLoop(ctx, func() { snap = e.snapshot() })
	return snap, err
}

func (e *Engine) snapshot() Snapshot {
	now := e.l.now
	p := &e.pool
	snap := Snapshot{Time: now, Pool: PoolSnapshot{
		Size: e.cfg.PoolSize, Open: p.opened(), Idle: p.count[beIdle], Leased: p.count[beLeased],
		Dialing: p.dialing, Resets: p.count[beReset] + p.count[beCancelWait], Clients: len(e.sessions), Waiting: p.waiting,
		Paused: e.pausedAll,
	}}
	byName := make(map[string]*TenantSnapshot, len(e.tenants))
	names := make([]string, 0, len(e.tenants))
	for name := range e.tenants {
		names = append(names, name)
	}
	sort.Strings(names)
	snap.Tenants = make([]TenantSnapshot, len(names))
	for i, name := range names {
		t := e.tenants[name]
		snap.Tenants[i] = TenantSnapshot{Name: name, Limits: t.Limits, Clients: t.clients, ServersActive: t.active, Waiting: len(t.waiters),
			Paused: t.paused, Disabled: t.disabled, Suspended: t.Suspended, Stats: t.stats}
		if len(t.waiters) > 0 {
			snap.Tenants[i].MaxWait = now.Sub(t.waiters[0].waitSince)
		}
		byName[name] = &snap.Tenants[i]
	}
	for _, s := range e.sessions {
		if ts := byName[s.tenant.Name]; ts != nil && s.tenant.shared != nil {
			ts.Stats.add(s.liveStats())
			if s.state != stWaiting {
				ts.Active++
			}
		}
		c := ClientSnapshot{ID: s.pid, Tenant: s.tenant.Name, User: s.info.User, Addr: s.info.Addr, TLS: s.info.TLS,
			State: "idle", ConnectTime: s.info.Opened, RequestTime: s.lastRequest, Prepared: len(s.stmts), Pin: s.pin}
		if v := s.settings["application_name"]; len(v) > 0 {
			c.ApplicationName = v[0]
		}
		switch {
		case s.state == stWaiting:
			c.State, c.Wait = "waiting", now.Sub(s.waitSince)
		case s.be != nil:
			c.State, c.Link = "active", s.be.pid
		}
		snap.Clients = append(snap.Clients, c)
	}
	sort.Slice(snap.Clients, func(i, j int) bool { return snap.Clients[i].ID < snap.Clients[j].ID })
	e.eachBackend(func(b *backend) {
		sv := ServerSnapshot{PID: b.pid, State: b.state.String(), ConnectTime: b.created, RequestTime: b.lastUsed,
			CloseNeeded: b.closeNeeded, Prepared: len(b.prepared)}
		if b.ctxTenant != nil && b.ctx == b.ctxTenant.SetupSQL {
			sv.Tenant = b.ctxTenant.Name
			if ts := byName[sv.Tenant]; ts != nil && b.state == beIdle {
				ts.ServersIdle++
			}
		}
		if b.client != nil {
			sv.Link = b.client.pid
		}
		if b.state == beReset {
			sv.ResetStep = b.resetStep.String()
		}
		snap.Servers = append(snap.Servers, sv)
	})
	sort.Slice(snap.Servers, func(i, j int) bool { return snap.Servers[i].PID < snap.Servers[j].PID })
	return snap
}

// eachBackend calls f for every connected backend of the Engine.
func (e *Engine) eachBackend(f func(b *backend)) {
	for _, h := range e.l.handlers {
		if b, ok := h.(*backend); ok && b.state != beClosed {
			f(b)
		}
	}
}

// tenantNamed finds a tenant for an admin command; "" names none and is an error here.
func (e *Engine) tenantNamed(name string) (*Tenant, error) {
	if t := e.tenants[name]; t != nil {
		return t, nil
	}
	return nil, &Error{Code: pgerrcode.InvalidCatalogName, Message: fmt.Sprintf("no such tenant: %s", name)}
}

// eachTenant calls f for the tenant named, or for every tenant when name is "".
func (e *Engine) eachTenant(name string, f func(t *Tenant)) error {
	if name == "" {
		for _, t := range e.tenants {
			f(t)
		}
		return nil
	}
	t, err := e.tenantNamed(name)
	if err == nil {
		f(t)
	}
	return err
}

// Pause stops new leases for the tenant named (every tenant for ""): its clients' next transactions wait
// until Resume; transactions already running finish. The channel closes once the tenant holds no backend.
func (e *Engine) Pause(ctx context.Context, tenant string) (<-chan struct{}, error) {
	var err error
	done := make(chan struct{})
	if lerr := e.onLoop(ctx, func() {
		if err = e.eachTenant(tenant, func(t *Tenant) { t.paused = true }); err != nil {
			return
		}
		if tenant == "" {
			e.pausedAll = true
		}
		e.waits = append(e.waits, waitFor{done: done, until: func() bool { return e.heldBy(tenant) == 0 }})
		e.checkWaits()
	}); lerr != nil {
		return nil, lerr
	}
	return done, err
}

// Resume lets a paused tenant (every tenant for "") lease backends again.
func (e *Engine) Resume(ctx context.Context, tenant string) error {
	var err error
	if lerr := e.onLoop(ctx, func() {
		err = e.eachTenant(tenant, func(t *Tenant) { t.paused = false })
		if tenant == "" {
			e.pausedAll = false
		}
		e.pool.dispatch()
	}); lerr != nil {
		return lerr
	}
	return err
}

// SetDisabled refuses (true) or accepts again (false) new clients of a tenant: admin DISABLE and ENABLE.
func (e *Engine) SetDisabled(ctx context.Context, tenant string, disabled bool) error {
	var err error
	if lerr := e.onLoop(ctx, func() {
		var t *Tenant
		if t, err = e.tenantNamed(tenant); err == nil {
			t.disabled = disabled
		}
	}); lerr != nil {
		return lerr
	}
	return err
}

// SetLimits changes a tenant's limits now; they take effect at its next lease or connection.
func (e *Engine) SetLimits(ctx context.Context, tenant string, l TenantLimits) error {
	var err error
	if lerr := e.onLoop(ctx, func() {
		var t *Tenant
		if t, err = e.tenantNamed(tenant); err == nil {
			t.Limits = l
			e.limitsChanged(t)
		}
	}); lerr != nil {
		return lerr
	}
	return err
}

// adminKill is the FATAL error of a client closed by an admin command, as PostgreSQL words
// pg_terminate_backend's.
const adminKill = "terminating connection due to administrator command"

// Kill closes every client of the tenant named (every client for "") and the backends carrying its
// context: idle ones at once, the others once their reset is done.
func (e *Engine) Kill(ctx context.Context, tenant string) error {
	var err error
	if lerr := e.onLoop(ctx, func() {
		if tenant != "" {
			if _, err = e.tenantNamed(tenant); err != nil {
				return
			}
		}
		for _, s := range e.sessionsOf(tenant) {
			s.fatal(pgerrcode.AdminShutdown, adminKill)
		}
		e.markReconnect(tenant)
	}); lerr != nil {
		return lerr
	}
	return err
}

// KillClient closes one client by its id (the pid of its cancel key). It reports whether this Engine had
// the client.
func (e *Engine) KillClient(ctx context.Context, id uint32) (bool, error) {
	found := false
	err := e.onLoop(ctx, func() {
		if s := e.sessions[id]; s != nil {
			found = true
			s.fatal(pgerrcode.AdminShutdown, adminKill)
		}
	})
	return found, err
}

// Reconnect closes the backends carrying the tenant's context (every backend for ""): idle ones at once,
// leased ones when their client releases them. New backends are dialed as needed.
func (e *Engine) Reconnect(ctx context.Context, tenant string) error {
	var err error
	if lerr := e.onLoop(ctx, func() {
		if tenant != "" {
			if _, err = e.tenantNamed(tenant); err != nil {
				return
			}
		}
		e.markReconnect(tenant)
	}); lerr != nil {
		return lerr
	}
	return err
}

// WaitClose returns a channel that closes once no backend marked by Reconnect or Kill for the tenant
// (every tenant for "") is left.
func (e *Engine) WaitClose(ctx context.Context, tenant string) (<-chan struct{}, error) {
	done := make(chan struct{})
	err := e.onLoop(ctx, func() {
		e.waits = append(e.waits, waitFor{done: done, until: func() bool {
			left := 0
			e.eachBackend(func(b *backend) {
				if b.closeNeeded && (tenant == "" || (b.ctxTenant != nil && b.ctxTenant.Name == tenant)) {
					left++
				}
			})
			return left == 0
		}})
		e.checkWaits()
	})
	if err != nil {
		return nil, err
	}
	return done, nil
}

// sessionsOf lists the sessions of the tenant named (all for "").
func (e *Engine) sessionsOf(tenant string) []*Session {
	var out []*Session
	for _, s := range e.sessions {
		if tenant == "" || s.tenant.Name == tenant {
			out = append(out, s)
		}
	}
	return out
}

// markReconnect marks the backends carrying the tenant's context (all for "") to close instead of
// serving again, and closes the idle ones now.
func (e *Engine) markReconnect(tenant string) {
	var idle []*backend
	e.eachBackend(func(b *backend) {
		if tenant != "" && (b.ctxTenant == nil || b.ctxTenant.Name != tenant) {
			return
		}
		b.closeNeeded = true
		if b.state == beIdle {
			idle = append(idle, b)
		}
	})
	for _, b := range idle {
		b.close(pgerr.CloseReconnect)
	}
	e.pool.maybeDial()
	e.checkWaits()
}

// heldBy counts the backends leased to the tenant named (all for "").
func (e *Engine) heldBy(tenant string) int {
	if tenant == "" {
		return e.leased
	}
	if t := e.tenants[tenant]; t != nil {
		return t.active
	}
	return 0
}

// waitFor is an admin command waiting for a condition of the relay (PAUSE, WAIT_CLOSE).
type waitFor struct {
	done  chan struct{}
	until func() bool
}

// checkWaits closes the waits whose condition holds. It runs when backends are released or closed and on
// every tick; with no admin command waiting it costs a length check.
func (e *Engine) checkWaits() {
	if len(e.waits) == 0 {
		return
	}
	kept := e.waits[:0]
	for _, w := range e.waits {
		if w.until() {
			close(w.done)
		} else {
			kept = append(kept, w)
		}
	}
	clear(e.waits[len(kept):])
	e.waits = kept
}

// Snapshot merges the shards' snapshots.
func (g *Group) Snapshot(ctx context.Context) (Snapshot, error) {
	var all Snapshot
	byName := map[string]int{}
	for i, e := range g.shards {
		s, err := e.Snapshot(ctx)
		if err != nil {
			return Snapshot{}, err
		}
		if i == 0 {
			all.Time, all.Pool.Size, all.Pool.Paused = s.Time, int(g.size), s.Pool.Paused
		}
		p := &all.Pool
		p.Open += s.Pool.Open
		p.Idle += s.Pool.Idle
		p.Leased += s.Pool.Leased
		p.Dialing += s.Pool.Dialing
		p.Resets += s.Pool.Resets
		p.Clients += s.Pool.Clients
		p.Waiting += s.Pool.Waiting
		for _, t := range s.Tenants {
			k, ok := byName[t.Name]
			if !ok {
				byName[t.Name] = len(all.Tenants)
				all.Tenants = append(all.Tenants, t)
				continue
			}
			a := &all.Tenants[k]
			a.Clients += t.Clients
			a.Active += t.Active
			a.Waiting += t.Waiting
			a.ServersActive += t.ServersActive
			a.ServersIdle += t.ServersIdle
			a.MaxWait = max(a.MaxWait, t.MaxWait)
			a.Stats.add(t.Stats)
		}
		all.Clients = append(all.Clients, s.Clients...)
		all.Servers = append(all.Servers, s.Servers...)
	}
	sort.Slice(all.Tenants, func(i, j int) bool { return all.Tenants[i].Name < all.Tenants[j].Name })
	sort.Slice(all.Clients, func(i, j int) bool { return all.Clients[i].ID < all.Clients[j].ID })
	sort.Slice(all.Servers, func(i, j int) bool { return all.Servers[i].PID < all.Servers[j].PID })
	return all, nil
}

// each runs f on every shard and returns the first error.
func (g *Group) each(f func(e *Engine) error) error {
	var first error
	for _, e := range g.shards {
		if err := f(e); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// whenAll closes the returned channel once every channel of chans has closed.
func whenAll(chans []<-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		for _, c := range chans {
			<-c
		}
		close(done)
	}()
	return done
}

// Pause pauses the tenant in every shard; the channel closes once no shard holds a backend for it.
func (g *Group) Pause(ctx context.Context, tenant string) (<-chan struct{}, error) {
	var chans []<-chan struct{}
	err := g.each(func(e *Engine) error {
		c, err := e.Pause(ctx, tenant)
		if c != nil {
			chans = append(chans, c)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return whenAll(chans), nil
}

// Resume resumes the tenant in every shard.
func (g *Group) Resume(ctx context.Context, tenant string) error {
	return g.each(func(e *Engine) error { return e.Resume(ctx, tenant) })
}

// SetDisabled disables or enables the tenant in every shard.
func (g *Group) SetDisabled(ctx context.Context, tenant string, disabled bool) error {
	return g.each(func(e *Engine) error { return e.SetDisabled(ctx, tenant, disabled) })
}

// SetLimits changes the tenant's limits in every shard.
func (g *Group) SetLimits(ctx context.Context, tenant string, l TenantLimits) error {
	return g.each(func(e *Engine) error { return e.SetLimits(ctx, tenant, l) })
}

// Kill closes the tenant's clients and backends in every shard.
func (g *Group) Kill(ctx context.Context, tenant string) error {
	return g.each(func(e *Engine) error { return e.Kill(ctx, tenant) })
}

// KillClient closes the client with this id, wherever it is.
func (g *Group) KillClient(ctx context.Context, id uint32) (bool, error) {
	found := false
	err := g.each(func(e *Engine) error {
		ok, err := e.KillClient(ctx, id)
		found = found || ok
		return err
	})
	return found, err
}

// Reconnect marks the tenant's backends for reconnection in every shard.
func (g *Group) Reconnect(ctx context.Context, tenant string) error {
	return g.each(func(e *Engine) error { return e.Reconnect(ctx, tenant) })
}

// WaitClose waits for the marked backends of every shard.
func (g *Group) WaitClose(ctx context.Context, tenant string) (<-chan struct{}, error) {
	var chans []<-chan struct{}
	err := g.each(func(e *Engine) error {
		c, err := e.WaitClose(ctx, tenant)
		if c != nil {
			chans = append(chans, c)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return whenAll(chans), nil
}
