package integration

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
	"github.com/tenantproxy/tenantproxy/tenants"
)

// withinASecond polls ok until it holds, failing the test when a second passes first.
func withinASecond(t *testing.T, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < time.Second {
		if ok() {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within a second", what)
	return 0
}

// pgCode is the SQLSTATE of err, or its text when it carries none.
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// With catalog = "database", `tenant set` changes a tenant's limits in the catalog and the running proxy
// applies them within a second (bad input is refused and changes nothing): an allow list refuses
// other addresses with 28000, max_clients refuses the next client with 53300 while the connected one
// goes on, statement_timeout cancels a long statement, and setting 0 restores the default.
func TestTenantSetChangesLimitsOfARunningProxyWithinASecond(t *testing.T) {
	f := proxytest.NewFixture(t)
	cfg := f.Config(func(c *config.Config) { c.Tenancy.Catalog = config.CatalogDatabase; c.Backend.PoolSize = 3 })
	p := f.Start(t, func(c *config.Config) { *c = *cfg })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	set := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if code := tenants.Main(ctx, cfg, append([]string{"tenant", "set", "acme"}, args...), &out, &out); code != 0 {
			t.Fatalf("tenant set acme %v: exit %d\n%s", args, code, out.String())
		}
		return out.String()
	}
	checkTenantSetRefusesBadInput(ctx, t, f, cfg)
	var first *pgx.Conn
	// The proxy loads the catalog in the background after it starts listening.
	withinASecond(t, "acme served from the catalog", func() bool {
		c, err := pgx.Connect(ctx, p.TenantURL("acme"))
		first = c
		return err == nil
	})
	defer first.Close(ctx)
	secondConnects := func() (string, string) {
		c, err := pgx.Connect(ctx, p.TenantURL("acme"))
		if err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) {
				return pe.Code, pe.Message
			}
			return err.Error(), ""
		}
		c.Close(ctx)
		return "", ""
	}
	if code, msg := secondConnects(); code != "" {
		t.Fatalf("before tenant set: second acme client refused: %s %s", code, msg)
	}

	if out := set("max_clients=1", "statement_timeout=200ms"); !strings.Contains(out, "max_clients=1") || !strings.Contains(out, "statement_timeout=200ms") {
		t.Fatalf("tenant set output does not show the new limits:\n%s", out)
	}
	d := withinASecond(t, "max_clients=1 refuses a second acme client", func() bool {
		code, msg := secondConnects()
		return code == "53300" && strings.Contains(msg, `tenant "acme"`) && strings.Contains(msg, "max_clients is 1")
	})
	t.Logf("max_clients applied after %v", d)
	if _, err := first.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("the connected acme client was dropped by tenant set: %v", err)
	}
	withinASecond(t, "statement_timeout=200ms cancels a long acme statement", func() bool {
		_, err := first.Exec(ctx, "SELECT pg_sleep(2)")
		return pgCode(err) == "57014"
	})
	other, err := pgx.Connect(ctx, p.TenantURL("globex"))
	if err != nil {
		t.Fatalf("globex is not limited: %v", err)
	}
	defer other.Close(ctx)
	if _, err := other.Exec(ctx, "SELECT pg_sleep(0.4)"); err != nil {
		t.Fatalf("globex has no statement_timeout: %v", err)
	}

	set("allow=10.0.0.0/8")
	withinASecond(t, "allow=10.0.0.0/8 refuses a client from 127.0.0.1", func() bool {
		code, msg := secondConnects()
		return code == "28000" && !strings.Contains(msg, "acme")
	})
	set("max_clients=0", "statement_timeout=0", "allow=")
	withinASecond(t, "max_clients=0 lets a second acme client in again", func() bool { code, _ := secondConnects(); return code == "" })
	if _, err := first.Exec(ctx, "SELECT pg_sleep(0.4)"); err != nil {
		t.Fatalf("statement_timeout=0 left a timeout in force: %v", err)
	}
}

// checkTenantSetRefusesBadInput: tenant set refuses bad input with exit status 2 and an unknown tenant with
// 1, and changes nothing.
func checkTenantSetRefusesBadInput(ctx context.Context, t *testing.T, f *proxytest.Fixture, cfg *config.Config) {
	t.Helper()
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"acme"}, tenants.ExitUsage, "expected"},
		{[]string{"acme", "max_clients"}, tenants.ExitUsage, "KEY=VALUE"},
		{[]string{"acme", "max_clients=-1"}, tenants.ExitUsage, "whole number"},
		{[]string{"acme", "max_clients=lots"}, tenants.ExitUsage, "whole number"},
		{[]string{"acme", "statement_timeout=5"}, tenants.ExitUsage, "duration"},
		{[]string{"acme", "pool_size=3"}, tenants.ExitUsage, "unknown key"},
		{[]string{"acme", "weight=2", "weight=3"}, tenants.ExitUsage, "twice"},
		{[]string{"nosuch", "weight=2"}, tenants.ExitFailure, "does not exist"},
	} {
		var out bytes.Buffer
		code := tenants.Main(ctx, cfg, append([]string{"tenant", "set"}, tc.args...), &out, &out)
		if code != tc.code || !strings.Contains(out.String(), tc.says) {
			t.Errorf("tenant set %v: exit %d, want %d saying %q:\n%s", tc.args, code, tc.code, tc.says, out.String())
		}
	}
	conn, err := f.Cluster.Connect(ctx, proxytest.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM tenantproxy.tenants WHERE max_clients <> 0 OR weight <> 0").Scan(&n); err != nil || n != 0 {
		t.Fatalf("a refused tenant set changed %d catalog rows (%v)", n, err)
	}
}
