package integration

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// TestPgxEveryExecModeInBothPoolModes runs CRUD, transactions, a rollback, an error mid-transaction and
// COPY both ways through the proxy with every pgx QueryExecMode, while a session of another tenant on
// the same pool checks that it sees none of it.
func TestPgxEveryExecModeInBothPoolModes(t *testing.T) {
	for _, pm := range poolModes {
		t.Run(string(pm), func(t *testing.T) {
			p := startProxy(t, pm, func(c *config.Config) { c.Backend.PoolSize = 2 })
			for _, em := range execModes {
				t.Run(em.name, func(t *testing.T) {
					ctx := testContext(t, 60*time.Second)
					s := &pgxScenario{
						t: t, ctx: ctx, mark: marker(t),
						a: connectPgx(t, ctx, p.TenantURL("acme"), em.mode),
						b: connectPgx(t, ctx, p.TenantURL("globex"), em.mode),
					}
					wantIdentity(t, ctx, s.a, "acme")
					wantIdentity(t, ctx, s.b, "globex")
					t.Run("CRUD", s.crud)
					t.Run("CommittedTransaction", s.commit)
					t.Run("Rollback", s.rollback)
					t.Run("ErrorMidTransaction", s.errorMidTransaction)
					t.Run("CopyFromAndTo", s.copyBothWays)
					wantIdentity(t, ctx, s.a, "acme")
					wantIdentity(t, ctx, s.b, "globex")
				})
			}
		})
	}
}

// pgxScenario is one run of the pgx scenario: a is acme's session, b is globex's.
type pgxScenario struct {
	t    *testing.T
	ctx  context.Context
	mark string
	a, b *pgx.Conn
}

// count returns how many employees named name conn sees.
func (s *pgxScenario) count(t *testing.T, conn *pgx.Conn, name string) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(s.ctx, "SELECT count(*) FROM employees WHERE name = $1", name).Scan(&n); err != nil {
		t.Fatalf("count %q: %v", name, err)
	}
	return n
}

// wantOnlyA fails unless acme sees n employees named name and globex sees none.
func (s *pgxScenario) wantOnlyA(t *testing.T, name string, n int) {
	t.Helper()
	if got := s.count(t, s.a, name); got != n {
		t.Fatalf("acme sees %d rows named %q, want %d", got, name, n)
	}
	if got := s.count(t, s.b, name); got != 0 {
		t.Fatalf("globex sees %d rows named %q of acme", got, name)
	}
}

func (s *pgxScenario) crud(t *testing.T) {
	name := s.mark + "-crud"
	var id int
	var tenant string
	err := s.a.QueryRow(s.ctx, "INSERT INTO employees (name, email) VALUES ($1, $2) RETURNING id, tenant", name, "crud@acme.example").Scan(&id, &tenant)
	if err != nil {
		t.Fatalf("insert: %v", err)
	}
	if tenant != "acme" {
		t.Fatalf("inserted row has tenant %q (the injected setting), want acme", tenant)
	}
	s.wantOnlyA(t, name, 1)
	var email string
	if err := s.a.QueryRow(s.ctx, "SELECT email FROM employees WHERE id = $1", id).Scan(&email); err != nil || email != "crud@acme.example" {
		t.Fatalf("select by id: %q, %v", email, err)
	}
	tag, err := s.a.Exec(s.ctx, "UPDATE employees SET email = $1 WHERE id = $2", "changed@acme.example", id)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("update: %v rows, %v", tag.RowsAffected(), err)
	}
	tag, err = s.b.Exec(s.ctx, "UPDATE employees SET email = 'stolen' WHERE name = $1", name)
	if err != nil || tag.RowsAffected() != 0 {
		t.Fatalf("globex updating acme's row: %v rows, %v", tag.RowsAffected(), err)
	}
	tag, err = s.a.Exec(s.ctx, "DELETE FROM employees WHERE id = $1", id)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("delete: %v rows, %v", tag.RowsAffected(), err)
	}
	s.wantOnlyA(t, name, 0)
}

func (s *pgxScenario) commit(t *testing.T) {
	name := s.mark + "-commit"
	tx, err := s.a.Begin(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := tx.Exec(s.ctx, "INSERT INTO employees (name, email) VALUES ($1, $2)", name, fmt.Sprintf("c%d@acme.example", i)); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
	}
	// globex works on the pool while acme's transaction is open.
	if got := s.count(t, s.b, name); got != 0 {
		t.Fatalf("globex sees %d uncommitted rows of acme", got)
	}
	var inTx int
	if err := tx.QueryRow(s.ctx, "SELECT count(*) FROM employees WHERE name = $1", name).Scan(&inTx); err != nil || inTx != 3 {
		t.Fatalf("count inside the transaction: %d, %v", inTx, err)
	}
	if err := tx.Commit(s.ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	s.wantOnlyA(t, name, 3)
}

func (s *pgxScenario) rollback(t *testing.T) {
	name := s.mark + "-rollback"
	tx, err := s.a.Begin(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(s.ctx, "INSERT INTO employees (name, email) VALUES ($1, 'r@acme.example')", name); err != nil {
		t.Fatalf("insert: %v", err)
	}
	if err := tx.Rollback(s.ctx); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	s.wantOnlyA(t, name, 0)
}

func (s *pgxScenario) errorMidTransaction(t *testing.T) {
	name := s.mark + "-error"
	tx, err := s.a.Begin(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(s.ctx, "INSERT INTO employees (name, email) VALUES ($1, 'e@acme.example')", name); err != nil {
		t.Fatalf("insert: %v", err)
	}
	_, err = tx.Exec(s.ctx, "SELECT 1 / (count(*) - count(*)) FROM employees")
	if got := sqlstate(err); got != "22012" {
		t.Fatalf("division by zero: want SQLSTATE 22012, got %q (%v)", got, err)
	}
	_, err = tx.Exec(s.ctx, "SELECT count(*) FROM employees")
	if got := sqlstate(err); got != "25P02" {
		t.Fatalf("statement in an aborted transaction: want SQLSTATE 25P02, got %q (%v)", got, err)
	}
	if err := tx.Rollback(s.ctx); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	s.wantOnlyA(t, name, 0)
	wantIdentity(t, s.ctx, s.a, "acme")
}

func (s *pgxScenario) copyBothWays(t *testing.T) {
	const n = 100
	name := s.mark + "-copy"
	rows := make([][]any, n)
	for i := range rows {
		rows[i] = []any{name, fmt.Sprintf("copy%03d@acme.example", i)}
	}
	copied, err := s.a.CopyFrom(s.ctx, pgx.Identifier{"employees"}, []string{"name", "email"}, pgx.CopyFromRows(rows))
	if err != nil || copied != n {
		t.Fatalf("CopyFrom: %d rows, %v", copied, err)
	}
	s.wantOnlyA(t, name, n)

	var out bytes.Buffer
	tag, err := s.a.PgConn().CopyTo(s.ctx, &out,
		fmt.Sprintf("COPY (SELECT email, tenant FROM employees WHERE name = '%s' ORDER BY email) TO STDOUT", name))
	if err != nil || tag.RowsAffected() != n {
		t.Fatalf("CopyTo: %d rows, %v", tag.RowsAffected(), err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != n || lines[0] != "copy000@acme.example\tacme" || lines[n-1] != fmt.Sprintf("copy%03d@acme.example\tacme", n-1) {
		t.Fatalf("COPY TO STDOUT gave %d lines, first %q", len(lines), lines[0])
	}
	out.Reset()
	if _, err := s.b.PgConn().CopyTo(s.ctx, &out, "COPY employees (tenant) TO STDOUT"); err != nil {
		t.Fatalf("globex CopyTo: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if line != "globex" {
			t.Fatalf("globex's COPY TO STDOUT of its whole table has a row of %q", line)
		}
	}
}

// TestPgxListenNotifyInSessionMode checks that notifications reach a listening session-mode client, from
// another session of the tenant and from itself.
func TestPgxListenNotifyInSessionMode(t *testing.T) {
	p := startProxy(t, "session", nil)
	ctx := testContext(t, 30*time.Second)
	listener := connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeCacheStatement)
	notifier := connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeCacheStatement)
	if _, err := listener.Exec(ctx, "LISTEN hr_events"); err != nil {
		t.Fatalf("LISTEN: %v", err)
	}
	for _, c := range []struct {
		from    string
		conn    *pgx.Conn
		payload string
	}{
		{"another session", notifier, "hired"},
		{"the listener itself", listener, "promoted"},
	} {
		if _, err := c.conn.Exec(ctx, "NOTIFY hr_events, '"+c.payload+"'"); err != nil {
			t.Fatalf("NOTIFY from %s: %v", c.from, err)
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := listener.WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatalf("notification from %s: %v", c.from, err)
		}
		if n.Channel != "hr_events" || n.Payload != c.payload {
			t.Fatalf("notification from %s: got %s %q, want hr_events %q", c.from, n.Channel, n.Payload, c.payload)
		}
	}
	if _, err := listener.Exec(ctx, "UNLISTEN *"); err != nil {
		t.Fatalf("UNLISTEN: %v", err)
	}
	wantIdentity(t, ctx, listener, "acme")
}
