package tenants

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/tenantproxy/tenantproxy/config"
)

// numericNames is a migration that fails on a tenant whose items hold a name that is not a number.
const numericNames = "ALTER TABLE items ALTER COLUMN name TYPE int USING name::int;\n"

// tenNumericTenants creates t01..t10 with numeric item names, except bad (a data shape the next
// migration cannot take).
func tenNumericTenants(t *testing.T, bad ...string) *testEnv {
	e := newEnv(t, map[string]string{"0001_create_items.sql": itemsMigration})
	e.must("init")
	for i := 1; i <= 10; i++ {
		n := fmt.Sprintf("t%02d", i)
		e.must("tenant", "create", n, "--schema", n)
		e.exec(fmt.Sprintf("INSERT INTO %s.items (name) VALUES ('42')", n))
	}
	for _, n := range bad {
		e.exec(fmt.Sprintf("INSERT INTO %s.items (name) VALUES ('forty-two')", n))
	}
	e.writeMigration("0002_numeric_names.sql", numericNames)
	return e
}

func (e *testEnv) atVersion(v int) int {
	return e.queryInt("SELECT count(*) FROM tenantproxy.migrations WHERE version = $1", v)
}

func TestMigrateUpCanaryStopsAfterTheCanaryAndNamesTheFailingTenant(t *testing.T) {
	e := tenNumericTenants(t, "t02")
	r := e.run("migrate", "up", "--canary", "3", "--parallel", "2")
	if r.code != ExitFailure ||
		!strings.Contains(r.stderr, `t02: error: 0002_numeric_names.sql: ERROR: invalid input syntax for type integer: "forty-two" (SQLSTATE 22P02)`) ||
		!strings.Contains(r.stdout, "stopped after the canary; 7 tenants not started") ||
		!strings.Contains(r.stdout, "2 migrated, 0 up to date, 1 failed, 7 not started") {
		t.Fatalf("migrate up --canary 3: %v", r)
	}
	if n := e.atVersion(2); n != 2 {
		t.Fatalf("%d tenants at version 2, want the 2 good canaries", n)
	}
	for i := 4; i <= 10; i++ {
		if v := e.versionOf(fmt.Sprintf("t%02d", i)); v != 1 {
			t.Fatalf("t%02d, outside the canary, is at version %d", i, v)
		}
	}
}

func TestMigrateUpWavesStopAtTheFirstFailureRateAboveMaxFailures(t *testing.T) {
	cases := []struct {
		name        string
		args        []string
		bad         []string
		wantVersion int // tenants at version 2 afterwards
		wantOut     string
		code        int
	}{
		{"one failure in wave 3 of 5 stops it", []string{"--wave", "20"}, []string{"t05"}, 5,
			"stopped after wave 3 of 5: 16.7% of the tenants attempted failed, above --max-failures 0%; 4 tenants not started", ExitFailure},
		{"a tolerated failure rate goes on", []string{"--wave", "20", "--max-failures", "20"}, []string{"t05"}, 9, "", ExitFailure},
		{"canary then waves", []string{"--canary", "1", "--wave", "30"}, nil, 10, "", ExitOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := tenNumericTenants(t, c.bad...)
			r := e.run(append([]string{"migrate", "up"}, c.args...)...)
			if r.code != c.code || !strings.Contains(r.stderr, c.wantOut) {
				t.Fatalf("migrate up %v: %v\nwant %q", c.args, r, c.wantOut)
			}
			if n := e.atVersion(2); n != c.wantVersion {
				t.Fatalf("%d tenants at version 2, want %d: %v", n, c.wantVersion, r)
			}
		})
	}
}

func TestMigrateUpOrderPutsMigrationGroupsFirstThenSmallTenantsAndHonoursTenantsAndExclude(t *testing.T) {
	e := tenNumericTenants(t)
	// t01 is the largest; t10 is in the group that goes first.
	e.exec("INSERT INTO t01.items (name) SELECT '7' FROM generate_series(1, 20000); ANALYZE t01.items")
	e.cfg.Tenants = append(e.cfg.Tenants, config.Tenant{Name: "t10", Schema: "t10", MigrationGroup: "a_first"})
	r := e.must("migrate", "up", "--canary", "2", "--exclude", "t02")
	if !strings.Contains(r.stdout, "t10: applied") || !strings.Contains(r.stdout, "t03: applied") || e.atVersion(2) != 2 {
		t.Fatalf("canary of 2 should be t10 (group) and t03 (t02 excluded): %v", r)
	}
	r = e.must("migrate", "up", "--tenants", "t01,t02")
	if !strings.Contains(r.stdout, "2 tenants: 2 migrated") || e.versionOf("t01") != 2 || e.versionOf("t04") != 1 {
		t.Fatalf("--tenants t01,t02: %v", r)
	}
	if r := e.run("migrate", "up", "--tenants", "t01,nobody"); r.code != ExitFailure || !strings.Contains(r.stderr, `tenant "nobody" does not exist`) {
		t.Fatalf("--tenants with an unknown name: %v", r)
	}
	e.must("migrate", "up", "--wave", "50")
	var status struct {
		Versions map[string]int `json:"versions"`
	}
	if err := json.Unmarshal([]byte(e.must("migrate", "status", "--json").stdout), &status); err != nil {
		t.Fatal(err)
	}
	if status.Versions["2"] != 10 || len(status.Versions) != 1 {
		t.Fatalf("versions after the rollout: %v", status.Versions)
	}
}

func TestMigrateStatusCountsTenantsPerVersion(t *testing.T) {
	e := tenNumericTenants(t)
	e.must("migrate", "up", "--canary", "3")
	r := e.must("migrate", "status")
	if !strings.Contains(r.stdout, "version 0002: 3 tenants\nversion 0001: 7 tenants\n") {
		t.Fatalf("migrate status: %v", r)
	}
}
