package session

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// The relay's own counters. Per-tenant series are not here: they are read from the relay's snapshot at
// scrape time (internal/app's collector), so the hot path does no per-tenant metric work and the tenant
// label stays bounded however many tenants there are.

// maxErrorCodes bounds the sqlstate label: codes beyond it are counted as "other".
const maxErrorCodes = 256

// Guard refusal reasons: a closed set, from the SQLSTATE of the refusal (policy.Analysis.SQLState).
var refusalReasons = map[string]string{
	"42501": "policy",        // a statement or function the profile may not run
	"25006": "read_only",     // a read-only user's write
	"42601": "syntax",        // text the parser cannot parse, or several statements where one must be
	"22023": "invalid_value", // a SET whose value cannot be a value
	"0A000": "unsupported",   // LISTEN/NOTIFY not sent alone, and the like
	"42622": "name_too_long", // a channel name too long with the tenant's prefix
}

// RefusalReasons are the values of tenantproxy_guard_refusals_total's reason label.
func RefusalReasons() []string {
	return []string{"policy", "read_only", "syntax", "invalid_value", "unsupported", "name_too_long", "other"}
}

// Metrics are the relay's Prometheus collectors.
type Metrics struct {
	Clients      prometheus.Gauge
	ClientsTotal prometheus.Counter
	Backends     *prometheus.GaugeVec   // state = idle | active | dialing
	Refusals     *prometheus.CounterVec // reason (RefusalReasons)
	Errors       *prometheus.CounterVec // sqlstate, source = server | proxy
	LeaseWait    prometheus.Histogram
	Switches     prometheus.Counter
	BackendClose *prometheus.CounterVec // reason
	Tripwire     prometheus.Counter
	Verified     prometheus.Counter
	Prepared     *prometheus.CounterVec // event = hit | miss | replay | evict
	Emulated     prometheus.Counter

	prepHit, prepMiss, prepReplay, prepEvict prometheus.Counter
	emulated                                 prometheus.Counter
	refusals                                 map[string]prometheus.Counter // by reason; read-only after NewMetrics

	mu     sync.Mutex // guards errors: the shards of a Group share one Metrics
	errors map[[2]string]prometheus.Counter
}

// NewMetrics creates the collectors and registers them with reg (when not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Clients:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "tenantproxy_clients", Help: "Client connections attached to the relay."}),
		ClientsTotal: prometheus.NewCounter(prometheus.CounterOpts{Name: "tenantproxy_clients_total", Help: "Client connections attached since start."}),
		Backends:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tenantproxy_backends", Help: "Backend connections by state."}, []string{"state"}),
		Refusals:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tenantproxy_guard_refusals_total", Help: "Statements refused by the statement guard, by reason."}, []string{"reason"}),
		Errors:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tenantproxy_errors_total", Help: "Error responses by SQLSTATE: from the server (source=server) or sent by the proxy itself (source=proxy)."}, []string{"sqlstate", "source"}),
		LeaseWait:    prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tenantproxy_lease_wait_seconds", Help: "Time a client waited for a backend.", Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5, 30}}),
		Switches:     prometheus.NewCounter(prometheus.CounterOpts{Name: "tenantproxy_context_switches_total", Help: "Leases that had to apply another tenant context or other client settings."}),
		BackendClose: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tenantproxy_backend_closed_total", Help: "Backend connections closed, by reason."}, []string{"reason"}),
		Verified:     prometheus.NewCounter(prometheus.CounterOpts{Name: "tenantproxy_tripwire_checks_total", Help: "Backend identity checks that passed."}),
		Tripwire:     prometheus.NewCounter(prometheus.CounterOpts{Name: "tenantproxy_tripwire_hits_total", Help: "Backends whose identity did not match their tenant context; each was closed."}),
		Emulated:     prometheus.NewCounter(prometheus.CounterOpts{Name: "tenantproxy_emulated_statements_total", Help: "DISCARD ALL, RESET ALL and DEALLOCATE ALL answered by the proxy."}),
		Prepared:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tenantproxy_prepared_statements_total", Help: "Prepared statement cache events."}, []string{"event"}),
		errors:       map[[2]string]prometheus.Counter{},
	}
	if reg != nil {
		reg.MustRegister(m.Clients, m.ClientsTotal, m.Backends, m.Refusals, m.Errors, m.LeaseWait, m.Switches,
			m.BackendClose, m.Tripwire, m.Verified, m.Prepared, m.Emulated)
	}
	m.prepHit, m.prepMiss = m.Prepared.WithLabelValues("hit"), m.Prepared.WithLabelValues("miss")
	m.prepReplay, m.prepEvict = m.Prepared.WithLabelValues("replay"), m.Prepared.WithLabelValues("evict")
	m.emulated = m.Emulated
	m.refusals = make(map[string]prometheus.Counter, len(refusalReasons)+1)
	for _, r := range RefusalReasons() {
		m.refusals[r] = m.Refusals.WithLabelValues(r) // every reason is exported, at 0 until it happens
	}
	return m
}

// refused counts a guard refusal with SQLSTATE code, and the error the client gets.
func (m *Metrics) refused(code string) {
	r, ok := refusalReasons[code]
	if !ok {
		r = "other"
	}
	m.refusals[r].Inc()
	m.errored(code, "proxy")
}

// errored counts an error response with SQLSTATE code from source ("server" or "proxy").
func (m *Metrics) errored(code, source string) {
	if !validSQLState(code) {
		code = "other"
	}
	k := [2]string{code, source}
	m.mu.Lock()
	c := m.errors[k]
	if c == nil {
		if len(m.errors) >= maxErrorCodes {
			k[0] = "other"
			c = m.errors[k]
		}
		if c == nil {
			c = m.Errors.WithLabelValues(k[0], k[1])
			m.errors[k] = c
		}
	}
	m.mu.Unlock()
	c.Inc()
}

// validSQLState reports whether code has the form of a SQLSTATE: five digits or upper-case letters.
func validSQLState(code string) bool {
	if len(code) != 5 {
		return false
	}
	for i := 0; i < 5; i++ {
		if c := code[i]; (c < '0' || c > '9') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}
