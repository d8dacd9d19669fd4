package app

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/catalog"
	"github.com/tenantproxy/tenantproxy/config"
)

// schemaStatsQuery is the per-schema collector's one catalog query per interval: every tenant schema's
// tables, size and pg_stat_user_tables counters, aggregated per schema in the server, so that the rows
// sent are one per schema (10,000 at most for 10,000 tenants) whatever the number of tables. Sizes are
// pg_total_relation_size (heap, indexes and TOAST) of the schema's tables and materialized views.
const schemaStatsQuery = `SELECT n.nspname,
  count(c.oid) FILTER (WHERE c.relkind IN ('r', 'p')),
  coalesce(sum(pg_catalog.pg_total_relation_size(c.oid)) FILTER (WHERE c.relkind IN ('r', 'm')), 0)::bigint,
  coalesce(sum(s.n_live_tup), 0)::bigint, coalesce(sum(s.n_dead_tup), 0)::bigint,
  coalesce(sum(s.seq_scan), 0)::bigint, coalesce(sum(s.idx_scan), 0)::bigint
FROM pg_catalog.pg_namespace n
LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'm')
LEFT JOIN pg_catalog.pg_stat_user_tables s ON s.relid = c.oid
WHERE n.nspname = ANY($1::text[])
GROUP BY n.nspname`

// schemaStats is one schema's figures.
type schemaStats struct {
	tenant                                     string
	tables, size, live, dead, seqScan, idxScan int64
}

// schemaCollector runs schemaStatsQuery every interval through the [admin] connection and exports the
// latest result: one series per tenant for the K largest schemas, the rest summed under _other.
type schemaCollector struct {
	interval time.Duration
	cfg      func() *config.Config
	tenants  func() []config.Tenant
	log      *zap.Logger
	// connect opens the admin connection (catalog.ConnectAdmin; tests substitute their own).
	connect func(ctx context.Context, cfg *config.Config) (*pgx.Conn, error)

	mu       sync.Mutex
	stats    []schemaStats // by size, largest first
	duration time.Duration // of the latest run
	last     time.Time     // of the latest successful run
	runs     int64
	errs     int64

	descs                                    []*prometheus.Desc // size, tables, live, dead, seq, idx
	durationD, schemasD, lastD, runsD, errsD *prometheus.Desc
}

func newSchemaCollector(interval time.Duration, cfg func() *config.Config, ts func() []config.Tenant, log *zap.Logger) *schemaCollector {
	lbl := []string{"tenant"}
	return &schemaCollector{interval: interval, cfg: cfg, tenants: ts, log: log, connect: func(ctx context.Context, cfg *config.Config) (*pgx.Conn, error) {
		return catalog.ConnectAdmin(ctx, cfg, "")
	},
		descs: []*prometheus.Desc{
			prometheus.NewDesc("tenantproxy_schema_size_bytes", "Total size of the tenant schema's tables and materialized views, with indexes and TOAST.", lbl, nil),
			prometheus.NewDesc("tenantproxy_schema_tables", "Tables (plain and partitioned) in the tenant schema.", lbl, nil),
			prometheus.NewDesc("tenantproxy_schema_live_tuples", "Estimated live rows in the tenant schema's tables (pg_stat_user_tables n_live_tup).", lbl, nil),
			prometheus.NewDesc("tenantproxy_schema_dead_tuples", "Estimated dead rows in the tenant schema's tables (pg_stat_user_tables n_dead_tup).", lbl, nil),
			prometheus.NewDesc("tenantproxy_schema_seq_scans_total", "Sequential scans of the tenant schema's tables (pg_stat_user_tables seq_scan).", lbl, nil),
			prometheus.NewDesc("tenantproxy_schema_idx_scans_total", "Index scans of the tenant schema's tables (pg_stat_user_tables idx_scan).", lbl, nil),
		},
		durationD: prometheus.NewDesc("tenantproxy_schema_stats_duration_seconds", "Time the latest per-schema collection took (connect, query, aggregate).", nil, nil),
		schemasD:  prometheus.NewDesc("tenantproxy_schema_stats_schemas", "Tenant schemas the latest per-schema collection found.", nil, nil),
		lastD:     prometheus.NewDesc("tenantproxy_schema_stats_last_success_timestamp_seconds", "When the latest per-schema collection succeeded (Unix time).", nil, nil),
		runsD:     prometheus.NewDesc("tenantproxy_schema_stats_runs_total", "Per-schema collections run.", nil, nil),
		errsD:     prometheus.NewDesc("tenantproxy_schema_stats_errors_total", "Per-schema collections that failed.", nil, nil),
	}
}

// run collects once per interval until ctx ends, the first time at once.
func (c *schemaCollector) run(ctx context.Context) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			closeConn(conn)
		}
	}()
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		conn = c.collect(ctx, conn)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// collect runs the query once on conn (opening one when nil) and returns the connection to keep, nil
// after an error.
func (c *schemaCollector) collect(ctx context.Context, conn *pgx.Conn) *pgx.Conn {
	start := time.Now()
	// A run never outlasts its interval, so runs never pile up behind a slow catalog.
	ctx, cancel := context.WithTimeout(ctx, c.interval)
	defer cancel()
	stats, err := c.query(ctx, &conn)
	d := time.Since(start)
	c.mu.Lock()
	c.runs++
	c.duration = d
	if err == nil {
		c.stats, c.last = stats, time.Now()
	} else {
		c.errs++
	}
	c.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil || d >= c.interval {
			c.log.Warn("per-schema metrics collection failed", zap.Error(err), zap.Duration("took", d))
		}
		if conn != nil {
			closeConn(conn)
		}
		return nil
	}
	c.log.Debug("per-schema metrics collected", zap.Int("schemas", len(stats)), zap.Duration("took", d))
	return conn
}

func (c *schemaCollector) query(ctx context.Context, conn **pgx.Conn) ([]schemaStats, error) {
	ts := c.tenants()
	bySchema := make(map[string]string, len(ts))
	schemas := make([]string, 0, len(ts))
	for _, t := range ts {
		if _, dup := bySchema[t.Schema]; !dup {
			schemas = append(schemas, t.Schema)
		}
		bySchema[t.Schema] = t.Name
	}
	if *conn == nil {
		cn, err := c.connect(ctx, c.cfg())
		if err != nil {
			return nil, err
		}
		*conn = cn
	}
	rows, err := (*conn).Query(ctx, schemaStatsQuery, schemas)
	if err != nil {
		return nil, err
	}
	out := make([]schemaStats, 0, len(schemas))
	for rows.Next() {
		var schema string
		var s schemaStats
		if err := rows.Scan(&schema, &s.tables, &s.size, &s.live, &s.dead, &s.seqScan, &s.idxScan); err != nil {
			rows.Close()
			return nil, err
		}
		s.tenant = bySchema[schema]
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].size != out[j].size {
			return out[i].size > out[j].size
		}
		return out[i].tenant < out[j].tenant
	})
	return out, nil
}

func (c *schemaCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{c.durationD, c.schemasD, c.lastD, c.runsD, c.errsD} {
		ch <- d
	}
}

// Collect exports the latest collection (the K largest schemas and _other) without touching the
// database: a scrape costs no query.
func (c *schemaCollector) Collect(ch chan<- prometheus.Metric) {
	k := c.cfg().Metrics.TenantSeries
	c.mu.Lock()
	stats, d, last, runs, errs := c.stats, c.duration, c.last, c.runs, c.errs
	c.mu.Unlock()
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	ch <- prometheus.MustNewConstMetric(c.durationD, gauge, d.Seconds())
	ch <- prometheus.MustNewConstMetric(c.schemasD, gauge, float64(len(stats)))
	ch <- prometheus.MustNewConstMetric(c.runsD, counter, float64(runs))
	ch <- prometheus.MustNewConstMetric(c.errsD, counter, float64(errs))
	if last.IsZero() {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.lastD, gauge, float64(last.UnixNano())/1e9)
	types := []prometheus.ValueType{gauge, gauge, gauge, gauge, counter, counter}
	var other [6]int64
	for i, s := range stats {
		v := [6]int64{s.size, s.tables, s.live, s.dead, s.seqScan, s.idxScan}
		if i >= k {
			for j := range v {
				other[j] += v[j]
			}
			continue
		}
		for j, desc := range c.descs {
			ch <- prometheus.MustNewConstMetric(desc, types[j], float64(v[j]), s.tenant)
		}
	}
	for j, desc := range c.descs {
		ch <- prometheus.MustNewConstMetric(desc, types[j], float64(other[j]), otherTenant)
	}
}

// closeConn closes the admin connection, waiting at most a second for the server.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn.Close(ctx)
}
