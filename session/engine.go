// Package session owns a client's life after authentication: the relay loop, leasing a backend of the
// one shared pool on the first message of a transaction and releasing it at ReadyForQuery, the tenant
// context written ahead of the client's frames, tracked settings, prepared statements and the refusals
// of the statement guard.
//
// # State
//
// A session and a backend are each one state machine with one door (state.go): Session.setState and
// backend.setState are the only writers of their states, Engine.lease and Engine.unlease the only code
// that links the two, and every transition outside the machine panics with "BUG:".
//
//	session: idle ──▶ waiting ──▶ active ──▶ idle ... ──▶ closed
//	backend: new ──▶ idle ◀──▶ leased ──▶ cancel_wait | reset ──▶ idle ... ──▶ closed
//
// What a backend still owes is its reply queue (replies.go), which knows the protocol's rules for what
// the server answers and what it skips after an error. A backend whose client left goes through the reset
// path (reset.go); cancel requests wait for the client's own statement (cancel.go); the loop's periodic
// work is in maintenance.go, the prepared-statement registry and per-backend LRU in prepared.go.
package session

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/jackc/pgerrcode"

	"github.com/tenantproxy/tenantproxy/audit"
	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgerr"
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
	pausedAll    bool                           // admin PAUSE of every tenant: tenants added meanwhile start paused
	startupMaps  map[string]map[string][]string // shared startup settings, by profile and parameters
	waits        []waitFor                      // admin commands waiting for a condition (admin.go)
}

// New validates cfg and builds an Engine; Start runs it. Limits left zero take config.toml's defaults.
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
		cfg.MaxMessageSize = config.DefaultMaxMessageSize
	}
	if cfg.MaxPreparedStatements <= 0 {
		cfg.MaxPreparedStatements = config.DefaultMaxPreparedStatements
	}
	if cfg.MaxClientPreparedStatements <= 0 {
		cfg.MaxClientPreparedStatements = config.DefaultMaxClientPreparedStatements
	}
	if cfg.MaxClientPreparedBytes <= 0 {
		cfg.MaxClientPreparedBytes = config.DefaultMaxClientPreparedBytes
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = config.DefaultMaxClientConn
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
		tenants:     map[string]*Tenant{},
		sessions:    map[uint32]*Session{}, rng: mrand.NewChaCha8(seed),
		stmtIDs: map[stmtKey]*stmtEntry{}, startupMaps: map[string]map[string][]string{},
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
	if e.pool.opened() == 0 && e.pool.dialing == 0 {
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
// tenant get the new context and limits at their next lease; sessions of a removed or suspended tenant
// are closed at their next lease.
func (e *Engine) SetTenants(ts []Tenant) {
	e.setTenants(ts, nil)
}

// setTenants is SetTenants with the Group's shared per-tenant counts (nil for a standalone Engine, which
// keeps its own).
func (e *Engine) setTenants(ts []Tenant, shared map[string]*tenantShared) {
	list := append([]Tenant(nil), ts...)
	e.l.post(func() {
		seen := make(map[string]bool, len(list))
		for i := range list {
			nt := &list[i]
			seen[nt.Name] = true
			if t := e.tenants[nt.Name]; t != nil {
				t.Schema, t.SetupSQL, t.VerifySQL, t.AllowedSchemas, t.Suspended = nt.Schema, nt.SetupSQL, nt.VerifySQL, nt.AllowedSchemas, nt.Suspended
				if t.Limits != nt.Limits {
					t.Limits = nt.Limits
					e.limitsChanged(t)
				}
				continue
			}
			t := &Tenant{Name: nt.Name, Schema: nt.Schema, SetupSQL: nt.SetupSQL, VerifySQL: nt.VerifySQL, AllowedSchemas: nt.AllowedSchemas, Suspended: nt.Suspended, Limits: nt.Limits,
				paused: e.pausedAll}
			if t.shared = shared[t.Name]; t.shared == nil {
				t.shared = new(tenantShared)
			}
			e.tenants[t.Name] = t
		}
		for name, t := range e.tenants {
			if !seen[name] {
				t.Suspended = true
				delete(e.tenants, name)
			}
		}
		e.pool.dispatch() // a raised limit may let waiters in
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
	e.m.Clients.Inc()
	e.m.ClientsTotal.Inc()
	if err := s.c.register(s); err != nil {
		e.clients.Add(-1)
		e.m.Clients.Dec()
		closeFd(fd)
		s.logger().Error("cannot register client", zap.Error(err))
		return
	}
	for {
		e.nextPID++
		if p := e.cfg.PeerID; p != 0 {
			e.nextPID = p<<24 | e.nextPID&0x00FFFFFF
		}
		if e.sessions[e.nextPID] == nil && e.nextPID != 0 && e.ownsPID(e.nextPID) {
			break
		}
	}
	s.pid = e.nextPID
	s.secret = uint32(e.rng.Uint64())
	e.sessions[s.pid] = s
	s.startup = e.startupSettings(info)
	s.resetSettings()
	if enc := info.Params["client_encoding"]; enc != "" {
		s.setEncoding(enc)
	}
	s.info.Params = nil // s.startup has them, shared with the clients that sent the same: an idle client keeps no map of its own
	t := e.tenants[info.Tenant]
	if t == nil {
		s.tenant = &Tenant{Name: info.Tenant}
		s.fatal(pgerrcode.InvalidCatalogName, fmt.Sprintf("tenantproxy: tenant %q does not exist", info.Tenant))
		return
	}
	if e.closing || e.draining {
		s.tenant = t
		s.fatal(pgerrcode.AdminShutdown, "tenantproxy: the proxy is shutting down")
		return
	}
	if !e.admit(s, t) {
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

// startupSettings returns the tracked settings a client starts with. Clients that connect with the same
// parameters share one map, which is never changed (Session.applySets copies it first): an idle client
// does not pay for its own.
func (e *Engine) startupSettings(info ClientInfo) map[string][]string {
	var key strings.Builder
	key.WriteString(info.Profile)
	names := slices.Sorted(maps.Keys(info.Params))
	for _, k := range names {
		key.WriteByte(0)
		key.WriteString(k)
		key.WriteByte(0)
		key.WriteString(info.Params[k])
	}
	if m, ok := e.startupMaps[key.String()]; ok {
		return m
	}
	m := make(map[string][]string, len(info.Params)+1)
	for k, v := range info.Params {
		m[k] = []string{v}
	}
	if info.Profile == "readonly" || info.Profile == "analytics" {
		// The server enforces it too: every transaction of a read-only user is READ ONLY, and the guard
		// refuses what would turn it off.
		m["default_transaction_read_only"] = []string{"on"}
	}
	if len(e.startupMaps) >= maxStartupMaps {
		clear(e.startupMaps)
	}
	e.startupMaps[key.String()] = m
	return m
}

// maxStartupMaps bounds the shared startup maps; past it they are forgotten (sessions keep theirs).
const maxStartupMaps = 4096

// sendStartup tells the client its parameters, its cancel key, and that it may send queries. The
// parameters are those the server reports (its GUC_REPORT settings, as the backends reported them at
// login), each with the client's own value where the client set it at startup, and application_name,
// which PostgreSQL always reports: the client's, or empty.
func (s *Session) sendStartup() {
	out := s.c.buf()
	reported := make(map[string]string, len(s.e.serverParams)+4)
	spelled := make(map[string]string, len(s.e.serverParams))
	for k, v := range s.e.serverParams {
		reported[k] = v
		spelled[strings.ToLower(k)] = k
	}
	for k, v := range s.startup {
		if name, ok := spelled[strings.ToLower(k)]; ok && len(v) > 0 {
			reported[name] = strings.Join(v, ", ")
		}
	}
	reported["application_name"] = ""
	if v := s.startup["application_name"]; len(v) > 0 {
		reported["application_name"] = v[0]
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
	s.logger().Info("session opened", zap.String("mode", s.e.cfg.Mode), zap.Bool("tls", s.info.TLS))
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

// backendClosed updates the pool after a backend connection ended.
func (e *Engine) backendClosed(b *backend, reason pgerr.CloseReason, detail string) {
	b.setState(beClosed)
	e.checkWaits()
	e.unreserve()
	e.m.BackendClose.WithLabelValues(reason.Label()).Inc()
	e.log.Debug("backend closed", zap.Uint32("backend_pid", b.pid), zap.Stringer("reason", reason), zap.String("detail", detail))
	e.pool.maybeDial()
}

// detach separates a backend from its client without releasing it (the backend is about to close).
func (b *backend) detach() *Session {
	s := b.client
	if s == nil {
		return nil
	}
	b.e.unlease(s)
	return s
}

// tripwire closes a backend whose identity no longer matches its context.
func (e *Engine) tripwire(b *backend, why string) {
	e.m.Tripwire.Inc()
	fields := []zap.Field{zap.Bool("audit", true), zap.String("event", "tripwire"), zap.String("why", why), zap.Uint32("backend_pid", b.pid)}
	if s := b.detach(); s != nil {
		fields = append(fields, zap.String("tenant", s.tenant.Name), zap.String("user", s.info.User), zap.String("addr", s.info.Addr))
		audit.Log.Tripwire(s.auditConn(), why)
		s.fatal(pgerrcode.ConnectionFailure, "tenantproxy: the server connection was closed by the tenant tripwire: "+why)
	} else {
		audit.Log.Tripwire(audit.Conn{}, why)
	}
	e.log.Error("tripwire: backend identity mismatch", fields...)
	b.close(pgerr.CloseTripwire)
}

// audit writes a structured audit record about a session.
func (e *Engine) audit(msg string, s *Session, fields ...zap.Field) {
	base := []zap.Field{zap.Bool("audit", true), zap.String("tenant", s.tenant.Name), zap.String("user", s.info.User), zap.String("addr", s.info.Addr), zap.Uint32("session", s.pid)}
	e.log.Warn(msg, append(base, fields...)...)
}

// sessionClosed forgets a closed session.
func (e *Engine) sessionClosed(s *Session) {
	if t := s.tenant; t.shared != nil {
		t.shared.clients.Add(-1)
		t.clients--
		t.stats.add(s.liveStats())
	}
	delete(e.sessions, s.pid)
	s.dropStatements()
	audit.Log.Disconnect(s.auditConn(), s.closeText())
	e.clients.Add(-1)
	e.m.Clients.Dec()
	s.logger().Info("session closed", zap.Duration("duration", e.l.now.Sub(s.info.Opened)), zap.Stringer("reason", s.closeReason), zap.String("detail", s.closeDetail))
	if e.draining && len(e.sessions) == 0 && e.drained != nil {
		close(e.drained)
		e.drained = nil
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
		for _, w := range e.waits {
			close(w.done) // nothing more will happen that an admin command waits for
		}
		e.waits = nil
		for _, s := range e.sessions {
			s.fatal(pgerrcode.AdminShutdown, "tenantproxy: the proxy is shutting down")
		}
		for _, b := range append([]*backend(nil), e.pool.idle...) {
			b.close(pgerr.CloseShutdown)
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
		ch <- Stats{Clients: len(e.sessions), Waiting: e.pool.waiting, Backends: e.pool.opened(), Idle: len(e.pool.idle), Leased: e.leased, Dialing: e.pool.dialing}
	}) {
		return Stats{}
	}
	return <-ch
}

func closeFd(fd int) { syscall.Close(fd) }
