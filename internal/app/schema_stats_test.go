package app

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/pgtest"
)

// schemaCluster starts a cluster and returns a config whose [admin] connection reaches it.
func schemaCluster(t *testing.T) (*pgtest.Cluster, *config.Config) {
	t.Helper()
	c := pgtest.New(t, pgtest.Options{})
	cfg, err := config.Parse(fmt.Sprintf(`
[backend]
host = %q
port = %d
database = "postgres"
user = "postgres"
[admin]
user = "postgres"
[metrics]
tenant_series = 2
`, c.Host, c.Port))
	if err != nil {
		t.Fatal(err)
	}
	return c, cfg
}

func tenantsOf(names ...string) []config.Tenant {
	ts := make([]config.Tenant, len(names))
	for i, n := range names {
		ts[i] = config.Tenant{Name: n, Schema: "s_" + n}
	}
	return ts
}

func TestSchemaStatsReportEachTenantSchema(t *testing.T) {
	c, cfg := schemaCluster(t)
	c.MustExec(t, "postgres", `
CREATE SCHEMA s_big; CREATE TABLE s_big.a (id int PRIMARY KEY, v text); CREATE TABLE s_big.b (id int);
INSERT INTO s_big.a SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g;
CREATE SCHEMA s_mid; CREATE TABLE s_mid.a (id int PRIMARY KEY); INSERT INTO s_mid.a SELECT generate_series(1, 100);
CREATE SCHEMA s_small; CREATE TABLE s_small.a (id int);
CREATE SCHEMA s_empty;
CREATE SCHEMA not_a_tenant; CREATE TABLE not_a_tenant.a (id int); INSERT INTO not_a_tenant.a SELECT generate_series(1, 100000);
SELECT count(*) FROM s_big.a; SELECT count(*) FROM s_big.a WHERE id = 7;`)
	sc := newSchemaCollector(time.Minute, func() *config.Config { return cfg },
		func() []config.Tenant { return tenantsOf("big", "mid", "small", "empty", "missing") }, zap.NewNop())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The server's statistics of the inserts arrive shortly after their sessions end.
	var fams map[string]float64
	for {
		conn := sc.collect(ctx, nil)
		if conn == nil {
			t.Fatalf("collect failed (%d errors)", sc.errs)
		}
		conn.Close(ctx)
		fams = byTenant(gather(t, sc)["tenantproxy_schema_live_tuples"])
		if fams["big"] == 5000 && fams["mid"] == 100 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("live tuples never reached big 5000 and mid 100: %v", fams)
		}
		time.Sleep(50 * time.Millisecond)
	}
	all := gather(t, sc)
	for _, tc := range []struct {
		metric string
		want   map[string]float64
	}{
		// tenant_series = 2: the two largest schemas (big, mid) by size have series; small and empty
		// are _other; "missing" has no schema and no row; not_a_tenant is no tenant's.
		{"tenantproxy_schema_tables", map[string]float64{"big": 2, "mid": 1, otherTenant: 1}},
		{"tenantproxy_schema_live_tuples", map[string]float64{"big": 5000, "mid": 100, otherTenant: 0}},
		{"tenantproxy_schema_dead_tuples", map[string]float64{"big": 0, "mid": 0, otherTenant: 0}},
	} {
		got := byTenant(all[tc.metric])
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s = %v, want %v", tc.metric, got, tc.want)
		}
	}
	size := byTenant(all["tenantproxy_schema_size_bytes"])
	if !(size["big"] > size["mid"] && size["mid"] > 0 && len(size) == 3) {
		t.Errorf("sizes %v: want big > mid > 0, and _other", size)
	}
	if scans := byTenant(all["tenantproxy_schema_seq_scans_total"]); scans["big"] < 1 {
		t.Errorf("seq scans of big = %v, want at least the count(*)", scans["big"])
	}
	if n := all["tenantproxy_schema_stats_schemas"].GetMetric()[0].GetGauge().GetValue(); n != 4 {
		t.Errorf("schemas = %v, want 4 (big, mid, small, empty)", n)
	}
	if d := all["tenantproxy_schema_stats_duration_seconds"].GetMetric()[0].GetGauge().GetValue(); d <= 0 {
		t.Errorf("duration = %v, want > 0", d)
	}
}

func TestSchemaStatsFailureIsCountedAndKeepsTheLastResult(t *testing.T) {
	c, cfg := schemaCluster(t)
	c.MustExec(t, "postgres", `CREATE SCHEMA s_a; CREATE TABLE s_a.t (id int);`)
	sc := newSchemaCollector(time.Minute, func() *config.Config { return cfg }, func() []config.Tenant { return tenantsOf("a") }, zap.NewNop())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := sc.collect(ctx, nil)
	if conn == nil {
		t.Fatal("first collect failed")
	}
	conn.Close(ctx)
	bad := *cfg
	bad.Backend.Port = 1 // nothing listens there
	sc.cfg = func() *config.Config { return &bad }
	if conn := sc.collect(ctx, nil); conn != nil {
		conn.Close(ctx)
		t.Fatal("collect through a closed port succeeded")
	}
	all := gather(t, sc)
	if e := all["tenantproxy_schema_stats_errors_total"].GetMetric()[0].GetCounter().GetValue(); e != 1 {
		t.Errorf("errors = %v, want 1", e)
	}
	if got := byTenant(all["tenantproxy_schema_tables"]); got["a"] != 1 {
		t.Errorf("after a failed run the last result is gone: %v", got)
	}
}

func TestSchemaStatsAtTenThousandSchemasIsOneBoundedQuery(t *testing.T) {
	const n, k = 10000, 100
	c, cfg := schemaCluster(t)
	cfg.Metrics.TenantSeries = k
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("t%05d", i)
	}
	start := time.Now()
	// Batches of 500 schemas keep each transaction's locks well within max_locks_per_transaction.
	for lo := 0; lo < n; lo += 500 {
		var b strings.Builder
		for _, name := range names[lo:min(lo+500, n)] {
			fmt.Fprintf(&b, "CREATE SCHEMA s_%s; CREATE TABLE s_%s.items (id int PRIMARY KEY, v text);\n", name, name)
		}
		c.MustExec(t, "postgres", b.String())
	}
	t.Logf("created %d schemas with a table each in %v", n, time.Since(start))
	sc := newSchemaCollector(time.Minute, func() *config.Config { return cfg }, func() []config.Tenant { return tenantsOf(names...) }, zap.NewNop())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := sc.collect(ctx, nil) // cold: connects
	if conn == nil {
		t.Fatal("collect failed")
	}
	cold := sc.duration
	conn = sc.collect(ctx, conn) // warm: the connection the collector keeps between intervals
	if conn == nil {
		t.Fatal("second collect failed")
	}
	conn.Close(ctx)
	t.Logf("per-schema collection of %d schemas: %v with connect, %v on the kept connection", n, cold, sc.duration)
	all := gather(t, sc)
	if got := all["tenantproxy_schema_stats_schemas"].GetMetric()[0].GetGauge().GetValue(); got != n {
		t.Errorf("schemas = %v, want %d", got, n)
	}
	for _, name := range []string{"tenantproxy_schema_size_bytes", "tenantproxy_schema_tables", "tenantproxy_schema_live_tuples",
		"tenantproxy_schema_dead_tuples", "tenantproxy_schema_seq_scans_total", "tenantproxy_schema_idx_scans_total"} {
		if got := len(all[name].GetMetric()); got != k+1 {
			t.Errorf("%s: %d series, want %d (K + _other)", name, got, k+1)
		}
	}
	var tables float64
	for _, v := range byTenant(all["tenantproxy_schema_tables"]) {
		tables += v
	}
	if tables != n {
		t.Errorf("tables over all series = %v, want %d", tables, n)
	}
}
