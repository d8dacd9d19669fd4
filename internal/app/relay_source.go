package app

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgerrcode"

	"github.com/tenantproxy/tenantproxy/admin"
	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/session"
)

// statsPeriod is how long SHOW STATS_AVERAGES and SHOW TENANTS average over, as pgbouncer's
// stats_period (which defaults to 60 s; a shorter one follows load changes sooner).
const statsPeriod = 15 * time.Second

// relaySource is the relay's half of the admin console, over the relay's own snapshot and levers
// (session.Group): the per-tenant accounting, clients and servers, PAUSE and the rest.
type relaySource struct {
	g        *session.Group
	cfg      func() *config.Config
	versions *migrationVersions

	mu   sync.Mutex
	prev sample // the totals at the start of the averaging interval
	last sample // the totals of the latest snapshot
}

// sample is every tenant's totals at one time.
type sample struct {
	at     time.Time
	totals map[string]session.TenantStats
}

func newRelaySource(g *session.Group, cfg func() *config.Config, versions *migrationVersions) *relaySource {
	return &relaySource{g: g, cfg: cfg, versions: versions}
}

// averages returns, per tenant, the counters per second (times per transaction, per query and per
// second, as pgbouncer reports them) between the start of the averaging interval and now.
func (r *relaySource) averages(now time.Time, totals map[string]session.TenantStats) map[string]admin.Counters {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.prev.totals == nil {
		r.prev = sample{at: now, totals: totals}
	}
	if now.Sub(r.last.at) >= statsPeriod || r.last.totals == nil {
		// The interval restarts at the latest snapshot at least one period old, so an average covers
		// between one and two periods.
		if r.last.totals != nil {
			r.prev = r.last
		}
	}
	r.last = sample{at: now, totals: totals}
	span := now.Sub(r.prev.at)
	out := make(map[string]admin.Counters, len(totals))
	if span < time.Second {
		return out
	}
	secs := span.Seconds()
	for name, t := range totals {
		p := r.prev.totals[name]
		d := session.TenantStats{
			XactCount: t.XactCount - p.XactCount, QueryCount: t.QueryCount - p.QueryCount,
			BytesReceived: t.BytesReceived - p.BytesReceived, BytesSent: t.BytesSent - p.BytesSent,
			XactTime: t.XactTime - p.XactTime, QueryTime: t.QueryTime - p.QueryTime, WaitTime: t.WaitTime - p.WaitTime,
			ServerAssignments: t.ServerAssignments - p.ServerAssignments, ParseCount: t.ParseCount - p.ParseCount, BindCount: t.BindCount - p.BindCount,
		}
		perSec := func(n int64) int64 { return int64(float64(n) / secs) }
		per := func(total time.Duration, n int64) time.Duration {
			if n <= 0 {
				return 0
			}
			return total / time.Duration(n)
		}
		out[name] = admin.Counters{
			ServerAssignments: perSec(d.ServerAssignments), Xacts: perSec(d.XactCount), Queries: perSec(d.QueryCount),
			Received: perSec(d.BytesReceived), Sent: perSec(d.BytesSent),
			XactTime: per(d.XactTime, d.XactCount), QueryTime: per(d.QueryTime, d.QueryCount),
			WaitTime:     time.Duration(float64(d.WaitTime) / secs),
			ClientParses: perSec(d.ParseCount), Binds: perSec(d.BindCount),
		}
	}
	return out
}

func (r *relaySource) fill(ctx context.Context, snap *admin.Snapshot) error {
	rs, err := r.g.Snapshot(ctx)
	if err != nil {
		return err
	}
	cfg := r.cfg()
	poolRole := cfg.Backend.User
	backendAddr := net.JoinHostPort(cfg.Backend.Host, strconv.Itoa(cfg.Backend.Port))
	snap.State.Paused = rs.Pool.Paused
	totals := make(map[string]session.TenantStats, len(rs.Tenants))
	for _, t := range rs.Tenants {
		totals[t.Name] = t.Stats
	}
	avg := r.averages(rs.Time, totals)
	byTenant := make(map[string]*session.TenantSnapshot, len(rs.Tenants))
	for i := range rs.Tenants {
		t := &rs.Tenants[i]
		byTenant[t.Name] = t
		snap.Pools = append(snap.Pools, admin.Pool{
			Database: t.Name, User: poolRole, ClActive: int64(t.Active), ClWaiting: int64(t.Waiting),
			SvActive: int64(t.ServersActive), SvIdle: int64(t.ServersIdle), MaxWait: t.MaxWait, PoolMode: string(cfg.Pool.Mode),
		})
		st := t.Stats
		snap.Stats = append(snap.Stats, admin.Stats{Database: t.Name, Averages: avg[t.Name], Totals: admin.Counters{
			ServerAssignments: st.ServerAssignments, Xacts: st.XactCount, Queries: st.QueryCount,
			Received: st.BytesReceived, Sent: st.BytesSent, XactTime: st.XactTime, QueryTime: st.QueryTime, WaitTime: st.WaitTime,
			ClientParses: st.ParseCount, Binds: st.BindCount,
		}})
		a := avg[t.Name]
		var avgWait time.Duration
		if a.ServerAssignments > 0 {
			avgWait = time.Duration(float64(a.WaitTime) / float64(a.ServerAssignments))
		}
		maxBackends := t.Limits.MaxBackends
		if maxBackends == 0 {
			maxBackends = cfg.Pool.TenantMaxBackends
		}
		maxClients := t.Limits.MaxClients
		if maxClients == 0 {
			maxClients = cfg.Pool.TenantMaxClients
		}
		weight := t.Limits.Weight
		if weight == 0 {
			weight = 1
		}
		snap.Tenants = append(snap.Tenants, admin.Tenant{
			Name: t.Name, Clients: int64(t.Clients), Waiting: int64(t.Waiting), Backends: int64(t.ServersActive),
			XactPerSec: float64(a.Xacts), QueryPerSec: float64(a.Queries), AvgWait: avgWait, MaxWait: t.MaxWait,
			Refused: st.Refused, MaxClients: int64(maxClients), MaxBackends: int64(maxBackends), Weight: int64(weight),
			StatementTimeout: t.Limits.StatementTimeout, Suspended: t.Suspended || t.Disabled, Paused: t.Paused,
			MigrationVersion: r.versions.get(t.Name),
		})
	}
	for i := range snap.Databases {
		if t := byTenant[snap.Databases[i].Name]; t != nil {
			d := &snap.Databases[i]
			d.CurrentConnections, d.CurrentClientConnections = int64(t.ServersActive), int64(t.Clients)
			d.MaxClientConnections = int64(t.Limits.MaxClients)
			if t.Limits.MaxBackends > 0 {
				d.MaxConnections, d.PoolSize = int64(t.Limits.MaxBackends), int64(t.Limits.MaxBackends)
			}
			d.Paused = t.Paused
			d.Disabled = d.Disabled || t.Disabled
		}
	}
	byUser := map[string]int64{}
	for _, c := range rs.Clients {
		host, port := splitAddr(c.Addr)
		state := "active"
		if c.State == "waiting" {
			state = "waiting"
		}
		sock := admin.Socket{User: c.User, Database: c.Tenant, State: state, Addr: host, Port: port,
			ConnectTime: c.ConnectTime, RequestTime: c.RequestTime, Wait: c.Wait, Ptr: clientPtr(c.ID),
			ApplicationName: c.ApplicationName, PreparedStatements: int64(c.Prepared), ID: int64(c.ID)}
		if c.Link != 0 {
			sock.Link = serverPtr(c.Link)
		}
		if c.TLS {
			sock.TLS = "TLS"
		}
		host, port = splitAddr(cfg.Listen.Addr)
		sock.LocalAddr, sock.LocalPort = host, port
		snap.Clients = append(snap.Clients, sock)
		byUser[c.User]++
	}
	for i := range snap.Users {
		snap.Users[i].CurrentClientConnections = byUser[snap.Users[i].Name]
	}
	bhost, bport := splitAddr(backendAddr)
	for _, sv := range rs.Servers {
		state := "used"
		switch sv.State {
		case "leased":
			state = "active"
		case "idle":
			state = "idle"
		case "new":
			state = "new"
		case "cancel_wait":
			state = "being_canceled"
		case "reset":
			state = "tested"
		}
		sock := admin.Socket{Server: true, User: poolRole, Database: sv.Tenant, State: state, Addr: bhost, Port: bport,
			ConnectTime: sv.ConnectTime, RequestTime: sv.RequestTime, CloseNeeded: sv.CloseNeeded, Ptr: serverPtr(sv.PID),
			RemotePID: int64(sv.PID), PreparedStatements: int64(sv.Prepared), ID: int64(sv.PID)}
		if sv.Link != 0 {
			sock.Link = clientPtr(sv.Link)
		}
		snap.Servers = append(snap.Servers, sock)
	}
	snap.Mem = []admin.Mem{
		{Name: "client_cache", Used: int64(rs.Pool.Clients)},
		{Name: "server_cache", Used: int64(rs.Pool.Open)},
		{Name: "pool_cache", Used: int64(len(rs.Tenants))},
	}
	return nil
}

// clientPtr and serverPtr name a connection in SHOW CLIENTS and SHOW SERVERS' ptr and link columns.
func clientPtr(id uint32) string  { return fmt.Sprintf("c%08x", id) }
func serverPtr(pid uint32) string { return fmt.Sprintf("s%08x", pid) }

func splitAddr(addr string) (string, int64) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	n, _ := strconv.ParseInt(port, 10, 64)
	return host, n
}

func (r *relaySource) control(ctx context.Context, cmd admin.Command) error {
	wait := func(done <-chan struct{}, err error) error {
		if err != nil {
			return relayErr(err)
		}
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return admin.Errorf(pgerrcode.QueryCanceled, "tenantproxy: %s did not complete: %v", cmd.Op, ctx.Err())
		}
	}
	switch cmd.Op {
	case admin.OpPause:
		return wait(r.g.Pause(ctx, cmd.Tenant))
	case admin.OpResume:
		return relayErr(r.g.Resume(ctx, cmd.Tenant))
	case admin.OpDisable, admin.OpEnable:
		return relayErr(r.g.SetDisabled(ctx, cmd.Tenant, cmd.Op == admin.OpDisable))
	case admin.OpKill:
		return relayErr(r.g.Kill(ctx, cmd.Tenant))
	case admin.OpKillClient:
		found, err := r.g.KillClient(ctx, uint32(cmd.ClientID))
		if err != nil {
			return relayErr(err)
		}
		if !found {
			return admin.Errorf(pgerrcode.ProtocolViolation, "client not found")
		}
		return nil
	case admin.OpReconnect:
		return relayErr(r.g.Reconnect(ctx, cmd.Tenant))
	case admin.OpWaitClose:
		return wait(r.g.WaitClose(ctx, cmd.Tenant))
	case admin.OpSet:
		if cmd.Tenant == "" {
			return admin.Errorf(pgerrcode.CantChangeRuntimeParam, "tenantproxy: %s cannot be changed at runtime; change config.toml and RELOAD", cmd.Key)
		}
		return r.setLimit(ctx, cmd.Tenant, cmd.Key, cmd.Value)
	}
	return admin.Errorf(pgerrcode.FeatureNotSupported, "tenantproxy: %s is not a relay command", cmd.Op)
}

// setLimit is SET of a per-tenant limit: it takes effect at the tenant's next lease or connection and
// lasts until the next RELOAD or SIGHUP, as a pgbouncer SET does.
func (r *relaySource) setLimit(ctx context.Context, tenant, key, value string) error {
	rs, err := r.g.Snapshot(ctx)
	if err != nil {
		return relayErr(err)
	}
	var l *session.TenantLimits
	for i := range rs.Tenants {
		if rs.Tenants[i].Name == tenant {
			l = &rs.Tenants[i].Limits
		}
	}
	if l == nil {
		return admin.NoSuchDatabase(tenant)
	}
	bad := func(why string) error {
		return admin.Errorf(pgerrcode.InvalidParameterValue, "tenantproxy: SET %s.%s = %q: %s", tenant, key, value, why)
	}
	value = strings.Trim(strings.TrimSpace(value), "'")
	switch key {
	case "max_clients", "max_backends", "weight":
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 {
			return bad("a whole number of at least 0 is needed")
		}
		switch key {
		case "max_clients":
			l.MaxClients = n
		case "max_backends":
			l.MaxBackends = n
		default:
			l.Weight = n
		}
	case "statement_timeout":
		d, err := time.ParseDuration(value)
		if err != nil {
			ms, merr := strconv.Atoi(value)
			if merr != nil {
				return bad(`a duration such as "30s", or milliseconds, is needed`)
			}
			d = time.Duration(ms) * time.Millisecond
		}
		if d < 0 {
			return bad("must not be negative")
		}
		l.StatementTimeout = d
	default:
		return admin.Errorf(pgerrcode.UndefinedObject, "tenantproxy: unknown tenant limit %q (max_clients, max_backends, weight, statement_timeout)", key)
	}
	return relayErr(r.g.SetLimits(ctx, tenant, *l))
}

// relayErr turns the relay's errors into the console's.
func relayErr(err error) error {
	if err == nil {
		return nil
	}
	if e, ok := err.(*session.Error); ok {
		return admin.Errorf(e.Code, "%s", e.Message)
	}
	if err == session.ErrClosed {
		return admin.Errorf(pgerrcode.AdminShutdown, "tenantproxy: the relay is shutting down")
	}
	return err
}
