package tenants

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// analyticsRowsPerTenant is how many employees each of the 1,000 tenants of BenchmarkAnalytics1000 has.
const analyticsRowsPerTenant = 100

// BenchmarkAnalytics1000 measures the analytics views over 1,000 tenants (the three sample migrations,
// analyticsRowsPerTenant employees each), on a fresh database of the test cluster:
//
//	refresh-ms     `analytics refresh` from nothing: the three views of 1,000 branches each, in their parts
//	again-ms       `analytics refresh` again, nothing changed
//	count-all-ms   SELECT count(*) FROM analytics.employees, as the analytics role (100,000 rows)
//	one-tenant-ms  SELECT count(*) FROM analytics.employees WHERE tenant = '<one>' (planning included)
//	create-ms      one more `tenant create`, which refreshes the views itself (one part per view)
//	drop-ms        `tenant drop` of it, which refreshes too (the top views and one part per view)
//
// Run it with: go test ./tenants -run '^$' -bench Analytics1000 -benchtime 1x
func BenchmarkAnalytics1000(b *testing.B) {
	ctx := context.Background()
	var refresh, again, countAll, oneTenant, create, drop time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := newEnv(b, sampleMigrations(b))
		e.cfg.Tenancy.Role = "tenant_{schema}"
		e.must("init")
		ms, err := loadMigrationSet(e.cfg)
		if err != nil {
			b.Fatal(err)
		}
		conn, err := connectAdmin(ctx, e.cfg, "")
		if err != nil {
			b.Fatal(err)
		}
		for k := 0; k < benchTenants; k++ {
			if _, err := createTenant(ctx, conn, e.cfg, ms, fmt.Sprintf("c%04d", k), NewOpaqueSchema()); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := conn.Exec(ctx, fmt.Sprintf(`DO $$ DECLARE s text; BEGIN
  FOR s IN SELECT schema FROM tenantproxy.tenants LOOP
    EXECUTE format('INSERT INTO %%I.employees (name, email) SELECT ''e'' || i, ''e'' || i || ''@x.test'' FROM generate_series(1, %d) i', s);
  END LOOP; END $$`, analyticsRowsPerTenant)); err != nil {
			b.Fatal(err)
		}
		conn.Close(ctx)
		b.StartTimer()

		start := time.Now()
		e.must("analytics", "refresh")
		refresh += time.Since(start)
		start = time.Now()
		e.must("analytics", "refresh")
		again += time.Since(start)

		an := e.connect(e.pool())
		if _, err := an.Exec(ctx, "SET ROLE tenantproxy_analytics; SET search_path TO analytics"); err != nil {
			b.Fatal(err)
		}
		var n int
		start = time.Now()
		if err := an.QueryRow(ctx, "SELECT count(*) FROM analytics.employees", pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil || n != benchTenants*analyticsRowsPerTenant {
			b.Fatalf("count(*) across all: %d, %v", n, err)
		}
		countAll += time.Since(start)
		start = time.Now()
		if err := an.QueryRow(ctx, "SELECT count(*) FROM analytics.employees WHERE tenant = 'c0500'", pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil || n != analyticsRowsPerTenant {
			b.Fatalf("count(*) of one tenant: %d, %v", n, err)
		}
		oneTenant += time.Since(start)

		rows, err := an.Query(ctx, "EXPLAIN (ANALYZE, TIMING OFF) SELECT count(*) FROM analytics.employees WHERE tenant = 'c0500'", pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			b.Fatal(err)
		}
		plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("one tenant of %d:\n%s", benchTenants, strings.Join(plan, "\n"))

		start = time.Now()
		e.must("tenant", "create", "late")
		create += time.Since(start)
		start = time.Now()
		e.must("tenant", "drop", "late", "--yes")
		drop += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(float64(refresh.Milliseconds())/n, "refresh-ms")
	b.ReportMetric(float64(countAll.Microseconds())/1000/n, "count-all-ms")
	b.ReportMetric(float64(oneTenant.Microseconds())/1000/n, "one-tenant-ms")
	b.ReportMetric(float64(again.Milliseconds())/n, "again-ms")
	b.ReportMetric(float64(create.Milliseconds())/n, "create-ms")
	b.ReportMetric(float64(drop.Milliseconds())/n, "drop-ms")
}
