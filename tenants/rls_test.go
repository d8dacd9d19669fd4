package tenants

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

const eventsMigration = "CREATE TABLE events (id serial PRIMARY KEY, tenant text NOT NULL, body text NOT NULL);\n"

func tenantBodies(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT tenant || ':' || body FROM shared.events ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRLSEnableShowsATenantOnlyItsRowsOfASharedTable(t *testing.T) {
	e := newEnv(t, nil)
	e.writeShared("0001_create_events.sql", eventsMigration)
	e.must("init")
	e.must("tenant", "create", "acme", "--schema", "acme")
	e.must("tenant", "create", "globex", "--schema", "globex")
	e.exec("INSERT INTO shared.events (tenant, body) VALUES ('acme', 'a1'), ('globex', 'g1'), ('acme', 'a2'), ('initech', 'i1')")

	if r := e.run("rls", "enable", "employees_nowhere"); r.code != ExitFailure || !strings.Contains(r.stderr, `table "shared"."employees_nowhere" does not exist`) {
		t.Fatalf("rls enable of a missing table: %v", r)
	}
	e.exec("CREATE TABLE shared.no_tenant (id int)")
	if r := e.run("rls", "enable", "no_tenant"); r.code != ExitFailure || !strings.Contains(r.stderr, `needs a column "tenant" of type text`) {
		t.Fatalf("rls enable of a table without a tenant column: %v", r)
	}
	if r := e.run("rls", "enable", "acme.x"); r.code != ExitFailure || !strings.Contains(r.stderr, "belongs to tenant acme") {
		t.Fatalf("rls enable in a tenant schema: %v", r)
	}

	e.must("rls", "enable", "events")
	e.must("rls", "enable", "shared.events") // idempotent, qualified
	ctx := context.Background()

	acme := poolSession(t, e, "acme")
	if got := strings.Join(tenantBodies(t, acme), ","); got != "acme:a1,acme:a2" {
		t.Fatalf("acme sees %q", got)
	}
	if _, err := acme.Exec(ctx, "INSERT INTO shared.events (tenant, body) VALUES ('acme', 'a3')"); err != nil {
		t.Fatalf("acme inserts its own row: %v", err)
	}
	if _, err := acme.Exec(ctx, "INSERT INTO shared.events (tenant, body) VALUES ('globex', 'forged')"); sqlState(err) != "42501" {
		t.Fatalf("acme inserts a globex row: %v, want 42501", err)
	}
	if tag, err := acme.Exec(ctx, "UPDATE shared.events SET body = 'x' WHERE tenant = 'globex'"); err != nil || tag.RowsAffected() != 0 {
		t.Fatalf("acme updates globex rows: %v %v", tag, err)
	}
	if _, err := acme.Exec(ctx, "RESET "+e.cfg.Tenancy.Setting); err != nil {
		t.Fatal(err)
	}
	if got := tenantBodies(t, acme); len(got) != 0 {
		t.Fatalf("without the tenant setting a session sees %v", got)
	}
	globex := poolSession(t, e, "globex")
	if got := strings.Join(tenantBodies(t, globex), ","); got != "globex:g1" {
		t.Fatalf("globex sees %q", got)
	}

	// A tenant created later is granted the RLS table at once.
	e.must("tenant", "create", "initech", "--schema", "initech")
	if got := strings.Join(tenantBodies(t, poolSession(t, e, "initech")), ","); got != "initech:i1" {
		t.Fatalf("initech sees %q", got)
	}
	var status []struct {
		Table   string `json:"table"`
		Enabled bool   `json:"enabled"`
		Forced  bool   `json:"forced"`
		Policy  bool   `json:"policy"`
		Granted int    `json:"tenant_roles_granted"`
	}
	if err := json.Unmarshal([]byte(e.must("rls", "status", "events", "--json").stdout), &status); err != nil {
		t.Fatal(err)
	}
	if len(status) != 1 || status[0].Table != "shared.events" || !status[0].Enabled || !status[0].Forced || !status[0].Policy || status[0].Granted != 3 {
		t.Fatalf("rls status events: %+v", status)
	}
	if r := e.must("rls", "status"); !strings.Contains(r.stdout, "shared.events") || !strings.Contains(r.stdout, "shared.no_tenant") || !strings.Contains(r.stdout, "3/3") {
		t.Fatalf("rls status: %v", r)
	}
	if rep, err := Doctor(ctx, e.cfg); err != nil || len(rep.Failed()) > 0 {
		t.Fatalf("doctor with RLS enabled: %v %+v", err, rep.Failed())
	}

	e.must("rls", "disable", "events")
	if _, err := poolSession(t, e, "acme").Exec(ctx, "SELECT * FROM shared.events"); sqlState(err) != "42501" {
		t.Fatalf("after rls disable a tenant reads the shared table: %v, want 42501", err)
	}
	if r := e.must("rls", "status", "events"); !strings.Contains(r.stdout, "off") || !strings.Contains(r.stdout, "0/3") {
		t.Fatalf("rls status after disable: %v", r)
	}
}

func TestDoctorFailsWhenRLSIsNotForced(t *testing.T) {
	e := newEnv(t, nil)
	e.writeShared("0001_create_events.sql", eventsMigration)
	e.must("init")
	e.must("tenant", "create", "acme", "--schema", "acme")
	e.must("rls", "enable", "events")
	e.exec("ALTER TABLE shared.events NO FORCE ROW LEVEL SECURITY")
	rep, err := Doctor(context.Background(), e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if f := failedNames(rep); len(f) != 1 || f[0] != "row level security of shared tables" {
		t.Fatalf("doctor with RLS not forced fails %v", f)
	}
}
