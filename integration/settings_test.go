package integration

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// Settings a client sets follow it from backend to backend in transaction pooling, exactly as the server
// would keep them: a SET in a committed transaction stays, one in a rolled-back transaction does not,
// RESET ALL and DISCARD ALL return to the startup values, and another client never sees them.
func TestTrackedSettingsFollowTheClientAsTheServerWouldKeepThem(t *testing.T) {
	f := proxytest.NewFixture(t)
	p := f.Start(t, func(c *config.Config) { c.Backend.PoolSize = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	connect := func(tenant string) *pgx.Conn {
		cc, err := pgx.ParseConfig(p.TenantURL(tenant))
		if err != nil {
			t.Fatal(err)
		}
		cc.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
		c, err := pgx.ConnectConfig(ctx, cc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	a, b := connect("acme"), connect("globex")
	show := func(c *pgx.Conn) string {
		var v string
		if err := c.QueryRow(ctx, "show statement_timeout").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	exec := func(c *pgx.Conn, sql string) {
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	steps := []struct {
		name  string
		sql   string
		wantA string
	}{
		{"plain SET stays", "SET statement_timeout = '7s'", "7s"},
		{"SET in a rolled-back transaction is undone", "BEGIN; SET statement_timeout = '9s'; ROLLBACK", "7s"},
		{"SET in a committed transaction stays", "BEGIN; SET statement_timeout = '11s'; COMMIT", "11s"},
		{"RESET ALL returns to startup", "RESET ALL", "0"},
		{"SET again", "SET statement_timeout = '13s'", "13s"},
		{"DISCARD ALL returns to startup", "DISCARD ALL", "0"},
	}
	for _, st := range steps {
		exec(a, st.sql)
		if got := show(b); got != "0" {
			t.Fatalf("%s: the other tenant's client sees statement_timeout %s", st.name, got)
		}
		if got := show(a); got != st.wantA {
			t.Fatalf("%s: statement_timeout is %s, want %s", st.name, got, st.wantA)
		}
	}
	// Separate messages: the SET's transaction is rolled back by a later message.
	exec(a, "BEGIN")
	exec(a, "SET statement_timeout = '21s'")
	exec(a, "ROLLBACK")
	if got := show(a); got != "0" {
		t.Fatalf("SET rolled back by a later ROLLBACK: statement_timeout is %s, want 0", got)
	}
}
