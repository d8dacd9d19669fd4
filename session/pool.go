package session

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// pool is the one shared pool of backends, owned by the loop. Sessions wait in a fair queue: one FIFO per
// tenant, served round-robin across tenants, with a per-tenant cap on backends held at once, so a noisy
// tenant cannot starve the others.
type pool struct {
	e        *Engine
	idle     []*backend // most recently used last
	open     int        // backends connected (idle, leased or resetting)
	dialing  int
	ring     []*Tenant // tenants with waiters
	rr       int
	waiting  int
	dialErr  string
	dialFail time.Time
}

// tenantCap is how many backends one tenant may hold.
func (p *pool) tenantCap() int {
	if c := p.e.cfg.TenantMaxBackends; c > 0 && c < p.e.cfg.PoolSize {
		return c
	}
	return p.e.cfg.PoolSize
}

// acquire returns an idle backend for s now, or nil after queueing s (and dialing when there is room).
func (p *pool) acquire(s *Session) *backend {
	t := s.tenant
	if t.active < p.tenantCap() && len(t.waiters) == 0 && len(p.idle) > 0 {
		return p.takeIdle(s)
	}
	t.waiters = append(t.waiters, s)
	p.waiting++
	if !t.inRing {
		t.inRing = true
		p.ring = append(p.ring, t)
	}
	p.maybeDial()
	return nil
}

// takeIdle picks an idle backend, preferring one that already carries the session's context.
func (p *pool) takeIdle(s *Session) *backend {
	k := len(p.idle) - 1
	for i, scanned := len(p.idle)-1, 0; i >= 0 && scanned < 32; i, scanned = i-1, scanned+1 {
		if b := p.idle[i]; b.ctx == s.tenant.SetupSQL && b.settingsSQL == s.settingsSQL {
			k = i
			break
		}
	}
	b := p.idle[k]
	copy(p.idle[k:], p.idle[k+1:])
	p.idle[len(p.idle)-1] = nil
	p.idle = p.idle[:len(p.idle)-1]
	return b
}

// put returns a backend that finished its lease: to the next waiter, or to the idle list.
func (p *pool) put(b *backend) {
	if b.c.closed {
		return
	}
	if b.cancels > 0 {
		// A cancel request may still reach this backend: keep it out of use until the server has it.
		b.heldBack = true
		b.state = beReset
		return
	}
	if b.needReset || b.status != txIdle {
		b.state = beReset
		p.e.continueReset(b)
		return
	}
	now := p.e.l.now
	if p.e.cfg.MaxLifetime > 0 && now.Sub(b.created) > p.e.cfg.MaxLifetime {
		b.close("max_lifetime")
		return
	}
	b.state = beIdle
	b.lastUsed = now
	if s := p.nextWaiter(); s != nil {
		s.granted(b, true)
		return
	}
	p.idle = append(p.idle, b)
}

// nextWaiter takes the next waiting session, round-robin across tenants under their cap.
func (p *pool) nextWaiter() *Session {
	if p.waiting == 0 {
		return nil
	}
	capN := p.tenantCap()
	for i := 0; i < len(p.ring); i++ {
		idx := (p.rr + i) % len(p.ring)
		t := p.ring[idx]
		if t.active >= capN || len(t.waiters) == 0 {
			continue
		}
		s := t.waiters[0]
		copy(t.waiters, t.waiters[1:])
		t.waiters[len(t.waiters)-1] = nil
		t.waiters = t.waiters[:len(t.waiters)-1]
		p.waiting--
		if len(t.waiters) == 0 {
			p.dropFromRing(idx)
			p.rr = idx
		} else {
			p.rr = idx + 1
		}
		if len(p.ring) > 0 {
			p.rr %= len(p.ring)
		} else {
			p.rr = 0
		}
		return s
	}
	return nil
}

func (p *pool) dropFromRing(idx int) {
	t := p.ring[idx]
	t.inRing = false
	copy(p.ring[idx:], p.ring[idx+1:])
	p.ring[len(p.ring)-1] = nil
	p.ring = p.ring[:len(p.ring)-1]
}

// unqueue removes a waiting session that went away.
func (p *pool) unqueue(s *Session) {
	t := s.tenant
	for i, w := range t.waiters {
		if w == s {
			copy(t.waiters[i:], t.waiters[i+1:])
			t.waiters[len(t.waiters)-1] = nil
			t.waiters = t.waiters[:len(t.waiters)-1]
			p.waiting--
			break
		}
	}
	if len(t.waiters) == 0 && t.inRing {
		for i, r := range p.ring {
			if r == t {
				p.dropFromRing(i)
				break
			}
		}
		if p.rr >= len(p.ring) {
			p.rr = 0
		}
	}
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
		if e.g != nil && p.open == 0 && p.dialing == 0 {
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
		if p.open == 0 && p.dialing == 0 {
			// Nothing to wait for: tell every waiting client now rather than at wait_timeout.
			p.failWaiters("08006", "tenantproxy: cannot connect to the database server: "+p.dialErr)
			e.failStarting("08006", "tenantproxy: cannot connect to the database server: "+p.dialErr)
		}
		return
	}
	if e.closing {
		closeFd(bc.Fd)
		e.unreserve()
		return
	}
	p.dialFail = time.Time{}
	b := &backend{e: e, pid: bc.PID, secret: bc.Secret, status: txIdle, created: e.l.now, lastUsed: e.l.now}
	b.c = sock{l: e.l, fd: bc.Fd}
	if err := b.c.register(b); err != nil {
		closeFd(bc.Fd)
		e.unreserve()
		e.log.Error("cannot register backend", zap.Error(err))
		return
	}
	p.open++
	e.m.Backends.WithLabelValues("idle").Inc()
	if e.serverParams == nil {
		e.setServerParams(bc.Params)
	}
	p.put(b)
	p.maybeDial()
}

// failWaiters ends every queued session with an error.
func (p *pool) failWaiters(code, msg string) {
	for len(p.ring) > 0 {
		t := p.ring[0]
		for len(t.waiters) > 0 {
			t.waiters[0].fatal(code, msg) // fatal unqueues
		}
	}
}

// tick expires waits and idle backends.
func (p *pool) tick() {
	e := p.e
	now := e.l.now
	if p.waiting > 0 && e.cfg.WaitTimeout > 0 {
		var expired []*Session
		for _, t := range p.ring {
			for _, s := range t.waiters {
				if now.Sub(s.waitSince) > e.cfg.WaitTimeout {
					expired = append(expired, s)
				}
			}
		}
		for _, s := range expired {
			msg := fmt.Sprintf("tenantproxy: no server connection became free within [pool] wait_timeout (%s); [backend] pool_size is %d",
				e.cfg.WaitTimeout, e.cfg.PoolSize)
			if p.dialErr != "" && p.open < e.cfg.PoolSize {
				msg += "; the last connection attempt failed: " + p.dialErr
			}
			s.fatal("53300", msg)
		}
		p.maybeDial()
	}
	var expired []*backend
	keep := p.idle[:0]
	for _, b := range p.idle {
		if (e.cfg.IdleTimeout > 0 && now.Sub(b.lastUsed) > e.cfg.IdleTimeout) ||
			(e.cfg.MaxLifetime > 0 && now.Sub(b.created) > e.cfg.MaxLifetime) {
			expired = append(expired, b)
			continue
		}
		keep = append(keep, b)
	}
	for i := len(keep); i < len(p.idle); i++ {
		p.idle[i] = nil
	}
	p.idle = keep
	for _, b := range expired {
		b.close("idle_timeout or max_lifetime")
	}
}

// removeIdle takes b out of the idle list if it is there.
func (p *pool) removeIdle(b *backend) {
	for i, x := range p.idle {
		if x == b {
			copy(p.idle[i:], p.idle[i+1:])
			p.idle[len(p.idle)-1] = nil
			p.idle = p.idle[:len(p.idle)-1]
			return
		}
	}
}

// shedIdle closes the least recently used idle backend, when this shard has one and nobody waits for it,
// so that another shard of the Group can open one within the shared budget.
func (p *pool) shedIdle() {
	if p.waiting > 0 || len(p.idle) == 0 {
		return
	}
	b := p.idle[0]
	b.close("rebalance")
}
