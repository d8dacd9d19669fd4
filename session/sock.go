package session

import (
	"golang.org/x/sys/unix"
)

// highWater is how many unwritten bytes a socket may hold before the loop stops reading from its peer.
const highWater = 1 << 20

// sock is a non-blocking socket owned by the loop, with the bytes not yet accepted by the kernel.
type sock struct {
	l      *loop
	fd     int
	out    []byte // unwritten bytes, out[off:]
	off    int
	events uint32 // what epoll watches now
	closed bool
	err    error // first write error
	sent   int64 // bytes written, for the statistics
}

func (s *sock) register(h handler) error {
	s.events = evInErr
	return s.l.add(s.fd, h, s.events)
}

func (s *sock) setEvents(ev uint32) {
	if s.closed || ev == s.events {
		return
	}
	s.events = ev
	s.l.modify(s.fd, ev)
}

// bufPool keeps the write buffers of sockets that have nothing to write, so that an idle client holds
// none (memory grows with the bytes in flight, not with the clients) while the hot path allocates none:
// a socket takes a buffer when it has something to write and gives it back once written. Owned by the
// loop.
type bufPool struct {
	free [][]byte
}

const (
	bufSize     = 4 << 10 // a new buffer's capacity
	bufKeepMax  = 64 << 10
	bufPoolSize = 1024
)

func (p *bufPool) get() []byte {
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		return b
	}
	return make([]byte, 0, bufSize)
}

func (p *bufPool) put(b []byte) {
	if cap(b) == 0 || cap(b) > bufKeepMax || len(p.free) >= bufPoolSize {
		return
	}
	p.free = append(p.free, b[:0])
}

// pending reports how many bytes wait to be written.
func (s *sock) pending() int { return len(s.out) - s.off }

// buf returns the unwritten-bytes buffer for appending; hand it back with setBuf.
func (s *sock) buf() []byte {
	if s.out == nil {
		s.out = s.l.bufs.get()
	} else if s.off > 0 && s.off == len(s.out) {
		s.out, s.off = s.out[:0], 0
	}
	return s.out
}

// setBuf stores the buffer returned by buf after appending to it.
func (s *sock) setBuf(b []byte) { s.out = b }

// queue appends b to the unwritten bytes without writing.
func (s *sock) queue(b []byte) {
	s.out = append(s.buf(), b...)
}

// send writes b now when nothing is queued, and queues what the kernel does not take. b may be reused by
// the caller as soon as send returns.
func (s *sock) send(b []byte) {
	if s.closed || len(b) == 0 {
		return
	}
	if s.pending() > 0 {
		s.queue(b)
		s.flush()
		return
	}
	n := s.write(b)
	if n < len(b) && !s.closed {
		s.queue(b[n:])
		s.setEvents(s.events | evOut)
	}
}

// flush writes queued bytes; it keeps EPOLLOUT on while some remain.
func (s *sock) flush() {
	if s.closed {
		return
	}
	for s.pending() > 0 {
		n := s.write(s.out[s.off:])
		if n == 0 {
			break
		}
		s.off += n
	}
	if s.pending() == 0 {
		s.l.bufs.put(s.out) // a large one, after a big result, is dropped
		s.out, s.off = nil, 0
		s.setEvents(s.events &^ evOut)
	} else {
		s.setEvents(s.events | evOut)
	}
}

func (s *sock) write(b []byte) int {
	for {
		n, e := rawWrite(s.fd, b)
		switch {
		case e == 0:
			s.sent += int64(n)
			return n
		case e == unix.EINTR:
			continue
		case e == unix.EAGAIN:
			return 0
		default:
			if s.err == nil {
				s.err = e
			}
			return 0
		}
	}
}

// read reads into p; n == 0 with err == nil means nothing was there (EAGAIN).
func (s *sock) read(p []byte) (int, error) {
	for {
		n, e := rawRead(s.fd, p)
		switch {
		case e == 0 && n == 0:
			return 0, errEOF
		case e == 0:
			return n, nil
		case e == unix.EINTR:
			continue
		case e == unix.EAGAIN:
			return 0, nil
		default:
			return 0, e
		}
	}
}

func (s *sock) close() {
	if s.closed {
		return
	}
	s.closed = true
	s.l.remove(s.fd)
	s.l.bufs.put(s.out)
	s.out, s.off = nil, 0
}
