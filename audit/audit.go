// Package audit writes tenantproxy's audit log: one JSON object per line for each connect, disconnect,
// authentication failure, refused statement, tripwire hit, admin console command and lifecycle command,
// each with its time, tenant, user, client address and session id.
//
// Writing never blocks the caller: an event goes into a bounded queue that one goroutine writes out; when
// the queue is full the event is dropped, counted (tenantproxy_audit_dropped_total) and the drops are
// logged (at most once a second).
//
// The package-level Log is what the proxy's packages call (audit.Log.Refused(...)); it does nothing until
// a Writer is installed with Log.Set.
package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Event kinds.
const (
	KindConnect    = "connect"
	KindDisconnect = "disconnect"
	KindAuthFailed = "auth_failed"
	KindRefused    = "statement_refused"
	KindTripwire   = "tripwire"
	KindAdmin      = "admin_command"
	KindLifecycle  = "lifecycle_command"
)

// Event is one line of the audit log. Time, Event, Tenant, User, Addr and Session are always written
// (empty or 0 when not known: a failed authentication has no session yet).
type Event struct {
	Time    time.Time `json:"time"`
	Event   string    `json:"event"`
	Tenant  string    `json:"tenant"`
	User    string    `json:"user"`
	Addr    string    `json:"addr"`
	Session uint32    `json:"session"`
	// SQLSTATE and Reason: why a statement or connection was refused or a command failed.
	SQLSTATE string `json:"sqlstate,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Fingerprint identifies a refused statement without its literals; Statement is its text, written
	// only with [log] audit_statement_text = true.
	Fingerprint string `json:"fingerprint,omitempty"`
	Statement   string `json:"statement,omitempty"`
	// Command is an admin console or lifecycle command as issued.
	Command string `json:"command,omitempty"`
}

// DefaultQueue is the queue length of a Writer opened by Open.
const DefaultQueue = 8192

// Writer writes events to an io.Writer from its own goroutine.
type Writer struct {
	out     *bufio.Writer
	closer  io.Closer
	log     *zap.Logger
	q       chan Event
	stop    chan struct{}
	done    chan struct{}
	closed  atomic.Bool
	dropped atomic.Int64
	counter prometheus.Counter
	lastLog atomic.Int64 // unix nanos of the last drop warning
	logged  atomic.Int64 // drops already reported
	once    sync.Once
}

// Open opens the audit log at path ("-" is stdout; a file is created 0600 and appended to) and starts
// its writer. The drop counter is registered with reg when reg is not nil.
func Open(path string, reg prometheus.Registerer, log *zap.Logger) (*Writer, error) {
	var out io.Writer
	var closer io.Closer
	if path == "-" {
		out = os.Stdout
	} else {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("[audit] path: %w", err)
		}
		out, closer = f, f
	}
	w := NewWriter(out, DefaultQueue, log)
	w.closer = closer
	if reg != nil {
		if err := reg.Register(w.counter); err != nil {
			w.Close()
			return nil, err
		}
	}
	return w, nil
}

// NewWriter starts a Writer of out with a queue of queue events.
func NewWriter(out io.Writer, queue int, log *zap.Logger) *Writer {
	if log == nil {
		log = zap.NewNop()
	}
	w := &Writer{
		out: bufio.NewWriterSize(out, 64<<10), log: log, q: make(chan Event, max(queue, 1)),
		stop: make(chan struct{}), done: make(chan struct{}),
		counter: prometheus.NewCounter(prometheus.CounterOpts{Name: "tenantproxy_audit_dropped_total", Help: "Audit events dropped because the audit log's queue was full."}),
	}
	go w.run()
	return w
}

// Write queues e; it never blocks. An event that finds the queue full, or the Writer closed, is dropped.
func (w *Writer) Write(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if w.closed.Load() {
		w.drop()
		return
	}
	select {
	case w.q <- e:
	default:
		w.drop()
	}
}

func (w *Writer) drop() {
	n := w.dropped.Add(1)
	w.counter.Inc()
	now := time.Now().UnixNano()
	last := w.lastLog.Load()
	if now-last >= int64(time.Second) && w.lastLog.CompareAndSwap(last, now) {
		w.log.Warn("audit log queue full; events dropped", zap.Int64("dropped", n-w.logged.Swap(n)), zap.Int64("dropped_total", n))
	}
}

// Dropped returns how many events were dropped.
func (w *Writer) Dropped() int64 { return w.dropped.Load() }

func (w *Writer) run() {
	defer close(w.done)
	enc := json.NewEncoder(w.out)
	write := func(e Event) {
		if err := enc.Encode(e); err != nil {
			w.log.Error("audit log write failed", zap.Error(err))
		}
	}
	for {
		select {
		case e := <-w.q:
			write(e)
			if len(w.q) == 0 {
				w.flush()
			}
		case <-w.stop:
			for {
				select {
				case e := <-w.q:
					write(e)
				default:
					w.flush()
					return
				}
			}
		}
	}
}

func (w *Writer) flush() {
	if err := w.out.Flush(); err != nil {
		w.log.Error("audit log write failed", zap.Error(err))
	}
}

// Close writes out the queued events, stops the writer and closes the file. Events written after Close
// are dropped.
func (w *Writer) Close() error {
	var err error
	w.once.Do(func() {
		w.closed.Store(true)
		close(w.stop)
		<-w.done
		if w.closer != nil {
			err = w.closer.Close()
		}
	})
	return err
}

// Conn names the connection an event is about.
type Conn struct {
	Tenant, User, Addr string
	Session            uint32
}

func (c Conn) event(kind string) Event {
	return Event{Event: kind, Tenant: c.Tenant, User: c.User, Addr: c.Addr, Session: c.Session}
}

// Admin is one admin console command.
type Admin struct {
	User, Addr string
	// Tenant is the command's tenant argument, if any.
	Tenant string
	// Command is the command as written.
	Command string
	// SQLSTATE and Error are set when the command failed or was refused.
	SQLSTATE, Error string
}

// Global is the process's audit log: its methods do nothing until Set installs a Writer, and are safe
// from any goroutine.
type Global struct {
	w atomic.Pointer[Writer]
}

// Log is the process's audit log.
var Log Global

// Set installs w (nil uninstalls) and returns the Writer it replaces.
func (g *Global) Set(w *Writer) *Writer { return g.w.Swap(w) }

// Unset uninstalls w if it is the installed Writer.
func (g *Global) Unset(w *Writer) { g.w.CompareAndSwap(w, nil) }

// Enabled reports whether events are written.
func (g *Global) Enabled() bool { return g.w.Load() != nil }

// Write queues e.
func (g *Global) Write(e Event) {
	if w := g.w.Load(); w != nil {
		w.Write(e)
	}
}

// Connect records a client that was handed to the relay (or opened the admin console).
func (g *Global) Connect(c Conn) { g.Write(c.event(KindConnect)) }

// Disconnect records a client that left; reason says why when the proxy closed it.
func (g *Global) Disconnect(c Conn, reason string) {
	e := c.event(KindDisconnect)
	e.Reason = reason
	g.Write(e)
}

// AuthFailed records a failed authentication or a refused connection.
func (g *Global) AuthFailed(c Conn, sqlstate, reason string) {
	e := c.event(KindAuthFailed)
	e.SQLSTATE, e.Reason = sqlstate, reason
	g.Write(e)
}

// Refused records a statement the guard refused. statement is written as given: pass "" unless
// [log] audit_statement_text is true.
func (g *Global) Refused(c Conn, sqlstate, reason, fingerprint, statement string) {
	e := c.event(KindRefused)
	e.SQLSTATE, e.Reason, e.Fingerprint, e.Statement = sqlstate, reason, fingerprint, statement
	g.Write(e)
}

// Tripwire records a backend found outside the tenant context it should have had.
func (g *Global) Tripwire(c Conn, reason string) {
	e := c.event(KindTripwire)
	e.Reason = reason
	g.Write(e)
}

// AdminCommand records an admin console command, carried out or refused.
func (g *Global) AdminCommand(a Admin) {
	g.Write(Event{Event: KindAdmin, Tenant: a.Tenant, User: a.User, Addr: a.Addr, Command: a.Command, SQLSTATE: a.SQLSTATE, Reason: a.Error})
}

// Lifecycle records a lifecycle command (tenant create, migrate up, ...) run as the admin role user;
// failure is its error, or "".
func (g *Global) Lifecycle(user, tenant, command, failure string) {
	g.Write(Event{Event: KindLifecycle, Tenant: tenant, User: user, Command: command, Reason: failure})
}
