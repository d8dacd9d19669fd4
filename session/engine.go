// Package session owns a client's life after authentication: the relay loop, leasing a backend of the
// one shared pool on the first message of a transaction and releasing it at ReadyForQuery, the tenant
// context written ahead of the client's frames, tracked settings, prepared statements and the refusals
// of the statement guard.
package session

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// ErrClosed is returned by Attach after Close.
var ErrClosed = errors.New("session: engine closed")

// Engine runs the relay loop and the shared pool.
type Engine struct {
	cfg         Config
	l           *loop
	log         *zap.Logger
	m           *Metrics
	pool        pool
	ctx         context.Context
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	dialTimeout time.Duration
	clients     atomic.Int64
	closeOnce   sync.Once
	started     atomic.Bool

	// Set when the Engine is one shard of a Group (see group.go); nil for a standalone Engine.
	g       *Group
	shard   int
	starved atomic.Bool // sessions wait and the Group's backend budget is spent

	// Owned by the loop.
	tenants      map[string]*Tenant
	counters     map[string]*tenantCounters
	sessions     map[uint32]*Session
	nextPID      uint32
	rng          *mrand.ChaCha8
	serverParams map[string]string
	starting     []*Session // attached before the server's parameters were known
	leased       int
	stmtIDs      map[stmtKey]*stmtEntry
	nextStmt     uint64
	draining     bool
	drainBy      time.Time
	drained      chan struct{}
	closing      bool
}

// New validates cfg and builds an Engine; Start runs it.
func New(cfg Config) (*Engine, error) {
	if cfg.Mode != "transaction" && cfg.Mode != "session" {
		return nil, fmt.Errorf("session: mode must be transaction or session, got %q", cfg.Mode)
	}
	if cfg.PoolSize < 1 {
		return nil, errors.New("session: pool size must be at least 1")
	}
	if cfg.Dialer == nil {
		return nil, errors.New("session: a Dialer is required")
	}
	if cfg.Guard == nil {
		return nil, errors.New("session: a Guard is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = 64 << 20
	}
	if cfg.MaxPreparedStatements <= 0 {
		cfg.MaxPreparedStatements = 500
	}
	if cfg.MaxClientPreparedStatements <= 0 {
		cfg.MaxClientPreparedStatements = 10000
	}
	if cfg.MaxClientPreparedBytes <= 0 {
		cfg.MaxClientPreparedBytes = 32 << 20
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = 10000
	}
	l, err := newLoop()
	if err != nil {
		return nil, err
	}
	var seed [32]byte
	rand.Read(seed[:])
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		cfg: cfg, l: l, log: cfg.Logger, m: cfg.Metrics, ctx: ctx, cancel: cancel,
		dialTimeout: 10 * time.Second,
		tenants:     map[string]*Tenant{}, counters: map[string]*tenantCounters{},
		sessions: map[uint32]*Session{}, rng: mrand.NewChaCha8(seed),
		stmtIDs: map[stmtKey]*stmtEntry{},
	}
	e.nextPID = uint32(e.rng.Uint64()%1_000_000) + 1000
	e.pool.e = e
	l.timers = append(l.timers, e.tick)
	return e, nil
}

// SetDialTimeout bounds each backend connection attempt.
func (e *Engine) SetDialTimeout(d time.Duration) {
	if d > 0 {
		e.dialTimeout = d
	}
}

// Start runs the loop on its own OS thread and opens the first backend connection.
func (e *Engine) Start() {
	e.started.Store(true)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.l.run(250 * time.Millisecond)
	}()
	if e.shard == 0 {
		e.l.post(func() { e.warm() }) // the other shards of a Group learn the server's parameters from it
	}
}

// warm opens a backend when none is open or opening, so the server's parameters become known.
func (e *Engine) warm() {
	if e.pool.open == 0 && e.pool.dialing == 0 {
		e.pool.waiting++ // lets maybeDial open one connection
		e.pool.maybeDial()
		e.pool.waiting--
	}
}

// failStarting ends the sessions still waiting for the server's parameters.
func (e *Engine) failStarting(code, msg string) {
	starting := e.starting
	e.starting = nil
	for _, s := range starting {
		if s.state != stClosed {
			s.fatal(code, msg)
		}
	}
}

// ownsPID reports whether a cancel key with this pid is routed to this Engine: a Group sends a cancel
// to the shard numbered pid modulo the number of shards.
func (e *Engine) ownsPID(pid uint32) bool {
	return e.g == nil || int(pid%uint32(len(e.g.shards))) == e.shard
}

// Clients reports how many clients are attached; safe from any goroutine.
func (e *Engine) Clients() int { return int(e.clients.Load()) }

// SetTenants replaces the tenant catalog. Tenants keep their identity by name: sessions of a changed
// tenant get the new context at their next lease; sessions of a removed or suspended tenant are closed
// at their next lease.
func (e *Engine) SetTenants(ts []Tenant) {
	list := append([]Tenant(nil), ts...)
	e.l.post(func() {
		seen := make(map[string]bool, len(list))
		for i := range list {
			nt := &list[i]
			seen[nt.Name] = true
			if t := e.tenants[nt.Name]; t != nil {
				t.Schema, t.SetupSQL, t.VerifySQL, t.AllowedSchemas, t.Suspended = nt.Schema, nt.SetupSQL, nt.VerifySQL, nt.AllowedSchemas, nt.Suspended
				continue
			}
			t := &Tenant{Name: nt.Name, Schema: nt.Schema, SetupSQL: nt.SetupSQL, VerifySQL: nt.VerifySQL, AllowedSchemas: nt.AllowedSchemas, Suspended: nt.Suspended}
			if c := e.counters[t.Name]; c != nil {
				t.counters = c
			} else {
				t.counters = e.m.forTenant(t.Name)
				e.counters[t.Name] = t.counters
			}
			e.tenants[t.Name] = t
		}
		for name, t := range e.tenants {
			if !seen[name] {
				t.Suspended = true
				delete(e.tenants, name)
			}
		}
	})
}

// Attach hands an authenticated client to the relay. The Engine owns fd from now on (also on error).
// The relay sends the client its ParameterStatus messages, BackendKeyData and ReadyForQuery.
func (e *Engine) Attach(fd int, info ClientInfo) error {
	e.clients.Add(1)
	ok := e.l.post(func() { e.attach(fd, info) })
	if !ok {
		e.clients.Add(-1)
		closeFd(fd)
		return ErrClosed
	}
	return nil
}

func (e *Engine) attach(fd int, info ClientInfo) {
	s := &Session{e: e, info: info, c: sock{l: e.l, fd: fd}}
	s.log = e.log.With(zap.String("tenant", info.Tenant), zap.String("user", info.User), zap.String("addr", info.Addr))
	e.m.Clients.Inc()
	e.m.ClientsTotal.Inc()
	if err := s.c.register(s); err != nil {
		e.clients.Add(-1)
		e.m.Clients.Dec()
		closeFd(fd)
		s.log.Error("cannot register client", zap.Error(err))
		return
	}
	for {
		e.nextPID++
		if e.sessions[e.nextPID] == nil && e.nextPID != 0 && e.ownsPID(e.nextPID) {
			break
		}
	}
	s.pid = e.nextPID
	s.secret = uint32(e.rng.Uint64())
	e.sessions[s.pid] = s
	s.startup = make(map[string][]string)
	for k, v := range info.Params {
		s.startup[k] = []string{v}
	}
	if info.Profile == "readonly" || info.Profile == "analytics" {
		// The server enforces it too: every transaction of a read-only user is READ ONLY, and the guard
		// refuses what would turn it off.
		s.startup["default_transaction_read_only"] = []string{"on"}
	}
	s.resetSettings()
	if enc := info.Params["client_encoding"]; enc != "" {
		s.setEncoding(enc)
	}
	s.log = s.log.With(zap.Uint32("session", s.pid))
	t := e.tenants[info.Tenant]
	if t == nil {
		s.tenant = &Tenant{Name: info.Tenant, counters: e.m.other}
		s.fatal("3D000", fmt.Sprintf("tenantproxy: tenant %q does not exist", info.Tenant))
		return
	}
	s.tenant = t
	if e.closing || e.draining {
		s.fatal("57P01", "tenantproxy: the proxy is shutting down")
		return
	}
	if e.serverParams == nil && e.g != nil {
		if p := e.g.serverParams(); p != nil {
			e.setServerParams(p)
		}
	}
	if e.serverParams == nil {
		e.starting = append(e.starting, s)
		e.warm()
		return
	}
	s.sendStartup()
}

// sendStartup tells the client its parameters, its cancel key, and that it may send queries.
func (s *Session) sendStartup() {
	out := s.c.buf()
	reported := map[string]string{}
	for k, v := range s.e.serverParams {
		reported[k] = v
	}
	for k, v := range s.info.Params {
		if name, ok := trackedStartup[k]; ok && name != "extra_float_digits" {
			reported[name] = v
		}
	}
	reported["is_superuser"] = "off"
	reported["session_authorization"] = s.info.User
	reported["standard_conforming_strings"] = "on"
	for k, v := range reported {
		out = appendParameterStatus(out, k, v)
	}
	out = appendBackendKeyData(out, s.pid, s.secret)
	s.c.setBuf(appendReady(out, txIdle))
	s.c.flush()
	s.log.Info("session opened", zap.String("mode", s.e.cfg.Mode), zap.Bool("tls", s.info.TLS))
}

func (e *Engine) setServerParams(p map[string]string) {
	if e.g != nil {
		e.g.shareServerParams(e.shard, p)
	}
	e.serverParams = make(map[string]string, len(p))
	for k, v := range p {
		switch k {
		case "session_authorization", "is_superuser", "application_name":
			continue
		}
		e.serverParams[k] = v
	}
	for _, s := range e.starting {
		if s.state != stClosed {
			s.sendStartup()
		}
	}
	e.starting = nil
}

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
			e.cancelBackend(b)
		} else if s.state == stWaiting {
			s.cancelWaiting()
		}
	})
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
			case b.heldBack:
				b.heldBack = false
				e.pool.put(b)
			case b.state == beReset:
				e.continueReset(b) // it waited for the cancel before rolling back
			case b.client != nil:
				b.client.resumeReading() // its next messages waited for the cancel
			}
		})
	}()
}

// clientLeft takes over a backend whose client went away while holding it. What the client sent still
// runs to its end, as it would on a direct connection, except that the query of a client that vanished
// (rather than said Terminate) is cancelled; COPY is failed; an extended-protocol batch without its Sync
// is aborted, not committed (a failing statement, then Sync); then an open transaction is rolled back and
// session state discarded before anyone else gets the backend.
func (e *Engine) clientLeft(b *backend, unsynced, vanished bool) {
	e.leased--
	b.state = beReset
	if b.c.closed {
		return
	}
	b.c.setEvents(b.c.events | evIn) // reading may have been paused for this client's backpressure
	if vanished && !b.opsEmpty() {
		e.cancelBackend(b)
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
		b.queueQuery("ROLLBACK")
	case b.needReset:
		// DISCARD ALL drops temp tables, cursors, LISTEN, advisory locks, prepared statements and
		// settings, and returns the role to the pool role: the backend carries no tenant context.
		b.queueQuery("DISCARD ALL")
		b.needReset = false
		b.ctx, b.settingsSQL = "", ""
		b.forgetPrepared()
	default:
		b.state = beIdle
		e.pool.put(b)
		return
	}
	b.c.flush()
}

// backendClosed updates the pool after a backend connection ended.
func (e *Engine) backendClosed(b *backend, reason string) {
	if b.state == beIdle {
		e.pool.removeIdle(b)
	}
	b.state = beClosed
	e.pool.open--
	e.unreserve()
	e.m.BackendClose.WithLabelValues(closeReasonLabel(reason)).Inc()
	e.log.Debug("backend closed", zap.Uint32("backend_pid", b.pid), zap.String("reason", reason))
	e.pool.maybeDial()
}

func closeReasonLabel(reason string) string {
	switch reason {
	case "setup failed", "idle_timeout or max_lifetime", "max_lifetime", "shutdown", "tripwire", "rebalance":
		return reason
	}
	return "error"
}

// detach separates a backend from its client without releasing it (the backend is about to close).
func (b *backend) detach() *Session {
	s := b.client
	if s == nil {
		return nil
	}
	b.c.setEvents(b.c.events | evIn) // reading may have been paused for this client's backpressure
	b.client = nil
	s.be = nil
	s.tenant.active--
	b.e.leased--
	return s
}

// tripwire closes a backend whose identity no longer matches its context.
func (e *Engine) tripwire(b *backend, why string) {
	e.m.Tripwire.Inc()
	fields := []zap.Field{zap.Bool("audit", true), zap.String("event", "tripwire"), zap.String("why", why), zap.Uint32("backend_pid", b.pid)}
	if s := b.detach(); s != nil {
		fields = append(fields, zap.String("tenant", s.tenant.Name), zap.String("user", s.info.User), zap.String("addr", s.info.Addr))
		s.fatal("08006", "tenantproxy: the server connection was closed by the tenant tripwire: "+why)
	}
	e.log.Error("tripwire: backend identity mismatch", fields...)
	b.close("tripwire")
}

// audit writes a structured audit record about a session.
func (e *Engine) audit(msg string, s *Session, fields ...zap.Field) {
	base := []zap.Field{zap.Bool("audit", true), zap.String("tenant", s.tenant.Name), zap.String("user", s.info.User), zap.String("addr", s.info.Addr), zap.Uint32("session", s.pid)}
	e.log.Warn(msg, append(base, fields...)...)
}

// sessionClosed forgets a closed session.
func (e *Engine) sessionClosed(s *Session) {
	delete(e.sessions, s.pid)
	s.dropStatements()
	e.clients.Add(-1)
	e.m.Clients.Dec()
	s.log.Info("session closed", zap.Duration("duration", e.l.now.Sub(s.info.Opened)), zap.String("reason", s.closeReason))
	if e.draining && len(e.sessions) == 0 && e.drained != nil {
		close(e.drained)
		e.drained = nil
	}
}

// tick runs on the loop every quarter second.
func (e *Engine) tick() {
	e.pool.tick()
	if len(e.starting) > 0 {
		if e.cfg.WaitTimeout > 0 && e.l.now.Sub(e.starting[0].info.Opened) > e.cfg.WaitTimeout+e.dialTimeout {
			e.failStarting("08006", "tenantproxy: cannot connect to the database server: "+e.pool.dialErr)
		} else if e.pool.dialing == 0 && e.l.now.Sub(e.pool.dialFail) >= time.Second {
			e.warm()
		}
	}
	e.publishBackends()
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
			b.fail(fmt.Sprintf("the server sent nothing for [backend] query_timeout (%s)", qt), "08006")
		}
	}
	if e.draining {
		for _, s := range e.sessions {
			if s.state == stIdle || s.state == stWaiting || (s.be != nil && s.be.opsEmpty() && s.be.status == txIdle && len(s.in) == 0) {
				s.fatal("57P01", "tenantproxy: the proxy is shutting down")
			} else if !e.l.now.Before(e.drainBy) {
				s.fatal("57P01", "tenantproxy: the proxy is shutting down; shutdown_timeout passed while the transaction was open")
			}
		}
	}
}

// Drain stops the relay gracefully: idle clients are closed with 57P01 at once, clients in a transaction
// when it ends, and every client after timeout. The returned channel closes when no client is left.
func (e *Engine) Drain(timeout time.Duration) <-chan struct{} {
	done := make(chan struct{})
	if !e.l.post(func() {
		e.draining = true
		e.drainBy = e.l.now.Add(timeout)
		if len(e.sessions) == 0 {
			close(done)
			return
		}
		e.drained = done
		e.tick()
	}) {
		close(done)
	}
	return done
}

// Close ends every client and backend and stops the loop. It waits for the Engine's goroutines, and is
// safe to call more than once.
func (e *Engine) Close() {
	e.closeOnce.Do(e.close)
}

func (e *Engine) close() {
	if !e.started.Load() {
		e.cancel()
		e.l.stop()
		syscall.Close(e.l.epfd)
		syscall.Close(e.l.wakefd)
		return
	}
	finished := make(chan struct{})
	if e.l.post(func() {
		e.closing = true
		for _, s := range e.sessions {
			s.fatal("57P01", "tenantproxy: the proxy is shutting down")
		}
		for _, b := range append([]*backend(nil), e.pool.idle...) {
			b.close("shutdown")
		}
		close(finished)
	}) {
		<-finished
	}
	e.cancel()
	e.l.stop()
	e.wg.Wait()
	<-e.l.done
	// Backends still resetting when the loop stopped.
	for fd, h := range e.l.handlers {
		if h != nil {
			closeFd(fd)
		}
	}
}

// Stats is a snapshot of the relay for tests and the admin view.
type Stats struct {
	Clients, Waiting, Backends, Idle, Leased, Dialing int
}

// Stats returns a snapshot, taken on the loop.
func (e *Engine) Stats() Stats {
	ch := make(chan Stats, 1)
	if !e.l.post(func() {
		ch <- Stats{Clients: len(e.sessions), Waiting: e.pool.waiting, Backends: e.pool.open, Idle: len(e.pool.idle), Leased: e.leased, Dialing: e.pool.dialing}
	}) {
		return Stats{}
	}
	return <-ch
}

func closeFd(fd int) { syscall.Close(fd) }
