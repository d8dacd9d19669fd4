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

// allow on a [[users]] or [[tenants]] entry: a client from outside the ranges (the test connects from
// 127.0.0.1) is refused with 28000 naming neither the user nor the tenant, whatever its password; one
// from inside connects; other users and tenants are not limited.
func TestAllowRangesRefuseClientsFromOutsideWith28000NamingNeither(t *testing.T) {
	f := proxytest.NewFixture(t)
	setAllow := func(c *config.Config, user, tenant string, allow []string) {
		for i := range c.Users {
			if c.Users[i].Name == user {
				c.Users[i].Allow = allow
			}
		}
		for i := range c.Tenants {
			if c.Tenants[i].Name == tenant {
				c.Tenants[i].Allow = allow
			}
		}
	}
	for _, tc := range []struct {
		name         string
		user, tenant string // the entry that gets the allow list
		allow        []string
		refused      bool
	}{
		{"user outside", "alice", "", []string{"10.0.0.0/8"}, true},
		{"user inside", "alice", "", []string{"10.0.0.0/8", "127.0.0.1/32"}, false},
		{"user single address", "alice", "", []string{"127.0.0.1"}, false},
		{"user ipv6 only", "alice", "", []string{"::1/128"}, true},
		{"tenant outside", "", "acme", []string{"192.168.0.0/16"}, true},
		{"tenant inside", "", "acme", []string{"127.0.0.0/8"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := f.Start(t, func(c *config.Config) { setAllow(c, tc.user, tc.tenant, tc.allow) })
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for _, password := range []string{proxytest.Password, "wrong"} {
				u := strings.Replace(p.TenantURL("acme"), ":"+proxytest.Password+"@", ":"+password+"@", 1)
				c, err := pgx.Connect(ctx, u)
				if err == nil {
					c.Close(ctx)
				}
				var pe *pgconn.PgError
				switch {
				case tc.refused && (!errors.As(err, &pe) || pe.Code != "28000"):
					t.Fatalf("password %q: %v, want 28000", password, err)
				case tc.refused && (strings.Contains(pe.Message, "alice") || strings.Contains(pe.Message, "acme")):
					t.Fatalf("the refusal names the user or the tenant: %q", pe.Message)
				case !tc.refused && password == proxytest.Password && err != nil:
					t.Fatalf("a client from inside the ranges is refused: %v", err)
				case !tc.refused && password != proxytest.Password && (!errors.As(err, &pe) || pe.Code != "28P01"):
					t.Fatalf("wrong password from inside: %v, want 28P01", err)
				}
			}
			other, err := pgx.Connect(ctx, p.TenantURL("globex"))
			if err != nil {
				t.Fatalf("globex's user is not limited: %v", err)
			}
			other.Close(ctx)
		})
	}
}
