package integration

import (
	"bytes"
	"context"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
	"github.com/tenantproxy/tenantproxy/proxy/auth"
	"github.com/tenantproxy/tenantproxy/tenants"
)

// usersDBSetup is a fixture whose proxy takes tenants and users from the database catalog.
type usersDBSetup struct {
	t   *testing.T
	ctx context.Context
	f   *proxytest.Fixture
	cfg *config.Config
	p   *proxytest.Proxy
}

func newUsersDB(t *testing.T, ctx context.Context) *usersDBSetup {
	f := proxytest.NewFixture(t)
	cfg := f.Config(func(c *config.Config) {
		c.Tenancy.Catalog = config.CatalogDatabase
		c.Auth.Users = config.UsersDatabase
	})
	s := &usersDBSetup{t: t, ctx: ctx, f: f, cfg: cfg}
	s.p = f.Start(t, func(c *config.Config) { *c = *cfg })
	// The proxy loads the catalog in the background after it starts listening.
	withinASecond(t, "catalog loaded", func() bool { return s.connect("alice", "acme", proxytest.Password) == "" })
	return s
}

// cli runs a lifecycle command; password, when set, is its standard input.
func (s *usersDBSetup) cli(password string, args ...string) string {
	s.t.Helper()
	tenants.PasswordInput = strings.NewReader(password + "\n")
	var out bytes.Buffer
	if code := tenants.Main(s.ctx, s.cfg, args, &out, &out); code != 0 {
		s.t.Fatalf("tenantproxy %v: exit %d\n%s", args, code, out.String())
	}
	return out.String()
}

// connect logs in as user@tenant and reads the tenant's employees; it returns "" on success, else the
// SQLSTATE (or the error's text).
func (s *usersDBSetup) connect(user, tenant, password string) string {
	u := url.URL{Scheme: "postgresql", User: url.UserPassword(user+"@"+tenant, password),
		Host: net.JoinHostPort(s.p.Host, strconv.Itoa(s.p.Port)), Path: "/" + proxytest.Database, RawQuery: "sslmode=disable"}
	c, err := pgx.Connect(s.ctx, u.String())
	if err != nil {
		return pgCode(err)
	}
	defer c.Close(s.ctx)
	var n int
	if err := c.QueryRow(s.ctx, "select count(*) from employees where tenant = $1", tenant).Scan(&n); err != nil {
		return pgCode(err)
	}
	if n != proxytest.RowsPerTenant {
		return "saw " + strconv.Itoa(n) + " rows"
	}
	return ""
}

// With [auth] users = "database" a running proxy sees user create, passwd, bind, unbind, a new password,
// VALID UNTIL passing and drop within a second each, with no restart or reload; a catalog user's allow
// list holds.
func TestCatalogUsersChangesAreSeenByARunningProxyWithinASecond(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s := newUsersDB(t, ctx)
	steps := []struct {
		what                   string
		do                     func()
		user                   string
		tenant, password, want string
	}{
		{"created without a password: cannot log in", func() { s.cli("", "user", "create", "dana", "--tenant", "acme") }, "dana", "acme", "pw-one", "28P01"},
		{"passwd: logs in", func() { s.cli("pw-one", "user", "passwd", "dana") }, "dana", "acme", "pw-one", ""},
		{"not bound to globex", func() {}, "dana", "globex", "pw-one", "28000"},
		{"bind globex", func() { s.cli("", "user", "bind", "dana", "globex") }, "dana", "globex", "pw-one", ""},
		{"unbind globex", func() { s.cli("", "user", "unbind", "dana", "globex") }, "dana", "globex", "pw-one", "28000"},
		{"new password: the old one fails", func() { s.cli("pw-two", "user", "passwd", "dana") }, "dana", "acme", "pw-one", "28P01"},
		{"new password: works", func() {}, "dana", "acme", "pw-two", ""},
		{"valid until the past: refused", func() { s.cli("pw-two", "user", "passwd", "dana", "--valid-until", "2001-01-01") }, "dana", "acme", "pw-two", "28P01"},
		{"valid until infinity again", func() { s.cli("pw-two", "user", "passwd", "dana", "--valid-until", "infinity") }, "dana", "acme", "pw-two", ""},
		{"drop", func() { s.cli("", "user", "drop", "dana") }, "dana", "acme", "pw-two", "28P01"},
		{"allow outside 127.0.0.1: 28000", func() {
			s.cli("", "user", "create", "fay", "--tenant", "acme", "--allow", "10.0.0.0/8")
			s.cli("pw", "user", "passwd", "fay")
		}, "fay", "acme", "pw", "28000"},
	}
	for _, st := range steps {
		st.do()
		var got string
		d := withinASecond(t, st.what, func() bool { got = s.connect(st.user, st.tenant, st.password); return got == st.want })
		t.Logf("%s: %q after %v", st.what, got, d.Round(time.Millisecond))
	}
}

// VALID UNTIL passing while the user's entry sits in the proxy's cache still shuts the user out (the
// cache TTL is long here): the expiry is checked at every use, not only by the lookup.
func TestCatalogUserExpiresOnTimeDespiteTheCache(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s := newUsersDB(t, ctx)
	s.cli("", "user", "create", "erin", "--tenant", "acme")
	until := time.Now().Add(3 * time.Second).UTC().Format(time.RFC3339Nano)
	s.cli("pw", "user", "passwd", "erin", "--valid-until", until)
	withinASecond(t, "erin logs in before VALID UNTIL", func() bool { return s.connect("erin", "acme", "pw") == "" })
	deadline := time.Now().Add(10 * time.Second)
	for s.connect("erin", "acme", "pw") == "" {
		if time.Now().After(deadline) {
			t.Fatal("erin still logs in 7s after VALID UNTIL")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := s.connect("erin", "acme", "pw"); got != "28P01" {
		t.Fatalf("expired user: %q, want 28P01", got)
	}
}

// The lookup function cannot be abused: it is SECURITY DEFINER with an empty search_path, only the pool
// role may call it, and neither objects on the caller's search_path (a shadow users table, an operator
// = that is always true) nor the tenant asked for give away another tenant's user; through the proxy, a
// tenant's session cannot call it or read the user tables; a user that only a shadow table knows cannot
// log in even when the pool role's own search_path puts that table first (pgbouncer's CVE-2025-2291 and
// its unqualified auth_query).
func TestCatalogUserLookupFunctionCannotBeAbused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s := newUsersDB(t, ctx)
	s.cli("", "user", "create", "dana", "--tenant", "acme")
	s.cli("pw", "user", "passwd", "dana")

	su, err := s.f.Cluster.Connect(ctx, proxytest.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(ctx)
	var secdef bool
	var conf []string
	if err := su.QueryRow(ctx, `SELECT prosecdef, coalesce(proconfig, '{}') FROM pg_proc WHERE oid = 'tenantproxy.lookup_user(text,text)'::regprocedure`).Scan(&secdef, &conf); err != nil {
		t.Fatal(err)
	}
	if !secdef || len(conf) != 1 || conf[0] != `search_path=""` {
		t.Fatalf("lookup_user: SECURITY DEFINER %v, settings %q; want true and search_path=\"\"", secdef, conf)
	}
	for _, c := range []struct {
		role, priv, object string
		want               bool
	}{
		{"tenantproxy_pool", "EXECUTE", "function", true},
		{"tenant_acme", "EXECUTE", "function", false},
		{"public", "EXECUTE", "function", false},
		{"tenantproxy_pool", "SELECT", "tenantproxy.users", false},
		{"tenantproxy_pool", "SELECT", "tenantproxy.user_tenants", false},
		{"tenant_acme", "SELECT", "tenantproxy.users", false},
	} {
		var got bool
		q := "SELECT has_table_privilege($1, $3, $2)"
		args := []any{c.role, c.priv, c.object}
		if c.object == "function" {
			q = "SELECT has_function_privilege($1, 'tenantproxy.lookup_user(text,text)', $2)"
			args = args[:2]
		}
		if err := su.QueryRow(ctx, q, args...).Scan(&got); err != nil || got != c.want {
			t.Errorf("%s %s on %s: %v (%v), want %v", c.role, c.priv, c.object, got, err, c.want)
		}
	}

	// An attacker's schema on the path: a users table knowing "mallory", and an = that is always true.
	verifier, err := auth.NewSCRAMVerifier("pw")
	if err != nil {
		t.Fatal(err)
	}
	s.f.Cluster.MustExec(t, proxytest.Database, `
		CREATE SCHEMA evil;
		CREATE TABLE evil.users (name text, verifier text, profile text, valid_until timestamptz, allow cidr[]);
		CREATE TABLE evil.user_tenants ("user" text, tenant text);
		INSERT INTO evil.users VALUES ('mallory', '`+verifier+`', 'app', NULL, '{}');
		INSERT INTO evil.user_tenants VALUES ('mallory', 'acme'), ('dana', 'globex');
		CREATE FUNCTION evil.always(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
		CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.always);
		GRANT USAGE ON SCHEMA evil TO tenantproxy_pool;
		GRANT SELECT ON ALL TABLES IN SCHEMA evil TO tenantproxy_pool;`)
	pool, err := pgx.Connect(ctx, s.f.Cluster.DSN(proxytest.Database, "tenantproxy_pool")+" password=pool-secret")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close(ctx)
	if _, err := pool.Exec(ctx, "SET search_path = evil, pg_catalog"); err != nil {
		t.Fatal(err)
	}
	// The attack works on an unqualified query: the check below can fail.
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM users WHERE name = 'nobody-at-all'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("control: the shadow table and operator answer an unqualified query with %d rows (%v), want 1", n, err)
	}
	lookups := []struct {
		user, tenant string
		rows         int
		bound        bool
	}{
		{"mallory", "acme", 0, false},
		{"dana", "globex", 1, false},
		{"dana", "acme", 1, true},
		{"dana' OR true --", "acme", 0, false},
	}
	for _, l := range lookups {
		rows, err := pool.Query(ctx, "SELECT bound FROM tenantproxy.lookup_user($1, $2)", l.user, l.tenant)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[bool])
		if err != nil || len(got) != l.rows || (l.rows == 1 && got[0] != l.bound) {
			t.Errorf("lookup_user(%q, %q) under a hostile search_path: %v (%v), want %d rows bound=%v", l.user, l.tenant, got, err, l.rows, l.bound)
		}
	}

	// Through the proxy, a tenant's session can neither call the function nor read the tables.
	alice, err := pgx.Connect(ctx, s.p.TenantURL("acme"))
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close(ctx)
	for _, sql := range []string{
		"SELECT verifier FROM tenantproxy.lookup_user('dana', 'acme')",
		"SELECT verifier FROM tenantproxy.users",
		"SELECT count(*) FROM tenantproxy.user_tenants",
	} {
		var v any
		if err := alice.QueryRow(ctx, sql).Scan(&v); err == nil {
			t.Errorf("a tenant session ran %q and got %v", sql, v)
		}
	}

	// The pool role's own search_path puts the shadow table first: mallory still cannot log in, dana can.
	s.f.Cluster.MustExec(t, proxytest.Database, "ALTER ROLE tenantproxy_pool IN DATABASE "+proxytest.Database+" SET search_path = evil, public")
	t.Cleanup(func() {
		s.f.Cluster.MustExec(t, proxytest.Database, "ALTER ROLE tenantproxy_pool IN DATABASE "+proxytest.Database+" RESET search_path")
	})
	// The lookup connection is opened anew after it is dropped; kill it so the new setting applies.
	s.f.Cluster.MustExec(t, proxytest.Database, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'tenantproxy-users%'")
	withinASecond(t, "dana still logs in", func() bool { return s.connect("dana", "acme", "pw") == "" })
	if got := s.connect("mallory", "acme", "pw"); got != "28P01" {
		t.Fatalf("mallory from the shadow table: %q, want 28P01", got)
	}
}
