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
	"github.com/tenantproxy/tenantproxy/tenants"
)

// analyticsURL is the analytics user's URL: database "analytics", or user@analytics when viaUser.
func analyticsURL(p *proxytest.Proxy, user string, viaUser bool) string {
	u := url.URL{Scheme: "postgresql", User: url.UserPassword(user, proxytest.Password), Host: net.JoinHostPort(p.Host, strconv.Itoa(p.Port)),
		Path: "/" + config.Analytics, RawQuery: "sslmode=disable"}
	if viaUser {
		u.User, u.Path = url.UserPassword(user+"@"+config.Analytics, proxytest.Password), "/"+proxytest.Database
	}
	return u.String()
}

// TestAnalyticsUserReadsEveryTenantAndNothingElse: through the proxy, a profile = "analytics" user reads
// the cross-tenant views (rows per tenant; a tenant created or dropped shows up and disappears), cannot
// write, cannot read a tenant schema or the catalog, and a tenant user cannot read the views.
func TestAnalyticsUserReadsEveryTenantAndNothingElse(t *testing.T) {
	f := proxytest.NewFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := f.Config(func(c *config.Config) {
		c.Tenancy.Catalog = config.CatalogDatabase
		c.Users = append(c.Users, config.User{Name: "insights", Password: proxytest.Password, Profile: config.ProfileAnalytics})
	})
	lifecycle := func(args ...string) {
		t.Helper()
		var out bytes.Buffer
		if code := tenants.Main(ctx, cfg, args, &out, &out); code != 0 {
			t.Fatalf("tenantproxy %v: exit %d\n%s", args, code, out.String())
		}
	}
	for _, mode := range poolModes {
		t.Run(string(mode), func(t *testing.T) {
			p := f.Start(t, func(c *config.Config) { *c = *cfg; c.Pool.Mode = mode })
			an := connectWhenServed(t, ctx, analyticsURL(p, "insights", mode == config.ModeSession))
			perTenant := func() string {
				t.Helper()
				rows, err := an.Query(ctx, "SELECT tenant || '=' || count(*) FROM employees GROUP BY tenant ORDER BY tenant")
				if err != nil {
					t.Fatalf("analytics employees: %v", err)
				}
				out, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					t.Fatal(err)
				}
				return strings.Join(out, ",")
			}
			want := "acme=5,globex=5"
			if got := perTenant(); got != want {
				t.Fatalf("rows per tenant: %s, want %s", got, want)
			}
			// A filter on tenant reads that tenant's rows only, and its rows are the tenant's own.
			var n int
			if err := an.QueryRow(ctx, "SELECT count(*) FROM employees WHERE tenant = 'globex' AND email LIKE '%@globex.example'").Scan(&n); err != nil || n != proxytest.RowsPerTenant {
				t.Fatalf("globex's rows: %d, %v", n, err)
			}

			lifecycle("tenant", "create", "initech")
			var schema string
			su, err := f.Cluster.Connect(ctx, proxytest.Database)
			if err != nil {
				t.Fatal(err)
			}
			defer su.Close(ctx)
			if err := su.QueryRow(ctx, "SELECT schema FROM tenantproxy.tenants WHERE name = 'initech'").Scan(&schema); err != nil {
				t.Fatal(err)
			}
			if _, err := su.Exec(ctx, "INSERT INTO "+pgxQuote(schema)+".employees (name, email, tenant) VALUES ('i1', 'i1@initech.example', 'initech')"); err != nil {
				t.Fatal(err)
			}
			if got := perTenant(); got != "acme=5,globex=5,initech=1" {
				t.Errorf("after tenant create initech: %s", got)
			}
			lifecycle("tenant", "drop", "initech", "--yes")
			if got := perTenant(); got != want {
				t.Errorf("after tenant drop initech: %s", got)
			}

			for _, c := range []struct{ sql, state string }{
				{"INSERT INTO employees (tenant, name, email) VALUES ('acme', 'x', 'x@x')", "25006"},
				{"DELETE FROM employees", "25006"},
				{"CREATE TABLE mine (id int)", "25006"},
				{"SELECT * FROM acme.employees", "42501"},
				{"SELECT * FROM tenantproxy.tenants", "42501"},
				{"SET search_path TO acme", "42501"},
				{"SET ROLE tenant_acme", "42501"},
				{"SELECT set_config('search_path', 'acme', false)", "42501"},
			} {
				if _, err := an.Exec(ctx, c.sql); sqlstate(err) != c.state {
					t.Errorf("analytics user: %s: %v, want %s", c.sql, err, c.state)
				}
			}

			// A tenant user reaches neither the views nor the analytics database.
			alice := connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeSimpleProtocol)
			if _, err := alice.Exec(ctx, "SELECT * FROM analytics.employees"); sqlstate(err) != "42501" {
				t.Errorf("a tenant reads analytics.employees: %v, want 42501", err)
			}
			if c, err := pgx.Connect(ctx, analyticsURL(p, "alice", false)); err == nil || sqlstate(err) != "28000" {
				if c != nil {
					c.Close(ctx)
				}
				t.Errorf("alice connects to analytics: %v, want 28000", err)
			}
			// The analytics user reaches no tenant.
			if c, err := pgx.Connect(ctx, p.URL("insights", "acme")); err == nil || sqlstate(err) != "28000" {
				if c != nil {
					c.Close(ctx)
				}
				t.Errorf("insights connects to acme: %v, want 28000", err)
			}
		})
	}
}

func pgxQuote(s string) string { return pgx.Identifier{s}.Sanitize() }

// connectWhenServed connects to url, retrying while the proxy has not loaded the tenant catalog yet
// (3D000), for up to ten seconds.
func connectWhenServed(t *testing.T, ctx context.Context, url string) *pgx.Conn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, url)
		if err == nil {
			t.Cleanup(func() { conn.Close(context.Background()) })
			return conn
		}
		if sqlstate(err) != "3D000" || time.Now().After(deadline) {
			t.Fatalf("connect %s: %v", redact(url), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
