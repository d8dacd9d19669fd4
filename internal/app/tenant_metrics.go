package app

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/session"
)

// otherTenant is the tenant label value that sums every tenant beyond the busiest K.
const otherTenant = "_other"

// snapshotTimeout bounds how long a scrape waits for the relay's snapshot.
const snapshotTimeout = 5 * time.Second

// tenantCollector exports the relay's per-tenant accounting (session.Group.Snapshot, read at scrape
// time) under the names of the prometheus-community pgbouncer exporter, prefixed tenantproxy_: one
// series per tenant for the busiest K tenants, the rest summed under tenant="_other". The relay's hot
// path does no metric work for it.
type tenantCollector struct {
	snap func(ctx context.Context) (session.Snapshot, error)
	k    func() int
	log  *zap.Logger

	mu  sync.Mutex // one scrape at a time: the selection is shared state
	top topK       // the tenants with series of their own, sticky between scrapes

	poolSize, poolWaiting, scrapeSeconds *prometheus.Desc
	gauges                               []tenantMetric
	counters                             []tenantMetric
}

// tenantMetric is one per-tenant series family and how to read it from a tenant's snapshot.
type tenantMetric struct {
	desc *prometheus.Desc
	val  func(t *session.TenantSnapshot) float64
	// max, when set, makes _other the largest value instead of the sum (a maximum wait).
	max bool
	// own, when set, exports no _other series (a limit means nothing summed).
	own bool
}

func newTenantCollector(snap func(ctx context.Context) (session.Snapshot, error), k func() int, log *zap.Logger) *tenantCollector {
	lbl := []string{"tenant"}
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, lbl, nil) }
	secs := func(v time.Duration) float64 { return v.Seconds() }
	c := &tenantCollector{snap: snap, k: k, log: log,
		poolSize:      prometheus.NewDesc("tenantproxy_pool_size", "Backend connections the shared pool may open ([backend] pool_size).", nil, nil),
		poolWaiting:   prometheus.NewDesc("tenantproxy_pool_client_waiting_connections", "Clients of every tenant waiting for a backend.", nil, nil),
		scrapeSeconds: prometheus.NewDesc("tenantproxy_tenant_metrics_scrape_seconds", "Time this scrape took to read the relay's snapshot and select the tenants.", nil, nil),
	}
	c.gauges = []tenantMetric{
		{desc: d("tenantproxy_pools_client_active_connections", "Client connections of the tenant that are not waiting for a backend (SHOW POOLS cl_active)."),
			val: func(t *session.TenantSnapshot) float64 { return float64(t.Active) }},
		{desc: d("tenantproxy_pools_client_waiting_connections", "Client connections of the tenant waiting for a backend (SHOW POOLS cl_waiting)."),
			val: func(t *session.TenantSnapshot) float64 { return float64(t.Waiting) }},
		{desc: d("tenantproxy_pools_server_active_connections", "Backends leased to the tenant's clients (SHOW POOLS sv_active)."),
			val: func(t *session.TenantSnapshot) float64 { return float64(t.ServersActive) }},
		{desc: d("tenantproxy_pools_server_idle_connections", "Idle backends that carry the tenant's context (SHOW POOLS sv_idle)."),
			val: func(t *session.TenantSnapshot) float64 { return float64(t.ServersIdle) }},
		{desc: d("tenantproxy_pools_max_wait_seconds", "How long the tenant's oldest waiting client has waited (SHOW POOLS maxwait); _other is the largest."),
			val: func(t *session.TenantSnapshot) float64 { return secs(t.MaxWait) }, max: true},
		{desc: d("tenantproxy_pools_client_max_connections", "The tenant's max_clients in force; 0 is no limit (only for tenants with series of their own)."),
			val: func(t *session.TenantSnapshot) float64 { return float64(t.Limits.MaxClients) }, own: true},
		{desc: d("tenantproxy_pools_server_max_connections", "The tenant's max_backends in force; 0 is no limit beyond [pool] tenant_max_backends (only for tenants with series of their own)."),
			val: func(t *session.TenantSnapshot) float64 { return float64(t.Limits.MaxBackends) }, own: true},
		{desc: d("tenantproxy_pools_paused", "1 when the tenant is paused (PAUSE) or disabled (DISABLE); _other counts them."),
			val: func(t *session.TenantSnapshot) float64 {
				if t.Paused || t.Disabled {
					return 1
				}
				return 0
			}},
	}
	c.counters = []tenantMetric{
		{desc: d("tenantproxy_stats_totals_queries_total", "Statements the tenant's clients completed (SHOW STATS_TOTALS query_count)."),
			val: func(t *session.TenantSnapshot) float64 { return float64(t.Stats.QueryCount) }},
		{desc: d("tenantproxy_stats_totals_xacts_total", "Transactions the tenant's clients completed (SHOW STATS_TOTALS xact_count)."),
			val: func(t *session.TenantSnapshot) float64 { return float64(t.Stats.XactCount) }},
		{desc: d("tenantproxy_stats_totals_received_bytes_total", "Bytes received from the tenant's clients (SHOW STATS_TOTALS bytes_received)."),
			val: func(t *session.TenantSnapshot) float64 { return float64(t.Stats.BytesReceived) }},
		{desc: d("tenantproxy_stats_totals_sent_bytes_total", "Bytes sent to the tenant's clients (SHOW STATS_TOTALS bytes_sent)."),
			val: func(t *session.TenantSnapshot) float64 { return float64(t.Stats.BytesSent) }},
		{desc: d("tenantproxy_stats_totals_client_wait_seconds_total", "Time the tenant's clients waited for a backend (SHOW STATS_TOTALS total_wait_time)."),
			val: func(t *session.TenantSnapshot) float64 { return secs(t.Stats.WaitTime) }},
		{desc: d("tenantproxy_stats_totals_query_seconds_total", "Time the tenant's statements ran (SHOW STATS_TOTALS total_query_time)."),
			val: func(t *session.TenantSnapshot) float64 { return secs(t.Stats.QueryTime) }},
		{desc: d("tenantproxy_stats_totals_xact_seconds_total", "Time the tenant's transactions took (SHOW STATS_TOTALS total_xact_time)."),
			val: func(t *session.TenantSnapshot) float64 { return secs(t.Stats.XactTime) }},
		{desc: d("tenantproxy_stats_totals_server_assignments_total", "Backend leases of the tenant (SHOW STATS_TOTALS server_assignment_count)."),
			val: func(t *session.TenantSnapshot) float64 { return float64(t.Stats.ServerAssignments) }},
		{desc: d("tenantproxy_stats_totals_refused_statements_total", "Statements of the tenant that the statement guard refused."),
			val: func(t *session.TenantSnapshot) float64 { return float64(t.Stats.Refused) }},
	}
	return c
}

func (c *tenantCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.poolSize
	ch <- c.poolWaiting
	ch <- c.scrapeSeconds
	for _, m := range c.gauges {
		ch <- m.desc
	}
	for _, m := range c.counters {
		ch <- m.desc
	}
}

func (c *tenantCollector) Collect(ch chan<- prometheus.Metric) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
	defer cancel()
	snap, err := c.snap(ctx)
	if err != nil {
		// A closing relay or a timed-out snapshot: this scrape has no per-tenant series.
		c.log.Debug("tenant metrics: no relay snapshot", zap.Error(err))
		return
	}
	c.mu.Lock()
	own := c.top.update(snap.Tenants, c.k())
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.poolSize, prometheus.GaugeValue, float64(snap.Pool.Size))
	ch <- prometheus.MustNewConstMetric(c.poolWaiting, prometheus.GaugeValue, float64(snap.Pool.Waiting))
	emit := func(ms []tenantMetric, vt prometheus.ValueType) {
		for _, m := range ms {
			var other float64
			for i := range snap.Tenants {
				t := &snap.Tenants[i]
				v := m.val(t)
				switch {
				case own[t.Name]:
					ch <- prometheus.MustNewConstMetric(m.desc, vt, v, t.Name)
				case m.max:
					other = max(other, v)
				default:
					other += v
				}
			}
			if !m.own {
				ch <- prometheus.MustNewConstMetric(m.desc, vt, other, otherTenant)
			}
		}
	}
	emit(c.gauges, prometheus.GaugeValue)
	emit(c.counters, prometheus.CounterValue)
	ch <- prometheus.MustNewConstMetric(c.scrapeSeconds, prometheus.GaugeValue, time.Since(start).Seconds())
}

// topK is the set of tenants with series of their own. It changes only when a tenant outside it becomes
// busier than the least busy one inside, or a tenant inside is gone, so that a series (and _other, which
// is a counter too) does not come and go from one scrape to the next.
type topK struct {
	set map[string]bool
}

// activity ranks tenants: connections now, then everything the tenant has done since start.
func activity(t *session.TenantSnapshot) (now, total int64) {
	return int64(t.Clients + t.Waiting + t.ServersActive), t.Stats.QueryCount + t.Stats.XactCount + t.Stats.Refused
}

// busier reports whether a ranks before b: more connections now, then more work done, then by name.
func busier(a, b *session.TenantSnapshot) bool {
	an, at := activity(a)
	bn, bt := activity(b)
	if an != bn {
		return an > bn
	}
	if at != bt {
		return at > bt
	}
	return a.Name < b.Name
}

// update picks the busiest k of ts, keeping members of the previous set that are still among the busiest
// 2k (hysteresis: a tenant leaves only once it is clearly not among the busiest), and returns the set.
func (s *topK) update(ts []session.TenantSnapshot, k int) map[string]bool {
	if k <= 0 {
		s.set = nil
		return nil
	}
	if len(ts) <= k {
		set := make(map[string]bool, len(ts))
		for i := range ts {
			set[ts[i].Name] = true
		}
		s.set = set
		return set
	}
	order := make([]*session.TenantSnapshot, len(ts))
	for i := range ts {
		order[i] = &ts[i]
	}
	sort.Slice(order, func(i, j int) bool { return busier(order[i], order[j]) })
	set := make(map[string]bool, k)
	// Members of the previous set stay while among the busiest 2k; the rest of the places go to the
	// busiest tenants not in it.
	for i := 0; i < len(order) && i < 2*k && len(set) < k; i++ {
		if s.set[order[i].Name] {
			set[order[i].Name] = true
		}
	}
	for i := 0; i < len(order) && len(set) < k; i++ {
		set[order[i].Name] = true
	}
	s.set = set
	return set
}
