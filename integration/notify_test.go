package integration

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// Channels are database-wide on the server; through the proxy each tenant has its own. A listener of
// acme hears acme's NOTIFY under the channel name it used, and never globex's on the same name.
func TestNotificationsStayWithinTheTenant(t *testing.T) {
	f := proxytest.NewFixture(t)
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			p := f.Start(t, func(c *config.Config) { c.Pool.Mode = config.PoolMode(mode); c.Backend.PoolSize = 3 })
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			connect := func(tenant string) *pgx.Conn {
				c, err := pgx.Connect(ctx, p.TenantURL(tenant))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close(context.Background()) })
				return c
			}
			listener, acme, globex := connect("acme"), connect("acme"), connect("globex")
			if _, err := listener.Exec(ctx, "LISTEN jobs"); err != nil {
				t.Fatal(err)
			}
			if _, err := globex.Exec(ctx, "NOTIFY jobs, 'globex secret'"); err != nil {
				t.Fatal(err)
			}
			if _, err := acme.Exec(ctx, "NOTIFY jobs, 'for acme'"); err != nil {
				t.Fatal(err)
			}
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
			defer wcancel()
			n, err := listener.WaitForNotification(wctx)
			if err != nil {
				t.Fatal(err)
			}
			if n.Channel != "jobs" || n.Payload != "for acme" {
				t.Fatalf("got notification %q on %q, want acme's on jobs", n.Payload, n.Channel)
			}
			short, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer scancel()
			if n, err := listener.WaitForNotification(short); err == nil {
				t.Fatalf("a second notification arrived: %q on %q", n.Payload, n.Channel)
			}
			if _, err := acme.Exec(ctx, "select pg_notify('jobs', 'x')"); err == nil {
				t.Fatal("pg_notify() must be refused")
			}
		})
	}
}

// A notification the listener sent itself carries the pid of the listener's own BackendKeyData, as on a
// direct connection, so "ignore my own notifications" works; another client's carries another pid.
func TestOwnNotificationCarriesTheClientsPid(t *testing.T) {
	f := proxytest.NewFixture(t)
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			p := f.Start(t, func(c *config.Config) { c.Pool.Mode = config.PoolMode(mode); c.Backend.PoolSize = 3 })
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			connect := func() *pgx.Conn {
				c, err := pgx.Connect(ctx, p.TenantURL("acme"))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close(context.Background()) })
				return c
			}
			listener, other := connect(), connect()
			if _, err := listener.Exec(ctx, "LISTEN jobs"); err != nil {
				t.Fatal(err)
			}
			if _, err := listener.Exec(ctx, "NOTIFY jobs, 'mine'"); err != nil {
				t.Fatal(err)
			}
			n, err := listener.WaitForNotification(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n.Payload != "mine" || n.PID != listener.PgConn().PID() {
				t.Fatalf("own notification %q has pid %d, want the client's key pid %d", n.Payload, n.PID, listener.PgConn().PID())
			}
			if _, err := other.Exec(ctx, "NOTIFY jobs, 'theirs'"); err != nil {
				t.Fatal(err)
			}
			n, err = listener.WaitForNotification(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n.Payload != "theirs" || n.PID == listener.PgConn().PID() {
				t.Fatalf("another client's notification %q has pid %d, the listener's own", n.Payload, n.PID)
			}
		})
	}
}
