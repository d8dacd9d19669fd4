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

// A tenant's own limits hold through the real proxy against PostgreSQL: max_clients refuses the next
// client with 53300 naming the tenant and the limit while other tenants connect, and statement_timeout
// cancels a long statement of that tenant only (unless its client asks for a lower one).
func TestTenantLimitsThroughTheProxy(t *testing.T) {
	f := proxytest.NewFixture(t)
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			p := f.Start(t, func(c *config.Config) {
				c.Pool.Mode = config.PoolMode(mode)
				c.Backend.PoolSize = 3
				for i := range c.Tenants {
					if c.Tenants[i].Name == "acme" {
						c.Tenants[i].MaxClients = 1
						c.Tenants[i].StatementTimeout = config.Duration{Duration: 200 * time.Millisecond}
					}
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			first, err := pgx.Connect(ctx, p.TenantURL("acme"))
			if err != nil {
				t.Fatal(err)
			}
			defer first.Close(ctx)
			_, err = pgx.Connect(ctx, p.TenantURL("acme"))
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "53300" || !strings.Contains(pe.Message, `tenant "acme"`) || !strings.Contains(pe.Message, "max_clients is 1") {
				t.Fatalf("second acme client: %v, want 53300 naming the tenant and max_clients", err)
			}
			other, err := pgx.Connect(ctx, p.TenantURL("globex"))
			if err != nil {
				t.Fatalf("globex is not limited: %v", err)
			}
			defer other.Close(ctx)

			_, err = first.Exec(ctx, "SELECT pg_sleep(5)")
			if !errors.As(err, &pe) || pe.Code != "57014" {
				t.Fatalf("acme's long statement: %v, want 57014 from the tenant's statement_timeout", err)
			}
			if _, err := other.Exec(ctx, "SELECT pg_sleep(0.4)"); err != nil {
				t.Fatalf("globex has no statement_timeout: %v", err)
			}
			if _, err := first.Exec(ctx, "SET statement_timeout = '50ms'"); err != nil {
				t.Fatal(err)
			}
			var v string
			if err := first.QueryRow(ctx, "SHOW statement_timeout").Scan(&v); err != nil || v != "50ms" {
				t.Fatalf("a lower statement_timeout of the client's own: %q, %v", v, err)
			}
		})
	}
}
