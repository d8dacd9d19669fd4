// Package app wires tenantproxy's packages into a running proxy: configuration, hardening check, tenant
// catalog, relay, front door, metrics, reload and shutdown. The command and the integration tests start
// the proxy through it, so tests run exactly what operators run.
package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/catalog"
	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/policy"
	"github.com/tenantproxy/tenantproxy/policy/sessionguard"
	"github.com/tenantproxy/tenantproxy/proxy"
	"github.com/tenantproxy/tenantproxy/routing"
	"github.com/tenantproxy/tenantproxy/session"
	"github.com/tenantproxy/tenantproxy/session/dial"
)

// App is a started proxy: front door, relay, metrics and the tenant catalog.
type App struct {
	// mu serializes Reload with the catalog watch's updates: both read cfg and change the router and the
	// relay's tenants, and must not interleave.
	mu           sync.Mutex
	cfg          *config.Config
	log          *zap.Logger
	engine       *session.Group
	server       *proxy.Server
	router       *routing.Router
	metrics      *http.Server
	ln           net.Listener
	reg          *prometheus.Registry
	cancel       context.CancelFunc
	shutdownOnce sync.Once
	done         chan struct{}
	users        catalog.UserSource // [auth] users = "database"
	// versions are the tenants' migration versions for SHOW TENANTS (versions.go); versionsLoaded closes
	// once the first read is done.
	versions       *migrationVersions
	versionsLoaded chan struct{}

	ops // admin console, audit log, health, peers: operations.go

	schemaStatsDone chan struct{} // closed when the per-schema collector has stopped (metrics_wiring.go)
}

// watchCatalog follows the database catalog; a variable so that tests can feed the App a catalog
// without a server.
var watchCatalog = catalog.WatchCatalogNotify

// Start wires the packages together and starts serving.
func Start(cfg *config.Config, log *zap.Logger, version string) (*App, error) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &App{cfg: cfg, log: log, cancel: cancel, done: make(chan struct{}), ops: ops{stopped: make(chan struct{})},
		versions: newMigrationVersions(), versionsLoaded: make(chan struct{})}
	go func() {
		defer close(p.versionsLoaded)
		p.versions.load(ctx, cfg, log)
	}()
	fail := func(err error) (*App, error) {
		cancel()
		<-p.versionsLoaded
		return nil, err
	}
	if cfg.RequiresHardening() {
		if err := catalog.CheckHardening(ctx, cfg); err != nil {
			return fail(err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	dialer, err := dial.NewDialer(cfg)
	if err != nil {
		return fail(err)
	}
	guard := policy.NewGuard(policy.GuardConfig{TenantSetting: cfg.Tenancy.Setting})
	engine, err := session.NewGroup(session.Config{
		Mode: string(cfg.Pool.Mode), PoolSize: cfg.Backend.PoolSize, TenantMaxBackends: cfg.Pool.TenantMaxBackends,
		TenantMaxClients: cfg.Pool.TenantMaxClients,
		MaxClients:       cfg.Pool.MaxClientConn, WaitTimeout: cfg.Pool.WaitTimeout.Duration,
		IdleTimeout: cfg.Backend.IdleTimeout.Duration, MaxLifetime: cfg.Backend.MaxLifetime.Duration,
		QueryTimeout: cfg.Backend.QueryTimeout.Duration, MaxMessageSize: cfg.Listen.MaxMessageSize,
		MaxPreparedStatements:       cfg.Pool.MaxPreparedStatements,
		MaxClientPreparedStatements: cfg.Pool.MaxClientPreparedStatements, MaxClientPreparedBytes: cfg.Pool.MaxClientPreparedBytes, TripwireSampleRate: cfg.Tenancy.TripwireSampleRate,
		PeerID: uint32(cfg.Peers.ID), PoolRole: cfg.Backend.User, AuditStatementText: cfg.Log.AuditStatementText, Dialer: dialer, Guard: sessionguard.New(guard),
		Logger: log, Metrics: session.NewMetrics(reg),
	}, cfg.Listen.RelayThreads)
	if err != nil {
		return fail(err)
	}
	engine.SetDialTimeout(cfg.Backend.ConnectTimeout.Duration)
	p.engine = engine
	p.router = routing.NewRouter(cfg, nil)
	if cfg.Tenancy.Catalog == config.CatalogDatabase {
		go func() {
			defer close(p.done)
			err := watchCatalog(ctx, cfg, func(ts []config.Tenant) {
				p.mu.Lock()
				defer p.mu.Unlock()
				p.updateRouter(p.config(), ts)
				engine.SetTenants(relayTenants(p.config(), ts))
			}, func(payload string) {
				// A tenant's migration committed: its statements are prepared afresh from now on, and SHOW
				// TENANTS shows its version.
				if tenant, ok := p.versions.notified(payload); ok {
					engine.TenantChanged(tenant)
				}
			})
			if err != nil && ctx.Err() == nil {
				log.Error("tenant catalog watch ended", zap.Error(err))
			}
		}()
	} else {
		close(p.done)
		p.updateRouter(cfg, cfg.Tenants)
		engine.SetTenants(relayTenants(cfg, cfg.Tenants))
	}
	engine.Start()
	srv, err := proxy.New(cfg, engine, p.router, log)
	if err != nil {
		engine.Close()
		return fail(err)
	}
	p.server = srv
	if cfg.Auth.Users == config.UsersDatabase {
		if p.users, err = catalog.NewUserSource(ctx, cfg, log); err != nil {
			engine.Close()
			return fail(err)
		}
		srv.Users = p.users
	}
	ln, err := listen(cfg.Listen.Addr, cfg.Listen.ReusePort)
	if err != nil {
		engine.Close()
		return fail(fmt.Errorf("[listen] addr: %w", err))
	}
	p.ln = ln
	p.reg = reg
	p.registerMetrics(ctx)
	if err := p.startOps(version); err != nil {
		p.Shutdown(0)
		return nil, err
	}
	go func() {
		if err := srv.Serve(ln); err != nil {
			log.Error("accept loop ended", zap.Error(err))
		}
	}()
	if cfg.Metrics.Addr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		p.handleOps(mux)
		p.metrics = &http.Server{Addr: cfg.Metrics.Addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		mln, err := net.Listen("tcp", cfg.Metrics.Addr)
		if err != nil {
			p.Shutdown(0)
			return nil, fmt.Errorf("[metrics] addr: %w", err)
		}
		go p.metrics.Serve(mln)
	}
	notifySystemd("READY=1", log)
	log.Info("tenantproxy listening", zap.String("addr", ln.Addr().String()), zap.String("mode", string(cfg.Pool.Mode)),
		zap.Int("pool_size", cfg.Backend.PoolSize), zap.String("backend", fmt.Sprintf("%s:%d/%s as %s", cfg.Backend.Host, cfg.Backend.Port, cfg.Backend.Database, cfg.Backend.User)),
		zap.String("version", version))
	return p, nil
}

// Reload re-reads the config: users, tenants (config catalog) and auth settings change at once without
// dropping a connection; a bad file keeps the old config.
func (p *App) Reload(path string) { p.reload(path) }

func (p *App) reload(path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		p.log.Error("reload failed; keeping the running configuration", zap.Error(err))
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.config(); cfg.Listen.Addr != old.Listen.Addr || cfg.Backend != old.Backend || cfg.Pool.Mode != old.Pool.Mode {
		p.log.Warn("reload: [listen], [backend] and [pool] mode changes need a restart; they are ignored")
	}
	p.cfgMu.Lock()
	p.cfg = cfg
	p.cfgMu.Unlock()
	p.server.SetConfig(cfg)
	p.reloadOps(cfg)
	if cfg.Tenancy.Catalog == config.CatalogConfig {
		p.updateRouter(cfg, cfg.Tenants)
		p.engine.SetTenants(relayTenants(cfg, cfg.Tenants))
	} else {
		p.updateRouter(cfg, p.catalogTenants())
	}
	p.log.Info("configuration reloaded", zap.Int("tenants", len(p.router.Snapshot().Tenants())), zap.Int("users", len(cfg.Users)))
	return nil
}

// Shutdown stops accepting, drains the relay for up to timeout, then closes everything.
func (p *App) Shutdown(timeout time.Duration) {
	p.shutdownOnce.Do(func() { p.shutdown(timeout) })
}

func (p *App) shutdown(timeout time.Duration) {
	defer close(p.stopped)
	p.stopping.Store(true)
	if p.console != nil {
		p.console.Close()
	}
	p.server.Close()
	select {
	case <-p.engine.Drain(timeout):
	case <-time.After(timeout + time.Second):
	}
	p.engine.Close()
	p.cancel()
	<-p.done
	<-p.versionsLoaded
	if p.schemaStatsDone != nil {
		<-p.schemaStatsDone
	}
	if p.users != nil {
		p.users.Wait()
	}
	if p.metrics != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		p.metrics.Shutdown(ctx)
		cancel()
	}
	p.stopOps()
}

// Addr is the address the proxy listens on.
func (p *App) Addr() string { return p.ln.Addr().String() }

// Engine is the relay, for tests and the admin view.
func (p *App) Engine() *session.Group { return p.engine }

// Registry is the Prometheus registry of this proxy.
func (p *App) Registry() *prometheus.Registry { return p.reg }
