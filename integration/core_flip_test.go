package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// flipSQL reads, inside a transaction, which backend runs it and everything that tells the tenant apart.
const flipSQL = `SELECT pg_backend_pid(), current_user::text, current_setting('tenantproxy.tenant'),
	coalesce(string_agg(DISTINCT tenant, ','), '') FROM employees`

// flipTx runs one explicit transaction of flipSQL on conn in exec mode and returns the backend pid, or an
// error that says what tenant's context the transaction saw instead of tenant's.
func flipTx(ctx context.Context, conn *pgx.Conn, tenant string, mode pgx.QueryExecMode) (int, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	var pid int
	var user, setting, rows string
	if err := tx.QueryRow(ctx, flipSQL, mode).Scan(&pid, &user, &setting, &rows); err != nil {
		return 0, err
	}
	if user != "tenant_"+tenant || setting != tenant || rows != tenant {
		return pid, fmt.Errorf("cross-read: %s's transaction ran as %s with tenant setting %q and saw rows of %q", tenant, user, setting, rows)
	}
	return pid, tx.Commit(ctx)
}

// TestTenFlipsThousandOnOneBackend alternates transactions of acme and globex over a pool of ONE
// backend in transaction pooling, cycling through every pgx exec mode: 10,000 tenant switches on that
// backend and not one transaction sees the other tenant's role, setting or rows. Then two goroutines
// contend for the backend, again in every exec mode, and the same holds.
func TestTenFlipsThousandOnOneBackend(t *testing.T) {
	const total = 10_000
	p := startProxy(t, config.ModeTransaction, func(c *config.Config) { c.Backend.PoolSize = 1 })
	ctx := testContext(t, 60*time.Second)
	tenants := []string{"acme", "globex"}
	conns := []*pgx.Conn{
		connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeCacheStatement),
		connectPgx(t, ctx, p.TenantURL("globex"), pgx.QueryExecModeCacheStatement),
	}

	t.Run("Alternating", func(t *testing.T) {
		flips, lastPID, lastTenant := 0, 0, ""
		for i := 0; i < total; i++ {
			k := i % 2
			mode := execModes[(i/2)%len(execModes)].mode
			pid, err := flipTx(ctx, conns[k], tenants[k], mode)
			if err != nil {
				t.Fatalf("transaction %d (%s, %s): %v", i, tenants[k], execModes[(i/2)%len(execModes)].name, err)
			}
			if lastPID != 0 && pid != lastPID {
				t.Fatalf("transaction %d ran on backend %d, the one before on %d: pool_size 1 has one backend", i, pid, lastPID)
			}
			if lastTenant != "" && lastTenant != tenants[k] {
				flips++
			}
			lastPID, lastTenant = pid, tenants[k]
		}
		if flips != total-1 {
			t.Fatalf("%d tenant flips on the backend, want %d", flips, total-1)
		}
	})

	t.Run("Contending", func(t *testing.T) {
		const each = 1000
		var wg sync.WaitGroup
		errs := make(chan error, len(conns))
		for k := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					if _, err := flipTx(ctx, conns[k], tenants[k], execModes[i%len(execModes)].mode); err != nil {
						errs <- fmt.Errorf("%s transaction %d: %w", tenants[k], i, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}
