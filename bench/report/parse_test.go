package main

import (
	"math"
	"os"
	"strings"
	"testing"
)

func openTestdata(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestParseTenantsReadsEveryResultLineOfACapturedRun(t *testing.T) {
	run, err := ParseTenants(openTestdata(t, "tenants-noisy.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Rows) != 18 { // 3 targets x 2 modes x 3 groups (all, noisy, quiet)
		t.Fatalf("rows = %d, want 18", len(run.Rows))
	}
	if !strings.HasPrefix(run.Header, "# tenants=3 ") {
		t.Errorf("header = %q", run.Header)
	}
	if got := strings.Join(run.Modes(), " "); got != "simple extended" {
		t.Errorf("modes = %q", got)
	}
	tests := []struct {
		target, mode, group string
		want                TenantsRow
	}{
		{"tenantproxy", "simple", "quiet", TenantsRow{Target: "tenantproxy", Mode: "simple", Group: "quiet", Tenants: 2, Clients: 6, TPS: 7669,
			P50: 0.362, P99: 6.259, P999: 38.182, TenantMin: 3738, TenantMedian: 3931, TenantMax: 3931, Jain: 0.999}},
		{"pgbouncer", "extended", "all", TenantsRow{Target: "pgbouncer", Mode: "extended", Group: "all", Tenants: 3, Clients: 10, TPS: 10146,
			P50: 0.598, P99: 8.528, P999: 32.309, TenantMin: 2566, TenantMedian: 3596, TenantMax: 3984, Jain: 0.970}},
		{"direct", "simple", "noisy", TenantsRow{Target: "direct", Mode: "simple", Group: "noisy", Tenants: 1, Clients: 4, TPS: 12354,
			P50: 0.248, P99: 1.541, P999: 4.211, TenantMin: 12354, TenantMedian: 12354, TenantMax: 12354, Jain: 1}},
	}
	for _, tc := range tests {
		got, ok := run.Find(tc.target, tc.mode, tc.group)
		if !ok {
			t.Errorf("%s %s %s: not found", tc.target, tc.mode, tc.group)
			continue
		}
		if got != tc.want {
			t.Errorf("%s %s %s:\n got %+v\nwant %+v", tc.target, tc.mode, tc.group, got, tc.want)
		}
	}
	if _, ok := run.Find("tenantproxy", "prepared", "all"); ok {
		t.Error("found a mode the run did not have")
	}
}

func TestParseTenantsLines(t *testing.T) {
	const good = "tenantproxy simple group=all tenants=1000 clients=1000 tps=8640 p50_ms=1.0 p99_ms=2.5 p999_ms=9.9 " +
		"tenant_tps_min=0.0 tenant_tps_median=8.0 tenant_tps_max=12.0 jain=0.912 starved=3 errors=2 connect_errors=1 cross_reads=4"
	tests := []struct {
		name  string
		in    string
		rows  int
		check func(t *testing.T, r TenantsRow)
	}{
		{"counters", good, 1, func(t *testing.T, r TenantsRow) {
			if r.Starved != 3 || r.Errors != 2 || r.ConnectErrors != 1 || r.Cross != 4 || r.Tenants != 1000 || r.TenantMin != 0 {
				t.Errorf("%+v", r)
			}
		}},
		{"no tenant ran: jain and spread NaN", strings.NewReplacer("jain=0.912", "jain=NaN", "tenant_tps_min=0.0", "tenant_tps_min=NaN").Replace(good), 1,
			func(t *testing.T, r TenantsRow) {
				if !math.IsNaN(r.Jain) || !math.IsNaN(r.TenantMin) {
					t.Errorf("%+v", r)
				}
			}},
		{"a missing field drops the line", strings.Replace(good, " p99_ms=2.5", "", 1), 0, nil},
		{"a value that is no number drops the line", strings.Replace(good, "tps=8640", "tps=lots", 1), 0, nil},
		{"summary lines of tenants.sh are not results", "ratio tenantproxy/pgbouncer simple tps: 1.04\np99 ms (quiet) tenantproxy 6.259 pgbouncer 6.410\nsetup: 3 tenant schemas", 0, nil},
		{"stderr error lines are not results", "tenantproxy simple group=all last error: ERROR: boom (SQLSTATE 57P01)", 0, nil},
		{"empty input", "", 0, nil},
		{"a very long garbage line", strings.Repeat("x", 200000) + "\n" + good, 1, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			run, err := ParseTenants(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if len(run.Rows) != tc.rows {
				t.Fatalf("rows = %d, want %d", len(run.Rows), tc.rows)
			}
			if tc.check != nil {
				tc.check(t, run.Rows[0])
			}
		})
	}
}

func TestParseIdleReadsBothProxies(t *testing.T) {
	rows, err := ParseIdle(openTestdata(t, "idle.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := []IdleRow{
		{Target: "pgbouncer", Held: 50, RSSBefore: 4528, RSSHeld: 4828, KiBPerClient: 6.00},
		{Target: "tenantproxy", Held: 50, RSSBefore: 20292, RSSHeld: 21756, KiBPerClient: 29.28},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows = %+v", rows)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, rows[i], want[i])
		}
	}
	// A proxy that held nothing prints a sentence, not a figure.
	rows, _ = ParseIdle(strings.NewReader("tenantproxy: no connection held: dial tcp: refused\n"))
	if len(rows) != 0 {
		t.Errorf("a failed hold parsed as %+v", rows)
	}
}

func TestParseABReadsMediansRatiosAndModes(t *testing.T) {
	// testdata/ab.txt holds two ab.sh runs (simple, then extended); ParseAB reads a file of one run, so
	// split it the way the report stores them, one run per file.
	b, err := os.ReadFile("testdata/ab.txt")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.SplitAfter(string(b), "ratio of medians tenantproxy/pgbouncer: 1.004\n")
	tests := []struct {
		in                 string
		mode               string
		pgbTPS, tpTPS      float64
		pgbProxy, tpProxy  float64
		tpMachine, ratioTP float64
	}{
		{parts[0], "simple", 38286, 38426, 13.67, 13.18, 47.35, 1.004},
		{parts[1], "extended", 35254, 35337, 14.04, 13.87, 51.67, 1.002},
	}
	for _, tc := range tests {
		run, err := ParseAB(strings.NewReader(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		if run.Mode != tc.mode || len(run.Rows) != 2 {
			t.Fatalf("mode %q rows %+v", run.Mode, run.Rows)
		}
		pgb, tp := run.Rows[0], run.Rows[1]
		if pgb.Label != "pgbouncer" || pgb.TPS != tc.pgbTPS || pgb.ProxyCPU != tc.pgbProxy || !pgb.HasProxyCPU {
			t.Errorf("pgbouncer %+v", pgb)
		}
		if tp.Label != "tenantproxy" || tp.TPS != tc.tpTPS || tp.ProxyCPU != tc.tpProxy || tp.MachineCPU != tc.tpMachine {
			t.Errorf("tenantproxy %+v", tp)
		}
		if run.Ratios["tenantproxy"] != tc.ratioTP {
			t.Errorf("ratio %v, want %v", run.Ratios["tenantproxy"], tc.ratioTP)
		}
	}
	// direct has no proxy CPU column.
	run, _ := ParseAB(strings.NewReader("# ab.sh -k 1 -c 50 -T 10 -r 1 -m simple: direct (nproc=2, pool=20)\ndirect         median tps=46000  machine cpu=40.10 us/txn\n"))
	if len(run.Rows) != 1 || run.Rows[0].HasProxyCPU || run.Rows[0].MachineCPU != 40.10 {
		t.Errorf("direct: %+v", run.Rows)
	}
}
