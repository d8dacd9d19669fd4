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

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/netfd"
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

// Server accepts clients.
type Server struct {
	log    *zap.Logger
	engine Engine
	router *routing.Router

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
				s.fatal(conn, "08P01", "SSLRequest received on an encrypted connection")
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
				s.engine.Cancel(p.cancelPID, uint32(p.cancelKey[0])<<24|uint32(p.cancelKey[1])<<16|uint32(p.cancelKey[2])<<8|uint32(p.cancelKey[3]))
			}
			return
		}
		pkt = p
		break
	}
	if cfg.Listen.TLSMode == config.TLSRequire && !isTLS {
		s.fatal(conn, "28000", "tenantproxy: this proxy requires TLS ([listen] tls_mode = \"require\"); connect with sslmode=require")
		return
	}
	if pkt.code != codeProtocol3 || len(pkt.unknownPQ) > 0 {
		if _, err := conn.Write(negotiateProtocolVersion(pkt.unknownPQ)); err != nil {
			return
		}
	}
	user := pkt.params["user"]
	if user == "" {
		s.fatal(conn, "28000", "no PostgreSQL user name specified in startup packet")
		return
	}
	database := pkt.params["database"]
	if database == "" {
		database = user
	}
	if n := s.engine.Clients(); n >= cfg.Pool.MaxClientConn {
		s.fatal(conn, "53300", fmt.Sprintf("tenantproxy: too many client connections (%d); [pool] max_client_conn is %d", n, cfg.Pool.MaxClientConn))
		return
	}
	snap := s.router.Snapshot()
	id, rerr := snap.Identify(user, database)
	if rerr != nil {
		s.fatal(conn, rerr.Code, rerr.Message)
		return
	}
	log = log.With(zap.String("user", user), zap.String("tenant", id.Tenant))
	if s.failures.blocked(addr) {
		time.Sleep(cfg.Auth.FailureDelay.Duration)
		s.fatal(conn, "28P01", fmt.Sprintf("password authentication failed for user %q", user))
		return
	}
	be := pgproto3.NewBackend(conn, conn)
	be.SetMaxBodyLen(65535) // PostgreSQL's limit for authentication messages
	req := auth.Request{Method: cfg.Auth.Method, User: user, TLS: isTLS, AllowCleartextWithoutTLS: cfg.Auth.AllowCleartextWithoutTLS}
	if isTLS {
		req.ChannelBinding = s.cbData
	}
	if u := snap.User(id.User); u != nil {
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
	t, aerr := snap.Authorize(id)
	if aerr != nil {
		log.Warn("connection refused", zap.Bool("audit", true), zap.String("event", "tenant_refused"), zap.String("sqlstate", aerr.Code), zap.String("reason", aerr.Message))
		s.fatal(conn, aerr.Code, aerr.Message)
		return
	}
	s.failures.succeed(addr)
	profile := config.ProfileApp
	if u := snap.User(id.User); u != nil && u.Profile != "" {
		profile = u.Profile
	}
	if _, err := conn.Write([]byte{'R', 0, 0, 0, 8, 0, 0, 0, 0}); err != nil {
		return
	}
	// Like PostgreSQL, the settings of the startup packet are applied, or fail the connection, after
	// authentication (see params.go).
	params, perr := s.startupSettings(cfg, pkt, profile, t)
	if perr != nil {
		log.Info("startup parameter refused", zap.String("sqlstate", perr.code), zap.String("reason", perr.msg))
		s.fatal(conn, perr.code, perr.msg)
		return
	}
	c.SetDeadline(time.Time{})
	info := session.ClientInfo{User: user, Tenant: t.Name, Profile: profile, Addr: addr, TLS: isTLS, Params: params, Opened: time.Now()}
	fd, err := s.handOff(conn, isTLS)
	if err != nil {
		log.Error("cannot hand the client to the relay", zap.Error(err))
		s.fatal(conn, "XX000", "tenantproxy: internal error")
		return
	}
	handedOff = true
	if !isTLS {
		c.Close()
	}
	if err := s.engine.Attach(fd, info); err != nil {
		log.Warn("relay refused the client", zap.Error(err))
	}
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
	var pe *protoError
	if errors.As(err, &pe) {
		log.Info("startup refused", zap.String("sqlstate", pe.code), zap.String("reason", pe.msg), zap.Bool("silent", pe.silent))
		if !pe.silent {
			s.fatal(conn, pe.code, pe.msg)
		}
		return
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		log.Debug("startup failed", zap.Error(err))
	}
}

// fatal sends a FATAL ErrorResponse during the startup phase.
func (s *Server) fatal(conn net.Conn, code, msg string) {
	e := &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg}
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

// canonicalEncoding spells an encoding name as the server reports it ("EUC_JP" for "eucjp", "UTF8" for
// asyncpg's "utf-8"); a name PostgreSQL does not know is passed on as given.
func canonicalEncoding(name string) string {
	if official, ok := policy.CanonicalEncoding(name); ok {
		return official
	}
	return name
}
