package integration

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// Named prepared statements in transaction pooling: every client's statements work on whichever backend
// serves its next transaction, and never cross tenants.
func TestPreparedStatementsAcrossLeasesAndTenants(t *testing.T) {
	f := proxytest.NewFixture(t)
	// Same table name, different column types per tenant: a statement prepared by one tenant must never
	// be executed for the other (it would fail with "cached plan must not change result type").
	f.Cluster.MustExec(t, proxytest.Database, `
		CREATE TABLE acme.things (v int); INSERT INTO acme.things VALUES (42);
		CREATE TABLE globex.things (v text); INSERT INTO globex.things VALUES ('globex-thing');
		GRANT SELECT ON acme.things TO tenant_acme; GRANT SELECT ON globex.things TO tenant_globex;`)
	p := f.Start(t, func(c *config.Config) { c.Backend.PoolSize = 2; c.Pool.MaxPreparedStatements = 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	connect := func(tenant string) *pgconn.PgConn {
		c, err := pgconn.Connect(ctx, p.TenantURL(tenant))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	one := func(c *pgconn.PgConn, name string, args ...string) string {
		t.Helper()
		params := make([][]byte, len(args))
		for i, a := range args {
			params[i] = []byte(a)
		}
		res := c.ExecPrepared(ctx, name, params, nil, nil).Read()
		if res.Err != nil {
			t.Fatalf("execute %s: %v", name, res.Err)
		}
		if len(res.Rows) != 1 {
			t.Fatalf("execute %s: %d rows", name, len(res.Rows))
		}
		return string(res.Rows[0][0])
	}
	prepare := func(c *pgconn.PgConn, name, sql string) {
		t.Helper()
		if _, err := c.Prepare(ctx, name, sql, nil); err != nil {
			t.Fatalf("prepare %s: %v", name, err)
		}
	}
	a1, a2, g := connect("acme"), connect("acme"), connect("globex")

	t.Run("two tenants prepare the same name and text", func(t *testing.T) {
		prepare(a1, "s", "select v::text from things")
		prepare(g, "s", "select v::text from things")
		for i := 0; i < 6; i++ { // leases move between the two backends
			if v := one(a1, "s"); v != "42" {
				t.Fatalf("acme got %q", v)
			}
			if v := one(g, "s"); v != "globex-thing" {
				t.Fatalf("globex got %q", v)
			}
		}
	})
	t.Run("different result types per tenant", func(t *testing.T) {
		prepare(a2, "typed", "select v from things")
		prepare(g, "typed", "select v from things")
		for i := 0; i < 4; i++ {
			if v := one(a2, "typed"); v != "42" {
				t.Fatalf("acme got %q", v)
			}
			if v := one(g, "typed"); v != "globex-thing" {
				t.Fatalf("globex got %q", v)
			}
		}
	})
	t.Run("same name with new text after close", func(t *testing.T) {
		prepare(a1, "r", "select 'first'")
		if v := one(a1, "r"); v != "first" {
			t.Fatal(v)
		}
		if err := a1.Deallocate(ctx, "r"); err != nil {
			t.Fatal(err)
		}
		prepare(a1, "r", "select 'second'")
		if v := one(a1, "r"); v != "second" {
			t.Fatalf("after re-prepare: %q", v)
		}
	})
	t.Run("eviction then reuse", func(t *testing.T) {
		for i := 0; i < 8; i++ { // more than max_prepared_statements per backend
			prepare(a2, fmt.Sprintf("e%d", i), fmt.Sprintf("select %d::text", i))
		}
		for i := 0; i < 8; i++ {
			if v := one(a2, fmt.Sprintf("e%d", i)); v != fmt.Sprint(i) {
				t.Fatalf("e%d = %q", i, v)
			}
		}
	})
	t.Run("parse error then sync then reuse", func(t *testing.T) {
		_, err := a1.Prepare(ctx, "broken", "select from nowhere_at_all", nil)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42P01" {
			t.Fatalf("want 42P01, got %v", err)
		}
		res := a1.ExecPrepared(ctx, "broken", nil, nil, nil).Read()
		if !errors.As(res.Err, &pe) || pe.Code != "26000" {
			t.Fatalf("a failed Parse must leave no statement: %v", res.Err)
		}
		prepare(a1, "broken", "select 'fixed'")
		if v := one(a1, "broken"); v != "fixed" {
			t.Fatal(v)
		}
	})
	t.Run("describe of a statement prepared on another backend", func(t *testing.T) {
		prepare(a1, "d", "select v, v::text as t from things where v > $1")
		for i := 0; i < 4; i++ {
			sd, err := a1.Prepare(ctx, "", "select 1", nil) // moves leases around
			if err != nil || sd == nil {
				t.Fatal(err)
			}
			res := a1.ExecPrepared(ctx, "d", [][]byte{[]byte("0")}, nil, nil).Read()
			if res.Err != nil || len(res.FieldDescriptions) != 2 {
				t.Fatalf("describe/execute on another backend: %v %d", res.Err, len(res.FieldDescriptions))
			}
		}
	})
	t.Run("DEALLOCATE ALL", func(t *testing.T) {
		prepare(g, "z", "select 'z'")
		if err := g.Exec(ctx, "DEALLOCATE ALL").Close(); err != nil {
			t.Fatal(err)
		}
		res := g.ExecPrepared(ctx, "z", nil, nil, nil).Read()
		var pe *pgconn.PgError
		if !errors.As(res.Err, &pe) || pe.Code != "26000" {
			t.Fatalf("after DEALLOCATE ALL: %v", res.Err)
		}
		prepare(g, "z", "select 'z2'")
		if v := one(g, "z"); v != "z2" {
			t.Fatal(v)
		}
	})
	t.Run("pipelined batches with several syncs", func(t *testing.T) {
		pl := a2.StartPipeline(ctx)
		pl.SendPrepare("pp", "select $1::int + 1", nil)
		pl.SendQueryPrepared("pp", [][]byte{[]byte("1")}, nil, nil)
		pl.SendPipelineSync()
		pl.SendQueryPrepared("pp", [][]byte{[]byte("10")}, nil, nil)
		pl.SendQueryParams("select tenant from employees limit 1", nil, nil, nil, nil)
		pl.SendPipelineSync()
		pl.SendQueryPrepared("pp", [][]byte{[]byte("100")}, nil, nil)
		pl.SendPipelineSync()
		if err := pl.Flush(); err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			r, err := pl.GetResults()
			if err != nil {
				t.Fatal(err)
			}
			if r == nil {
				break
			}
			switch r := r.(type) {
			case *pgconn.ResultReader:
				res := r.Read()
				if res.Err != nil {
					t.Fatal(res.Err)
				}
				for _, row := range res.Rows {
					got = append(got, string(row[0]))
				}
			case *pgconn.PipelineSync:
				got = append(got, "|")
			}
			if len(got) == 8 {
				break
			}
		}
		if err := pl.Close(); err != nil {
			t.Fatal(err)
		}
		want := "2 | 11 acme | 101 |"
		if fmt.Sprint(got) != "["+want+"]" {
			t.Fatalf("pipeline results %v, want [%s]", got, want)
		}
	})
}

// A migration that changes a prepared statement's result type fails the statement's next use once, as
// on PostgreSQL, and the driver's re-prepare of the same text then works, for every client holding it
// (pgbouncer#1038: there, clients must reconnect after every migration).
func TestStatementOfAChangedResultTypeIsPreparedAfresh(t *testing.T) {
	f := proxytest.NewFixture(t)
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			p := f.Start(t, func(c *config.Config) { c.Pool.Mode = config.PoolMode(mode); c.Backend.PoolSize = 2 })
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			admin, err := f.Cluster.Connect(ctx, proxytest.Database)
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close(ctx)
			col := "extra_" + mode
			t.Cleanup(func() { admin.Exec(context.Background(), "ALTER TABLE acme.employees DROP COLUMN IF EXISTS "+col) })
			// Two clients hold the same statement, so the relay's interned statement outlives either's
			// re-prepare.
			c, err := pgx.Connect(ctx, p.TenantURL("acme"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			other, err := pgx.Connect(ctx, p.TenantURL("acme"))
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close(ctx)
			query := func(c *pgx.Conn) error {
				rows, err := c.Query(ctx, "SELECT * FROM employees WHERE id > $1", 0)
				if err != nil {
					return err
				}
				rows.Close()
				return rows.Err()
			}
			run := func() error { return query(c) }
			if err := run(); err != nil {
				t.Fatal(err)
			}
			if err := query(other); err != nil {
				t.Fatal(err)
			}
			if _, err := admin.Exec(ctx, "ALTER TABLE acme.employees ADD COLUMN "+col+" int"); err != nil {
				t.Fatal(err)
			}
			// pgx drops its cached statement on this error and prepares the text again.
			for i := 0; i < 3; i++ {
				err = run()
				if err == nil {
					break
				}
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != "0A000" {
					t.Fatalf("after the migration: %v", err)
				}
			}
			if err != nil {
				t.Fatalf("the re-prepared statement still fails: %v", err)
			}
			for i := 0; i < 5; i++ {
				if err := run(); err != nil {
					t.Fatalf("run %d after the migration: %v", i, err)
				}
			}
		})
	}
}
