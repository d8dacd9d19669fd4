package app

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/admin"
	"github.com/tenantproxy/tenantproxy/config"
)

// source is the admin.Source of a running proxy: what the app knows itself (configuration, users,
// tenants, version, shutdown state) it answers; the relay's sections and commands it asks of relay.
type source struct {
	p       *App
	version string
	relay   relayAdmin
}

// relayAdmin is the relay's half of the admin console: it fills the snapshot sections only the relay
// knows and carries out the commands that act on clients and backends.
type relayAdmin interface {
	// fill sets snap's Pools, Clients, Servers, Stats, Tenants and Mem, the relay's counts in Users and
	// Databases, and State.Paused.
	fill(ctx context.Context, snap *admin.Snapshot) error
	// control carries out PAUSE, RESUME, DISABLE, ENABLE, KILL, KILL_CLIENT, RECONNECT, WAIT_CLOSE and
	// SET of a per-tenant limit or relay setting.
	control(ctx context.Context, cmd admin.Command) error
}

func (s *source) Snapshot(ctx context.Context) (*admin.Snapshot, error) {
	p := s.p
	cfg := p.config()
	snap := &admin.Snapshot{Taken: time.Now(), Version: "tenantproxy " + s.version}
	snap.State.ShuttingDown = p.stopping.Load()
	snap.Config = configSettings(cfg)
	for _, u := range cfg.Users {
		snap.Users = append(snap.Users, admin.User{Name: u.Name})
	}
	ts := p.router.Snapshot().Tenants()
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	for _, t := range ts {
		snap.Databases = append(snap.Databases, admin.Database{
			Name: t.Name, Host: cfg.Backend.Host, Port: int64(cfg.Backend.Port), Database: cfg.Backend.Database,
			ForceUser: cfg.Backend.User, PoolSize: int64(tenantPoolSize(cfg)), ServerLifetime: cfg.Backend.MaxLifetime.Duration,
			PoolMode: string(cfg.Pool.Mode), MaxConnections: int64(cfg.Pool.TenantMaxBackends), Disabled: t.Suspended || p.isDisabled(t.Name),
		})
	}
	st := p.engine.Stats()
	snap.Lists = []admin.ListItem{
		{Name: "databases", Items: int64(len(ts))}, {Name: "users", Items: int64(len(cfg.Users))},
		{Name: "peers", Items: int64(len(cfg.Peers.Addrs))}, {Name: "pools", Items: int64(len(ts))},
		{Name: "peer_pools", Items: 0}, {Name: "free_clients", Items: 0}, {Name: "used_clients", Items: int64(st.Clients)},
		{Name: "login_clients", Items: 0}, {Name: "free_servers", Items: 0}, {Name: "used_servers", Items: int64(st.Backends)},
		{Name: "dns_names", Items: 0}, {Name: "dns_zones", Items: 0}, {Name: "dns_queries", Items: 0}, {Name: "dns_pending", Items: 0},
	}
	for id, addr := range cfg.Peers.PeerAddrs() {
		host, port, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(port)
		snap.Peers = append(snap.Peers, admin.Peer{ID: int64(id), Host: host, Port: int64(n)})
	}
	sort.Slice(snap.Peers, func(i, j int) bool { return snap.Peers[i].ID < snap.Peers[j].ID })
	if err := s.relay.fill(ctx, snap); err != nil {
		snap.RelayErr = err
	}
	return snap, nil
}

func tenantPoolSize(cfg *config.Config) int {
	if cfg.Pool.TenantMaxBackends > 0 {
		return cfg.Pool.TenantMaxBackends
	}
	return cfg.Backend.PoolSize
}

func (s *source) Control(ctx context.Context, cmd admin.Command) error {
	p := s.p
	if cmd.Tenant != "" && cmd.Op != admin.OpSet {
		if !p.hasTenant(cmd.Tenant) {
			return admin.NoSuchDatabase(cmd.Tenant)
		}
	}
	switch cmd.Op {
	case admin.OpReload:
		if err := p.reload(p.config().Path); err != nil {
			return admin.Errorf(pgerrcode.ConfigFileError, "RELOAD failed, see logs for additional details")
		}
		return nil
	case admin.OpShutdown:
		if !p.stopping.CompareAndSwap(false, true) {
			return admin.Errorf(pgerrcode.ObjectNotInPrerequisiteState, "tenantproxy: the proxy is already shutting down")
		}
		go p.consoleShutdown(cmd.WaitForClients)
		return nil
	case admin.OpDisable, admin.OpEnable:
		// The front door refuses a disabled tenant's new clients, and so does the relay (a client that was
		// past the front door already).
		p.setDisabled(cmd.Tenant, cmd.Op == admin.OpDisable)
		return s.relay.control(ctx, cmd)
	case admin.OpSet:
		if cmd.Tenant != "" {
			if !p.hasTenant(cmd.Tenant) {
				return admin.NoSuchDatabase(cmd.Tenant)
			}
			return s.relay.control(ctx, cmd)
		}
		if ok, err := p.setConfig(cmd.Key, cmd.Value); ok {
			return err
		}
		return s.relay.control(ctx, cmd)
	}
	return s.relay.control(ctx, cmd)
}

// configSettings is SHOW CONFIG: pgbouncer's names where pgbouncer has the setting, else section.key.
func configSettings(c *config.Config) []admin.Setting {
	var d config.Config
	def, _ := config.Parse("")
	if def != nil {
		d = *def
	}
	dur := func(v config.Duration) string { return v.Duration.String() }
	itoa := strconv.Itoa
	list := func(v []string) string { return strings.Join(v, ",") }
	port := func(addr string) string {
		if i := strings.LastIndexByte(addr, ':'); i >= 0 {
			return addr[i+1:]
		}
		return ""
	}
	host := func(addr string) string {
		if i := strings.LastIndexByte(addr, ':'); i >= 0 {
			return addr[:i]
		}
		return addr
	}
	return []admin.Setting{
		{Key: "listen_addr", Value: host(c.Listen.Addr), Default: host(d.Listen.Addr)},
		{Key: "listen_port", Value: port(c.Listen.Addr), Default: port(d.Listen.Addr)},
		{Key: "reuse_port", Value: fmt.Sprint(c.Listen.ReusePort), Default: fmt.Sprint(d.Listen.ReusePort)},
		{Key: "client_tls_sslmode", Value: c.Listen.TLSMode, Default: d.Listen.TLSMode},
		{Key: "client_login_timeout", Value: dur(c.Listen.StartupTimeout), Default: dur(d.Listen.StartupTimeout)},
		{Key: "max_packet_size", Value: itoa(c.Listen.MaxMessageSize), Default: itoa(d.Listen.MaxMessageSize)},
		{Key: "listen.relay_threads", Value: itoa(c.Listen.RelayThreads), Default: itoa(d.Listen.RelayThreads)},
		{Key: "backend.host", Value: c.Backend.Host, Default: d.Backend.Host},
		{Key: "backend.port", Value: itoa(c.Backend.Port), Default: itoa(d.Backend.Port)},
		{Key: "backend.database", Value: c.Backend.Database, Default: d.Backend.Database},
		{Key: "backend.user", Value: c.Backend.User, Default: d.Backend.User},
		{Key: "default_pool_size", Value: itoa(c.Backend.PoolSize), Default: itoa(d.Backend.PoolSize)},
		{Key: "server_connect_timeout", Value: dur(c.Backend.ConnectTimeout), Default: dur(d.Backend.ConnectTimeout)},
		{Key: "server_lifetime", Value: dur(c.Backend.MaxLifetime), Default: dur(d.Backend.MaxLifetime)},
		{Key: "server_idle_timeout", Value: dur(c.Backend.IdleTimeout), Default: dur(d.Backend.IdleTimeout)},
		{Key: "query_timeout", Value: dur(c.Backend.QueryTimeout), Default: dur(d.Backend.QueryTimeout)},
		{Key: "pool_mode", Value: string(c.Pool.Mode), Default: string(d.Pool.Mode)},
		{Key: "max_client_conn", Value: itoa(c.Pool.MaxClientConn), Default: itoa(d.Pool.MaxClientConn)},
		{Key: "query_wait_timeout", Value: dur(c.Pool.WaitTimeout), Default: dur(d.Pool.WaitTimeout)},
		{Key: "max_prepared_statements", Value: itoa(c.Pool.MaxPreparedStatements), Default: itoa(d.Pool.MaxPreparedStatements)},
		{Key: "pool.max_client_prepared_statements", Value: itoa(c.Pool.MaxClientPreparedStatements), Default: itoa(d.Pool.MaxClientPreparedStatements)},
		{Key: "pool.max_client_prepared_bytes", Value: itoa(c.Pool.MaxClientPreparedBytes), Default: itoa(d.Pool.MaxClientPreparedBytes)},
		{Key: "max_db_connections", Value: itoa(c.Pool.TenantMaxBackends), Default: itoa(d.Pool.TenantMaxBackends)},
		{Key: "pool.shutdown_timeout", Value: dur(c.Pool.ShutdownTimeout), Default: dur(d.Pool.ShutdownTimeout)},
		{Key: "auth_type", Value: c.Auth.Method, Default: d.Auth.Method, Changeable: true},
		{Key: "auth.failure_delay", Value: dur(c.Auth.FailureDelay), Default: dur(d.Auth.FailureDelay), Changeable: true},
		{Key: "tenancy.catalog", Value: c.Tenancy.Catalog, Default: d.Tenancy.Catalog},
		{Key: "tenancy.tripwire_sample_rate", Value: fmt.Sprint(c.Tenancy.TripwireSampleRate), Default: fmt.Sprint(d.Tenancy.TripwireSampleRate)},
		{Key: "admin_users", Value: list(c.AdminConsole.AdminUsers), Default: "", Changeable: true},
		{Key: "stats_users", Value: list(c.AdminConsole.StatsUsers), Default: "", Changeable: true},
		{Key: "peer_id", Value: itoa(c.Peers.ID), Default: "0"},
		{Key: "audit.path", Value: c.Audit.Path, Default: ""},
		{Key: "metrics.addr", Value: c.Metrics.Addr, Default: d.Metrics.Addr},
		{Key: "metrics.tenant_series", Value: itoa(c.Metrics.TenantSeries), Default: itoa(d.Metrics.TenantSeries), Changeable: true},
		{Key: "metrics.schema_stats_interval", Value: dur(c.Metrics.SchemaStatsInterval), Default: dur(d.Metrics.SchemaStatsInterval)},
		{Key: "log.level", Value: c.Log.Level, Default: d.Log.Level},
	}
}

// setConfig is SET of a setting the app applies itself (the front door's and the console's); ok is
// false for a key it does not own. The change lasts until the next RELOAD or SIGHUP, as in pgbouncer.
func (p *App) setConfig(key, value string) (ok bool, err error) {
	next := *p.config()
	switch key {
	case "auth_type":
		next.Auth.Method = value
	case "auth.failure_delay":
		d, perr := time.ParseDuration(value)
		if perr != nil {
			return true, admin.Errorf(pgerrcode.InvalidParameterValue, "tenantproxy: SET %s: %v", key, perr)
		}
		next.Auth.FailureDelay = config.Duration{Duration: d}
	case "metrics.tenant_series":
		n, perr := strconv.Atoi(strings.Trim(strings.TrimSpace(value), "'"))
		if perr != nil || n < 1 {
			return true, admin.Errorf(pgerrcode.InvalidParameterValue, "tenantproxy: SET %s: a whole number of at least 1 is needed", key)
		}
		next.Metrics.TenantSeries = n
	case "admin_users", "stats_users":
		var list []string
		for _, u := range strings.Split(value, ",") {
			if u = strings.TrimSpace(u); u != "" {
				list = append(list, u)
			}
		}
		if key == "admin_users" {
			next.AdminConsole.AdminUsers = list
		} else {
			next.AdminConsole.StatsUsers = list
		}
	default:
		return false, nil
	}
	if verr := next.Validate(); verr != nil {
		return true, admin.Errorf(pgerrcode.InvalidParameterValue, "tenantproxy: SET %s: %v", key, verr)
	}
	p.cfgMu.Lock()
	p.cfg = &next
	p.cfgMu.Unlock()
	p.server.SetConfig(&next)
	p.reloadOps(&next)
	p.log.Info("setting changed in the admin console", zap.String("key", key), zap.String("value", value))
	return true, nil
}
