package tenants

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/pgtest"
)

// cluster is one PostgreSQL server shared by every test of the package; each test gets its own database
// and its own role names (owner, pool, tenant role prefix), so tests do not see each other.
var cluster *pgtest.Cluster

func TestMain(m *testing.M) {
	c, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cluster = c
	code := m.Run()
	c.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

var envSeq atomic.Int32

// testEnv is one test's database, config and migration directories.
type testEnv struct {
	tb        testing.TB
	cfg       *config.Config
	db        string
	prefix    string
	dir       string // [migrations] dir
	sharedDir string // [migrations] shared_dir
}

// newEnv creates a fresh database and a config whose roles are unique to it. Migration files are copied
// from files (name → SQL) into a temporary [migrations] dir.
func newEnv(tb testing.TB, files map[string]string) *testEnv {
	tb.Helper()
	prefix := fmt.Sprintf("t%d", envSeq.Add(1))
	e := &testEnv{tb: tb, db: prefix + "_db", prefix: prefix, dir: tb.TempDir(), sharedDir: tb.TempDir()}
	for name, sql := range files {
		e.writeMigration(name, sql)
	}
	cluster.MustExec(tb, "postgres", "CREATE DATABASE "+e.db)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cluster.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+e.db+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop test database: %v", err)
		}
	})
	cfg, err := config.Parse(fmt.Sprintf(`
[backend]
host = "127.0.0.1"
port = %d
database = %q
user = %q
password = "pool-secret"

[admin]
user = "postgres"
password = %q
owner_role = %q

[tenancy]
role = %q
catalog = "database"

[migrations]
dir = %q
shared_dir = %q
`, cluster.Port, e.db, prefix+"_pool", cluster.Password, prefix+"_owner", prefix+"_{tenant}", e.dir, e.sharedDir))
	if err != nil {
		tb.Fatal(err)
	}
	e.cfg = cfg
	return e
}

func (e *testEnv) writeMigration(name, sql string) {
	e.tb.Helper()
	if err := os.WriteFile(filepath.Join(e.dir, name), []byte(sql), 0o644); err != nil {
		e.tb.Fatal(err)
	}
}

func (e *testEnv) writeShared(name, sql string) {
	e.tb.Helper()
	if err := os.WriteFile(filepath.Join(e.sharedDir, name), []byte(sql), 0o644); err != nil {
		e.tb.Fatal(err)
	}
}

// role is the tenant role of a tenant whose schema is its name.
func (e *testEnv) role(tenant string) string { return e.cfg.TenantRole(tenant, tenant) }

func (e *testEnv) pool() string { return e.cfg.Backend.User }

// result is the outcome of one Main call.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// run calls Main with args.
func (e *testEnv) run(args ...string) result {
	e.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := Main(ctx, e.cfg, args, &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// must calls Main and fails the test unless it exits 0.
func (e *testEnv) must(args ...string) result {
	e.tb.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.tb.Fatalf("tenantproxy %s: %v", strings.Join(args, " "), r)
	}
	return r
}

// exec runs SQL in the test database as the superuser.
func (e *testEnv) exec(sql string) {
	e.tb.Helper()
	cluster.MustExec(e.tb, e.db, sql)
}

// connect opens a connection to the test database as user (the superuser when empty).
func (e *testEnv) connect(user string) *pgx.Conn {
	e.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, cluster.DSN(e.db, user))
	if err != nil {
		e.tb.Fatal(err)
	}
	e.tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// queryInt runs a query returning one integer as the superuser.
func (e *testEnv) queryInt(sql string, args ...any) int {
	e.tb.Helper()
	conn := e.connect("")
	var n int
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.tb.Fatalf("%s: %v", sql, err)
	}
	conn.Close(context.Background())
	return n
}

// versionOf is a tenant's highest applied migration.
func (e *testEnv) versionOf(tenant string) int {
	e.tb.Helper()
	return e.queryInt("SELECT coalesce(max(version), 0) FROM tenantproxy.migrations WHERE tenant = $1", tenant)
}

// sampleMigrations are the AgenticHR migrations of the repository.
func sampleMigrations(tb testing.TB) map[string]string {
	tb.Helper()
	out := map[string]string{}
	paths, err := filepath.Glob("../migrations/*.sql")
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no sample migrations in ../migrations: %v", err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		out[filepath.Base(p)] = string(b)
	}
	return out
}
