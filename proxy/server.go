// Package proxy is tenantproxy's front door: the listener and accept loop, SSLRequest and TLS,
// CancelRequest routing, the startup packet, client authentication and tenant resolution. A client that
// passes is handed, as a raw socket, to the relay (package session).
package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/audit"
	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/netfd"
	"github.com/tenantproxy/tenantproxy/internal/pgerr"
	"github.com/tenantproxy/tenantproxy/policy"
	"github.com/tenantproxy/tenantproxy/proxy/auth"
	"github.com/tenantproxy/tenantproxy/routing"
	"github.com/tenantproxy/tenantproxy/session"
)

// Engine is the part of the relay the front door uses.
type Engine interface {
	Attach(fd int, info session.ClientInfo) error
	Cancel(pid, secret uint32)
	Clients() int
}

// Console serves the admin console (package admin) to a client that connected to one of its
// databases and authenticated.
type Console interface {
	// Permits reports whether user may open the console; others get 28000 after authenticating.
	Permits(user string) bool
	// Serve runs the console after AuthenticationOk until the client leaves; it does not close conn.
	Serve(conn net.Conn, user, addr string)
}

// Server accepts clients.
type Server struct {
	log     *zap.Logger
	engine  Engine
	router  *routing.Router
	console atomic.Pointer[consoleHook]
	// CancelHook, when set, is asked first about every cancel request: it returns true when it has
	// handled it (forwarded it to the peer process that owns the key).
	CancelHook func(pid, secret uint32) bool
	// Users, when set, finds the users that are not in [[users]] ([auth] users = "database"). Set it
	// before Serve.
	Users routing.UserSource

	cfg      atomic.Pointer[config.Config]
	guard    atomic.Pointer[policy.Guard] // judges startup parameters as SET
	tls      *tls.Config
	cbData   []byte
	failures *failureLimiter

	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup
	AuthFail atomic.Int64 // authentication failures, for metrics and tests
}

// New builds a Server. TLS files are loaded now; a bad file is an error naming the key.
func New(cfg *config.Config, engine Engine, router *routing.Router, log *zap.Logger) (*Server, error) {
	s := &Server{log: log, engine: engine, router: router, conns: map[net.Conn]struct{}{}, failures: newFailureLimiter()}
	s.cfg.Store(cfg)
	s.guard.Store(startupGuard(cfg))
	if cfg.Listen.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Listen.TLSCertFile, cfg.Listen.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("[listen] tls_cert_file/tls_key_file: %w", err)
		}
		if cert.Leaf == nil && len(cert.Certificate) > 0 {
			cert.Leaf, _ = x509.ParseCertificate(cert.Certificate[0])
		}
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if cert.Leaf != nil {
			s.cbData = auth.ChannelBindingData(cert.Leaf)
		}
	}
	return s, nil
}

type consoleHook struct {
	c    Console
	isDB func(string) bool
}

// SetConsole makes connections to a database for which isDB is true open c.
func (s *Server) SetConsole(c Console, isDB func(string) bool) {
	s.console.Store(&consoleHook{c: c, isDB: isDB})
}

// authFailed writes the audit record of a failed authentication or refused connection.
func (s *Server) authFailed(user, addr, tenant, sqlstate, reason string) {
	audit.Log.AuthFailed(audit.Conn{Tenant: tenant, User: user, Addr: addr}, sqlstate, reason)
}

// SetConfig applies a reloaded configuration to new connections (users, auth method, tenancy).
func (s *Server) SetConfig(cfg *config.Config) {
	s.guard.Store(startupGuard(cfg))
	s.cfg.Store(cfg)
}

// Serve accepts connections on ln until Close. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.ln = ln
	s.mu.Unlock()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				delay = min(max(delay*2, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("delay", delay))
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if !s.track(c, true) {
			c.Close()
			return nil
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

func (s *Server) track(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closed {
			return false
		}
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
	return true
}

// StopAccepting closes the listener and lets the connections in their startup phase finish it (a rolling
// restart: they are handed to the relay, not dropped). Close still ends everything later.
func (s *Server) StopAccepting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
}

// Close stops accepting, ends connections still in the startup phase and waits for their goroutines.
// Clients already handed to the relay are the relay's to drain.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// handle runs the startup phase of one connection.
func (s *Server) handle(c net.Conn) {
	cfg := s.cfg.Load()
	addr := c.RemoteAddr().String()
	log := s.log.With(zap.String("addr", addr))
	handedOff := false
	defer func() {
		if !handedOff {
			c.Close()
		}
		s.track(c, false)
	}()
	c.SetDeadline(time.Now().Add(cfg.Listen.StartupTimeout.Duration))
	conn := c
	isTLS := false
	var pkt *startupPacket
	for {
		p, err := readStartup(conn)
		if err != nil {
			s.startupFailed(conn, log, err)
			return
		}
		switch p.code {
		case codeSSLRequest:
			if isTLS {
				s.fatal(conn, pgerr.Fatal(pgerrcode.ProtocolViolation, "SSLRequest received on an encrypted connection"))
				return
			}
			if s.tls == nil || cfg.Listen.TLSMode == config.TLSDisable {
				if _, err := conn.Write([]byte{'N'}); err != nil {
					return
				}
				continue
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				return
			}
			tc := tls.Server(conn, s.tls)
			if err := tc.Handshake(); err != nil {
				log.Info("TLS handshake failed", zap.Error(err))
				return
			}
			conn, isTLS = tc, true
			continue
		case codeGSSENC:
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return
			}
			continue
		case codeCancel:
			if len(p.cancelKey) == 4 {
				if h := s.CancelHook; h != nil && h(p.cancelPID, uint32(p.cancelKey[0])<<24|uint32(p.cancelKey[1])<<16|uint32(p.cancelKey[2])<<8|uint32(p.cancelKey[3])) {
					return
				}
				s.engine.Cancel(p.cancelPID, uint32(p.cancelKey[0])<<24|uint32(p.cancelKey[1])<<16|uint32(p.cancelKey[2])<<8|uint32(p.cancelKey[3]))
			}
			return
		}
		pkt = p
		break
	}
	if cfg.Listen.TLSMode == config.TLSRequire && !isTLS {
		s.fatal(conn, pgerr.Fatal(pgerrcode.InvalidAuthorizationSpecification, "tenantproxy: this proxy requires TLS ([listen] tls_mode = \"require\"); connect with sslmode=require"))
		return
	}
	if pkt.code != codeProtocol3 || len(pkt.unknownPQ) > 0 {
		if _, err := conn.Write(negotiateProtocolVersion(pkt.unknownPQ)); err != nil {
			return
		}
	}
	user := pkt.params["user"]
	if user == "" {
		s.fatal(conn, pgerr.Fatal(pgerrcode.InvalidAuthorizationSpecification, "no PostgreSQL user name specified in startup packet"))
		return
	}
	database := pkt.params["database"]
	if database == "" {
		database = user
	}
	console := s.console.Load()
	if console != nil && !console.isDB(database) {
		console = nil
	}
	// The admin console is not a relay client: an operator gets in when the proxy is full.
	if n := s.engine.Clients(); n >= cfg.Pool.MaxClientConn && console == nil {
		s.fatal(conn, pgerr.Fatalf(pgerrcode.TooManyConnections, "tenantproxy: too many client connections (%d); [pool] max_client_conn is %d", n, cfg.Pool.MaxClientConn))
		return
	}
	snap := s.router.Snapshot()
	var id routing.Identity
	var rerr *pgerr.Error
	if console != nil {
		id = routing.Identity{User: user, Tenant: database, Via: "console"}
	} else {
		id, rerr = snap.Identify(user, database)
	}
	if rerr != nil {
		s.fatal(conn, rerr)
		return
	}
	log = log.With(zap.String("user", user), zap.String("tenant", id.Tenant))
	if s.failures.blocked(addr) {
		time.Sleep(cfg.Auth.FailureDelay.Duration)
		s.fatal(conn, pgerr.Fatalf(pgerrcode.InvalidPassword, "password authentication failed for user %q", user))
		return
	}
	be := pgproto3.NewBackend(conn, conn)
	be.SetMaxBodyLen(65535) // PostgreSQL's limit for authentication messages
	req := auth.Request{Method: cfg.Auth.Method, User: user, TLS: isTLS, AllowCleartextWithoutTLS: cfg.Auth.AllowCleartextWithoutTLS}
	if isTLS {
		req.ChannelBinding = s.cbData
	}
	u, ok := s.lookupUser(snap, id, log)
	if !ok {
		s.fatal(conn, pgerr.Fatal(pgerrcode.CannotConnectNow, "tenantproxy: cannot look up users right now; try again"))
		return
	}
	if !snap.AddrAllowed(u, id.Tenant, clientAddr(c)) {
		s.refuseAddr(conn, id, addr, log)
		return
	}
	if u != nil {
		sec, err := auth.ParseSecret(u.Password)
		if err == nil {
			req.Secret = &sec
		} else if cfg.Auth.Method != config.AuthTrust {
			log.Error("configured password cannot be used", zap.Error(err))
		}
	}
	if err := auth.Authenticate(be, req); err != nil {
		if errors.Is(err, auth.ErrClientClosed) {
			return
		}
		s.AuthFail.Add(1)
		s.failures.fail(addr)
		log.Warn("authentication failed", zap.Bool("audit", true), zap.String("event", "auth_failed"), zap.Error(err))
		s.authFailed(id.User, addr, id.Tenant, pgerrcode.InvalidPassword, err.Error())
		time.Sleep(cfg.Auth.FailureDelay.Duration)
		var ae *auth.Error
		if errors.As(err, &ae) {
			be.Send(ae.Response())
			be.Flush()
		}
		return
	}
	if cfg.Auth.Method != config.AuthTrust && req.Secret == nil {
		// Authenticate never accepts an unknown user; this is a guard against a future change.
		panic("BUG: unknown user authenticated")
	}
	if console != nil {
		s.serveConsole(c, conn, console.c, id.User, addr, log)
		return
	}
	t, aerr := snap.AuthorizeUser(id, u)
	if aerr != nil {
		log.Warn("connection refused", zap.Bool("audit", true), zap.String("event", "tenant_refused"), zap.String("sqlstate", aerr.Code), zap.String("reason", aerr.Message))
		s.authFailed(id.User, addr, id.Tenant, aerr.Code, aerr.Message)
		s.fatal(conn, aerr)
		return
	}
	s.failures.succeed(addr)
	profile := config.ProfileApp
	if u != nil && u.Profile != "" {
		profile = u.Profile
	}
	if _, err := conn.Write([]byte{'R', 0, 0, 0, 8, 0, 0, 0, 0}); err != nil {
		return
	}
	// Like PostgreSQL, the settings of the startup packet are applied, or fail the connection, after
	// authentication (see params.go).
	params, perr := s.startupSettings(cfg, pkt, string(profile), t)
	if perr != nil {
		log.Info("startup parameter refused", zap.String("sqlstate", perr.Code), zap.String("reason", perr.Message))
		s.fatal(conn, perr)
		return
	}
	c.SetDeadline(time.Time{})
	info := session.ClientInfo{User: user, Tenant: t.Name, Profile: string(profile), Addr: addr, TLS: isTLS, Params: params, Opened: time.Now()}
	fd, err := s.handOff(conn, isTLS)
	if err != nil {
		log.Error("cannot hand the client to the relay", zap.Error(err))
		s.fatal(conn, pgerr.Fatal(pgerrcode.InternalError, "tenantproxy: internal error"))
		return
	}
	handedOff = true
	if !isTLS {
		c.Close()
	}
	if err := s.engine.Attach(fd, info); err != nil {
		log.Warn("relay refused the client", zap.Error(err))
		return
	}
	// The relay knows the session id (the cancel key's pid) and records the disconnect.
	audit.Log.Connect(audit.Conn{Tenant: t.Name, User: id.User, Addr: addr})
}

// serveConsole runs the admin console on an authenticated connection, in this goroutine (so Close ends it).
func (s *Server) serveConsole(raw, conn net.Conn, c Console, user, addr string, log *zap.Logger) {
	if !c.Permits(user) {
		log.Warn("connection refused", zap.Bool("audit", true), zap.String("event", "console_refused"))
		s.authFailed(user, addr, "", pgerrcode.InvalidAuthorizationSpecification, "not an admin console user")
		s.fatal(conn, pgerr.Fatalf(pgerrcode.InvalidAuthorizationSpecification, "tenantproxy: user %q is not allowed to open the admin console", user))
		return
	}
	s.failures.succeed(addr)
	if _, err := conn.Write([]byte{'R', 0, 0, 0, 8, 0, 0, 0, 0}); err != nil {
		return
	}
	raw.SetDeadline(time.Time{})
	c.Serve(conn, user, addr)
}

// handOff returns a socket the relay can own: the client's own for a plain connection; for TLS, one end
// of a socket pair whose other end is bridged to the TLS connection by two goroutines.
func (s *Server) handOff(conn net.Conn, isTLS bool) (int, error) {
	if !isTLS {
		return netfd.Dup(conn)
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return -1, err
	}
	f := os.NewFile(uintptr(fds[1]), "tls-bridge")
	bridge, err := net.FileConn(f)
	f.Close()
	if err != nil {
		syscall.Close(fds[0])
		return -1, err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.bridge(conn, bridge)
	}()
	return fds[0], nil
}

// bridge copies between the TLS connection and the relay's end of the socket pair until either closes.
func (s *Server) bridge(tlsConn, plain net.Conn) {
	s.track(tlsConn, true)
	defer s.track(tlsConn, false)
	done := make(chan struct{})
	go func() {
		io.Copy(plain, tlsConn)
		plain.(*net.UnixConn).CloseWrite()
		close(done)
	}()
	io.Copy(tlsConn, plain)
	tlsConn.Close()
	plain.Close()
	<-done
}

func (s *Server) startupFailed(conn net.Conn, log *zap.Logger, err error) {
	var pe *pgerr.Error
	if errors.As(err, &pe) {
		log.Info("startup refused", zap.String("sqlstate", pe.Code), zap.String("reason", pe.Message), zap.Bool("silent", pe.Silent))
		if !pe.Silent {
			s.fatal(conn, pe)
		}
		return
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		log.Debug("startup failed", zap.Error(err))
	}
}

// fatal sends e, a FATAL error, as an ErrorResponse during the startup phase.
func (s *Server) fatal(conn net.Conn, e *pgerr.Error) {
	b, err := e.Encode(nil)
	if err == nil {
		conn.Write(b)
	}
}

// Wait blocks until every startup goroutine and TLS bridge has ended.
func (s *Server) Wait(ctx context.Context) {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
