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
	parts, top := got[0].defs()
	var partNames []string
	for _, p := range parts {
		partNames = append(partNames, p.name)
	}
	for _, tn := range [][2]string{{"acme", "s1"}, {"globex", "s2"}} {
		branch := "SELECT " + tenantNameFunc + "('" + tn[1] + "') AS tenant, \"id\", \"name\" FROM \"" + tn[1] + "\".\"emp\""
		n := 0
		for _, p := range parts {
			n += strings.Count(p.body, branch)
		}
		if n != 1 {
			t.Errorf("tenant %s is in %d parts, want 1: %+v", tn[0], n, parts)
		}
	}
	for _, p := range parts {
		if !strings.HasPrefix(p.name, `"analytics_parts"."emp__`) || !strings.Contains(top.body, `SELECT tenant, "id", "name" FROM `+p.name) {
			t.Errorf("part %s is not in the top view:\n%s", p.name, top.body)
		}
	}
	if top.name != `"analytics"."emp"` || strings.Count(top.body, "SELECT") != len(parts) {
		t.Errorf("top view %s:\n%s", top.name, top.body)
	}
}

func TestRefreshStatementsRebuildOnlyWhatChanged(t *testing.T) {
	view := func(tenants ...string) analyticsView {
		v := analyticsView{table: "emp", columns: []string{"id"}}
		for _, tn := range tenants {
			v.tenants = append(v.tenants, [2]string{tn, "s_" + tn})
		}
		return v
	}
	// Tenants in the same bucket, and one in another.
	var same []string
	for i := 0; len(same) < 3; i++ {
		if n := fmt.Sprintf("c%d", i); bucketOf(n) == 5 {
			same = append(same, n)
		}
	}
	other := "x0"
	for i := 1; bucketOf(other) == 5; i++ {
		other = fmt.Sprintf("x%d", i)
	}
	built := func(v analyticsView) map[string]string {
		m := map[string]string{}
		parts, top := v.defs()
		for _, p := range append(parts, top) {
			m[p.name] = p.hash()
		}
		return m
	}
	before := view(same[0], same[1], other)
	cases := []struct {
		name     string
		views    []analyticsView
		existing map[string]string
		want     []string // statement prefixes, in order
	}{
		{"from nothing: parts, then the top", []analyticsView{before}, map[string]string{},
			[]string{`CREATE VIEW "analytics_parts"."emp__`, "COMMENT ON VIEW", `CREATE VIEW "analytics_parts"."emp__`, "COMMENT ON VIEW", `CREATE VIEW "analytics"."emp"`, "COMMENT ON VIEW"}},
		{"nothing changed", []analyticsView{before}, built(before), nil},
		{"a tenant joins a bucket: one part replaced in place", []analyticsView{view(same[0], same[1], same[2], other)}, built(before),
			[]string{`CREATE OR REPLACE VIEW "analytics_parts"."emp__05"`, "COMMENT ON VIEW"}},
		{"a bucket empties: the top is rebuilt and the part dropped", []analyticsView{view(same[0], same[1])}, built(before),
			[]string{`DROP VIEW "analytics"."emp"`, `DROP VIEW "analytics_parts"."emp__`, `CREATE VIEW "analytics"."emp"`, "COMMENT ON VIEW"}},
		{"the table is gone", nil, built(before),
			[]string{`DROP VIEW "analytics"."emp"`, `DROP VIEW "analytics_parts"."emp__`, `DROP VIEW "analytics_parts"."emp__`}},
	}
	for _, c := range cases {
		got := refreshStatements(c.views, c.existing)
		ok := len(got) == len(c.want)
		for i := 0; ok && i < len(got); i++ {
			ok = strings.HasPrefix(got[i], c.want[i])
		}
		if !ok {
			t.Errorf("%s:\n%s\nwant prefixes:\n%s", c.name, strings.Join(got, "\n"), strings.Join(c.want, "\n"))
		}
	}
}

func TestDoctorFailsWhenTheAnalyticsViewsAreExposed(t *testing.T) {
	e := opaqueEnv(t)
	e.must("tenant", "create", "acme")
	acme := e.cfg.TenantRole("acme", catalogSchemaOf(t, e, "acme"))
	for _, grant := range []string{
		"GRANT USAGE ON SCHEMA analytics TO " + q(acme),
		"GRANT USAGE ON SCHEMA analytics_parts TO PUBLIC",
		"GRANT USAGE ON SCHEMA analytics_parts TO " + q(config.AnalyticsRole),
		"ALTER ROLE " + q(config.AnalyticsRole) + " LOGIN",
	} {
		e.exec(grant)
		if r := e.run("doctor"); r.code != ExitFailure || !strings.Contains(r.stderr, "analytics role reads the analytics schema only") {
			t.Errorf("doctor after %q: %v", grant, r)
		}
		rep, err := Doctor(context.Background(), e.cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range rep.Failed() {
			e.exec(f.Fix)
		}
		e.must("doctor")
	}
}
