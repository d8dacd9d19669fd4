package session

// replyQueue is what a backend still owes the relay: one op per request written to the server whose
// replies are expected, in the order the server answers them, plus the relay's own synthetic replies
// placed among them. It knows nothing of sockets or sessions: the backend feeds it the server's replies
// and decides where each goes; the queue says which request a reply belongs to.
//
// The protocol rules it encodes (PostgreSQL's, src/backend/tcop/postgres.c):
//   - a simple Query is answered up to its ReadyForQuery; a Sync by its ReadyForQuery;
//   - Parse, Bind, Describe, Execute and Close are answered by one or two messages each, and none of them
//     by a ReadyForQuery: when a Sync's ReadyForQuery arrives, what is left before it was skipped;
//   - after an error in an extended-protocol request, the server discards every message up to the next
//     Sync and sends nothing for them (failBatch); when no Sync is queued yet, requests written until one
//     comes are not queued at all (skipping).
type replyQueue struct {
	ops  []op
	head int
	// skipping is set after an extended-protocol error with no Sync queued behind it: the server discards
	// what is written until a Sync, so push drops everything but the Sync.
	skipping bool
}

// empty reports whether every reply owed has arrived.
func (q *replyQueue) empty() bool { return q.head == len(q.ops) }

// push appends o. It reports whether o was queued (false while the server skips to a Sync) and whether the
// queue was empty before, i.e. the backend just became busy.
func (q *replyQueue) push(o op) (queued, wasEmpty bool) {
	if o.kind == opSync {
		q.skipping = false
	} else if q.skipping {
		return false, false
	}
	if q.head == len(q.ops) {
		q.ops, q.head = q.ops[:0], 0
		wasEmpty = true
	}
	q.ops = append(q.ops, o)
	return true, wasEmpty
}

// front is the op the next reply belongs to, or nil.
func (q *replyQueue) front() *op {
	if q.head < len(q.ops) {
		return &q.ops[q.head]
	}
	return nil
}

// pop removes the front op.
func (q *replyQueue) pop() {
	if q.head == len(q.ops) {
		panic("BUG: replyQueue: pop of an empty queue")
	}
	q.ops[q.head] = op{}
	q.head++
}

// popSynthetic removes the synthetic ops that reached the front, handing each to emit first: the relay's
// own replies go out as soon as every reply due before them has.
func (q *replyQueue) popSynthetic(emit func(o *op)) {
	for q.head < len(q.ops) && q.ops[q.head].kind == opSynthetic {
		emit(&q.ops[q.head])
		q.pop()
	}
}

// readyFront drops the extended-protocol ops that a ReadyForQuery shows the server skipped, and returns
// the Query or Sync that the ReadyForQuery answers; nil means the server sent one nobody asked for.
func (q *replyQueue) readyFront() *op {
	h := q.front()
	for h != nil && h.kind != opQuery && h.kind != opSync {
		q.pop()
		h = q.front()
	}
	return h
}

// failBatch handles an error reply to the extended-protocol request at the front: that request and every
// one up to the next Sync are skipped by the server and leave the queue, each handed to dropped first.
// When no Sync is queued, the queue skips what is pushed until one is.
func (q *replyQueue) failBatch(dropped func(o *op)) {
	for q.head < len(q.ops) && q.ops[q.head].kind != opSync {
		dropped(&q.ops[q.head])
		q.pop()
	}
	if q.head == len(q.ops) {
		q.skipping = true
	}
}
