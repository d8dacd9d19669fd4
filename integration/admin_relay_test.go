package integration

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// waitColumn polls a SHOW until the row keyed key has want in column valCol.
func waitColumn(t *testing.T, ctx context.Context, admin *pgx.Conn, show, key, keyCol, valCol string, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		names, rows, err := consoleQuery(ctx, admin, show)
		if err != nil {
			t.Fatalf("%s: %v", show, err)
		}
		got := column(names, rows, key, keyCol, valCol)
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s of %s stayed %q", show, valCol, key, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The console's relay sections through the real proxy: SHOW POOLS, STATS_TOTALS, CLIENTS, SERVERS and
// TENANTS move with load; PAUSE of one tenant holds its next transaction while another tenant runs, and
// RESUME lets it go; SET of a tenant's limit takes effect at once; KILL_CLIENT ends a client; RECONNECT
// and WAIT_CLOSE replace the tenant's backends.
func TestAdminConsoleRelaySections(t *testing.T) {
	p := startProxy(t, config.ModeTransaction, func(c *config.Config) { consoleUsers(c); c.Backend.PoolSize = 3 })
	ctx := testContext(t, 60*time.Second)
	admin := connectPgx(t, ctx, consoleURL(p, "opsadmin", "pgbouncer"), pgx.QueryExecModeSimpleProtocol)
	acme := connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeSimpleProtocol)
	globex := connectPgx(t, ctx, p.TenantURL("globex"), pgx.QueryExecModeSimpleProtocol)
	for i := 0; i < 5; i++ {
		if _, err := acme.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	names, rows, err := consoleQuery(ctx, admin, "SHOW POOLS")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names[:4], ",") != "database,user,cl_active,cl_waiting" {
		t.Errorf("SHOW POOLS columns: %v", names)
	}
	if got := column(names, rows, "acme", "database", "cl_active"); got != "1" {
		t.Errorf("SHOW POOLS acme cl_active = %s, want 1", got)
	}
	waitColumn(t, ctx, admin, "SHOW STATS_TOTALS", "acme", "database", "xact_count", func(v string) bool { n, _ := strconv.Atoi(v); return n >= 5 })
	names, rows, _ = consoleQuery(ctx, admin, "SHOW CLIENTS")
	if got := column(names, rows, "globex", "database", "state"); got != "active" {
		t.Errorf("SHOW CLIENTS globex state = %s (rows %v)", got, rows)
	}
	names, rows, _ = consoleQuery(ctx, admin, "SHOW SERVERS")
	if len(rows) == 0 || column(names, rows, "acme", "database", "state") == "<missing>" {
		t.Errorf("SHOW SERVERS has no backend in acme's context: %v", rows)
	}
	names, rows, _ = consoleQuery(ctx, admin, "SHOW TENANTS")
	if got := column(names, rows, "acme", names[0], "clients"); got != "1" {
		t.Errorf("SHOW TENANTS acme clients = %s (%v %v)", got, names, rows)
	}

	// PAUSE acme: acme's next transaction waits, globex's runs; RESUME lets acme's go.
	if _, err := admin.Exec(ctx, "PAUSE acme", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("PAUSE acme: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := acme.Exec(ctx, "SELECT 2"); done <- err }()
	waitColumn(t, ctx, admin, "SHOW POOLS", "acme", "database", "cl_waiting", func(v string) bool { return v == "1" })
	if _, err := globex.Exec(ctx, "SELECT 3"); err != nil {
		t.Fatalf("globex while acme is paused: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("acme's transaction ran while paused: %v", err)
	default:
	}
	if _, err := admin.Exec(ctx, "RESUME acme", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("RESUME acme: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("acme after RESUME: %v", err)
	}

	// SET acme.max_clients = 1 refuses a second acme client at once, with 53300 naming the limit.
	if _, err := admin.Exec(ctx, "SET acme.max_clients = 1", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("SET acme.max_clients: %v", err)
	}
	if c, err := dialPgx(ctx, p.TenantURL("acme"), pgx.QueryExecModeSimpleProtocol, nil); sqlstate(err) != "53300" || !strings.Contains(errorMessage(err), "max_clients is 1") {
		if err == nil {
			c.Close(ctx)
		}
		t.Errorf("a second acme client over max_clients: %v", err)
	}
	names, rows, _ = consoleQuery(ctx, admin, "SHOW TENANTS")
	if got := column(names, rows, "acme", names[0], "max_clients"); got != "1" {
		t.Errorf("SHOW TENANTS acme max_clients = %s", got)
	}
	if _, err := admin.Exec(ctx, "SET acme.max_clients = 0", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "SET acme.weight = -1", pgx.QueryExecModeSimpleProtocol); sqlstate(err) != "22023" {
		t.Errorf("SET acme.weight = -1: %v", err)
	}

	// RECONNECT acme, then WAIT_CLOSE: the backends in acme's context are replaced; acme goes on.
	if _, err := admin.Exec(ctx, "RECONNECT acme", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("RECONNECT acme: %v", err)
	}
	if _, err := admin.Exec(ctx, "WAIT_CLOSE acme", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("WAIT_CLOSE acme: %v", err)
	}
	if _, err := acme.Exec(ctx, "SELECT 4"); err != nil {
		t.Fatalf("acme after RECONNECT: %v", err)
	}

	// KILL_CLIENT ends the globex client, with 57P01.
	names, rows, _ = consoleQuery(ctx, admin, "SHOW CLIENTS")
	id := column(names, rows, "globex", "database", "id")
	if _, err := admin.Exec(ctx, "KILL_CLIENT "+id, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("KILL_CLIENT %s: %v", id, err)
	}
	if _, err := globex.Exec(ctx, "SELECT 5"); err == nil {
		t.Error("the killed client still runs statements")
	}
	if _, err := admin.Exec(ctx, "KILL_CLIENT "+id, pgx.QueryExecModeSimpleProtocol); err == nil {
		t.Error("KILL_CLIENT of a client that is gone succeeded")
	}
}

// SHOW TENANTS shows each tenant's migration version: read at start through the [admin] role, since
// the pool role cannot read the migration records.
func TestShowTenantsShowsEachTenantsMigrationVersion(t *testing.T) {
	p := startProxy(t, config.ModeTransaction, consoleUsers)
	ctx := testContext(t, 30*time.Second)
	db, err := fx.Cluster.Connect(ctx, proxytest.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	var want int
	if err := db.QueryRow(ctx, "SELECT max(version) FROM tenantproxy.migrations WHERE tenant = 'acme'").Scan(&want); err != nil {
		t.Fatal(err)
	}
	admin := connectPgx(t, ctx, consoleURL(p, "opsadmin", "pgbouncer"), pgx.QueryExecModeSimpleProtocol)
	got := waitColumn(t, ctx, admin, "SHOW TENANTS", "acme", "tenant", "migration_version", func(v string) bool { return v != "" && v != "<missing>" })
	if got != strconv.Itoa(want) {
		t.Errorf("SHOW TENANTS acme migration_version = %s, want %d", got, want)
	}
}
