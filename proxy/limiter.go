package proxy

import (
	"sync"
	"time"
)

// failureLimiter slows down password guessing: an address with too many recent authentication failures
// is refused without a check until its window passes.
type failureLimiter struct {
	mu     sync.Mutex
	byAddr map[string]*failures
	max    int
	window time.Duration
}

type failures struct {
	n     int
	first time.Time
}

func newFailureLimiter() *failureLimiter {
	return &failureLimiter{byAddr: map[string]*failures{}, max: 20, window: time.Minute}
}

func host(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i]
		}
	}
	return addr
}

func (l *failureLimiter) blocked(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.byAddr[host(addr)]
	if f == nil {
		return false
	}
	if time.Since(f.first) > l.window {
		delete(l.byAddr, host(addr))
		return false
	}
	return f.n >= l.max
}

func (l *failureLimiter) fail(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := host(addr)
	f := l.byAddr[h]
	if f == nil || time.Since(f.first) > l.window {
		if len(l.byAddr) > 100000 {
			l.byAddr = map[string]*failures{} // bounded memory under an address-spraying attack
		}
		f = &failures{first: time.Now()}
		l.byAddr[h] = f
	}
	f.n++
}

func (l *failureLimiter) succeed(addr string) {
	l.mu.Lock()
	delete(l.byAddr, host(addr))
	l.mu.Unlock()
}
