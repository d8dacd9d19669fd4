package session

import (
	"fmt"
	"time"

	"github.com/jackc/pgerrcode"

	"github.com/tenantproxy/tenantproxy/internal/pgerr"
)

// Periodic maintenance, on the loop every quarter second: waits past wait_timeout, idle and old backends,
// stuck queries, the drain, and the backend gauges.

// tick runs on the loop every quarter second.
func (e *Engine) tick() {
	e.pool.tick()
	if len(e.starting) > 0 {
		if e.cfg.WaitTimeout > 0 && e.l.now.Sub(e.starting[0].info.Opened) > e.cfg.WaitTimeout+e.dialTimeout {
			e.failStarting(pgerrcode.ConnectionFailure, "tenantproxy: cannot connect to the database server: "+e.pool.dialErr)
		} else if e.pool.dialing == 0 && e.l.now.Sub(e.pool.dialFail) >= time.Second {
			e.warm()
		}
	}
	e.publishBackends()
	e.checkWaits()
	if e.starved.Load() && e.pool.waiting > 0 {
		e.g.shed(e.shard) // sessions waited a tick: ask the other shards for their idle backends
	}
	if qt := e.cfg.QueryTimeout; qt > 0 {
		var stuck []*backend
		for _, s := range e.sessions {
			if b := s.be; b != nil && !b.opsEmpty() && e.l.now.Sub(b.busySince) > qt && e.l.now.Sub(b.lastRecv) > qt {
				stuck = append(stuck, b)
			}
		}
		for _, b := range stuck {
			b.fail(fmt.Sprintf("the server sent nothing for [backend] query_timeout (%s)", qt), pgerrcode.ConnectionFailure)
		}
	}
	if e.draining {
		for _, s := range e.sessions {
			if s.state == stIdle || s.state == stWaiting || (s.be != nil && s.be.opsEmpty() && s.be.status == txIdle && len(s.in) == 0) {
				s.fatal(pgerrcode.AdminShutdown, "tenantproxy: the proxy is shutting down")
			} else if !e.l.now.Before(e.drainBy) {
				s.fatal(pgerrcode.AdminShutdown, "tenantproxy: the proxy is shutting down; shutdown_timeout passed while the transaction was open")
			}
		}
	}
}

// tick expires waits and idle backends.
func (p *pool) tick() {
	e := p.e
	now := e.l.now
	if p.waiting > 0 && e.cfg.WaitTimeout > 0 {
		var expired []*Session
		p.eachWaiter(func(s *Session) {
			if now.Sub(s.waitSince) > e.cfg.WaitTimeout {
				expired = append(expired, s)
			}
		})
		for _, s := range expired {
			msg := fmt.Sprintf("tenantproxy: no server connection became free within [pool] wait_timeout (%s); [backend] pool_size is %d",
				e.cfg.WaitTimeout, e.cfg.PoolSize)
			if p.dialErr != "" && p.opened() < e.cfg.PoolSize {
				msg += "; the last connection attempt failed: " + p.dialErr
			}
			s.fatal(pgerrcode.TooManyConnections, msg)
		}
		p.maybeDial()
	}
	var expired []*backend
	for _, b := range p.idle {
		if (e.cfg.IdleTimeout > 0 && now.Sub(b.lastUsed) > e.cfg.IdleTimeout) ||
			(e.cfg.MaxLifetime > 0 && now.Sub(b.created) > e.cfg.MaxLifetime) {
			expired = append(expired, b)
		}
	}
	for _, b := range expired {
		b.close(pgerr.CloseIdleOrLifetime)
	}
}

// shedIdle closes the least recently used idle backend, when this shard has one and nobody waits for it,
// so that another shard of the Group can open one within the shared budget.
func (p *pool) shedIdle() {
	if p.waiting > 0 || len(p.idle) == 0 {
		return
	}
	b := p.idle[0]
	b.close(pgerr.CloseRebalance)
}
