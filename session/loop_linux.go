package session

import (
	"errors"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The relay runs on one OS thread that owns every client and backend socket after startup: an epoll loop
// over non-blocking file descriptors, in the manner of pgbouncer. Measured on this project's 2-core
// machines, goroutine-per-connection relays reached about half of pgbouncer's throughput because every
// message costs scheduler wake-ups and hand-offs between goroutines; a loop that reads, decides and writes
// in place pays only the system calls. Everything reachable from the loop (sessions, backends, the pool)
// is touched only by the loop's thread, so none of it needs locks. Other goroutines talk to the loop
// through post, which queues a function and wakes the loop through an eventfd.

const (
	evIn    = unix.EPOLLIN
	evOut   = unix.EPOLLOUT
	evErr   = unix.EPOLLERR | unix.EPOLLHUP | unix.EPOLLRDHUP
	evInErr = evIn | evErr
)

// handler receives the readiness events of one file descriptor.
type handler interface {
	handleEvent(events uint32)
}

// loop is the event loop. Fields are owned by the loop's thread unless noted.
type loop struct {
	epfd, wakefd int
	events       []unix.EpollEvent
	handlers     []handler // indexed by fd
	rbuf         []byte    // shared read buffer; valid only within one handleEvent
	bufs         bufPool   // write buffers of the sockets that have nothing to write
	now          time.Time // refreshed once per wake-up
	timers       []func()  // run on every tick

	mu      sync.Mutex // guards tasks and stopped
	tasks   []func()
	stopped bool
	done    chan struct{}
}

func newLoop() (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	l := &loop{
		epfd: epfd, wakefd: wakefd,
		events: make([]unix.EpollEvent, 256),
		rbuf:   make([]byte, 256<<10),
		done:   make(chan struct{}),
		now:    time.Now(),
	}
	ev := unix.EpollEvent{Events: evIn, Fd: int32(l.wakefd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, l.wakefd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(l.wakefd)
		return nil, err
	}
	return l, nil
}

// add registers fd with h for the given events.
func (l *loop) add(fd int, h handler, events uint32) error {
	for fd >= len(l.handlers) {
		l.handlers = append(l.handlers, make([]handler, len(l.handlers)+64)...)
	}
	l.handlers[fd] = h
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

// modify changes the events fd is watched for.
func (l *loop) modify(fd int, events uint32) {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
}

// remove unregisters and closes fd.
func (l *loop) remove(fd int) {
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	if fd < len(l.handlers) {
		l.handlers[fd] = nil
	}
	unix.Close(fd)
}

// post queues f to run on the loop's thread. It reports false when the loop has stopped.
func (l *loop) post(f func()) bool {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return false
	}
	wake := len(l.tasks) == 0
	l.tasks = append(l.tasks, f)
	l.mu.Unlock()
	if wake {
		var one = [8]byte{1}
		unix.Write(l.wakefd, one[:])
	}
	return true
}

// stop ends the loop after the current iteration; pending tasks are dropped.
func (l *loop) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	var one = [8]byte{1}
	unix.Write(l.wakefd, one[:])
}

// run is the loop itself; it returns when stop is called. tick runs about every tickEvery.
func (l *loop) run(tickEvery time.Duration) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(l.done)
	nextTick := time.Now().Add(tickEvery)
	var drained [8]byte
	for {
		timeout := int(time.Until(nextTick) / time.Millisecond)
		if timeout < 0 {
			timeout = 0
		}
		n, err := epollWait(l.epfd, l.events, timeout)
		if err != nil && !errors.Is(err, unix.EINTR) {
			panic("BUG: epoll_wait: " + err.Error())
		}
		l.now = time.Now()
		for i := 0; i < n; i++ {
			ev := &l.events[i]
			fd := int(ev.Fd)
			if fd == l.wakefd {
				unix.Read(l.wakefd, drained[:])
				continue
			}
			if fd < len(l.handlers) && l.handlers[fd] != nil {
				l.handlers[fd].handleEvent(ev.Events)
			}
		}
		l.mu.Lock()
		tasks, stopped := l.tasks, l.stopped
		l.tasks = nil
		l.mu.Unlock()
		if stopped {
			unix.Close(l.epfd)
			unix.Close(l.wakefd)
			return
		}
		for _, t := range tasks {
			t()
		}
		if !l.now.Before(nextTick) {
			for _, t := range l.timers {
				t()
			}
			nextTick = l.now.Add(tickEvery)
		}
	}
}

// epollWait waits for events. It polls first with a raw epoll_pwait, which does not enter the
// scheduler's blocking path: under load events are usually ready. Only when none are and msec > 0 does
// it block in unix.EpollWait.
func epollWait(epfd int, events []unix.EpollEvent, msec int) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	if r > 0 || msec == 0 {
		return int(r), nil
	}
	return unix.EpollWait(epfd, events, msec)
}

// rawRead reads from a non-blocking socket without the scheduler's system-call bookkeeping: it never
// blocks. recvfrom rather than read goes straight to the socket layer, skipping the file layer's checks.
func rawRead(fd int, p []byte) (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
	return int(r), e
}

// rawWrite writes to a non-blocking socket; see rawRead. MSG_NOSIGNAL: a peer gone is an EPIPE, never a
// SIGPIPE.
func rawWrite(fd int, p []byte) (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), unix.MSG_NOSIGNAL, 0, 0)
	return int(r), e
}
