package tenants

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Phases of BenchmarkMigrate1000TenantsUnderLoad's query load.
const (
	phaseBefore = iota
	phaseMigrate
	phaseIndex
	phaseDone
)

// BenchmarkMigrate1000TenantsUnderLoad measures, on a fresh database of the test cluster with 1,000
// tenants (an `accounts` table of 100 rows each) while loadClients connections run point SELECTs on
// random tenants' tables (one query at a time each, qualified table names, simple protocol):
//
//	p99-before-ms, p50-before-ms  query latency in a 5s window before any migration
//	migrate-s                     `migrate up --parallel 4` of ALTER TABLE accounts ADD COLUMN (ACCESS
//	                              EXCLUSIVE on every tenant's table), with 3 tenants held by long
//	                              transactions until every other tenant is done and two lock timeouts
//	                              passed (they are retried)
//	p99-migrate-ms, max-migrate-ms  query latency while it runs
//	index-s, p99-index-ms         `migrate up --parallel 4` of a no-transaction file with CREATE INDEX
//	                              CONCURRENTLY across the 1,000 tenants, and the latency meanwhile
//	drift-s                       `migrate status --drift` of the 1,000 tenants (no load)
//
// Run it with: go test ./tenants -run '^$' -bench Migrate1000 -benchtime 1x
func BenchmarkMigrate1000TenantsUnderLoad(b *testing.B) {
	const loadClients = 8
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := newEnv(b, map[string]string{"0001_accounts.sql": "CREATE TABLE accounts (id int PRIMARY KEY, abalance int NOT NULL, filler text);\n" +
			"INSERT INTO accounts SELECT g, g, repeat('x', 80) FROM generate_series(1, 100) g;\n"})
		retries := 1000 // the held tenants retry until their transactions end
		e.cfg.Migrations.Retries = &retries
		e.must("init")
		for k := range benchTenants {
			e.must("tenant", "create", fmt.Sprintf("t%04d", k), "--schema", fmt.Sprintf("t%04d", k))
		}

		var phase atomic.Int32
		lat := make([][4][]time.Duration, loadClients)
		var wg sync.WaitGroup
		var loadErr atomic.Value
		for c := range loadClients {
			conn := e.connect("")
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					p := phase.Load()
					if p == phaseDone {
						return
					}
					sql := fmt.Sprintf("SELECT abalance FROM t%04d.accounts WHERE id = %d", rand.IntN(benchTenants), 1+rand.IntN(100))
					start := time.Now()
					if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
						loadErr.Store(err)
						return
					}
					lat[c][p] = append(lat[c][p], time.Since(start))
				}
			}()
		}
		window := time.After(5 * time.Second)
		<-window

		// Three tenants are held by long transactions while the others migrate.
		var held []*pgx.Conn
		for _, n := range []string{"t0001", "t0500", "t0999"} {
			c := e.connect("")
			if _, err := c.Exec(ctx, "BEGIN; SELECT count(*) FROM "+n+".accounts"); err != nil {
				b.Fatal(err)
			}
			held = append(held, c)
		}
		if n := e.queryInt("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'accounts' AND l.granted AND l.pid = ANY($1)",
			[]int64{int64(held[0].PgConn().PID()), int64(held[1].PgConn().PID()), int64(held[2].PgConn().PID())}); n != len(held) {
			b.Fatalf("%d held locks on accounts, want %d", n, len(held))
		}
		e.writeMigration("0002_add_note.sql", "ALTER TABLE accounts ADD COLUMN note text;\n")
		phase.Store(phaseMigrate)
		b.StartTimer()
		start := time.Now()
		done := make(chan result, 1)
		go func() { done <- e.run("migrate", "up", "--parallel", "4") }()
		deadline := time.Now().Add(10 * time.Minute)
		// Held until the others are done and at least two lock timeouts passed, so they are retried.
		lockTimeout, _ := migrationTimeouts(e.cfg)
		for e.atVersion(2) < benchTenants-len(held) || time.Since(start) < 2*lockTimeout {
			if time.Now().After(deadline) {
				b.Fatal("the unheld tenants did not migrate within 10 minutes")
			}
			time.Sleep(50 * time.Millisecond)
		}
		for k, c := range held {
			if st := c.PgConn().TxStatus(); st != 'T' {
				b.Fatalf("held transaction %d is not open: %q", k, st)
			}
			if _, err := c.Exec(ctx, "COMMIT"); err != nil {
				b.Fatalf("held transaction %d: %v", k, err)
			}
		}
		r := <-done
		migrate := time.Since(start)
		if r.code != ExitOK || !strings.Contains(r.stdout, "retried") {
			b.Fatalf("migrate up: %v", r.stdout[max(0, len(r.stdout)-2000):]+r.stderr)
		}

		e.writeMigration("0003_index.sql", "-- tenantproxy: no-transaction\nCREATE INDEX CONCURRENTLY accounts_abalance_idx ON accounts (abalance);\n")
		phase.Store(phaseIndex)
		start = time.Now()
		r = e.run("migrate", "up", "--parallel", "4")
		index := time.Since(start)
		b.StopTimer()
		phase.Store(phaseDone)
		wg.Wait()
		if err := loadErr.Load(); err != nil {
			b.Fatal(err)
		}
		if r.code != ExitOK || e.atVersion(3) != benchTenants {
			b.Fatalf("migrate up of the index: %d at version 3: %s", e.atVersion(3), r.stderr)
		}
		if n := e.queryInt("SELECT count(*) FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid WHERE c.relname = 'accounts_abalance_idx' AND x.indisvalid"); n != benchTenants {
			b.Fatalf("%d valid indexes, want %d", n, benchTenants)
		}
		start = time.Now()
		r = e.run("migrate", "status", "--drift")
		drift := time.Since(start)
		if r.code != ExitOK || !strings.Contains(r.stdout, "drift: 0 of 1000 tenants differ") {
			b.Fatalf("migrate status --drift: %s", r.stderr)
		}
		b.ReportMetric(drift.Seconds(), "drift-s")
		var all [4][]time.Duration
		for c := range lat {
			for p := range all {
				all[p] = append(all[p], lat[c][p]...)
			}
		}
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		b.ReportMetric(ms(quantile(all[phaseBefore], 0.5)), "p50-before-ms")
		b.ReportMetric(ms(quantile(all[phaseBefore], 0.99)), "p99-before-ms")
		b.ReportMetric(migrate.Seconds(), "migrate-s")
		b.ReportMetric(ms(quantile(all[phaseMigrate], 0.5)), "p50-migrate-ms")
		b.ReportMetric(ms(quantile(all[phaseMigrate], 0.99)), "p99-migrate-ms")
		b.ReportMetric(ms(quantile(all[phaseMigrate], 1)), "max-migrate-ms")
		b.ReportMetric(index.Seconds(), "index-s")
		b.ReportMetric(ms(quantile(all[phaseIndex], 0.99)), "p99-index-ms")
		b.ReportMetric(float64(len(all[phaseBefore])+len(all[phaseMigrate])+len(all[phaseIndex])), "queries")
	}
}

// quantile is the q-quantile of ds (1: the maximum).
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}
