package integration

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/lib/pq"
)

// TestLibPQInBothPoolModes runs CRUD, transactions, an error mid-transaction and COPY IN through the
// proxy with lib/pq under database/sql.
func TestLibPQInBothPoolModes(t *testing.T) {
	for _, pm := range poolModes {
		t.Run(string(pm), func(t *testing.T) {
			p := startProxy(t, pm, nil)
			ctx := testContext(t, 60*time.Second)
			mark := marker(t)
			a := openPQ(t, p.TenantURL("acme"))
			b := openPQ(t, p.TenantURL("globex"))
			count := func(t *testing.T, db *sql.DB, name string) int {
				t.Helper()
				var n int
				if err := db.QueryRowContext(ctx, "SELECT count(*) FROM employees WHERE name = $1", name).Scan(&n); err != nil {
					t.Fatalf("count %q: %v", name, err)
				}
				return n
			}
			wantOnlyA := func(t *testing.T, name string, n int) {
				t.Helper()
				if got := count(t, a, name); got != n {
					t.Fatalf("acme sees %d rows named %q, want %d", got, name, n)
				}
				if got := count(t, b, name); got != 0 {
					t.Fatalf("globex sees %d rows named %q of acme", got, name)
				}
			}

			t.Run("CRUD", func(t *testing.T) {
				name := mark + "-crud"
				var id int
				var tenant string
				if err := a.QueryRowContext(ctx, "INSERT INTO employees (name, email) VALUES ($1, $2) RETURNING id, tenant", name, "pq@acme.example").Scan(&id, &tenant); err != nil {
					t.Fatalf("insert: %v", err)
				}
				if tenant != "acme" {
					t.Fatalf("inserted row has tenant %q, want acme", tenant)
				}
				wantOnlyA(t, name, 1)
				res, err := a.ExecContext(ctx, "UPDATE employees SET email = $1 WHERE id = $2", "pq2@acme.example", id)
				if n, _ := rowsAffected(res); err != nil || n != 1 {
					t.Fatalf("update: %d rows, %v", n, err)
				}
				res, err = a.ExecContext(ctx, "DELETE FROM employees WHERE id = $1", id)
				if n, _ := rowsAffected(res); err != nil || n != 1 {
					t.Fatalf("delete: %d rows, %v", n, err)
				}
				wantOnlyA(t, name, 0)
			})

			t.Run("CommitAndRollback", func(t *testing.T) {
				for _, commit := range []bool{true, false} {
					name := fmt.Sprintf("%s-tx-%v", mark, commit)
					tx, err := a.BeginTx(ctx, nil)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := tx.ExecContext(ctx, "INSERT INTO employees (name, email) VALUES ($1, 'tx@acme.example')", name); err != nil {
						t.Fatalf("insert: %v", err)
					}
					want := 0
					if commit {
						want = 1
						err = tx.Commit()
					} else {
						err = tx.Rollback()
					}
					if err != nil {
						t.Fatalf("end transaction (commit %v): %v", commit, err)
					}
					wantOnlyA(t, name, want)
				}
			})

			t.Run("ErrorMidTransaction", func(t *testing.T) {
				name := mark + "-error"
				tx, err := a.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.ExecContext(ctx, "INSERT INTO employees (name, email) VALUES ($1, 'e@acme.example')", name); err != nil {
					t.Fatalf("insert: %v", err)
				}
				if _, err := tx.ExecContext(ctx, "SELECT no_such_column FROM employees"); sqlstate(err) != "42703" {
					t.Fatalf("undefined column: want SQLSTATE 42703, got %q (%v)", sqlstate(err), err)
				}
				if _, err := tx.ExecContext(ctx, "SELECT 1"); sqlstate(err) != "25P02" {
					t.Fatalf("statement in an aborted transaction: want SQLSTATE 25P02, got %q (%v)", sqlstate(err), err)
				}
				if err := tx.Rollback(); err != nil {
					t.Fatalf("rollback: %v", err)
				}
				wantOnlyA(t, name, 0)
			})

			t.Run("CopyIn", func(t *testing.T) {
				const n = 50
				name := mark + "-copy"
				tx, err := a.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				stmt, err := tx.PrepareContext(ctx, pq.CopyIn("employees", "name", "email"))
				if err != nil {
					t.Fatalf("prepare COPY: %v", err)
				}
				for i := 0; i < n; i++ {
					if _, err := stmt.ExecContext(ctx, name, fmt.Sprintf("copy%d@acme.example", i)); err != nil {
						t.Fatalf("copy row %d: %v", i, err)
					}
				}
				if _, err := stmt.ExecContext(ctx); err != nil {
					t.Fatalf("end COPY: %v", err)
				}
				if err := stmt.Close(); err != nil {
					t.Fatalf("close COPY: %v", err)
				}
				if err := tx.Commit(); err != nil {
					t.Fatalf("commit: %v", err)
				}
				wantOnlyA(t, name, n)
				var tenants string
				if err := a.QueryRowContext(ctx, "SELECT string_agg(DISTINCT tenant, ',') FROM employees WHERE name = $1", name).Scan(&tenants); err != nil || tenants != "acme" {
					t.Fatalf("copied rows are of tenant %q (%v), want acme", tenants, err)
				}
			})
		})
	}
}

// openPQ opens a database/sql handle of lib/pq with one connection, closed when the test ends.
func openPQ(t *testing.T, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("lib/pq connect %s: %v", redact(url), err)
	}
	return db
}

// rowsAffected is res.RowsAffected, tolerating a nil res after an error.
func rowsAffected(res sql.Result) (int64, error) {
	if res == nil {
		return -1, nil
	}
	return res.RowsAffected()
}
