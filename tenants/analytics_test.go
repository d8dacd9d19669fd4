package tenants

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// analyticsSession is a pool-role connection switched to the analytics user's context, as the proxy does.
func analyticsSession(t *testing.T, e *testEnv) *pgx.Conn {
	t.Helper()
	conn := e.connect(e.pool())
	if _, err := conn.Exec(context.Background(), "SET ROLE "+q(config.AnalyticsRole)+"; SET search_path TO analytics; SET "+
		e.cfg.Tenancy.Setting+" = 'analytics'"); err != nil {
		t.Fatalf("switch to the analytics role: %v", err)
	}
	return conn
}

// perTenant is "tenant=count" of analytics.employees, ordered by tenant.
func perTenant(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT tenant || '=' || count(*) FROM analytics.employees GROUP BY tenant ORDER BY tenant")
	if err != nil {
		t.Fatalf("analytics.employees: %v", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, ",")
}

func seedEmployees(t *testing.T, e *testEnv, tenant string, n int) {
	t.Helper()
	e.exec(fmt.Sprintf("INSERT INTO %s.employees (name, email) SELECT '%s ' || i, 'e' || i || '@%s.test' FROM generate_series(1, %d) i",
		q(catalogSchemaOf(t, e, tenant)), tenant, tenant, n))
}

func TestAnalyticsViewsFollowTheTenants(t *testing.T) {
	e := opaqueEnv(t)
	e.must("tenant", "create", "acme")
	if r := e.must("tenant", "create", "globex"); !strings.Contains(r.stdout, "analytics: 3 views over 2 tenants refreshed") {
		t.Fatalf("tenant create does not refresh analytics: %v", r)
	}
	seedEmployees(t, e, "acme", 3)
	seedEmployees(t, e, "globex", 5)
	an := analyticsSession(t, e)
	ctx := context.Background()

	steps := []struct {
		args []string
		want string
	}{
		{nil, "acme=3,globex=5"},
		{[]string{"tenant", "suspend", "globex"}, "acme=3"},
		{[]string{"tenant", "resume", "globex"}, "acme=3,globex=5"},
		{[]string{"tenant", "create", "initech"}, "acme=3,globex=5"}, // no rows yet: no group
		{[]string{"tenant", "drop", "acme", "--yes"}, "globex=5"},
		{[]string{"analytics", "refresh"}, "globex=5"},
	}
	for _, s := range steps {
		if s.args != nil {
			e.must(s.args...)
		}
		if got := perTenant(t, an); got != s.want {
			t.Errorf("after %v: %s, want %s", s.args, got, s.want)
		}
	}
	seedEmployees(t, e, "initech", 2)
	if got := perTenant(t, an); got != "globex=5,initech=2" {
		t.Errorf("initech's rows: %s", got)
	}

	// The first column is tenant; the tenant table's own tenant-less columns follow.
	var cols []string
	rows, err := an.Query(ctx, "SELECT attname::text FROM pg_attribute WHERE attrelid = 'analytics.employees'::regclass AND attnum > 0 ORDER BY attnum")
	if err == nil {
		cols, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil || len(cols) < 2 || cols[0] != "tenant" || cols[1] != "id" {
		t.Fatalf("columns of analytics.employees: %v, %v", cols, err)
	}

	// The analytics role reads the views and nothing else, and writes nothing.
	globexS := catalogSchemaOf(t, e, "globex")
	for _, sql := range []string{
		"SELECT * FROM " + q(globexS) + ".employees",
		"INSERT INTO analytics.employees (tenant, name, email) VALUES ('globex', 'x', 'x@x')",
		"DELETE FROM analytics.employees",
		"CREATE VIEW analytics.mine AS SELECT 1",
		"SELECT * FROM tenantproxy.tenants",
	} {
		// A UNION ALL view cannot be written to (55000) before privileges are even checked.
		if _, err := an.Exec(ctx, sql); sqlState(err) != "42501" && sqlState(err) != "55000" {
			t.Errorf("%s as the analytics role: %v, want 42501 or 55000", sql, err)
		}
	}
	// A tenant cannot read the analytics views.
	globex := sessionAs(t, e, "globex", globexS)
	if _, err := globex.Exec(ctx, "SELECT * FROM analytics.employees"); sqlState(err) != "42501" {
		t.Errorf("a tenant reads analytics.employees: %v, want 42501", err)
	}
	if rep, err := Doctor(ctx, e.cfg); err != nil || len(rep.Failed()) > 0 {
		t.Fatalf("doctor with analytics views: %v %+v", err, rep.Failed())
	}
}

// TestAnalyticsFilterOnTenantReadsOneTable shows the plan: the branches of other tenants are constant
// false and disappear, so one tenant's query scans one table.
func TestAnalyticsFilterOnTenantReadsOneTable(t *testing.T) {
	e := opaqueEnv(t)
	for _, n := range []string{"acme", "globex", "initech"} {
		e.must("tenant", "create", n)
		seedEmployees(t, e, n, 2)
	}
	an := analyticsSession(t, e)
	rows, err := an.Query(context.Background(), "EXPLAIN (VERBOSE, COSTS OFF) SELECT count(*) FROM analytics.employees WHERE tenant = 'globex'")
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	scans := strings.Count(plan, "Scan on ")
	if scans != 1 || !strings.Contains(plan, "Scan on "+catalogSchemaOf(t, e, "globex")+".employees") {
		t.Fatalf("plan of a one-tenant query scans %d tables, want globex's only:\n%s", scans, plan)
	}
	t.Logf("EXPLAIN (VERBOSE, COSTS OFF) SELECT count(*) FROM analytics.employees WHERE tenant = 'globex':\n%s", plan)
}

func TestAnalyticsSurvivesMigrationsThatChangeColumns(t *testing.T) {
	e := opaqueEnv(t)
	e.must("tenant", "create", "acme")
	e.must("tenant", "create", "globex")
	e.writeMigration("0004_drop_email.sql", "ALTER TABLE employees DROP COLUMN email; ALTER TABLE employees ADD COLUMN badge integer;")
	if r := e.must("migrate", "up"); !strings.Contains(r.stdout, "analytics: 3 views over 2 tenants refreshed") {
		t.Fatalf("migrate up does not refresh analytics: %v", r)
	}
	an := analyticsSession(t, e)
	if _, err := an.Exec(context.Background(), "SELECT tenant, badge FROM analytics.employees"); err != nil {
		t.Fatalf("the new column in the view: %v", err)
	}
	if _, err := an.Exec(context.Background(), "SELECT email FROM analytics.employees"); sqlState(err) != "42703" {
		t.Fatalf("the dropped column is still in the view: %v", err)
	}
}

func TestPlanAnalyticsKeepsTheColumnsEveryTenantShares(t *testing.T) {
	cols := []analyticsColumn{
		{"acme", "s1", "emp", "id", "integer"}, {"acme", "s1", "emp", "tenant", "text"}, {"acme", "s1", "emp", "name", "text"},
		{"acme", "s1", "emp", "badge", "integer"},
		{"globex", "s2", "emp", "id", "integer"}, {"globex", "s2", "emp", "name", "text"}, {"globex", "s2", "emp", "badge", "bigint"},
		{"globex", "s2", "extra", "x", "integer"},
	}
	got := planAnalytics(cols)
	if len(got) != 2 || got[0].table != "emp" || strings.Join(got[0].columns, ",") != "id,name" || len(got[0].tenants) != 2 ||
		got[1].table != "extra" || len(got[1].tenants) != 1 || got[1].tenants[0][0] != "globex" {
		t.Fatalf("plan: %+v", got)
	}
	want := `CREATE VIEW "analytics"."emp" AS
SELECT 'acme'::text AS tenant, "id", "name" FROM "s1"."emp"
UNION ALL
SELECT 'globex'::text AS tenant, "id", "name" FROM "s2"."emp"`
	if sql := got[0].sql(); sql != want {
		t.Fatalf("view SQL:\n%s\nwant:\n%s", sql, want)
	}
}
