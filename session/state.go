package session

import "fmt"

// The relay's two state machines have one door each, as pgbouncer's change_client_state and
// change_server_state are the only writers of a client's or a server's state (src/objects.c):
//
//   - Session.setState is the only writer of a session's state,
//   - backend.setState is the only writer of a backend's state and of its membership of the idle list,
//   - Engine.lease and Engine.unlease are the only code that links a session and a backend, and with it
//     the counts that follow from the link (Tenant.active, Engine.leased).
//
// Each checks that the transition is one the machine has, and panics with "BUG:" when it is not: a
// transition nobody planned is a relay bug to be found in tests, never state to carry on with.
//
// A session:
//
//	stIdle ──(first message of a transaction, no backend free)──▶ stWaiting
//	stIdle | stWaiting ──(lease)──▶ stActive ──(unlease: released, or its backend failed)──▶ stIdle
//	stWaiting ──(its cancel request, or the wait ends)──▶ stIdle
//	any ──(Terminate, error, the client gone)──▶ stClosed
//
// A backend: see beState.

// sessTransitions[from][to] lists the moves a session can make.
var sessTransitions = [...][4]bool{
	stIdle:    {stWaiting: true, stActive: true, stClosed: true},
	stWaiting: {stIdle: true, stActive: true, stClosed: true},
	stActive:  {stIdle: true, stClosed: true},
	stClosed:  {},
}

// setState moves the session to st.
func (s *Session) setState(st sessState) {
	if !sessTransitions[s.state][st] {
		panic(fmt.Sprintf("BUG: session %d: transition from %s to %s", s.pid, s.state, st))
	}
	s.state = st
}

// beTransitions[from][to] lists the moves a backend can make.
var beTransitions = [numBeStates][numBeStates]bool{
	beNew:        {beIdle: true, beClosed: true},
	beIdle:       {beLeased: true, beClosed: true},
	beLeased:     {beIdle: true, beCancelWait: true, beReset: true, beClosed: true},
	beCancelWait: {beIdle: true, beReset: true, beClosed: true},
	beReset:      {beIdle: true, beClosed: true},
	beClosed:     {},
}

// setState moves the backend to st, keeping the idle list and the pool's per-state counts.
func (b *backend) setState(st beState) {
	from := b.state
	if !beTransitions[from][st] {
		panic(fmt.Sprintf("BUG: backend %d: transition from %s to %s", b.pid, from, st))
	}
	p := &b.e.pool
	if from == beIdle {
		p.removeIdle(b)
	}
	p.count[from]--
	b.state = st
	if st == beClosed {
		return
	}
	p.count[st]++
	switch st {
	case beIdle:
		b.lastUsed = b.e.l.now
		p.idle = append(p.idle, b)
	case beReset:
		b.resetStep = resetFinish
	}
}

// lease links a session and an idle backend: the session holds it until unlease.
func (e *Engine) lease(s *Session, b *backend) {
	if s.be != nil || b.client != nil {
		panic(fmt.Sprintf("BUG: lease of backend %d to session %d: already linked", b.pid, s.pid))
	}
	b.setState(beLeased)
	s.be, b.client = b, s
	s.tenant.active++
	e.leased++
	s.setState(stActive)
}

// unlease separates a session from its backend and returns the backend, still beLeased: the caller
// decides where it goes next (back to the pool, to the reset path, or closed). The session becomes idle
// unless it is closing.
func (e *Engine) unlease(s *Session) *backend {
	b := s.be
	if b == nil || b.client != s {
		panic(fmt.Sprintf("BUG: unlease of session %d: not linked", s.pid))
	}
	s.be, b.client = nil, nil
	s.tenant.active--
	e.leased--
	// Reading may have been paused for this client's backpressure.
	b.c.setEvents(b.c.events | evIn)
	s.setState(stIdle)
	return b
}
