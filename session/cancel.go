package session

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"time"

	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"
)

// Cancel requests: a client's CancelRequest reaches the server only for its own statement, and a backend
// with a cancel in flight serves nobody else until the server has it (beCancelWait).

// Cancel forwards a client's CancelRequest to the query its session is running, if any. Safe from any
// goroutine. A cancel for an idle client does nothing, and a backend with a cancel in flight is not
// leased to anyone else until the server has received it.
func (e *Engine) Cancel(pid, secret uint32) {
	e.l.post(func() {
		s := e.sessions[pid]
		if s == nil || subtle.ConstantTimeEq(int32(s.secret), int32(secret)) != 1 {
			return
		}
		if b := s.be; b != nil && !b.opsEmpty() {
			b.cancelDue = true
			b.cancelIfDue()
		} else if s.state == stWaiting {
			s.cancelWaiting()
		}
	})
}

// cancelIfDue sends the cancel request a client asked for once the client's own request is at the front of
// the backend's queue. While the relay's own statements are ahead of it (the tenant setup written with the
// client's first message, a replayed Parse, the tripwire's check), the cancel waits: sent now, it would
// cancel the setup and end the session, never the client's statement. Once nothing is owed any more,
// there is nothing left to cancel, as on a direct connection whose query already finished.
func (b *backend) cancelIfDue() {
	h := b.headOp()
	switch {
	case h == nil:
		b.cancelDue = false
	case h.swallow:
	default:
		b.cancelDue = false
		b.e.cancelBackend(b)
	}
}

func (e *Engine) cancelBackend(b *backend) {
	b.cancels++
	pid, secret := b.pid, b.secret
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		err := e.cfg.Dialer.Cancel(ctx, pid, secret)
		cancel()
		if err != nil {
			e.log.Warn("cancel request failed", zap.Uint32("backend_pid", pid), zap.Error(err))
		}
		e.l.post(func() {
			b.cancels--
			if b.cancels > 0 || b.c.closed {
				return
			}
			switch {
			case b.state == beCancelWait:
				e.pool.put(b)
			case b.state == beReset:
				e.continueReset(b) // it waited for the cancel before rolling back
			case b.client != nil:
				b.client.resumeReading() // its next messages waited for the cancel
			}
		})
	}()
}

// cancelWaiting answers a cancel request of a client whose query still waits for a backend: the query
// (or the extended-protocol batch up to its Sync) is dropped and fails with 57014, as PostgreSQL would
// cancel it.
func (s *Session) cancelWaiting() {
	off := 0
	for len(s.in)-off >= 5 {
		t := s.in[off]
		n := 1 + int(binary.BigEndian.Uint32(s.in[off+1:]))
		if n < 5 || len(s.in)-off < n {
			break
		}
		off += n
		if t == msgQuery || t == msgSync {
			s.e.pool.unqueue(s)
			s.setState(stIdle)
			s.unsynced = false
			s.in = s.in[:copy(s.in, s.in[off:])]
			out := appendError(s.c.buf(), "ERROR", pgerrcode.QueryCanceled, "canceling statement due to user request")
			s.c.setBuf(appendReady(out, txIdle))
			s.consumeIn()
			s.flushAll()
			return
		}
	}
}
