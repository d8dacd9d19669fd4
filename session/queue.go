package session

// queue is the fair queue of the sessions that wait for a backend: one FIFO per tenant (Tenant.waiters),
// and a ring of the tenants that have waiters, served by weighted round robin. Every operation is O(1)
// in the number of tenants but nextWaiter's walk past tenants that may not be served now (paused, or at
// their cap), so 10,000 tenants cost what 10 do. The ring is a circular doubly linked list threaded
// through the tenants; cur is where the round stands.
type queue struct {
	cur     *Tenant // the tenant whose turn it is; nil when nobody waits
	tenants int     // tenants in the ring
}

// inRing reports whether t has waiters listed in the ring.
func (t *Tenant) inRing() bool { return t.ringNext != nil }

// enqueue puts s at the end of its tenant's FIFO; a tenant that starts waiting joins the ring just before
// the current tenant, so at the end of the round, with a full turn.
func (p *pool) enqueue(s *Session) {
	t := s.tenant
	t.waiters = append(t.waiters, s)
	p.waiting++
	if t.inRing() {
		return
	}
	t.turns = t.weight()
	if p.cur == nil {
		t.ringPrev, t.ringNext = t, t
		p.cur = t
	} else {
		t.ringPrev, t.ringNext = p.cur.ringPrev, p.cur
		p.cur.ringPrev.ringNext = t
		p.cur.ringPrev = t
	}
	p.tenants++
}

// leaveRing takes t, whose FIFO is empty, out of the ring.
func (p *pool) leaveRing(t *Tenant) {
	if p.tenants == 1 {
		p.cur = nil
	} else {
		t.ringPrev.ringNext = t.ringNext
		t.ringNext.ringPrev = t.ringPrev
		if p.cur == t {
			p.cur = t.ringNext
		}
	}
	t.ringPrev, t.ringNext = nil, nil
	p.tenants--
}

// eligible reports whether tenant t's first waiter may be served now.
func (p *pool) eligible(t *Tenant) bool {
	return len(t.waiters) > 0 && !t.paused && t.active < p.tenantCap(t)
}

// nextWaiter takes the next waiting session to serve with the freed backend b: a waiter of the tenant
// whose context b carries while that tenant has turns left in the round (affinity saves the switch but
// never buys more than the tenant's share), else the first tenant of the round that may be served and
// has turns left. When every tenant that may be served has spent its turns, a new round begins.
func (p *pool) nextWaiter(b *backend) *Session {
	if p.waiting == 0 {
		return nil
	}
	if t := b.ctxTenant; t != nil && t.inRing() && t.turns > 0 && p.eligible(t) {
		return p.serve(t)
	}
	for round := 0; round < 2; round++ {
		found := false
		t := p.cur
		for i := 0; i < p.tenants; i, t = i+1, t.ringNext {
			if !p.eligible(t) {
				continue
			}
			if t.turns > 0 {
				return p.serve(t)
			}
			found = true
		}
		if !found {
			return nil
		}
		t = p.cur
		for i := 0; i < p.tenants; i, t = i+1, t.ringNext {
			t.turns = t.weight()
		}
	}
	return nil
}

// serve takes the first waiter of t, spending one of t's turns; the round moves past t when its turns
// are spent, and t leaves the ring when its waiters are.
func (p *pool) serve(t *Tenant) *Session {
	s := t.waiters[0]
	copy(t.waiters, t.waiters[1:])
	t.waiters[len(t.waiters)-1] = nil
	t.waiters = t.waiters[:len(t.waiters)-1]
	p.waiting--
	t.turns--
	switch {
	case len(t.waiters) == 0:
		p.leaveRing(t)
	case t.turns <= 0 && p.cur == t:
		p.cur = t.ringNext
	}
	return s
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
	if len(t.waiters) == 0 && t.inRing() {
		p.leaveRing(t)
	}
}

// failWaiters ends every queued session with an error.
func (p *pool) failWaiters(code, msg string) {
	for p.cur != nil {
		p.cur.waiters[0].fatal(code, msg) // fatal unqueues
	}
}

// eachWaiter calls f for every waiting session, in no particular order; f must not change the queue.
func (p *pool) eachWaiter(f func(s *Session)) {
	t := p.cur
	for i := 0; i < p.tenants; i, t = i+1, t.ringNext {
		for _, s := range t.waiters {
			f(s)
		}
	}
}
