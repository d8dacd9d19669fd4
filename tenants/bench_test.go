package tenants

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// benchTenants is how many tenants BenchmarkLifecycle1000Tenants provisions.
const benchTenants = 1000

// threeStatements is the migration rolled across every schema.
const threeStatements = `ALTER TABLE employees ADD COLUMN phone text;
CREATE TABLE audit_log (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), actor text, action text NOT NULL);
CREATE INDEX audit_log_at_idx ON audit_log (at);
`

// BenchmarkLifecycle1000Tenants measures, on a fresh database of the test cluster:
//
//	create-s      `tenant create` of 1,000 tenants, one Main call (and admin connection) each, as a shell
//	              loop would run them, each applying the three sample migrations
//	create-bare-s the same without migration files: schema, role, grants and catalog row only
//	migrate-p4-s  `migrate up --parallel 4` of a three-statement migration across the 1,000 schemas
//	migrate-p1-s  another three-statement migration with --parallel 1, for comparison
//	doctor-s      Doctor over the 1,000 tenants (what serve runs at start)
//	list-s        `tenant list` of the 1,000 tenants, with their sizes
//
// Run it with: go test ./tenants -run '^$' -bench Lifecycle1000 -benchtime 1x
func BenchmarkLifecycle1000Tenants(b *testing.B) {
	var create, createBare, migrateP4, migrateP1, doctor, list time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := newEnv(b, sampleMigrations(b))
		e.must("init")
		b.StartTimer()

		start := time.Now()
		for k := 0; k < benchTenants; k++ {
			e.must("tenant", "create", fmt.Sprintf("t%04d", k))
		}
		create += time.Since(start)

		e.writeMigration("0004_audit_log.sql", threeStatements)
		start = time.Now()
		e.must("migrate", "up", "--parallel", "4")
		migrateP4 += time.Since(start)
		if n := e.queryInt("SELECT count(*) FROM tenantproxy.migrations WHERE version = 4"); n != benchTenants {
			b.Fatalf("%d tenants migrated, want %d", n, benchTenants)
		}

		e.writeMigration("0005_audit_index.sql", "CREATE INDEX audit_log_actor_idx ON audit_log (actor);\nALTER TABLE audit_log ADD COLUMN ip inet;\nCOMMENT ON TABLE audit_log IS 'who did what';\n")
		start = time.Now()
		e.must("migrate", "up", "--parallel", "1")
		migrateP1 += time.Since(start)

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
		for k := 0; k < benchTenants; k++ {
			bare.must("tenant", "create", fmt.Sprintf("t%04d", k))
		}
		createBare += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(create.Seconds()/n, "create-s")
	b.ReportMetric(createBare.Seconds()/n, "create-bare-s")
	b.ReportMetric(migrateP4.Seconds()/n, "migrate-p4-s")
	b.ReportMetric(migrateP1.Seconds()/n, "migrate-p1-s")
	b.ReportMetric(doctor.Seconds()/n, "doctor-s")
	b.ReportMetric(list.Seconds()/n, "list-s")
}
