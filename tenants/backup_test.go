package tenants

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// employeeRows is every employee of schema with its department, as the superuser sees it.
func employeeRows(t *testing.T, e *testEnv, schema string) string {
	t.Helper()
	conn := e.connect("")
	rows, err := conn.Query(context.Background(),
		"SELECT e.id || ':' || e.name || ':' || e.email || ':' || coalesce(d.name, '-') FROM "+q(schema)+".employees e LEFT JOIN "+
			q(schema)+".departments d ON d.id = e.department_id ORDER BY e.id")
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, "\n")
}

func seedAcme(t *testing.T, e *testEnv) {
	t.Helper()
	e.must("init")
	e.must("tenant", "create", "acme", "--schema", "acme")
	e.must("tenant", "create", "globex", "--schema", "globex")
	conn := poolSession(t, e, "acme")
	if _, err := conn.Exec(context.Background(), `
INSERT INTO departments (name) VALUES ('R&D'), ('People');
INSERT INTO employees (name, email, department_id) VALUES ('Ada', 'ada@acme.test', 1), ('Grace', 'grace@acme.test', 2), ('Linus', 'linus@acme.test', NULL);
INSERT INTO leave_requests (employee_id, starts_on, ends_on) VALUES (1, '2026-07-01', '2026-07-14')`); err != nil {
		t.Fatal(err)
	}
}

func TestBackupDropRestoreKeepsTheRows(t *testing.T) {
	e := newEnv(t, sampleMigrations(t))
	seedAcme(t, e)
	e.must("tenant", "suspend", "acme")
	before := employeeRows(t, e, "acme")
	file := filepath.Join(t.TempDir(), "acme.tar")

	if r := e.must("tenant", "backup", "acme", "--out", file); !strings.Contains(r.stdout, "3 migration records") {
		t.Fatalf("backup: %v", r)
	}
	e.must("tenant", "drop", "acme", "--yes")
	if r := e.must("tenant", "restore", file); !strings.Contains(r.stdout, "tenant acme: restored") {
		t.Fatalf("restore: %v", r)
	}
	if after := employeeRows(t, e, "acme"); after != before {
		t.Fatalf("rows after restore:\n%s\nbefore:\n%s", after, before)
	}
	if v := e.versionOf("acme"); v != 3 {
		t.Fatalf("restored migration version %d, want 3", v)
	}
	if n := e.queryInt("SELECT count(*) FROM tenantproxy.tenants WHERE name = 'acme' AND status = 'suspended'"); n != 1 {
		t.Fatal("restore lost the tenant's status")
	}
	// The restored objects belong to the owner role and the tenant role has its DML again; the sequence goes on.
	conn := poolSession(t, e, "acme")
	var id int
	if err := conn.QueryRow(context.Background(), "INSERT INTO employees (name, email) VALUES ('Ken', 'ken@acme.test') RETURNING id").Scan(&id); err != nil || id != 4 {
		t.Fatalf("insert after restore: id %d, %v", id, err)
	}
	if n := e.queryInt("SELECT count(*) FROM pg_tables WHERE schemaname = 'acme' AND tableowner <> $1", e.cfg.Admin.OwnerRole); n != 0 {
		t.Fatalf("%d restored tables are not owned by the owner role", n)
	}
	if r := e.run("tenant", "restore", file); r.code != ExitFailure || !strings.Contains(r.stderr, `tenant "acme" exists; drop it first or restore with --as NEWNAME`) {
		t.Fatalf("restore over an existing tenant: %v", r)
	}
	if rep, err := Doctor(context.Background(), e.cfg); err != nil || len(rep.Failed()) > 0 {
		t.Fatalf("doctor after restore: %v %+v", err, rep.Failed())
	}
	e.must("migrate", "up") // the restored checksums match the files
}

func TestRestoreAsACopyLeavesTheOriginalUntouched(t *testing.T) {
	e := newEnv(t, sampleMigrations(t))
	seedAcme(t, e)
	before := employeeRows(t, e, "acme")
	acmeRelations := e.queryInt("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'acme'")
	file := filepath.Join(t.TempDir(), "acme.tar")
	e.must("tenant", "backup", "acme", "--out", file)

	// acme stays online: a session of it stays open across the restore.
	acme := poolSession(t, e, "acme")
	if r := e.must("tenant", "restore", file, "--as", "acme_copy", "--schema", "acme_copy"); !strings.Contains(r.stdout, "tenant acme_copy: restored") {
		t.Fatalf("restore --as: %v", r)
	}
	if got := employeeRows(t, e, "acme_copy"); got != before {
		t.Fatalf("acme_copy rows:\n%s\nwant:\n%s", got, before)
	}
	if got := employeeRows(t, e, "acme"); got != before {
		t.Fatalf("acme changed by the restore:\n%s", got)
	}
	if n := e.queryInt("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'acme'"); n != acmeRelations {
		t.Fatalf("acme has %d relations after the restore, %d before", n, acmeRelations)
	}
	var n int
	if err := acme.QueryRow(context.Background(), "SELECT count(*) FROM employees").Scan(&n); err != nil || n != 3 {
		t.Fatalf("the open acme session after the restore: %d rows, %v", n, err)
	}
	if v := e.versionOf("acme_copy"); v != 3 {
		t.Fatalf("acme_copy at version %d, want 3", v)
	}
	// The copy's sequences, defaults and foreign keys point into the copy.
	copySession := poolSession(t, e, "acme_copy")
	if _, err := copySession.Exec(context.Background(),
		"INSERT INTO employees (name, email, department_id) VALUES ('Ken', 'ken@acme.test', 2); INSERT INTO leave_requests (employee_id, starts_on, ends_on) VALUES (4, '2026-08-01', '2026-08-02')"); err != nil {
		t.Fatalf("insert into the copy: %v", err)
	}
	if _, err := copySession.Exec(context.Background(), "SELECT * FROM acme.employees"); sqlState(err) != "42501" {
		t.Fatalf("the copy's role reads acme: %v, want 42501", err)
	}
	if got := employeeRows(t, e, "acme"); got != before {
		t.Fatal("writing to the copy changed acme")
	}
	if n := e.queryInt("SELECT count(*) FROM pg_database WHERE datname LIKE 'tp_restore_%'"); n != 0 {
		t.Fatal("the scratch database of the rename was left behind")
	}
	if rep, err := Doctor(context.Background(), e.cfg); err != nil || len(rep.Failed()) > 0 {
		t.Fatalf("doctor after restore --as: %v %+v", err, rep.Failed())
	}
}

func TestRestoreFailureLeavesNothingBehind(t *testing.T) {
	e := newEnv(t, sampleMigrations(t))
	seedAcme(t, e)
	// A column whose type lives outside the schema: once the type is gone, pg_restore fails midway.
	e.exec("CREATE TYPE public.mood AS ENUM ('fine'); ALTER TABLE acme.employees ADD COLUMN mood public.mood")
	file := filepath.Join(t.TempDir(), "acme.tar")
	e.must("tenant", "backup", "acme", "--out", file)
	e.must("tenant", "drop", "acme", "--yes")
	e.exec("DROP TYPE public.mood")

	r := e.run("tenant", "restore", file)
	if r.code != ExitFailure || !strings.Contains(r.stderr, `tenant "acme": pg_restore`) || !strings.Contains(r.stderr, `type "public.mood" does not exist`) {
		t.Fatalf("restore that pg_restore cannot finish: %v", r)
	}
	for _, check := range []struct{ sql, what string }{
		{"SELECT count(*) FROM pg_namespace WHERE nspname = 'acme'", "schema"},
		{"SELECT count(*) FROM pg_roles WHERE rolname = '" + e.role("acme") + "'", "role"},
		{"SELECT count(*) FROM tenantproxy.tenants WHERE name = 'acme'", "catalog row"},
		{"SELECT count(*) FROM tenantproxy.migrations WHERE tenant = 'acme'", "migration rows"},
	} {
		if n := e.queryInt(check.sql); n != 0 {
			t.Errorf("a failed restore left its %s behind", check.what)
		}
	}

	if r := e.run("tenant", "restore", filepath.Join(t.TempDir(), "missing.tar")); r.code != ExitFailure || !strings.Contains(r.stderr, "no such file") {
		t.Fatalf("restore of a missing file: %v", r)
	}
	e.exec("CREATE SCHEMA beta")
	if r := e.run("tenant", "restore", file, "--as", "beta", "--schema", "beta"); r.code != ExitFailure || !strings.Contains(r.stderr, `schema "beta" already exists`) {
		t.Fatalf("restore onto an existing schema: %v", r)
	}
}
