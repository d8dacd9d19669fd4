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

// A tenant whose context does not hold on the server — here its schema is missing, so search_path does
// not start with it — is caught by the tripwire's identity check: the backend is closed and the client
// told, instead of running queries in a context that is not its tenant's.
func TestTripwireClosesBackendWhoseContextIsWrong(t *testing.T) {
	f := proxytest.NewFixture(t)
	f.Cluster.MustExec(t, proxytest.Database, `CREATE ROLE tenant_ghost NOLOGIN NOINHERIT; GRANT tenant_ghost TO tenantproxy_pool`)
	p := f.Start(t, func(c *config.Config) {
		c.Tenancy.RequireHardening = new(bool) // the ghost tenant fails doctor on purpose
		c.Tenancy.TripwireSampleRate = 1
		c.Tenants = append(c.Tenants, config.Tenant{Name: "ghost", Schema: "ghost"})
		c.Users = append(c.Users, config.User{Name: "casper", Password: proxytest.Password, Tenants: []string{"ghost"}, Profile: config.ProfileApp})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL("casper", "ghost"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var got error
	for i := 0; i < 3 && got == nil; i++ {
		_, got = conn.Exec(ctx, "select 1")
	}
	var pe *pgconn.PgError
	if !errors.As(got, &pe) || pe.Code != "08006" || !strings.Contains(pe.Message, "tripwire") {
		t.Fatalf("want the tripwire's 08006 error, got %v", got)
	}
	// A healthy tenant is checked too, and passes.
	ok, err := pgx.Connect(ctx, p.TenantURL("acme"))
	if err != nil {
		t.Fatal(err)
	}
	defer ok.Close(ctx)
	for i := 0; i < 3; i++ {
		var tenant string
		if err := ok.QueryRow(ctx, "select min(tenant) from employees").Scan(&tenant); err != nil || tenant != "acme" {
			t.Fatalf("healthy tenant after tripwire: %q %v", tenant, err)
		}
	}
}
