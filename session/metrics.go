package session

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// maxTenantLabels bounds the tenant label's cardinality: tenants beyond it are counted under "_other".
const maxTenantLabels = 1000

// Metrics are the relay's Prometheus collectors.
type Metrics struct {
	Clients      prometheus.Gauge
	ClientsTotal prometheus.Counter
	Backends     *prometheus.GaugeVec // state = idle | active | dialing
	Transactions *prometheus.CounterVec
	Refused      *prometheus.CounterVec
	LeaseWait    prometheus.Histogram
	Switches     prometheus.Counter
	BackendClose *prometheus.CounterVec // reason
	Tripwire     prometheus.Counter
	Verified     prometheus.Counter
	Prepared     *prometheus.CounterVec // event = hit | miss | replay | evict
	Emulated     prometheus.Counter

	prepHit, prepMiss, prepReplay, prepEvict prometheus.Counter
	emulated                                 prometheus.Counter

	mu      sync.Mutex // guards tenants: the shards of a Group share one Metrics
	tenants map[string]*tenantCounters
	other   *tenantCounters
}

type tenantCounters struct {
	tx      prometheus.Counter
	refused prometheus.Counter
}

// NewMetrics creates the collectors and registers them with reg (when not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Clients:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "tenantproxy_clients", Help: "Client connections attached to the relay."}),
		ClientsTotal: prometheus.NewCounter(prometheus.CounterOpts{Name: "tenantproxy_clients_total", Help: "Client connections attached since start."}),
		Backends:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tenantproxy_backends", Help: "Backend connections by state."}, []string{"state"}),
		Transactions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tenantproxy_transactions_total", Help: "Leases ended (transactions in transaction pooling), by tenant."}, []string{"tenant"}),
		Refused:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tenantproxy_refused_statements_total", Help: "Statements refused by the guard, by tenant."}, []string{"tenant"}),
		LeaseWait:    prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tenantproxy_lease_wait_seconds", Help: "Time a client waited for a backend.", Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5, 30}}),
		Switches:     prometheus.NewCounter(prometheus.CounterOpts{Name: "tenantproxy_context_switches_total", Help: "Leases that had to apply another tenant context or other client settings."}),
		BackendClose: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tenantproxy_backend_closed_total", Help: "Backend connections closed, by reason."}, []string{"reason"}),
		Verified:     prometheus.NewCounter(prometheus.CounterOpts{Name: "tenantproxy_tripwire_checks_total", Help: "Backend identity checks that passed."}),
		Tripwire:     prometheus.NewCounter(prometheus.CounterOpts{Name: "tenantproxy_tripwire_hits_total", Help: "Backends whose identity did not match their tenant context; each was closed."}),
		Emulated:     prometheus.NewCounter(prometheus.CounterOpts{Name: "tenantproxy_emulated_statements_total", Help: "DISCARD ALL, RESET ALL and DEALLOCATE ALL answered by the proxy."}),
		Prepared:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tenantproxy_prepared_statements_total", Help: "Prepared statement cache events."}, []string{"event"}),
	}
	if reg != nil {
		reg.MustRegister(m.Clients, m.ClientsTotal, m.Backends, m.Transactions, m.Refused, m.LeaseWait, m.Switches,
			m.BackendClose, m.Tripwire, m.Verified, m.Prepared, m.Emulated)
	}
	m.prepHit, m.prepMiss = m.Prepared.WithLabelValues("hit"), m.Prepared.WithLabelValues("miss")
	m.prepReplay, m.prepEvict = m.Prepared.WithLabelValues("replay"), m.Prepared.WithLabelValues("evict")
	m.emulated = m.Emulated
	m.other = &tenantCounters{tx: m.Transactions.WithLabelValues("_other"), refused: m.Refused.WithLabelValues("_other")}
	return m
}

// forTenant returns the counters of a tenant, creating its labels while under the cardinality bound.
func (m *Metrics) forTenant(name string) *tenantCounters {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.tenants[name]; c != nil {
		return c
	}
	if len(m.tenants) >= maxTenantLabels {
		return m.other
	}
	if m.tenants == nil {
		m.tenants = map[string]*tenantCounters{}
	}
	c := &tenantCounters{tx: m.Transactions.WithLabelValues(name), refused: m.Refused.WithLabelValues(name)}
	m.tenants[name] = c
	return c
}
