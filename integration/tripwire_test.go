package integration

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// A context change the guard cannot see — here a SECURITY DEFINER function, created by the superuser,
// that sets the tenant setting to another tenant at run time (what RLS policies read) — is caught by the tripwire's identity
// check: the backend is closed and the client told, and the next lease runs in a clean context.
func TestTripwireCatchesAContextChangeInsideAFunction(t *testing.T) {
	f := proxytest.NewFixture(t)
	f.Cluster.MustExec(t, proxytest.Database, `
		CREATE FUNCTION acme.sneaky() RETURNS text LANGUAGE sql SECURITY DEFINER
			AS $$ SELECT set_config('tenantproxy.tenant', 'globex', false) $$;
		GRANT EXECUTE ON FUNCTION acme.sneaky() TO tenant_acme;`)
	p := f.Start(t, func(c *config.Config) {
		c.Backend.PoolSize = 1
		c.Tenancy.TripwireSampleRate = 1
		c.Tenancy.RequireHardening = new(bool) // the superuser's function fails doctor on purpose
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.TenantURL("acme"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var got error
	for i := 0; i < 3 && got == nil; i++ {
		_, got = conn.Exec(ctx, "select acme.sneaky()")
	}
	var pe *pgconn.PgError
	if !errors.As(got, &pe) || pe.Code != "08006" || !strings.Contains(pe.Message, "tripwire") {
		t.Fatalf("want the tripwire's 08006 error, got %v", got)
	}
	// The next lease (a new backend) runs in the tenant's context again.
	other, err := pgx.Connect(ctx, p.TenantURL("globex"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	for i := 0; i < 3; i++ {
		var tenant, path string
		if err := other.QueryRow(ctx, "select min(tenant), current_setting('search_path') from employees").Scan(&tenant, &path); err != nil || tenant != "globex" || !strings.HasPrefix(path, "globex") {
			t.Fatalf("after the tripwire: %q %q %v", tenant, path, err)
		}
	}
}
