// Package proxytest starts tenantproxy in-process in front of a throwaway PostgreSQL cluster that the
// lifecycle commands hardened and provisioned, exactly as an operator would. Integration tests, the driver
// matrix and benchmarks use it.
package proxytest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/pgtest"
	"github.com/tenantproxy/tenantproxy/internal/app"
	"github.com/tenantproxy/tenantproxy/internal/pgident"
	"github.com/tenantproxy/tenantproxy/tenants"
)

// Database is the backend database of every fixture.
const Database = "agentichr"

// Password is every fixture user's password.
const Password = "secret"

// Fixture is a provisioned cluster: hardened by `init`, with tenants created by `tenant create` from the
// test migrations (an employees table whose tenant column defaults to the injected tenant setting), and
// RowsPerTenant employees per tenant whose tenant column is the tenant's name.
type Fixture struct {
	Cluster *pgtest.Cluster
	Tenants []string
	// Base is the configuration the fixture was provisioned with; each proxy starts from a copy.
	Base *config.Config
}

// RowsPerTenant is how many employees each tenant starts with.
const RowsPerTenant = 5

// DefaultTenants are the fixture's tenants.
var DefaultTenants = []string{"acme", "globex"}

// NewFixture starts and provisions a cluster; it is removed when tb ends.
func NewFixture(tb testing.TB, tenantNames ...string) *Fixture {
	tb.Helper()
	f, err := StartFixture(tenantNames...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Cluster.Stop() })
	return f
}

// StartFixture is NewFixture for TestMain and benchmarks: the caller stops f.Cluster.
func StartFixture(tenantNames ...string) (*Fixture, error) {
	if len(tenantNames) == 0 {
		tenantNames = DefaultTenants
	}
	c, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		return nil, err
	}
	f := &Fixture{Cluster: c, Tenants: tenantNames}
	fail := func(err error) (*Fixture, error) {
		c.Stop()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := c.Exec(ctx, "postgres", "CREATE DATABASE "+Database); err != nil {
		return fail(err)
	}
	f.Base = f.baseConfig()
	var out bytes.Buffer
	// init checks the tenants it knows of; they exist only after tenant create.
	bare := *f.Base
	bare.Tenants = nil
	if code := tenants.Main(ctx, &bare, []string{"init"}, &out, &out); code != 0 {
		return fail(fmt.Errorf("proxytest: tenantproxy init: exit %d\n%s", code, out.String()))
	}
	for _, t := range tenantNames {
		s := []string{"tenant", "create", t}
		if code := tenants.Main(ctx, f.Base, s, &out, &out); code != 0 {
			return fail(fmt.Errorf("proxytest: tenantproxy %s: exit %d\n%s", strings.Join(s, " "), code, out.String()))
		}
	}
	var seed strings.Builder
	for _, t := range tenantNames {
		for i := 1; i <= RowsPerTenant; i++ {
			fmt.Fprintf(&seed, "INSERT INTO %s.employees (name, email, tenant) VALUES ('%s employee %d', 'e%d@%s.example', %s);\n",
				pgident.Quote(t), t, i, i, t, pgident.QuoteLiteral(t))
		}
	}
	if err := c.Exec(ctx, Database, seed.String()); err != nil {
		return fail(err)
	}
	return f, nil
}

// baseConfig is the configuration every proxy of the fixture starts from.
func (f *Fixture) baseConfig() *config.Config {
	var b strings.Builder
	fmt.Fprintf(&b, `
[listen]
addr = "127.0.0.1:0"
# Two relay threads wherever the pool allows (pool_size >= 2): every suite then runs clients on both
# shards of one pool, the harder case, although auto would pick one thread for pools this small.
relay_threads = 2
[backend]
host = %q
port = %d
database = %q
user = "tenantproxy_pool"
password = "pool-secret"
pool_size = 4
[pool]
mode = "transaction"
wait_timeout = "10s"
shutdown_timeout = "5s"
[auth]
method = "scram-sha-256"
failure_delay = "10ms"
[tenancy]
resolve = ["user", "database"]
[log]
level = "warn"
[admin]
user = %q
password = %q
[migrations]
dir = %q
`, f.Cluster.Host, f.Cluster.Port, Database, f.Cluster.User, f.Cluster.Password, migrationsDir())
	for _, t := range f.Tenants {
		fmt.Fprintf(&b, "[[tenants]]\nname = %q\n", t)
	}
	// One app user per tenant (alice@acme, bob@globex, ...), a reader bound to every tenant, and a user
	// bound to none.
	names := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"}
	for i, t := range f.Tenants {
		fmt.Fprintf(&b, "[[users]]\nname = %q\npassword = %q\ntenants = [%q]\n", names[i%len(names)], Password, t)
	}
	fmt.Fprintf(&b, "[[users]]\nname = \"reader\"\npassword = %q\nprofile = \"readonly\"\ntenants = [", Password)
	for i, t := range f.Tenants {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", t)
	}
	b.WriteString("]\n")
	fmt.Fprintf(&b, "[[users]]\nname = \"nobody\"\npassword = %q\ntenants = []\n", Password)
	cfg, err := config.Parse(b.String())
	if err != nil {
		panic("BUG: proxytest base config: " + err.Error())
	}
	return cfg
}

// UserOf returns the app user bound to tenant (alice for the first tenant, bob for the second, ...).
func (f *Fixture) UserOf(tenant string) string {
	names := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"}
	for i, t := range f.Tenants {
		if t == tenant {
			return names[i%len(names)]
		}
	}
	return "nobody"
}

func migrationsDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", "migrations")
}

// Proxy is a running tenantproxy in front of a fixture.
type Proxy struct {
	*app.App
	F    *Fixture
	Cfg  *config.Config
	Host string
	Port int
}

// Start runs a proxy over f with the base configuration changed by configure (may be nil). It is shut
// down when tb ends.
func (f *Fixture) Start(tb testing.TB, configure func(*config.Config)) *Proxy {
	tb.Helper()
	cfg := f.Config(configure)
	log := zap.NewNop()
	if testing.Verbose() {
		log = zaptest.NewLogger(tb, zaptest.Level(zap.WarnLevel))
	}
	a, err := app.Start(cfg, log, "test")
	if err != nil {
		tb.Fatalf("proxytest: start: %v", err)
	}
	tb.Cleanup(func() { a.Shutdown(2 * time.Second) })
	host, port, _ := net.SplitHostPort(a.Addr())
	p, _ := strconv.Atoi(port)
	return &Proxy{App: a, F: f, Cfg: cfg, Host: host, Port: p}
}

// Config returns a validated copy of the base configuration changed by configure.
func (f *Fixture) Config(configure func(*config.Config)) *config.Config {
	cfg := *f.Base
	cfg.Tenants = append([]config.Tenant(nil), f.Base.Tenants...)
	cfg.Users = append([]config.User(nil), f.Base.Users...)
	if configure != nil {
		configure(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		panic("proxytest: invalid config: " + err.Error())
	}
	return &cfg
}

// URL returns a connection URL through the proxy for user@tenant (the tenant resolved from the user name).
func (p *Proxy) URL(user, tenant string) string {
	u := url.URL{Scheme: "postgresql", User: url.UserPassword(user+"@"+tenant, Password), Host: net.JoinHostPort(p.Host, strconv.Itoa(p.Port)), Path: "/" + Database, RawQuery: "sslmode=disable"}
	return u.String()
}

// TenantURL returns the URL of the app user bound to tenant.
func (p *Proxy) TenantURL(tenant string) string { return p.URL(p.F.UserOf(tenant), tenant) }

// RunTests is a package's TestMain body: it starts a fixture of tenantNames, hands it to use, runs the
// tests, stops the cluster and, when they passed, checks that no goroutine outlived them — every proxy a
// test starts is shut down by its cleanup, so relay loops, dialers and TLS bridges must be gone. pkg
// names the package in messages. It returns the exit code.
func RunTests(m *testing.M, pkg string, use func(*Fixture), tenantNames ...string) int {
	f, err := StartFixture(tenantNames...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: start the fixture: %v\n", pkg, err)
		return 1
	}
	use(f)
	code := m.Run()
	f.Cluster.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: leaked goroutines: %v\n", pkg, err)
			return 1
		}
	}
	return code
}
