package session

// The reset path: a backend whose client left while holding it (beReset) first finishes what the client
// sent, then rolls back an open transaction and discards session state that would outlive the client,
// one step at a time (resetStep), before the pool has it again.

// clientLeft takes over a backend whose client went away while holding it. What the client sent still
// runs to its end, as it would on a direct connection, except that the query of a client that vanished
// (rather than said Terminate) is cancelled; COPY is failed; an extended-protocol batch without its Sync
// is aborted, not committed (a failing statement, then Sync); then an open transaction is rolled back and
// session state discarded before anyone else gets the backend.
func (e *Engine) clientLeft(b *backend, unsynced, vanished bool) {
	if b.c.closed {
		return
	}
	b.setState(beReset)
	if vanished && !b.opsEmpty() {
		b.cancelDue = true
		b.cancelIfDue()
	}
	if b.copyIn {
		b.queueCopyFail()
	}
	if unsynced {
		m, st := beginMsg(b.c.buf(), msgParse)
		m = appendCString(m, poisonStmt)
		m = appendCString(m, poisonSQL)
		m = append(m, 0, 0)
		b.c.setBuf(endMsg(m, st))
		b.push(op{kind: opParse, swallow: true, quiet: true})
		b.c.queue([]byte{msgSync, 0, 0, 0, 4})
		b.push(op{kind: opSync, swallow: true})
	}
	b.c.flush()
	e.continueReset(b)
}

// continueReset moves a backend in reset one step on; it is called again when the step's replies are in.
func (e *Engine) continueReset(b *backend) {
	if b.c.closed || !b.opsEmpty() || b.state != beReset || b.cancels > 0 {
		return
	}
	switch {
	case b.status != txIdle:
		b.resetStep = resetRollback
		b.queueQuery("ROLLBACK")
	case b.needReset:
		// DISCARD ALL drops temp tables, cursors, LISTEN, advisory locks, prepared statements and
		// settings, and returns the role to the pool role: the backend carries no tenant context.
		b.resetStep = resetDiscard
		b.queueQuery("DISCARD ALL")
		b.needReset = false
		b.ctx, b.settingsSQL = "", ""
		b.forgetPrepared()
	default:
		e.pool.put(b)
		return
	}
	b.c.flush()
}

// queueCopyFail ends a COPY FROM STDIN whose client is gone.
func (b *backend) queueCopyFail() {
	m, st := beginMsg(b.c.buf(), msgCopyFail)
	m = appendCString(m, "tenantproxy: the client disconnected")
	b.c.setBuf(endMsg(m, st))
}
