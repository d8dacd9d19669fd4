package app

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/admin"
	"github.com/tenantproxy/tenantproxy/audit"
	"github.com/tenantproxy/tenantproxy/config"
)

// ops is the operational side of an App: the admin console and its Source, the audit log, /healthz,
// /readyz and /status, cancel forwarding between peers, and systemd readiness.
type ops struct {
	cfgMu    sync.Mutex
	console  *admin.Console
	source   *source
	auditW   *audit.Writer
	stopping atomic.Bool
	stopped  chan struct{}
	peerLn   net.Listener
	peerWG   sync.WaitGroup

	// routerMu guards the tenants last handed to the router (as the catalog or config has them) and the
	// tenants DISABLEd in the console, which the router sees as suspended.
	routerMu sync.Mutex
	tenants  []config.Tenant
	disabled map[string]bool
}

// updateRouter hands the router the tenants with the console's DISABLE applied: a disabled tenant's new
// clients are refused (57P03); its connected clients go on, as with pgbouncer's DISABLE.
func (p *App) updateRouter(cfg *config.Config, ts []config.Tenant) {
	p.routerMu.Lock()
	defer p.routerMu.Unlock()
	p.tenants = append([]config.Tenant(nil), ts...)
	p.applyRouterLocked(cfg)
}

func (p *App) applyRouterLocked(cfg *config.Config) {
	ts := append([]config.Tenant(nil), p.tenants...)
	for i := range ts {
		if p.disabled[ts[i].Name] {
			ts[i].Suspended = true
		}
	}
	p.router.Update(cfg, ts)
}

// catalogTenants are the tenants as the catalog last reported them (without DISABLE).
func (p *App) catalogTenants() []config.Tenant {
	p.routerMu.Lock()
	defer p.routerMu.Unlock()
	return append([]config.Tenant(nil), p.tenants...)
}

// setDisabled is DISABLE (true) and ENABLE (false) of a tenant.
func (p *App) setDisabled(tenant string, v bool) {
	p.routerMu.Lock()
	defer p.routerMu.Unlock()
	if p.disabled == nil {
		p.disabled = map[string]bool{}
	}
	if v {
		p.disabled[tenant] = true
	} else {
		delete(p.disabled, tenant)
	}
	p.applyRouterLocked(p.config())
}

func (p *App) isDisabled(tenant string) bool {
	p.routerMu.Lock()
	defer p.routerMu.Unlock()
	return p.disabled[tenant]
}

// config returns the running configuration.
func (p *App) config() *config.Config {
	p.cfgMu.Lock()
	defer p.cfgMu.Unlock()
	return p.cfg
}

// Stopped is closed when the proxy has shut down (SIGTERM, or SHUTDOWN in the admin console).
func (p *App) Stopped() <-chan struct{} { return p.stopped }

// Console is the admin console.
func (p *App) Console() *admin.Console { return p.console }

// AdminSource is what the admin console and the status page show.
func (p *App) AdminSource() admin.Source { return p.source }

func (p *App) startOps(version string) error {
	cfg := p.cfg
	if cfg.Audit.Path != "" {
		w, err := audit.Open(cfg.Audit.Path, p.reg, p.log)
		if err != nil {
			return err
		}
		p.auditW = w
		audit.Log.Set(w)
	}
	p.source = &source{p: p, version: version, relay: newRelaySource(p.engine, p.config, p.versions)}
	p.console = admin.New(p.source, version, p.log)
	p.console.SetUsers(cfg.AdminConsole.AdminUsers, cfg.AdminConsole.StatsUsers)
	p.server.SetConsole(p.console, admin.IsConsoleDatabase)
	if cfg.Peers.ID != 0 {
		if err := p.startPeers(cfg); err != nil {
			return err
		}
	}
	return nil
}

func (p *App) reloadOps(cfg *config.Config) {
	p.console.SetUsers(cfg.AdminConsole.AdminUsers, cfg.AdminConsole.StatsUsers)
}

func (p *App) stopOps() {
	if p.peerLn != nil {
		p.peerLn.Close()
		p.peerWG.Wait()
	}
	if p.auditW != nil {
		audit.Log.Unset(p.auditW)
		p.auditW.Close()
	}
}

func (p *App) hasTenant(name string) bool {
	for _, t := range p.router.Snapshot().Tenants() {
		if t.Name == name {
			return true
		}
	}
	return false
}

// consoleShutdown is SHUTDOWN from the admin console: at once (open transactions get
// [pool] shutdown_timeout), or with WAIT_FOR_CLIENTS once the last client has left.
func (p *App) consoleShutdown(waitForClients bool) {
	timeout := p.config().Pool.ShutdownTimeout.Duration
	if waitForClients {
		p.ShutdownWaitForClients(timeout)
		return
	}
	p.BeginShutdown()
	p.Shutdown(timeout)
}

// BeginShutdown tells systemd the proxy is stopping (SIGTERM).
func (p *App) BeginShutdown() { notifySystemd("STOPPING=1", p.log) }

// ShutdownWaitForClients is the rolling-restart shutdown (SIGTERM with [listen] reuse_port, SHUTDOWN
// WAIT_FOR_CLIENTS): stop accepting at once, so that new clients reach the process that shares the
// address; let the clients already here leave by themselves, for up to timeout; then close what is left.
// Cancel requests forwarded by peers are served until the end.
func (p *App) ShutdownWaitForClients(timeout time.Duration) {
	p.stopping.Store(true)
	p.server.StopAccepting()
	notifySystemd("STOPPING=1", p.log)
	p.log.Info("stopped accepting; waiting for clients to leave", zap.Int("clients", p.engine.Clients()), zap.Duration("timeout", timeout))
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(50 * time.Millisecond)
	for p.engine.Clients() > 0 && time.Now().Before(deadline) {
		<-t.C
	}
	t.Stop()
	p.Shutdown(0)
}

// soReusePort is SO_REUSEPORT on Linux (the syscall package lacks it; the relay is Linux-only).
const soReusePort = 0xf

// listen opens the client listener, with SO_REUSEPORT when reusePort is set.
func listen(addr string, reusePort bool) (net.Listener, error) {
	lc := net.ListenConfig{}
	if reusePort {
		lc.Control = func(network, address string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	return lc.Listen(context.Background(), "tcp", addr)
}

// handleOps adds /healthz, /readyz and /status to the metrics server.
func (p *App) handleOps(mux *http.ServeMux) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := p.ready(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "not ready: "+err.Error()+"\n")
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.Handle("/status", admin.StatusHandler(p.source))
}

// ready: listening, not shutting down, and the backend server reachable (an open backend, or a TCP
// connection to the server's address now).
func (p *App) ready(ctx context.Context) error {
	if p.stopping.Load() {
		return errors.New("shutting down")
	}
	if p.engine.Stats().Backends > 0 {
		return nil
	}
	cfg := p.config()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(cfg.Backend.Host, strconv.Itoa(cfg.Backend.Port)))
	if err != nil {
		return errors.New("backend server unreachable: " + err.Error())
	}
	c.Close()
	return nil
}

// cancelCode is the CancelRequest code.
const cancelCode = 80877102

// startPeers listens on this process's [peers] address for forwarded cancel requests and forwards
// cancel requests whose key names another peer.
func (p *App) startPeers(cfg *config.Config) error {
	addrs := cfg.Peers.PeerAddrs()
	own := uint32(cfg.Peers.ID)
	if a, ok := addrs[int(own)]; ok {
		ln, err := listen(a, false)
		if err != nil {
			return errors.New("[peers] addrs: " + err.Error())
		}
		p.peerLn = ln
		p.peerWG.Add(1)
		go func() {
			defer p.peerWG.Done()
			p.servePeers(ln)
		}()
	}
	p.server.CancelHook = func(pid, secret uint32) bool {
		peer := pid >> 24
		if peer == own || peer == 0 {
			return false
		}
		addr, ok := addrs[int(peer)]
		if !ok {
			p.log.Info("cancel request for an unknown peer dropped", zap.Uint32("peer", peer))
			return true
		}
		if err := forwardCancel(addr, pid, secret); err != nil {
			p.log.Warn("cannot forward a cancel request to its peer", zap.Uint32("peer", peer), zap.String("peer_addr", addr), zap.Error(err))
		}
		return true
	}
	return nil
}

// servePeers accepts forwarded cancel requests: each connection carries one, for this process's relay
// (never forwarded again, so a misconfiguration cannot loop).
func (p *App) servePeers(ln net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			var b [16]byte
			if _, err := io.ReadFull(c, b[:]); err != nil {
				return
			}
			if binary.BigEndian.Uint32(b[0:4]) != 16 || binary.BigEndian.Uint32(b[4:8]) != cancelCode {
				return
			}
			p.engine.Cancel(binary.BigEndian.Uint32(b[8:12]), binary.BigEndian.Uint32(b[12:16]))
		}()
	}
}

func forwardCancel(addr string, pid, secret uint32) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	var b [16]byte
	binary.BigEndian.PutUint32(b[0:4], 16)
	binary.BigEndian.PutUint32(b[4:8], cancelCode)
	binary.BigEndian.PutUint32(b[8:12], pid)
	binary.BigEndian.PutUint32(b[12:16], secret)
	_, err = c.Write(b[:])
	return err
}

// notifySystemd sends state to systemd's notify socket when NOTIFY_SOCKET is set (sd_notify(3)).
func notifySystemd(state string, log *zap.Logger) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		log.Warn("sd_notify failed", zap.String("state", state), zap.Error(err))
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		log.Warn("sd_notify failed", zap.String("state", state), zap.Error(err))
	}
}
