package tenants

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// opaqueEnv is a test environment with the default role template tenant_{schema}, under which opaque
// schemas make opaque roles.
func opaqueEnv(t *testing.T) *testEnv {
	e := newEnv(t, sampleMigrations(t))
	e.cfg.Tenancy.Role = "tenant_{schema}"
	e.must("init")
	return e
}

func catalogSchemaOf(t *testing.T, e *testEnv, tenant string) string {
	t.Helper()
	conn := e.connect("")
	var s string
	if err := conn.QueryRow(context.Background(), "SELECT schema FROM tenantproxy.tenants WHERE name = $1", tenant).Scan(&s); err != nil {
		t.Fatalf("catalog schema of %s: %v", tenant, err)
	}
	return s
}

// sessionAs is a pool-role connection switched to a tenant whose schema is schema, as the proxy does it.
func sessionAs(t *testing.T, e *testEnv, tenant, schema string) *pgx.Conn {
	t.Helper()
	conn := e.connect(e.pool())
	setup := "SET ROLE " + q(e.cfg.TenantRole(tenant, schema)) + "; SET search_path TO " + q(schema) + ", public; SET " +
		e.cfg.Tenancy.Setting + " = " + lit(tenant)
	if _, err := conn.Exec(context.Background(), setup); err != nil {
		t.Fatalf("switch to tenant %s: %v", tenant, err)
	}
	return conn
}

func namingCheck(t *testing.T, e *testEnv) Check {
	t.Helper()
	rep, err := Doctor(context.Background(), e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if f := rep.Failed(); len(f) > 0 {
		t.Fatalf("doctor fails: %+v", f)
	}
	for _, c := range rep.Checks {
		if c.Name == "tenant schema and role names do not reveal the tenant" {
			return c
		}
	}
	t.Fatal("doctor has no naming check")
	return Check{}
}

func TestTenantCreateNamesSchemaAndRoleOpaquelyUnlessTold(t *testing.T) {
	e := opaqueEnv(t)
	r := e.must("tenant", "create", "acme")
	schema := catalogSchemaOf(t, e, "acme")
	if !regexp.MustCompile(`^t[0-9a-f]{16}$`).MatchString(schema) {
		t.Fatalf("schema of acme is %q, want an opaque id", schema)
	}
	role := e.cfg.TenantRole("acme", schema)
	if role != "tenant_"+schema || !strings.Contains(r.stdout, "schema "+schema+", role "+role) {
		t.Fatalf("role %q, create said: %v", role, r)
	}
	// Idempotent: the second create keeps the catalog's schema.
	if r := e.must("tenant", "create", "acme"); !strings.Contains(r.stdout, "already exists") || catalogSchemaOf(t, e, "acme") != schema {
		t.Fatalf("second create: %v", r)
	}
	e.must("tenant", "create", "globex")
	if other := catalogSchemaOf(t, e, "globex"); other == schema || !strings.HasPrefix(other, "t") {
		t.Fatalf("globex got schema %q (acme has %q)", other, schema)
	}
	if c := namingCheck(t, e); c.Warn {
		t.Fatalf("doctor warns about opaque names: %+v", c)
	}

	// Explicit names stay possible; doctor warns (and still passes).
	e.must("tenant", "create", "initech", "--schema", "initech_data")
	c := namingCheck(t, e)
	if !c.Warn || !strings.Contains(c.Detail, `initech: schema "initech_data" and role "tenant_initech_data"`) || strings.Contains(c.Detail, "acme") {
		t.Fatalf("naming check with an explicit schema: %+v", c)
	}
	if r := e.must("doctor"); !strings.Contains(r.stdout, "WARN") {
		t.Fatalf("doctor does not print the warning: %v", r)
	}
}

func TestTenantCreateRefusesTheNamesOfTenantproxySchemas(t *testing.T) {
	e := newEnv(t, nil)
	e.must("init")
	for _, args := range [][]string{
		{"tenant", "create", "analytics"},
		{"tenant", "create", "acme", "--schema", "analytics"},
		{"tenant", "create", "acme", "--schema", "tenant_stats"},
		{"tenant", "create", "acme", "--schema", "tenantproxy"},
	} {
		if r := e.run(args...); r.code != ExitUsage || !strings.Contains(r.stderr, "reserved") && !strings.Contains(r.stderr, "a schema of tenantproxy") {
			t.Errorf("%v: %v", args, r)
		}
	}
}

func TestDoctorFailsOnAnOpenStatisticsViewOrFunctionAndPassesAfterInit(t *testing.T) {
	e := opaqueEnv(t)
	e.must("tenant", "create", "acme")
	cases := []struct{ grant, check string }{
		{"GRANT SELECT ON pg_catalog.pg_stat_user_tables TO PUBLIC", "SELECT on statistics views revoked"},
		{"GRANT SELECT ON pg_catalog.pg_statio_all_indexes TO " + q(e.pool()), "SELECT on statistics views revoked"},
		{"GRANT SELECT ON pg_catalog.pg_locks TO PUBLIC", "SELECT on statistics views revoked"},
		{"GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_get_live_tuples(oid) TO PUBLIC", "EXECUTE on statistics functions revoked"},
		{"GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_get_xact_numscans(oid) TO " + q(e.cfg.TenantRole("acme", catalogSchemaOf(t, e, "acme"))), "EXECUTE on statistics functions revoked"},
		{"DROP VIEW tenant_stats.pg_stat_user_tables", "tenant-scoped statistics views in tenant_stats"},
	}
	for _, c := range cases {
		e.exec(c.grant)
		r := e.run("doctor")
		if r.code != ExitFailure || !strings.Contains(r.stderr, c.check) {
			t.Errorf("doctor after %q: %v", c.grant, r)
		}
		e.must("init")
		e.must("doctor")
	}
}

func TestStatisticsShowATenantOnlyItsOwnSchema(t *testing.T) {
	e := opaqueEnv(t)
	e.must("tenant", "create", "acme")
	e.must("tenant", "create", "globex")
	acmeS, globexS := catalogSchemaOf(t, e, "acme"), catalogSchemaOf(t, e, "globex")
	e.exec("INSERT INTO " + q(globexS) + ".employees (name, email) SELECT 'g' || i, 'g' || i || '@globex.test' FROM generate_series(1, 7) i")
	ctx := context.Background()
	acme := sessionAs(t, e, "acme", acmeS)
	if _, err := acme.Exec(ctx, "INSERT INTO employees (name, email) VALUES ('Ada', 'ada@acme.test')"); err != nil {
		t.Fatal(err)
	}
	var globexTable uint32
	if err := e.connect("").QueryRow(ctx, "SELECT oid FROM pg_class WHERE oid = to_regclass($1)", q(globexS)+".employees").Scan(&globexTable); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"SELECT * FROM pg_stat_user_tables", "SELECT * FROM pg_stat_all_tables", "SELECT * FROM pg_statio_user_tables",
		"SELECT * FROM pg_stat_user_indexes", "SELECT * FROM pg_stat_xact_user_tables", "SELECT * FROM pg_stat_user_functions",
		"SELECT * FROM pg_statio_all_sequences", "SELECT * FROM pg_locks", "SELECT * FROM pg_stat_progress_vacuum",
		"SELECT * FROM pg_stat_database", "SELECT * FROM pg_stat_activity",
		"SELECT pg_stat_get_live_tuples(" + itoa(globexTable) + ")", "SELECT pg_stat_get_numscans(" + itoa(globexTable) + ")",
		"SELECT pg_stat_get_xact_tuples_inserted(" + itoa(globexTable) + ")", "SELECT * FROM pg_lock_status()",
	} {
		if _, err := acme.Exec(ctx, sql); sqlState(err) != "42501" {
			t.Errorf("%s as a tenant: %v, want 42501", sql, err)
		}
	}
	// The replacements show acme's own tables, and only them.
	for _, v := range scopedStatsViews {
		rows, err := acme.Query(ctx, "SELECT schemaname::text FROM tenant_stats."+q(v))
		if err != nil {
			t.Fatalf("tenant_stats.%s: %v", v, err)
		}
		schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range schemas {
			if s != acmeS {
				t.Errorf("tenant_stats.%s shows schema %s to acme", v, s)
			}
		}
		if v == "pg_stat_user_tables" && len(schemas) == 0 {
			t.Errorf("tenant_stats.%s shows acme nothing", v)
		}
	}
	// Without a tenant role (the pool role itself, or a role the session did not SET ROLE to) they are empty.
	pool := e.connect(e.pool())
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM tenant_stats.pg_stat_user_tables").Scan(&n); err != nil || n != 0 {
		t.Errorf("the pool role sees %d rows of tenant_stats.pg_stat_user_tables (%v)", n, err)
	}
	// A monitoring role (pg_monitor) keeps the real views.
	e.exec("CREATE ROLE " + q(e.prefix+"_mon") + " LOGIN PASSWORD 'x' IN ROLE pg_monitor")
	t.Cleanup(func() { e.exec("DROP ROLE " + q(e.prefix+"_mon")) })
	mon := e.connect(e.prefix + "_mon")
	if err := mon.QueryRow(ctx, "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname IN ($1, $2)", acmeS, globexS).Scan(&n); err != nil || n == 0 {
		t.Errorf("pg_monitor reads pg_stat_user_tables: %d rows, %v", n, err)
	}
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func TestRestoreAsANewTenantGetsAnOpaqueSchema(t *testing.T) {
	e := opaqueEnv(t)
	e.must("tenant", "create", "acme", "--schema", "acme")
	e.exec("INSERT INTO acme.employees (name, email) VALUES ('Ada', 'ada@acme.test')")
	file := t.TempDir() + "/acme.tar"
	e.must("tenant", "backup", "acme", "--out", file)
	e.must("tenant", "drop", "acme", "--yes")
	e.must("tenant", "restore", file, "--as", "acme")
	schema := catalogSchemaOf(t, e, "acme")
	if !regexp.MustCompile(`^t[0-9a-f]{16}$`).MatchString(schema) {
		t.Fatalf("restored acme has schema %q, want an opaque id", schema)
	}
	if n := e.queryInt("SELECT count(*) FROM " + q(schema) + ".employees WHERE email = 'ada@acme.test'"); n != 1 {
		t.Fatalf("restored rows: %d", n)
	}
	if c := namingCheck(t, e); c.Warn {
		t.Fatalf("doctor still warns after the move: %+v", c)
	}
}

func TestInitClosesPgStatStatementsWhenInstalled(t *testing.T) {
	e := newEnv(t, sampleMigrations(t))
	e.cfg.Tenancy.Role = "tenant_{schema}"
	e.exec("CREATE EXTENSION pg_stat_statements")
	r := e.run("doctor")
	if r.code != ExitFailure || !strings.Contains(r.stdout, "pg_stat_statements") {
		t.Fatalf("doctor before init does not name pg_stat_statements: %v", r)
	}
	e.must("init")
	e.must("tenant", "create", "acme")
	acme := sessionAs(t, e, "acme", catalogSchemaOf(t, e, "acme"))
	// Without shared_preload_libraries the view would fail anyway; the privilege check comes first.
	for _, sql := range []string{"SELECT * FROM public.pg_stat_statements", "SELECT * FROM public.pg_stat_statements(true)", "SELECT * FROM public.pg_stat_statements_info"} {
		if _, err := acme.Exec(context.Background(), sql); sqlState(err) != "42501" {
			t.Errorf("%s as a tenant: %v, want 42501", sql, err)
		}
	}
}
