package tenants

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tenantproxy/tenantproxy/config"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockWaiters counts the admin sessions waiting for a lock on a relation of schema.
func (e *testEnv) lockWaiters(schema string) int {
	return e.queryInt(`SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_stat_activity a ON a.pid = l.pid
WHERE NOT l.granted AND n.nspname = $1 AND a.application_name = 'tenantproxy-admin'`, schema)
}

func TestMigrateUpBehindALongTransactionNeverBlocksTheTenantLongerThanTheLockTimeoutAndRetries(t *testing.T) {
	const lockTimeout = 300 * time.Millisecond
	e := newEnv(t, map[string]string{"0001_create_items.sql": itemsMigration})
	e.cfg.Migrations.LockTimeout = config.Duration{Duration: lockTimeout}
	retries := 1000
	e.cfg.Migrations.Retries = &retries
	e.must("init")
	for _, n := range []string{"acme", "globex", "initech", "umbrella"} {
		e.must("tenant", "create", n, "--schema", n)
	}
	e.exec("INSERT INTO acme.items (name) VALUES ('a'), ('b')")
	ctx := context.Background()

	// A long transaction of acme reads its table: ALTER TABLE needs ACCESS EXCLUSIVE and must wait.
	long := e.connect("")
	if _, err := long.Exec(ctx, "BEGIN; SELECT count(*) FROM acme.items"); err != nil {
		t.Fatal(err)
	}
	e.writeMigration("0002_add_price.sql", "ALTER TABLE items ADD COLUMN price numeric;\n")
	done := make(chan result, 1)
	go func() { done <- e.run("migrate", "up", "--parallel", "2") }()

	// acme's own queries go on while the migration waits, each blocked at most about lock_timeout.
	probe := poolSession(t, e, "acme")
	var worst time.Duration
	samples := 0
	waits := 0
	probing := time.Now()
	for {
		if e.lockWaiters("acme") > 0 {
			waits++
		}
		start := time.Now()
		if _, err := probe.Exec(ctx, "SELECT count(*) FROM items"); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, time.Since(start))
		samples++
		others := e.queryInt("SELECT count(*) FROM tenantproxy.migrations WHERE version = 2 AND tenant IN ('globex', 'initech', 'umbrella')")
		if others == 3 && waits >= 3 && time.Since(probing) > 10*lockTimeout {
			break
		}
		if time.Since(probing) > time.Minute {
			t.Fatalf("after a minute: %d other tenants migrated, %d samples saw the migration wait", others, waits)
		}
	}
	if v := e.versionOf("acme"); v != 1 {
		t.Fatalf("acme migrated to %d while its long transaction held the table", v)
	}
	if _, err := long.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		t.Fatal("migrate up did not finish within a minute of the long transaction ending")
	}
	if r.code != ExitOK || !strings.Contains(r.stdout, "4 migrated") ||
		!strings.Contains(r.stdout, "retried (lock not granted within lock_timeout): acme (") ||
		!strings.Contains(r.stdout, "acme: applied 0002_add_price.sql (after ") {
		t.Fatalf("migrate up: %v", r)
	}
	if v := e.versionOf("acme"); v != 2 {
		t.Fatalf("acme at version %d after the long transaction ended", v)
	}
	// Sessions on a loaded machine take a while on their own; a queue behind the ALTER would have
	// lasted the whole 10 lock timeouts of the long transaction.
	if limit := lockTimeout + 700*time.Millisecond; worst > limit {
		t.Fatalf("a query of acme was blocked %v (of %d samples), longer than lock_timeout %v plus slack", worst, samples, lockTimeout)
	}
	t.Logf("worst acme query during the migration: %v over %d samples (lock_timeout %v)", worst, samples, lockTimeout)
}

func TestMigrateUpGivesUpAfterItsRetriesAndSaysSo(t *testing.T) {
	e := newEnv(t, map[string]string{"0001_create_items.sql": itemsMigration})
	e.cfg.Migrations.LockTimeout = config.Duration{Duration: 100 * time.Millisecond}
	retries := 2
	e.cfg.Migrations.Retries = &retries
	e.must("init")
	e.must("tenant", "create", "acme", "--schema", "acme")
	e.must("tenant", "create", "globex", "--schema", "globex")
	long := e.connect("")
	if _, err := long.Exec(context.Background(), "BEGIN; SELECT count(*) FROM acme.items"); err != nil {
		t.Fatal(err)
	}
	e.writeMigration("0002_add_price.sql", "ALTER TABLE items ADD COLUMN price numeric;\n")
	r := e.run("migrate", "up")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "acme: error: gave up after 2 retries: 0002_add_price.sql") ||
		!strings.Contains(r.stderr, "(SQLSTATE 55P03)") || !strings.Contains(r.stderr, "gave up (lock not granted after 2 retries): acme") ||
		!strings.Contains(r.stdout, "1 migrated, 0 up to date, 1 failed") {
		t.Fatalf("migrate up behind a transaction that never ends: %v", r)
	}
	long.Exec(context.Background(), "ROLLBACK")
	if a, g := e.versionOf("acme"), e.versionOf("globex"); a != 1 || g != 2 {
		t.Fatalf("acme %d (want 1), globex %d (want 2)", a, g)
	}
}

func TestMigrateUpNotifiesTheCatalogChannelWithTheNewVersion(t *testing.T) {
	e := newEnv(t, map[string]string{"0001_create_items.sql": itemsMigration})
	e.must("init")
	e.must("tenant", "create", "acme", "--schema", "acme")
	listener := e.connect("")
	ctx := context.Background()
	if _, err := listener.Exec(ctx, "LISTEN "+q(NotifyChannel)); err != nil {
		t.Fatal(err)
	}
	e.writeMigration("0002_create_notes.sql", notesMigration)
	e.must("migrate", "up")
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	n, err := listener.WaitForNotification(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if n.Channel != NotifyChannel || n.Payload != "migrate acme 2" {
		t.Fatalf("notification %q on %q, want \"migrate acme 2\"", n.Payload, n.Channel)
	}
}

func TestMigrateNoTransactionFileRunsConcurrentlyAndResumesAtTheFailedStatement(t *testing.T) {
	e := newEnv(t, map[string]string{"0001_create_items.sql": itemsMigration})
	e.must("init")
	for i := 1; i <= 5; i++ {
		e.must("tenant", "create", fmt.Sprintf("t%d", i), "--schema", fmt.Sprintf("t%d", i))
	}
	// The second statement of t3 trips on a relation of that name; the first must not run again.
	e.exec(fmt.Sprintf("SET ROLE %s; CREATE TABLE t3.items_id_name_idx (x int)", q(e.cfg.Admin.OwnerRole)))
	e.writeMigration("0002_indexes.sql", "-- tenantproxy: no-transaction\n"+
		"CREATE INDEX CONCURRENTLY items_name_idx ON items (name);\n"+
		"CREATE INDEX CONCURRENTLY items_id_name_idx ON items (id, name);\n")
	r := e.run("migrate", "up", "--parallel", "2")
	if r.code != ExitFailure || !strings.Contains(r.stderr, `t3: error: 0002_indexes.sql: statement 2 of 2: ERROR: relation "items_id_name_idx" already exists`) ||
		!strings.Contains(r.stdout, "4 migrated") {
		t.Fatalf("migrate up: %v", r)
	}
	valid := "SELECT count(*) FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE x.indisvalid AND c.relname IN ('items_name_idx', 'items_id_name_idx') AND n.nspname = $1"
	if n := e.queryInt(valid, "t1"); n != 2 {
		t.Fatalf("t1 has %d valid indexes, want 2", n)
	}
	if n := e.queryInt(valid, "t3"); n != 1 || e.versionOf("t3") != 1 {
		t.Fatalf("t3: %d valid indexes (want 1), version %d (want 1)", n, e.versionOf("t3"))
	}
	if n := e.queryInt("SELECT statements FROM tenantproxy.migration_progress WHERE tenant = 't3' AND version = 2"); n != 1 {
		t.Fatalf("t3 progress %d statements, want 1", n)
	}
	e.exec("DROP TABLE t3.items_id_name_idx")
	r = e.must("migrate", "up")
	if !strings.Contains(r.stdout, "t3: applied 0002_indexes.sql") || e.versionOf("t3") != 2 {
		t.Fatalf("rerun: %v", r)
	}
	if n := e.queryInt(valid, "t3"); n != 2 {
		t.Fatalf("t3 has %d valid indexes after the rerun, want 2", n)
	}
	if n := e.queryInt("SELECT count(*) FROM tenantproxy.migration_progress"); n != 0 {
		t.Fatalf("%d progress rows left", n)
	}
	// A tenant created later gets the file inside its creating transaction, without CONCURRENTLY.
	e.must("tenant", "create", "late", "--schema", "late")
	if n := e.queryInt(valid, "late"); n != 2 || e.versionOf("late") != 2 {
		t.Fatalf("late: %d indexes, version %d", n, e.versionOf("late"))
	}
}

func TestMigrateUpRunsANoTransactionFileOnTheSharedSchemaConcurrently(t *testing.T) {
	e := newEnv(t, map[string]string{"0001_create_items.sql": itemsMigration})
	e.writeShared("0001_create_events.sql", "CREATE TABLE events (id serial PRIMARY KEY, tenant text NOT NULL, body text);\n")
	e.must("init")
	e.must("tenant", "create", "acme", "--schema", "acme")
	e.writeShared("0002_events_idx.sql", "-- tenantproxy: no-transaction\nCREATE INDEX CONCURRENTLY events_tenant_idx ON events (tenant);\n")
	r := e.must("migrate", "up")
	if !strings.Contains(r.stdout, "(shared): applied 0002_events_idx.sql") || e.versionOf("") != 2 {
		t.Fatalf("migrate up: %v", r)
	}
	if n := e.queryInt("SELECT count(*) FROM pg_indexes WHERE schemaname = 'shared' AND indexname = 'events_tenant_idx'"); n != 1 {
		t.Fatal("the shared index was not built")
	}
}
