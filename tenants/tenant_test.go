package tenants

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestTenantCreateListSuspendResumeDrop(t *testing.T) {
	e := newEnv(t, sampleMigrations(t))
	e.must("init")

	r := e.must("tenant", "create", "acme", "--schema", "acme")
	if !strings.Contains(r.stdout, "tenant acme: created") || !strings.Contains(r.stdout, "0003_create_leave_requests.sql") {
		t.Fatalf("create: %v", r)
	}
	if r := e.must("tenant", "create", "acme", "--schema", "acme"); !strings.Contains(r.stdout, "already exists") || !strings.Contains(r.stdout, "no migrations pending") {
		t.Fatalf("create again is not idempotent: %v", r)
	}
	e.must("tenant", "create", "globex", "--schema", "globex_data")
	if n := e.queryInt("SELECT count(*) FROM pg_tables WHERE schemaname = 'globex_data'"); n != 3 {
		t.Fatalf("globex_data has %d tables, want 3", n)
	}
	if r := e.run("tenant", "create", "globex", "--schema", "other"); r.code != ExitFailure || !strings.Contains(r.stderr, `tenant "globex" already exists with schema "globex_data"`) {
		t.Fatalf("create with another schema: %v", r)
	}
	if r := e.run("tenant", "create", "initech", "--schema", "acme"); r.code != ExitFailure || !strings.Contains(r.stderr, `schema "acme" belongs to tenant "acme"`) {
		t.Fatalf("create on another tenant's schema: %v", r)
	}

	// Tables created by migrations belong to the owner role; the tenant role has DML through default privileges.
	acme := poolSession(t, e, "acme")
	ctx := context.Background()
	if _, err := acme.Exec(ctx, "INSERT INTO departments (name) VALUES ('R&D'); INSERT INTO employees (name, email, department_id) VALUES ('Ada', 'ada@acme.test', 1)"); err != nil {
		t.Fatalf("tenant DML: %v", err)
	}
	if owner := e.queryInt("SELECT count(*) FROM pg_tables WHERE schemaname = 'acme' AND tableowner = $1", e.cfg.Admin.OwnerRole); owner != 3 {
		t.Fatalf("%d of acme's tables belong to the owner role, want 3", owner)
	}

	r = e.must("tenant", "list")
	for _, want := range []string{"NAME", "STATUS", "VERSION", "SIZE", "acme", "globex_data", "active", "0003", "2 tenants"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("tenant list lacks %q: %v", want, r)
		}
	}

	e.must("tenant", "suspend", "acme")
	if r := e.must("tenant", "suspend", "acme"); !strings.Contains(r.stdout, "already suspended") {
		t.Fatalf("suspend twice: %v", r)
	}
	var infos []tenantInfo
	if err := json.Unmarshal([]byte(e.must("tenant", "list", "--json").stdout), &infos); err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].Name != "acme" || infos[0].Status != StatusSuspended || infos[0].Version != 3 || infos[0].SizeBytes == 0 {
		t.Fatalf("tenant list --json after suspend: %+v", infos)
	}
	e.must("tenant", "resume", "acme")
	if n := e.queryInt("SELECT count(*) FROM tenantproxy.tenants WHERE status = 'active'"); n != 2 {
		t.Fatalf("%d active tenants after resume, want 2", n)
	}
	if r := e.run("tenant", "suspend", "nobody"); r.code != ExitFailure || !strings.Contains(r.stderr, `tenant "nobody" does not exist`) {
		t.Fatalf("suspend unknown tenant: %v", r)
	}

	if r := e.run("tenant", "drop", "acme"); r.code != ExitUsage || !strings.Contains(r.stderr, "without --yes") {
		t.Fatalf("drop without --yes: %v", r)
	}
	if n := e.queryInt("SELECT count(*) FROM tenantproxy.tenants WHERE name = 'acme'"); n != 1 {
		t.Fatal("drop without --yes dropped the tenant")
	}
	globexBefore := e.queryInt("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'globex_data'")
	e.must("tenant", "drop", "acme", "--yes")
	for _, check := range []struct{ sql, what string }{
		{"SELECT count(*) FROM pg_namespace WHERE nspname = 'acme'", "schema"},
		{"SELECT count(*) FROM pg_roles WHERE rolname = '" + e.role("acme") + "'", "role"},
		{"SELECT count(*) FROM tenantproxy.tenants WHERE name = 'acme'", "catalog row"},
		{"SELECT count(*) FROM tenantproxy.migrations WHERE tenant = 'acme'", "migration rows"},
	} {
		if n := e.queryInt(check.sql); n != 0 {
			t.Errorf("the %s of a dropped tenant survives", check.what)
		}
	}
	if after := e.queryInt("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'globex_data'"); after != globexBefore {
		t.Fatalf("dropping acme changed globex: %d relations before, %d after", globexBefore, after)
	}
	if r := e.run("tenant", "drop", "acme", "--yes"); r.code != ExitFailure || !strings.Contains(r.stderr, `tenant "acme" does not exist`) {
		t.Fatalf("drop twice: %v", r)
	}
	if rep, err := Doctor(ctx, e.cfg); err != nil || len(rep.Failed()) > 0 {
		t.Fatalf("doctor after the lifecycle: %v %+v", err, rep.Failed())
	}
}

func TestTenantCreateRefusesInvalidNames(t *testing.T) {
	e := newEnv(t, nil)
	e.must("init")
	cases := []struct{ name, want string }{
		{"Acme", "only lower-case letters"},
		{"pg_x", "the prefix pg_ is reserved"},
		{strings.Repeat("a", 64), "is 64 bytes long; PostgreSQL keeps at most 63"},
		{"public", "is reserved"},
		{"1abc", "starting with a letter"},
		{"acme;drop", "only lower-case letters"},
		{strings.Repeat("b", 62), "its role name from [tenancy] role is invalid"},
		{"", "name is empty"},
	}
	for _, c := range cases {
		r := e.run("tenant", "create", c.name)
		if r.code != ExitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("tenant create %q: %v\nwant exit 2 and %q", c.name, r, c.want)
		}
	}
	if n := e.queryInt("SELECT count(*) FROM tenantproxy.tenants"); n != 0 {
		t.Fatalf("%d tenants were created from invalid names", n)
	}
}

func TestTenantDropRefusesWhenAnotherSchemaDependsOnIt(t *testing.T) {
	e := newEnv(t, sampleMigrations(t))
	e.must("init")
	e.must("tenant", "create", "acme", "--schema", "acme")
	e.must("tenant", "create", "globex", "--schema", "globex")
	e.exec("CREATE VIEW globex.acme_people AS SELECT name FROM acme.employees")
	r := e.run("tenant", "drop", "acme", "--yes")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "view globex.acme_people") {
		t.Fatalf("drop with a dependent view in another schema: %v", r)
	}
	if n := e.queryInt("SELECT count(*) FROM tenantproxy.tenants"); n != 2 {
		t.Fatal("the refused drop changed the catalog")
	}
	e.exec("DROP VIEW globex.acme_people")
	e.must("tenant", "drop", "acme", "--yes")
}

func TestTenantCommandsNeedInit(t *testing.T) {
	e := newEnv(t, nil)
	for _, args := range [][]string{{"tenant", "create", "acme"}, {"tenant", "list"}, {"migrate", "up"}, {"migrate", "status"}} {
		r := e.run(args...)
		if r.code != ExitFailure || !strings.Contains(r.stderr, "run `tenantproxy init` first") {
			t.Errorf("%v before init: %v", args, r)
		}
	}
}
