package integration

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
	"github.com/tenantproxy/tenantproxy/tenants"
)

// With [tenancy] catalog = "database" the running proxy serves a tenant created by `tenant create` within
// a second, refuses a suspended or dropped one within a second, and needs no restart.
func TestCatalogModeSeesTenantsCreatedAndDroppedWithinASecond(t *testing.T) {
	f := proxytest.NewFixture(t)
	cfg := f.Config(func(c *config.Config) {
		c.Tenancy.Catalog = config.CatalogDatabase
		c.Users = append(c.Users, config.User{Name: "ivan", Password: proxytest.Password, Tenants: []string{"initech"}, Profile: config.ProfileApp})
	})
	p := f.Start(t, func(c *config.Config) { *c = *cfg })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lifecycle := func(args ...string) {
		t.Helper()
		var out bytes.Buffer
		if code := tenants.Main(ctx, cfg, args, &out, &out); code != 0 {
			t.Fatalf("tenantproxy %v: exit %d\n%s", args, code, out.String())
		}
	}
	within := func(what string, ok func() bool) time.Duration {
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
	connects := func() (bool, string) {
		c, err := pgx.Connect(ctx, p.URL("ivan", "initech"))
		if err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) {
				return false, pe.Code
			}
			return false, err.Error()
		}
		defer c.Close(ctx)
		var n int
		if err := c.QueryRow(ctx, "select count(*) from employees").Scan(&n); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) {
				return false, pe.Code
			}
			return false, err.Error()
		}
		return true, ""
	}
	if ok, code := connects(); ok || code != "3D000" {
		t.Fatalf("before create: want 3D000, got ok=%v %s", ok, code)
	}
	lifecycle("tenant", "create", "initech")
	d := within("created tenant served", func() bool { ok, _ := connects(); return ok })
	t.Logf("created tenant served after %v", d)
	lifecycle("tenant", "suspend", "initech")
	within("suspended tenant refused", func() bool { ok, code := connects(); return !ok && code == "57P03" })
	lifecycle("tenant", "resume", "initech")
	within("resumed tenant served", func() bool { ok, _ := connects(); return ok })
	lifecycle("tenant", "drop", "initech", "--yes")
	within("dropped tenant refused", func() bool { ok, code := connects(); return !ok && code == "3D000" })
}

// A shared table under `tenantproxy rls enable`: through the proxy each tenant sees and writes only its own
// rows, and cannot forge the tenant setting the policy reads.
func TestRLSSharedTableThroughTheProxy(t *testing.T) {
	f := proxytest.NewFixture(t)
	f.Cluster.MustExec(t, proxytest.Database, `
		CREATE SCHEMA IF NOT EXISTS shared;
		CREATE TABLE shared.notes (id serial PRIMARY KEY, tenant text NOT NULL DEFAULT current_setting('tenantproxy.tenant'), body text);
		INSERT INTO shared.notes (tenant, body) VALUES ('acme', 'acme note'), ('globex', 'globex secret note');`)
	var out bytes.Buffer
	if code := tenants.Main(context.Background(), f.Base, []string{"rls", "enable", "shared.notes"}, &out, &out); code != 0 {
		t.Fatalf("rls enable: exit %d\n%s", code, out.String())
	}
	f.Cluster.MustExec(t, proxytest.Database, `GRANT USAGE ON SEQUENCE shared.notes_id_seq TO tenant_acme, tenant_globex`)
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			p := f.Start(t, func(c *config.Config) { c.Pool.Mode = config.PoolMode(mode); c.Backend.PoolSize = 1 })
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			acme, err := pgx.Connect(ctx, p.TenantURL("acme"))
			if err != nil {
				t.Fatal(err)
			}
			defer acme.Close(ctx)
			if _, err := acme.Exec(ctx, "insert into shared.notes (body) values ('written by acme in "+mode+"')"); err != nil {
				t.Fatal(err)
			}
			if _, err := acme.Exec(ctx, "insert into shared.notes (tenant, body) values ('globex', 'forged')"); err == nil {
				t.Fatal("acme wrote a row marked globex")
			}
			rows, err := acme.Query(ctx, "select distinct tenant from shared.notes")
			if err != nil {
				t.Fatal(err)
			}
			seen, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil || len(seen) != 1 || seen[0] != "acme" {
				t.Fatalf("acme sees tenants %v (%v)", seen, err)
			}
			for _, forge := range []string{"SET tenantproxy.tenant = 'globex'", "SELECT set_config('tenantproxy.tenant', 'globex', false)"} {
				_, err := acme.Exec(ctx, forge)
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != "42501" {
					t.Fatalf("%s: want 42501, got %v", forge, err)
				}
			}
			var n int
			if err := acme.QueryRow(ctx, "select count(*) from shared.notes where tenant = 'globex'").Scan(&n); err != nil || n != 0 {
				t.Fatalf("acme counts %d globex notes (%v)", n, err)
			}
		})
	}
}
