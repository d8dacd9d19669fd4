package app

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantproxy/tenantproxy/config"
)

// registerMetrics adds to the registry what is read at scrape time rather than counted on the relay's
// hot path: the per-tenant pool and stats series, authentication failures, and (with [metrics]
// schema_stats_interval) the per-schema collector, which it starts.
func (p *App) registerMetrics(ctx context.Context) {
	p.reg.MustRegister(newTenantCollector(p.engine.Snapshot, func() int { return p.config().Metrics.TenantSeries }, p.log))
	p.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "tenantproxy_auth_failures_total",
		Help: "Client authentications that failed (wrong password, unknown user).",
	}, func() float64 { return float64(p.server.AuthFail.Load()) }))
	if iv := p.config().Metrics.SchemaStatsInterval.Duration; iv > 0 {
		sc := newSchemaCollector(iv, p.config, p.schemaTenants, p.log)
		p.reg.MustRegister(sc)
		p.schemaStatsDone = make(chan struct{})
		go func() {
			defer close(p.schemaStatsDone)
			sc.run(ctx)
		}()
	}
}

// schemaTenants are the tenants whose schemas the per-schema collector reads: the router's, from the
// config or the catalog.
func (p *App) schemaTenants() []config.Tenant { return p.router.Snapshot().Tenants() }
