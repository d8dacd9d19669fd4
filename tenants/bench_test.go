package tenants

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// benchTenants is how many tenants BenchmarkLifecycle1000Tenants provisions.
const benchTenants = 1000

// threeStatements is a migration rolled across every schema; n makes its names unique.
func threeStatements(n int) string {
	return fmt.Sprintf(`ALTER TABLE employees ADD COLUMN phone%[1]d text;
CREATE TABLE audit_log%[1]d (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), actor text, action text NOT NULL);
CREATE INDEX audit_log%[1]d_at_idx ON audit_log%[1]d (at);
`, n)
}

// BenchmarkLifecycle1000Tenants measures, on a fresh database of the test cluster:
//
//	create-s      `tenant create` of 1,000 tenants, one Main call (and admin connection) each, as a shell
//	              loop would run them, each applying the three sample migrations
//	create-bare-s the same without migration files: schema, role, grants and catalog row only
//	create-p50-ms, create-bare-p50-ms  the median of one `tenant create`, which shows through the noise of
//	              a shared machine what a quiet one would take
//	migrate-p4-s  `migrate up --parallel 4` of a three-statement migration across the 1,000 schemas
//	migrate-p1-s  the same kind of migration (another table) with --parallel 1, for comparison
//	doctor-s      Doctor over the 1,000 tenants (what serve runs at start)
//	list-s        `tenant list` of the 1,000 tenants, with their sizes
//
// Run it with: go test ./tenants -run '^$' -bench Lifecycle1000 -benchtime 1x
func BenchmarkLifecycle1000Tenants(b *testing.B) {
	var create, createBare, migrateP4, migrateP1, doctor, list time.Duration
	var createOne, bareOne []time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := newEnv(b, sampleMigrations(b))
		e.must("init")
		b.StartTimer()

		start := time.Now()
		createOne = append(createOne, createEach(e)...)
		create += time.Since(start)

		e.writeMigration("0004_audit_log.sql", threeStatements(4))
		start = time.Now()
		e.must("migrate", "up", "--parallel", "4")
		migrateP4 += time.Since(start)
		if n := e.queryInt("SELECT count(*) FROM tenantproxy.migrations WHERE version = 4"); n != benchTenants {
			b.Fatalf("%d tenants migrated, want %d", n, benchTenants)
		}

		e.writeMigration("0005_audit_log.sql", threeStatements(5))
		start = time.Now()
		e.must("migrate", "up", "--parallel", "1")
		migrateP1 += time.Since(start)
		if n := e.queryInt("SELECT count(*) FROM tenantproxy.migrations WHERE version = 5"); n != benchTenants {
			b.Fatalf("%d tenants migrated, want %d", n, benchTenants)
		}

		start = time.Now()
		rep, err := Doctor(context.Background(), e.cfg)
		doctor += time.Since(start)
		if err != nil || len(rep.Failed()) > 0 {
			b.Fatalf("doctor over %d tenants: %v %+v", benchTenants, err, rep.Failed())
		}

		start = time.Now()
		e.must("tenant", "list")
		list += time.Since(start)

		b.StopTimer()
		bare := newEnv(b, nil)
		bare.must("init")
		b.StartTimer()
		start = time.Now()
		bareOne = append(bareOne, createEach(bare)...)
		createBare += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(create.Seconds()/n, "create-s")
	b.ReportMetric(createBare.Seconds()/n, "create-bare-s")
	b.ReportMetric(median(createOne).Seconds()*1000, "create-p50-ms")
	b.ReportMetric(median(bareOne).Seconds()*1000, "create-bare-p50-ms")
	b.ReportMetric(migrateP4.Seconds()/n, "migrate-p4-s")
	b.ReportMetric(migrateP1.Seconds()/n, "migrate-p1-s")
	b.ReportMetric(doctor.Seconds()/n, "doctor-s")
	b.ReportMetric(list.Seconds()/n, "list-s")
}

// createEach runs `tenant create` for benchTenants tenants and returns the time of each.
func createEach(e *testEnv) []time.Duration {
	out := make([]time.Duration, benchTenants)
	for k := range out {
		start := time.Now()
		e.must("tenant", "create", fmt.Sprintf("t%04d", k))
		out[k] = time.Since(start)
	}
	return out
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
