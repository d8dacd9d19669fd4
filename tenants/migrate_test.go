package tenants

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

const itemsMigration = "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);\n"

// notesMigration runs two statements: a failure in the second must roll back the first.
const notesMigration = "CREATE TABLE tags (id serial PRIMARY KEY);\n\nCREATE TABLE notes (\n  id serial PRIMARY KEY,\n  body text\n);\n"

func TestMigrateUpFailureOfOneTenantOfFiftyLeavesTheOthersAppliedAndARerunFinishes(t *testing.T) {
	e := newEnv(t, map[string]string{"0001_create_items.sql": itemsMigration})
	e.must("init")
	for i := 1; i <= 50; i++ {
		e.must("tenant", "create", fmt.Sprintf("tenant_%02d", i), "--schema", fmt.Sprintf("tenant_%02d", i))
	}
	e.exec(fmt.Sprintf("SET ROLE %s; CREATE TABLE tenant_27.notes (x int)", q(e.cfg.Admin.OwnerRole)))
	e.writeMigration("0002_create_notes.sql", notesMigration)

	r := e.run("migrate", "up", "--parallel", "4")
	if r.code != ExitFailure {
		t.Fatalf("migrate up with one failing tenant: %v", r)
	}
	want := `tenant_27: error: 0002_create_notes.sql: ERROR: relation "notes" already exists (SQLSTATE 42P07)`
	if !strings.Contains(r.stderr, want) || strings.Count(r.stderr, ": error: ") != 1 {
		t.Fatalf("stderr does not name tenant_27 and its error once:\n%v\nwant %q", r, want)
	}
	if !strings.Contains(r.stdout, "49 migrated, 0 up to date, 1 failed") {
		t.Fatalf("summary: %v", r)
	}
	if n := e.queryInt("SELECT count(*) FROM tenantproxy.migrations WHERE version = 2"); n != 49 {
		t.Fatalf("%d tenants at version 2, want 49", n)
	}
	if v := e.versionOf("tenant_27"); v != 1 {
		t.Fatalf("tenant_27 is at version %d, want 1", v)
	}
	if n := e.queryInt("SELECT count(*) FROM pg_tables WHERE schemaname = 'tenant_27' AND tablename = 'tags'"); n != 0 {
		t.Fatal("the failed run of tenant_27 was not rolled back as a whole: table tags exists")
	}

	e.exec("DROP TABLE tenant_27.notes")
	r = e.must("migrate", "up", "--parallel", "4")
	if !strings.Contains(r.stdout, "tenant_27: applied 0002_create_notes.sql") || !strings.Contains(r.stdout, "1 migrated, 49 up to date, 0 failed") {
		t.Fatalf("rerun: %v", r)
	}
	if n := e.queryInt("SELECT count(*) FROM tenantproxy.migrations WHERE version = 2"); n != 50 {
		t.Fatalf("%d tenants at version 2 after the rerun, want 50", n)
	}
	// The rerun's objects belong to the owner role, and the tenant role can use them.
	conn := poolSession(t, e, "tenant_27")
	if _, err := conn.Exec(context.Background(), "INSERT INTO notes (body) VALUES ('hello')"); err != nil {
		t.Fatal(err)
	}
}

func TestMigrateUpRefusesAChangedChecksum(t *testing.T) {
	e := newEnv(t, map[string]string{"0001_create_items.sql": itemsMigration})
	e.must("init")
	e.must("tenant", "create", "acme", "--schema", "acme")
	e.writeMigration("0001_create_items.sql", itemsMigration+"-- edited after the fact\n")
	e.writeMigration("0002_create_notes.sql", notesMigration)

	r := e.run("migrate", "up")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "acme: error: 0001_create_items.sql was changed after it was applied") {
		t.Fatalf("migrate up with a changed file: %v", r)
	}
	if v := e.versionOf("acme"); v != 1 {
		t.Fatalf("acme moved to version %d despite the changed file", v)
	}
	r = e.run("migrate", "status")
	if r.code != ExitFailure || !strings.Contains(r.stdout, "error: 0001_create_items.sql was changed") {
		t.Fatalf("migrate status with a changed file: %v", r)
	}
	if r := e.run("tenant", "create", "acme", "--schema", "acme"); r.code != ExitFailure || !strings.Contains(r.stderr, "was changed after it was applied") {
		t.Fatalf("tenant create (repair) of acme with a changed file: %v", r)
	}
}

func TestMigrateUpRefusesASecondConcurrentRun(t *testing.T) {
	e := newEnv(t, map[string]string{"0001_create_items.sql": itemsMigration})
	e.must("init")
	e.must("tenant", "create", "acme", "--schema", "acme")
	e.writeMigration("0002_slow.sql", "SELECT pg_sleep(3);\nCREATE TABLE slow (x int);\n")

	first := make(chan result, 1)
	go func() { first <- e.run("migrate", "up") }()
	deadline := time.Now().Add(10 * time.Second)
	for e.queryInt("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND objid = $1::bigint::oid",
		migrateLockKey&0xffffffff) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first migrate up never took the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	r := e.run("migrate", "up")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "another `tenantproxy migrate up` is running") || !strings.Contains(r.stderr, "tenantproxy-admin") {
		t.Fatalf("second concurrent migrate up: %v", r)
	}
	if d := time.Since(start); d > migrateLockWait+2*time.Second {
		t.Fatalf("the second run took %v to fail; it must fail after waiting %v for the lock", d, migrateLockWait)
	}
	if r := <-first; r.code != ExitOK {
		t.Fatalf("first migrate up: %v", r)
	}
	if v := e.versionOf("acme"); v != 2 {
		t.Fatalf("acme at version %d, want 2", v)
	}
}

func TestMigrateUpDryRunChangesNothing(t *testing.T) {
	e := newEnv(t, map[string]string{"0001_create_items.sql": itemsMigration})
	e.must("init")
	e.must("tenant", "create", "acme", "--schema", "acme")
	e.must("tenant", "create", "globex", "--schema", "globex")
	e.writeMigration("0002_create_notes.sql", notesMigration)
	e.writeShared("0001_create_events.sql", "CREATE TABLE events (id serial PRIMARY KEY, tenant text NOT NULL, body text);\n")

	r := e.must("migrate", "up", "--dry-run")
	for _, want := range []string{"(shared): would apply 0001_create_events.sql", "acme: would apply 0002_create_notes.sql",
		"globex: would apply 0002_create_notes.sql", "nothing was changed"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("dry run lacks %q: %v", want, r)
		}
	}
	if n := e.queryInt("SELECT count(*) FROM tenantproxy.migrations WHERE version > 1 OR tenant = ''"); n != 0 {
		t.Fatalf("dry run recorded %d migrations", n)
	}
	if n := e.queryInt("SELECT count(*) FROM pg_tables WHERE tablename IN ('notes', 'events')"); n != 0 {
		t.Fatal("dry run created tables")
	}
}

func TestMigrateUpHonoursToTenantAndSharedMigrations(t *testing.T) {
	e := newEnv(t, map[string]string{"0001_create_items.sql": itemsMigration})
	e.must("init")
	e.must("tenant", "create", "acme", "--schema", "acme")
	e.must("tenant", "create", "globex", "--schema", "globex")
	e.writeMigration("0002_create_notes.sql", notesMigration)
	e.writeMigration("0003_add_column.sql", "ALTER TABLE items ADD COLUMN price numeric;\n")
	e.writeShared("0001_create_events.sql", "CREATE TABLE events (id serial PRIMARY KEY, tenant text NOT NULL, body text);\n")

	e.must("migrate", "up", "--tenant", "acme", "--to", "2")
	if a, g := e.versionOf("acme"), e.versionOf("globex"); a != 2 || g != 1 {
		t.Fatalf("after --tenant acme --to 2: acme %d, globex %d", a, g)
	}
	if n := e.queryInt("SELECT count(*) FROM tenantproxy.migrations WHERE tenant = ''"); n != 0 {
		t.Fatal("--tenant applied shared migrations")
	}
	if r := e.run("migrate", "up", "--tenant", "nobody"); r.code != ExitFailure || !strings.Contains(r.stderr, `tenant "nobody" does not exist`) {
		t.Fatalf("--tenant nobody: %v", r)
	}

	r := e.must("migrate", "up", "--parallel", "2")
	if !strings.Contains(r.stdout, "(shared): applied 0001_create_events.sql") || !strings.Contains(r.stdout, "2 migrated") {
		t.Fatalf("migrate up: %v", r)
	}
	if n := e.queryInt("SELECT count(*) FROM pg_tables WHERE schemaname = 'shared' AND tablename = 'events' AND tableowner = $1", e.cfg.Admin.OwnerRole); n != 1 {
		t.Fatal("shared migration did not create shared.events owned by the owner role")
	}
	if a, g := e.versionOf("acme"), e.versionOf("globex"); a != 3 || g != 3 {
		t.Fatalf("after migrate up: acme %d, globex %d", a, g)
	}

	var status struct {
		Latest  int `json:"latest"`
		Tenants []struct {
			Tenant  string `json:"tenant"`
			Version int    `json:"version"`
			Pending int    `json:"pending"`
		} `json:"tenants"`
	}
	if err := json.Unmarshal([]byte(e.must("migrate", "status", "--json").stdout), &status); err != nil {
		t.Fatal(err)
	}
	if status.Latest != 3 || len(status.Tenants) != 3 || status.Tenants[0].Tenant != "(shared)" || status.Tenants[1].Version != 3 || status.Tenants[2].Pending != 0 {
		t.Fatalf("migrate status --json: %+v", status)
	}
	r = e.must("migrate", "status")
	if !strings.Contains(r.stdout, "up to date") || !strings.Contains(r.stdout, "latest tenant migration: 0003; 2 tenants") {
		t.Fatalf("migrate status: %v", r)
	}

	// A new tenant gets every tenant migration at once; the shared schema is not applied twice.
	e.must("tenant", "create", "initech", "--schema", "initech")
	if v := e.versionOf("initech"); v != 3 {
		t.Fatalf("new tenant at version %d, want 3", v)
	}
}

func TestMigrateUpReportsBrokenFiles(t *testing.T) {
	cases := []struct{ sql, want string }{
		{"CREATE TABLE a (x int);\n\nCREATE TABLE b (x int,);\n", "acme: error: 0001_broken.sql line 3: ERROR: syntax error at or near \")\""},
		{"CREATE TABLE a (x int); COMMIT;", "migrations must not contain COMMIT or ROLLBACK"},
	}
	for _, c := range cases {
		e := newEnv(t, nil)
		e.must("init")
		e.must("tenant", "create", "acme", "--schema", "acme")
		e.writeMigration("0001_broken.sql", c.sql)
		if r := e.run("migrate", "up"); r.code != ExitFailure || !strings.Contains(r.stderr, c.want) {
			t.Errorf("migration %q: %v\nwant %q", c.sql, r, c.want)
		}
	}
}
