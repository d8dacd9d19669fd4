package tenants

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tenantproxy/tenantproxy/config"
)

func (e *testEnv) writeFile(rel, sql string) {
	e.tb.Helper()
	p := filepath.Join(e.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.tb.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(sql), 0o644); err != nil {
		e.tb.Fatal(err)
	}
}

func TestTenantSpecificMigrationsApplyOnlyWhereNamedAndShowInStatus(t *testing.T) {
	e := newEnv(t, map[string]string{"0001_create_items.sql": itemsMigration})
	e.must("init")
	for _, n := range []string{"acme", "globex", "initech", "umbrella"} {
		e.must("tenant", "create", n, "--schema", n)
	}
	e.cfg.Tenants = append(e.cfg.Tenants, config.Tenant{Name: "initech", Schema: "initech", MigrationGroup: "large"})
	e.writeFile("tenants/acme/0001_acme_name_idx.sql", "CREATE INDEX items_name_idx ON items (name);\n")
	e.writeFile("tenants/0001_archive.sql", "-- tenantproxy: tenants globex, large\nCREATE TABLE items_archive (LIKE items);\n")
	e.writeMigration("0002_add_price.sql", "ALTER TABLE items ADD COLUMN price numeric;\n")

	r := e.must("migrate", "up")
	if !strings.Contains(r.stdout, "acme: applied 0002_add_price.sql, tenants/acme/0001_acme_name_idx.sql") ||
		!strings.Contains(r.stdout, "initech: applied 0002_add_price.sql, tenants/0001_archive.sql") ||
		!strings.Contains(r.stdout, "umbrella: applied 0002_add_price.sql\n") {
		t.Fatalf("migrate up: %v", r)
	}
	has := func(schema, rel string) bool {
		return e.queryInt("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2", schema, rel) == 1
	}
	for _, c := range []struct {
		schema, rel string
		want        bool
	}{
		{"acme", "items_name_idx", true}, {"globex", "items_name_idx", false},
		{"globex", "items_archive", true}, {"initech", "items_archive", true},
		{"acme", "items_archive", false}, {"umbrella", "items_archive", false},
	} {
		if has(c.schema, c.rel) != c.want {
			t.Errorf("%s.%s exists: %v, want %v", c.schema, c.rel, !c.want, c.want)
		}
	}
	if n := e.atVersion(2); n != 4 {
		t.Fatalf("the common line is not identical everywhere: %d tenants at version 2", n)
	}
	if n := e.queryInt("SELECT count(*) FROM tenantproxy.migrations WHERE name LIKE 'tenants/%'"); n != 0 {
		t.Fatal("tenant-specific files recorded in the common line")
	}
	var status struct {
		Tenants []struct {
			Tenant   string   `json:"tenant"`
			Version  int      `json:"version"`
			Specific []string `json:"specific"`
		} `json:"tenants"`
	}
	if err := json.Unmarshal([]byte(e.must("migrate", "status", "--json").stdout), &status); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range status.Tenants {
		got[s.Tenant] = strings.Join(s.Specific, "; ")
	}
	want := map[string]string{"acme": "tenants/acme/0001_acme_name_idx.sql (applied)", "globex": "tenants/0001_archive.sql (applied)",
		"initech": "tenants/0001_archive.sql (applied)", "umbrella": ""}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("status of %s lists %q, want %q", k, got[k], v)
		}
	}
	// The references of drift include each tenant's own applied files.
	if r := e.must("migrate", "status", "--drift"); !strings.Contains(r.stdout, "drift: 0 of 4 tenants differ") {
		t.Fatalf("drift with tenant-specific files: %v", r)
	}
	conn := e.connect("")
	versions, err := TenantMigrationVersions(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	if versions["acme"] != (MigrationVersion{Version: 2, Specific: 1}) || versions["umbrella"] != (MigrationVersion{Version: 2}) || len(versions) != 4 {
		t.Fatalf("TenantMigrationVersions: %+v", versions)
	}
	// A second file for acme is pending until the next run; a rerun touches nobody else.
	e.writeFile("tenants/acme/0002_acme_more.sql", "CREATE INDEX items_id_name_idx ON items (id, name);\n")
	if r := e.must("migrate", "status"); !strings.Contains(r.stdout, "tenants/acme/0002_acme_more.sql (pending)") {
		t.Fatalf("status with a pending tenant-specific file: %v", r)
	}
	r = e.must("migrate", "up")
	if !strings.Contains(r.stdout, "1 migrated, 3 up to date") {
		t.Fatalf("rerun: %v", r)
	}
	// Dropping a tenant forgets its tenant-specific records.
	e.must("tenant", "drop", "acme", "--yes")
	if n := e.queryInt("SELECT count(*) FROM tenantproxy.tenant_migrations WHERE tenant = 'acme'"); n != 0 {
		t.Fatalf("%d tenant-specific records of the dropped acme left", n)
	}
	// Created again, acme gets the common line and then its own files.
	r = e.must("tenant", "create", "acme", "--schema", "acme")
	if !strings.Contains(r.stdout, "tenant acme: applied tenants/acme/0001_acme_name_idx.sql, tenants/acme/0002_acme_more.sql") ||
		!has("acme", "items_id_name_idx") || e.versionOf("acme") != 2 {
		t.Fatalf("tenant create of a tenant with its own files: %v", r)
	}
	// The catalog tables of the tenant-specific line keep the server's hardening intact.
	if r := e.run("doctor"); r.code != ExitOK {
		t.Fatalf("doctor after tenant-specific migrations: %v", r)
	}
}

func TestTenantSpecificMigrationFilesAreChecked(t *testing.T) {
	cases := []struct{ rel, sql, want string }{
		{"tenants/0001_loose.sql", "CREATE TABLE x (i int);\n", "needs the header"},
		{"0002_bad_header.sql", "-- tenantproxy: tenant acme\nSELECT 1;\n", "unknown header"},
		{"tenants/Bad-Name/0001_x.sql", "SELECT 1;\n", "not a tenant name"},
	}
	for _, c := range cases {
		e := newEnv(t, map[string]string{"0001_create_items.sql": itemsMigration})
		e.must("init")
		e.writeFile(c.rel, c.sql)
		if r := e.run("migrate", "up"); r.code != ExitFailure || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: %v\nwant %q", c.rel, r, c.want)
		}
	}
}

func TestDriftFindsAHandAddedColumnAndADroppedIndex(t *testing.T) {
	e := newEnv(t, sampleMigrations(t))
	e.must("init")
	for _, n := range []string{"acme", "globex", "initech"} {
		e.must("tenant", "create", n, "--schema", n)
	}
	if r := e.must("migrate", "status", "--drift"); !strings.Contains(r.stdout, "drift: 0 of 3 tenants differ") {
		t.Fatalf("fresh tenants drift: %v", r)
	}
	e.exec("ALTER TABLE acme.employees ADD COLUMN nickname text")
	e.exec("DROP INDEX globex.employees_department_id_idx")

	r := e.run("migrate", "status", "--drift")
	if r.code != ExitFailure || !strings.Contains(r.stdout, "drift: 2 of 3 tenants differ") ||
		!strings.Contains(r.stdout, "acme (schema acme):\n  extra    column employees.nickname text\n") ||
		!strings.Contains(r.stdout, "globex (schema globex):\n  missing  index CREATE INDEX employees_department_id_idx ON employees USING btree (department_id)\n") ||
		strings.Contains(r.stdout, "initech (") {
		t.Fatalf("migrate status --drift: %v", r)
	}
	r = e.run("doctor", "--drift", "--json")
	var rep struct {
		Drift []tenantDrift `json:"drift"`
	}
	if r.code != ExitFailure || json.Unmarshal([]byte(r.stdout), &rep) != nil || len(rep.Drift) != 2 ||
		rep.Drift[0].Tenant != "acme" || rep.Drift[1].Tenant != "globex" || len(rep.Drift[1].Missing) != 1 {
		t.Fatalf("doctor --drift --json: %v", r)
	}
	// The reference schemas were rolled back.
	if n := e.queryInt("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenantproxy_ref_%'"); n != 0 {
		t.Fatalf("%d reference schemas left behind", n)
	}
}

func TestMigrateDownUndoesWithDownFilesAndRefusesWithoutThem(t *testing.T) {
	e := newEnv(t, map[string]string{"0001_create_items.sql": itemsMigration})
	e.must("init")
	e.must("tenant", "create", "acme", "--schema", "acme")
	e.must("tenant", "create", "globex", "--schema", "globex")
	e.writeMigration("0002_add_price.sql", "ALTER TABLE items ADD COLUMN price numeric;\n")
	e.writeMigration("0002_add_price.down.sql", "ALTER TABLE items DROP COLUMN price;\n")
	e.must("migrate", "up")

	r := e.must("migrate", "down", "--to", "1", "--tenant", "acme")
	if !strings.Contains(r.stdout, "acme: undid 0002_add_price.down.sql") || e.versionOf("acme") != 1 || e.versionOf("globex") != 2 {
		t.Fatalf("migrate down --to 1 --tenant acme: %v", r)
	}
	if n := e.queryInt("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'acme' AND column_name = 'price'"); n != 0 {
		t.Fatal("the down file did not run")
	}
	if r := e.run("migrate", "down", "--to", "0"); r.code != ExitFailure || !strings.Contains(r.stderr, "0001_create_items.sql has no .down.sql file") {
		t.Fatalf("migrate down --to 0 without a down file: %v", r)
	}
	if e.versionOf("globex") != 2 {
		t.Fatal("a refused migrate down changed globex")
	}
	if r := e.run("migrate", "down"); r.code != ExitUsage {
		t.Fatalf("migrate down without --to: %v", r)
	}
	e.must("migrate", "up")
	if e.versionOf("acme") != 2 {
		t.Fatal("migrate up after down did not re-apply 0002")
	}
}

func TestMigrateRepairResyncsRecordsToTheVersionTheSchemaMatches(t *testing.T) {
	e := newEnv(t, sampleMigrations(t))
	e.must("init")
	e.must("tenant", "create", "acme", "--schema", "acme")
	// Someone undid 0003 by hand; the records still say 3.
	// The analytics views read the table: a hand-made drop takes them along (repair rebuilds them).
	e.exec("DROP TABLE acme.leave_requests CASCADE")
	if r := e.run("migrate", "status", "--drift"); r.code != ExitFailure {
		t.Fatalf("drift not found: %v", r)
	}
	r := e.must("migrate", "repair", "--tenant", "acme")
	if !strings.Contains(r.stdout, "its schema matches version 0002; repaired its records: recorded 0 (), removed 1 ([0003_create_leave_requests.sql])") || e.versionOf("acme") != 2 {
		t.Fatalf("migrate repair: %v", r)
	}
	e.must("migrate", "up")
	if e.versionOf("acme") != 3 || e.queryInt("SELECT count(*) FROM pg_tables WHERE schemaname = 'acme' AND tablename = 'leave_requests'") != 1 {
		t.Fatal("migrate up after repair did not re-apply 0003")
	}
	// A schema that matches no version is left alone and the difference shown.
	e.exec("ALTER TABLE acme.employees ADD COLUMN nickname text")
	if r := e.run("migrate", "repair", "--tenant", "acme"); r.code != ExitFailure || !strings.Contains(r.stdout, "extra    column employees.nickname text") {
		t.Fatalf("repair of an unmatched schema: %v", r)
	}
	// Checksums are still checked.
	e.exec("ALTER TABLE acme.employees DROP COLUMN nickname")
	e.writeMigration("0001_create_employees.sql", sampleMigrations(t)["0001_create_employees.sql"]+"-- edited\n")
	if r := e.run("migrate", "repair", "--tenant", "acme"); r.code != ExitFailure || !strings.Contains(r.stderr, "was changed after it was applied") {
		t.Fatalf("repair with an edited file: %v", r)
	}
}
