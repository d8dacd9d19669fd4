package session

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/internal/pgerr"
)

// pool is the one shared pool of backends, owned by the loop. Sessions wait in a fair queue: one FIFO per
// tenant, served by weighted round robin across the tenants that wait (a tenant of weight w is served w
// times per round), with a per-tenant cap on backends held at once, so a noisy tenant cannot starve the
// others. A freed backend goes first to a waiter of the tenant whose context it carries, which saves the
// switch, but only while that tenant has turns left in the round: affinity never buys more than the
// tenant's share.
type pool struct {
	e       *Engine
	idle    []*backend       // the backends in beIdle, most recently used last (backend.setState keeps it)
	count   [numBeStates]int // backends per state (backend.setState keeps it; beClosed is not counted)
	dialing int
	queue
	waiting  int
	dialErr  string
	dialFail time.Time
}

// opened is how many backends are connected, in any state but closed.
func (p *pool) opened() int {
	return p.count[beNew] + p.count[beIdle] + p.count[beLeased] + p.count[beCancelWait] + p.count[beReset]
}

// tenantCap is how many backends tenant t may hold in this Engine: its own limit, else the pool's, split
// between the shards of a Group (each holds at least one).
func (p *pool) tenantCap(t *Tenant) int {
	c := t.Limits.MaxBackends
	if c <= 0 {
		c = p.e.cfg.TenantMaxBackends
	}
	if c <= 0 || c >= p.e.cfg.PoolSize {
		return p.e.cfg.PoolSize
	}
	if g := p.e.g; g != nil && t.Limits.MaxBackends > 0 {
		// The Group already split the pool-wide default (NewGroup); a tenant's own limit is split here.
		c /= len(g.shards)
		if c < 1 {
			c = 1
		}
	}
	return c
}

// acquire returns an idle backend for s now, or nil after queueing s (and dialing when there is room).
func (p *pool) acquire(s *Session) *backend {
	t := s.tenant
	if t.active < p.tenantCap(t) && len(t.waiters) == 0 && len(p.idle) > 0 {
		return p.takeIdle(s)
	}
	p.enqueue(s)
	p.maybeDial()
	return nil
}

// takeIdle picks an idle backend, preferring one that already carries the session's context; it stays
// in the idle list until the lease takes it out.
func (p *pool) takeIdle(s *Session) *backend {
	k := len(p.idle) - 1
	for i, scanned := len(p.idle)-1, 0; i >= 0 && scanned < 32; i, scanned = i-1, scanned+1 {
		if b := p.idle[i]; b.ctx == s.tenant.SetupSQL && b.settingsSQL == s.settingsSQL {
			k = i
			break
		}
	}
	return p.idle[k]
}

// put takes back a backend that is new, finished its lease, its cancel wait or its reset: it goes to the
// next waiter, or to the idle list; one that may still be cancelled, or carries state of its last client,
// goes to wait or to the reset path first.
func (p *pool) put(b *backend) {
	if b.c.closed {
		return
	}
	if b.cancels > 0 {
		// A cancel request may still reach this backend: keep it out of use until the server has it.
		b.setState(beCancelWait)
		return
	}
	if b.needReset || b.status != txIdle {
		if b.state != beReset {
			b.setState(beReset)
		}
		p.e.continueReset(b)
		return
	}
	if p.e.cfg.MaxLifetime > 0 && p.e.l.now.Sub(b.created) > p.e.cfg.MaxLifetime {
		b.close(pgerr.CloseMaxLifetime)
		return
	}
	if b.closeNeeded {
		b.close(pgerr.CloseReconnect)
		return
	}
	b.setState(beIdle)
	if s := p.nextWaiter(b); s != nil {
		s.granted(b, true)
	}
}

// dispatch hands idle backends to waiters that may now have them: after a tenant's RESUME or a raised
// limit.
func (p *pool) dispatch() {
	for len(p.idle) > 0 && p.waiting > 0 {
		b := p.idle[len(p.idle)-1]
		s := p.nextWaiter(b)
		if s == nil {
			return
		}
		s.granted(b, true)
	}
	p.maybeDial()
}

// maybeDial opens another backend when sessions wait and the pool has room. After a failed attempt it
// waits a second before trying again.
func (p *pool) maybeDial() {
	e := p.e
	if e.closing || p.dialing >= p.waiting+len(e.starting) {
		if p.waiting == 0 {
			e.setStarved(false)
		}
		return
	}
	if !p.dialFail.IsZero() && e.l.now.Sub(p.dialFail) < time.Second && p.dialing > 0 {
		return
	}
	if !e.reserve() {
		e.setStarved(true)
		if e.g != nil && p.opened() == 0 && p.dialing == 0 {
			e.g.shed(e.shard) // nothing here will ever free up: take a backend from another shard now
		}
		return
	}
	e.setStarved(false)
	p.dialing++
	e.m.Backends.WithLabelValues("dialing").Inc()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		ctx, cancel := context.WithTimeout(e.ctx, e.dialTimeout)
		bc, err := e.cfg.Dialer.Dial(ctx)
		cancel()
		if !e.l.post(func() { p.dialed(bc, err) }) {
			if bc != nil {
				closeFd(bc.Fd)
			}
			e.unreserve()
		}
	}()
}

// dialed receives the result of a dial on the loop.
func (p *pool) dialed(bc *BackendConn, err error) {
	e := p.e
	p.dialing--
	e.m.Backends.WithLabelValues("dialing").Dec()
	if err != nil {
		e.unreserve()
		p.dialErr = err.Error()
		p.dialFail = e.l.now
		e.log.Warn("backend connection failed", zap.Error(err))
		if p.opened() == 0 && p.dialing == 0 {
			// Nothing to wait for: tell every waiting client now rather than at wait_timeout.
			p.failWaiters(pgerrcode.ConnectionFailure, "tenantproxy: cannot connect to the database server: "+p.dialErr)
			e.failStarting(pgerrcode.ConnectionFailure, "tenantproxy: cannot connect to the database server: "+p.dialErr)
		}
		return
	}
	if e.closing {
		closeFd(bc.Fd)
		e.unreserve()
		return
	}
	p.dialFail = time.Time{}
	b := &backend{e: e, pid: bc.PID, secret: bc.Secret, status: txIdle, created: e.l.now, lastUsed: e.l.now, state: beNew}
	b.c = sock{l: e.l, fd: bc.Fd}
	if err := b.c.register(b); err != nil {
		closeFd(bc.Fd)
		e.unreserve()
		e.log.Error("cannot register backend", zap.Error(err))
		return
	}
	p.count[beNew]++
	e.m.Backends.WithLabelValues("idle").Inc()
	if e.serverParams == nil {
		e.setServerParams(bc.Params)
	}
	p.put(b)
	p.maybeDial()
}

// removeIdle takes b out of the idle list; only backend.setState calls it. The search starts at the most
// recently used end, where takeIdle usually finds the backend it leases.
func (p *pool) removeIdle(b *backend) {
	for i := len(p.idle) - 1; i >= 0; i-- {
		if p.idle[i] == b {
			copy(p.idle[i:], p.idle[i+1:])
			p.idle[len(p.idle)-1] = nil
			p.idle = p.idle[:len(p.idle)-1]
			return
		}
	}
	panic(fmt.Sprintf("BUG: backend %d is idle but not in the idle list", b.pid))
}
