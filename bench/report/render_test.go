package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func tpRow(target, mode, group string, tps, p99, p999 float64) TenantsRow {
	return TenantsRow{Target: target, Mode: mode, Group: group, Tenants: 10, Clients: 10, TPS: tps, P99: p99, P999: p999, Jain: 1}
}

// dataOf builds the Data of runs given as id -> rows, as if each had run with command "cmd <id>".
func dataOf(runs map[string][]TenantsRow) *Data {
	d := &Data{Tenants: map[string]TenantsRun{}, AB: map[string]ABRun{}, cmd: map[string]string{}}
	for id, rows := range runs {
		d.Runs = append(d.Runs, RunRecord{Scenario: Scenario{ID: id, Kind: KindTenants, Cmd: "cmd " + id}})
		d.Tenants[id] = TenantsRun{Rows: rows}
		d.cmd[id] = "cmd " + id
	}
	return d
}

func findTarget(t *testing.T, rows []TargetRow, scenario, goalPrefix string) TargetRow {
	t.Helper()
	for _, r := range rows {
		if r.Scenario == scenario && strings.HasPrefix(r.Goal, goalPrefix) {
			return r
		}
	}
	t.Fatalf("no target row %q / %q", scenario, goalPrefix)
	return TargetRow{}
}

func TestTargetsArePassOrFailByTheMeasuredFigures(t *testing.T) {
	tests := []struct {
		name      string
		runs      map[string][]TenantsRow
		scenario  string
		goal      string
		known     bool
		pass      bool
		measuredS string
	}{
		{"flat: 0.95 of one tenant passes", map[string][]TenantsRow{
			"flat-k1": {tpRow("tenantproxy", "simple", "all", 20000, 1, 2)}, "flat-k1000": {tpRow("tenantproxy", "simple", "all", 19000, 1, 2)}},
			"flat in tenants", "≥ 0.9", true, true, "**0.95**"},
		{"flat: 0.42 fails", map[string][]TenantsRow{
			"flat-k1": {tpRow("tenantproxy", "simple", "all", 23432, 1, 2)}, "flat-k1000": {tpRow("tenantproxy", "simple", "all", 9864, 1, 2)}},
			"flat in tenants", "≥ 0.9", true, false, "**0.42**"},
		{"flat: a missing run is no data, not a pass", map[string][]TenantsRow{
			"flat-k1": {tpRow("tenantproxy", "simple", "all", 20000, 1, 2)}},
			"flat in tenants", "≥ 0.9", false, false, "—"},
		{"flat: zero one-tenant tps is no data", map[string][]TenantsRow{
			"flat-k1": {tpRow("tenantproxy", "simple", "all", 0, 1, 2)}, "flat-k1000": {tpRow("tenantproxy", "simple", "all", 5, 1, 2)}},
			"flat in tenants", "≥ 0.9", false, false, "—"},
		{"unbudgeted: 1.2 x pgbouncer passes", map[string][]TenantsRow{"unbudgeted-k100": {
			tpRow("pgbouncer", "simple", "all", 10000, 5, 9), tpRow("tenantproxy", "simple", "all", 12000, 6, 9)}},
			"100 tenants, pgbouncer unbudgeted (simple)", "tenantproxy ≥ 1.2", true, true, "**1.20**"},
		{"unbudgeted: a higher p99 fails", map[string][]TenantsRow{"unbudgeted-k100": {
			tpRow("pgbouncer", "simple", "all", 10000, 5, 9), tpRow("tenantproxy", "simple", "all", 12000, 6, 9)}},
			"100 tenants, pgbouncer unbudgeted (simple)", "p99", true, false, "6.00 vs 5.00"},
		{"noisy: 3.1 x fails", map[string][]TenantsRow{
			"noisy-n200": {tpRow("tenantproxy", "simple", "quiet", 1, 12.9, 20)}, "noisy-n0": {tpRow("tenantproxy", "simple", "all", 1, 4.2, 8)}},
			"noisy neighbour (simple)", "quiet", true, false, "**3.07 ×**"},
		{"noisy: 2 x passes", map[string][]TenantsRow{
			"noisy-n200": {tpRow("tenantproxy", "simple", "quiet", 1, 8.4, 20)}, "noisy-n0": {tpRow("tenantproxy", "simple", "all", 1, 4.2, 8)}},
			"noisy neighbour (simple)", "quiet", true, true, "**2.00 ×**"},
		{"10,000 tenants: p99.9 of 1853 vs 62 ms fails", map[string][]TenantsRow{
			"k10000-a10": {tpRow("tenantproxy", "simple", "all", 12370, 1, 1853)}, "k10-a10": {tpRow("tenantproxy", "simple", "all", 15923, 1, 62)}},
			"10,000 tenants (simple)", "p99.9", true, false, "1853.00 vs 62.00"},
		{"tail: equal to pgbouncer passes", map[string][]TenantsRow{"tail-k21": {
			tpRow("pgbouncer", "extended", "all", 1, 1, 7.5), tpRow("tenantproxy", "extended", "all", 1, 1, 7.5)}},
			"tail latency (extended)", "p99.9", true, true, "7.50 vs 7.50"},
		{"everywhere: one cross-tenant read fails", map[string][]TenantsRow{"tail-k21": {
			tpRow("pgbouncer", "simple", "all", 1, 1, 1), {Target: "tenantproxy", Mode: "simple", Group: "all", Cross: 1}}},
			"everywhere", "0 cross", true, false, "1 cross-tenant reads"},
		{"everywhere: errors in noisy/quiet groups are not counted twice", map[string][]TenantsRow{"noisy-n200": {
			{Target: "tenantproxy", Mode: "simple", Group: "all", Errors: 2}, {Target: "tenantproxy", Mode: "simple", Group: "quiet", Errors: 2}}},
			"everywhere", "0 cross", true, false, "2 errors"},
		{"everywhere: clean runs pass", map[string][]TenantsRow{"tail-k21": {tpRow("tenantproxy", "simple", "all", 1, 1, 1)}},
			"everywhere", "0 cross", true, true, "0 cross-tenant reads, 0 errors"},
		{"same budget: pgbouncer serving nothing is beaten by any throughput", map[string][]TenantsRow{"sweep-k1000": {
			tpRow("pgbouncer", "simple", "all", 0, 1, 1), tpRow("tenantproxy", "simple", "all", 100, 1, 1)}},
			"same budget", "≥ 20", true, true, "100 vs 0 tps: **+Inf ×**"},
		{"same budget: 19 x fails", map[string][]TenantsRow{"sweep-k1000": {
			tpRow("pgbouncer", "simple", "all", 100, 1, 1), tpRow("tenantproxy", "simple", "all", 1900, 1, 1)}},
			"same budget", "≥ 20", true, false, "**19.0 ×**"},
		{"same budget: starved tenants fail", map[string][]TenantsRow{"sweep-k1000": {
			tpRow("pgbouncer", "simple", "all", 281, 1, 1), {Target: "tenantproxy", Mode: "simple", Group: "all", TPS: 8640, Tenants: 1000, Starved: 1, Jain: 0.99}}},
			"same budget", "0 starved", true, false, "1 of 1000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := findTarget(t, Targets(dataOf(tc.runs)), tc.scenario, tc.goal)
			if tc.scenario == "everywhere" && tc.pass {
				// The same clean data with one command that exited non-zero is a failure.
				d := dataOf(tc.runs)
				d.Runs = append(d.Runs, RunRecord{Scenario: Scenario{ID: "idle", Kind: KindIdle}, RC: 1})
				if f := findTarget(t, Targets(d), tc.scenario, tc.goal); f.Pass || !strings.Contains(f.Measured, "commands that failed: idle") {
					t.Errorf("a failed command still passes: %+v", f)
				}
			}
			if r.Known != tc.known || r.Pass != tc.pass {
				t.Errorf("known=%v pass=%v, want known=%v pass=%v (%s)", r.Known, r.Pass, tc.known, tc.pass, r.Measured)
			}
			if !strings.Contains(r.Measured, tc.measuredS) {
				t.Errorf("measured %q lacks %q", r.Measured, tc.measuredS)
			}
		})
	}
}

func TestTargetsWithoutAnyRunAreAllFailuresForLackOfData(t *testing.T) {
	rows := Targets(dataOf(nil))
	if len(rows) < 9 {
		t.Fatalf("only %d target rows", len(rows))
	}
	for _, r := range rows {
		if r.Known || r.Pass || r.Result() != "**FAIL** (no data)" {
			t.Errorf("%s / %s: %+v", r.Scenario, r.Goal, r)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRenderWritesAReportWhoseChartsAndCommandsComeFromTheResultsFolder(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "results", "20261208T0000Z-abc1234")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, "testdata/tenants-noisy.txt", filepath.Join(dir, "noisy-n200.txt"))
	copyFile(t, "testdata/tenants-noisy.txt", filepath.Join(dir, "sweep-k100.txt"))
	copyFile(t, "testdata/idle.txt", filepath.Join(dir, "idle.txt"))
	ab, err := os.ReadFile("testdata/ab.txt")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.SplitAfter(string(ab), "ratio of medians tenantproxy/pgbouncer: 1.004\n")
	if err := os.WriteFile(filepath.Join(dir, "ab-simple.txt"), []byte(parts[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	m := Manifest{Commit: "abc1234+dirty", Scale: "full"}
	for _, s := range []Scenario{
		{ID: "noisy-n200", Kind: KindTenants, Cmd: "TP_BIN=bin/tenantproxy bash ../shared/referee/tenants.sh -k 21 -c 20 -n 200"},
		{ID: "sweep-k100", Kind: KindTenants, Cmd: "TP_BIN=bin/tenantproxy bash ../shared/referee/tenants.sh -k 100 -c 1000 -m simple"},
		{ID: "idle", Kind: KindIdle, Cmd: "TP_BIN=bin/tenantproxy bash ../shared/referee/idle.sh -n 10000"},
		{ID: "ab-simple", Kind: KindAB, Cmd: "bash bench/ab.sh -r 6 -m simple pgbouncer tenantproxy=bin/tenantproxy"},
		{ID: "idle-gone", Kind: KindIdle, Cmd: "a run whose output file is missing"},
	} {
		m.Runs = append(m.Runs, RunRecord{Scenario: s, File: s.ID + ".txt"})
	}
	report := filepath.Join(root, "REPORT.md")
	if err := Render(dir, m, report); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, want := range []string{
		"commit **abc1234+dirty**",
		"`TP_BIN=bin/tenantproxy bash ../shared/referee/idle.sh -n 10000`",
		"`bash bench/ab.sh -r 6 -m simple pgbouncer tenantproxy=bin/tenantproxy`",
		"| idle clients | `TP_BIN=bin/tenantproxy bash ../shared/referee/idle.sh -n 10000` | **29.28 KiB** per client (pgbouncer 6.00) | ≤ 2 KiB per idle client | **FAIL** |",
		"| one tenant (simple) | `bash bench/ab.sh -r 6 -m simple pgbouncer tenantproxy=bin/tenantproxy` | ratio of medians **1.004** | median ratio ≥ 1.05 × pgbouncer | **FAIL** |",
		"| tenantproxy | simple | ", // noisy table row
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(md, "SMOKE RUN") {
		t.Error("a full-scale report is marked as a smoke run")
	}
	// Every picture the report links exists and is a PNG; the ones it has data for are there.
	links := regexp.MustCompile(`!\[[^\]]*\]\(([^)]+)\)`).FindAllStringSubmatch(md, -1)
	linked := map[string]bool{}
	for _, l := range links {
		decodePNG(t, filepath.Join(root, l[1]))
		linked[filepath.Base(l[1])] = true
	}
	for _, want := range []string{"spread.png", "noisy-tenantproxy.png", "noisy-pgbouncer.png", "idle.png", "cpu.png"} {
		if !linked[want] {
			t.Errorf("report does not show %s", want)
		}
	}
	// No sweep data beyond k=100 made a one-point line: still drawn. No figure for a chart means a note, not a link.
	if !linked["tenants-tps.png"] {
		t.Error("tenants-tps.png missing")
	}

	m.Scale = "quick"
	if err := Render(dir, m, report); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(report); !strings.Contains(string(b), "SMOKE RUN (SCALE=quick)") {
		t.Error("a quick report is not marked as a smoke run")
	}
}
