package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Data is everything parsed out of one results folder.
type Data struct {
	Manifest
	Dir     string
	Tenants map[string]TenantsRun // by scenario id
	AB      map[string]ABRun
	Idle    []IdleRow
	cmd     map[string]string
}

// Load parses every run of the manifest; a run whose output cannot be read is left out (its figures then
// show as missing).
func Load(dir string, m Manifest) (*Data, error) {
	d := &Data{Manifest: m, Dir: dir, Tenants: map[string]TenantsRun{}, AB: map[string]ABRun{}, cmd: map[string]string{}}
	for _, r := range m.Runs {
		d.cmd[r.ID] = r.Cmd
		f, err := os.Open(filepath.Join(dir, r.File))
		if err != nil {
			continue
		}
		switch r.Kind {
		case KindTenants:
			run, err := ParseTenants(f)
			if err == nil {
				d.Tenants[r.ID] = run
			}
		case KindAB:
			run, err := ParseAB(f)
			if err == nil {
				d.AB[r.ID] = run
			}
		case KindIdle:
			rows, err := ParseIdle(f)
			if err == nil {
				d.Idle = rows
			}
		}
		f.Close()
	}
	return d, nil
}

// Cmd is the command of scenario id as it ran ("(not run)" when it did not).
func (d *Data) Cmd(id string) string {
	if c, ok := d.cmd[id]; ok {
		return c
	}
	return "(not run)"
}

func (d *Data) row(id, target, mode, group string) (TenantsRow, bool) {
	run, ok := d.Tenants[id]
	if !ok {
		return TenantsRow{}, false
	}
	return run.Find(target, mode, group)
}

// TargetRow is one line of the targets table. Pass is computed from Measured figures, never typed in.
type TargetRow struct {
	Scenario string
	Commands []string
	Measured string
	Goal     string
	Known    bool // false: a figure is missing (counts as a failure)
	Pass     bool
}

// Result is the table cell of the row.
func (t TargetRow) Result() string {
	switch {
	case !t.Known:
		return "**FAIL** (no data)"
	case t.Pass:
		return "pass"
	default:
		return "**FAIL**"
	}
}

func modesOf(d *Data, id string) []string {
	if run, ok := d.Tenants[id]; ok && len(run.Modes()) > 0 {
		return run.Modes()
	}
	return []string{"simple", "extended"}
}

// Targets computes the targets table from the data.
func Targets(d *Data) []TargetRow {
	var out []TargetRow
	add := func(scn string, ids []string, goal string, known, pass bool, measured string, args ...any) {
		cmds := make([]string, len(ids))
		for i, id := range ids {
			cmds[i] = d.Cmd(id)
		}
		if !known {
			measured = "—"
		} else {
			measured = fmt.Sprintf(measured, args...)
		}
		out = append(out, TargetRow{Scenario: scn, Commands: cmds, Measured: measured, Goal: goal, Known: known, Pass: known && pass})
	}

	// flat in tenants
	{
		a, ok1 := d.row("flat-k1000", "tenantproxy", "simple", "all")
		b, ok2 := d.row("flat-k1", "tenantproxy", "simple", "all")
		r := ratio(a.TPS, b.TPS)
		add("flat in tenants", []string{"flat-k1000", "flat-k1"}, "≥ 0.9 × the one-tenant tps", ok1 && ok2 && !math.IsNaN(r), r >= 0.9,
			"%.0f vs %.0f tps: **%.2f**", a.TPS, b.TPS, r)
	}
	// 100 tenants, pgbouncer unbudgeted
	for _, mode := range modesOf(d, "unbudgeted-k100") {
		t, ok1 := d.row("unbudgeted-k100", "tenantproxy", mode, "all")
		p, ok2 := d.row("unbudgeted-k100", "pgbouncer", mode, "all")
		r := ratio(t.TPS, p.TPS)
		ids := []string{"unbudgeted-k100"}
		add("100 tenants, pgbouncer unbudgeted ("+mode+")", ids, "tenantproxy ≥ 1.2 × pgbouncer tps", ok1 && ok2 && !math.IsNaN(r), r >= 1.2,
			"%.0f vs %.0f tps: **%.2f**", t.TPS, p.TPS, r)
		add("100 tenants, pgbouncer unbudgeted ("+mode+")", ids, "p99 ≤ pgbouncer's", ok1 && ok2, t.P99 <= p.P99,
			"p99 %.2f vs %.2f ms", t.P99, p.P99)
	}
	// same budget
	{
		t, ok1 := d.row("sweep-k1000", "tenantproxy", "simple", "all")
		p, ok2 := d.row("sweep-k1000", "pgbouncer", "simple", "all")
		r := ratio(t.TPS, p.TPS)
		if p.TPS == 0 && t.TPS > 0 {
			r = math.Inf(1) // pgbouncer served nothing at all: any throughput is more than 20 times that
		}
		ids := []string{"sweep-k1000"}
		add("same budget", ids, "≥ 20 × pgbouncer", ok1 && ok2 && !math.IsNaN(r), r >= 20, "%.0f vs %.0f tps: **%.1f ×**", t.TPS, p.TPS, r)
		add("same budget", ids, "0 starved tenants", ok1, t.Starved == 0, "%d of %d tenants starved (pgbouncer %d)", t.Starved, t.Tenants, p.Starved)
		add("same budget", ids, "Jain ≥ 0.95", ok1 && !math.IsNaN(t.Jain), t.Jain >= 0.95, "Jain %.3f (pgbouncer %.3f)", t.Jain, p.Jain)
	}
	// 10,000 tenants
	for _, mode := range modesOf(d, "k10000-a10") {
		a, ok1 := d.row("k10000-a10", "tenantproxy", mode, "all")
		b, ok2 := d.row("k10-a10", "tenantproxy", mode, "all")
		ids := []string{"k10000-a10", "k10-a10"}
		r := ratio(a.TPS, b.TPS)
		add("10,000 tenants ("+mode+")", ids, "within 10 % of the 10-tenant tps", ok1 && ok2 && !math.IsNaN(r), r >= 0.9,
			"%.0f vs %.0f tps: **%.2f**", a.TPS, b.TPS, r)
		add("10,000 tenants ("+mode+")", ids, "p99.9 at most 2 ×", ok1 && ok2, a.P999 <= 2*b.P999,
			"p99.9 %.2f vs %.2f ms: **%.2f ×**", a.P999, b.P999, ratio(a.P999, b.P999))
	}
	// noisy neighbour
	for _, mode := range modesOf(d, "noisy-n200") {
		a, ok1 := d.row("noisy-n200", "tenantproxy", mode, "quiet")
		b, ok2 := d.row("noisy-n0", "tenantproxy", mode, "all")
		add("noisy neighbour ("+mode+")", []string{"noisy-n200", "noisy-n0"}, "quiet tenants' p99 ≤ 2 × their p99 without the noisy one",
			ok1 && ok2, a.P99 <= 2*b.P99, "quiet p99 %.2f vs %.2f ms: **%.2f ×**", a.P99, b.P99, ratio(a.P99, b.P99))
	}
	// tail latency
	for _, mode := range modesOf(d, "tail-k21") {
		t, ok1 := d.row("tail-k21", "tenantproxy", mode, "all")
		p, ok2 := d.row("tail-k21", "pgbouncer", mode, "all")
		add("tail latency ("+mode+")", []string{"tail-k21"}, "p99.9 ≤ pgbouncer's", ok1 && ok2, t.P999 <= p.P999,
			"p99.9 %.2f vs %.2f ms", t.P999, p.P999)
	}
	// one tenant
	for _, id := range []string{"ab-simple", "ab-extended"} {
		run, ok := d.AB[id]
		r, ok2 := run.Ratios["tenantproxy"]
		mode := strings.TrimPrefix(id, "ab-")
		add("one tenant ("+mode+")", []string{id}, "median ratio ≥ 1.05 × pgbouncer", ok && ok2, r >= 1.05, "ratio of medians **%.3f**", r)
	}
	// idle clients
	{
		var tp, pb *IdleRow
		for i := range d.Idle {
			switch d.Idle[i].Target {
			case "tenantproxy":
				tp = &d.Idle[i]
			case "pgbouncer":
				pb = &d.Idle[i]
			}
		}
		pbs := "—"
		if pb != nil {
			pbs = fmt.Sprintf("%.2f", pb.KiBPerClient)
		}
		var v float64
		if tp != nil {
			v = tp.KiBPerClient
		}
		add("idle clients", []string{"idle"}, "≤ 2 KiB per idle client", tp != nil, v <= 2, "**%.2f KiB** per client (pgbouncer %s)", v, pbs)
	}
	// everywhere
	{
		var ids []string
		cross, errs, rows := 0, 0, 0
		for _, r := range d.Runs {
			run, ok := d.Tenants[r.ID]
			if !ok {
				continue
			}
			ids = append(ids, r.ID)
			for _, row := range run.Rows {
				if row.Group != "all" { // noisy and quiet are parts of all
					continue
				}
				rows++
				cross += row.Cross
				errs += row.Errors + row.ConnectErrors
			}
		}
		var failed []string
		for _, r := range d.Runs {
			if r.RC != 0 {
				failed = append(failed, r.ID)
			}
		}
		note := ""
		if len(failed) > 0 {
			note = "; commands that failed: " + strings.Join(failed, ", ")
		}
		add("everywhere", nil, "0 cross-tenant reads, 0 errors", rows > 0, cross == 0 && errs == 0 && len(failed) == 0,
			"%d cross-tenant reads, %d errors (incl. connect errors) over %d result lines of %d tenants.sh runs%s", cross, errs, rows, len(ids), note)
	}
	return out
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

var sweepTargets = []string{"direct", "pgbouncer", "tenantproxy"}

// Render draws the charts into dir and writes the report to path.
func Render(dir string, m Manifest, path string) error {
	d, err := Load(dir, m)
	if err != nil {
		return err
	}
	// Links in the report are relative to where the report is.
	rel := dir
	if from, err := filepath.Abs(filepath.Dir(path)); err == nil {
		if to, err := filepath.Abs(dir); err == nil {
			if r, err := filepath.Rel(from, to); err == nil {
				rel = r
			}
		}
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	img := func(name, alt string, draw func(string) error) {
		if err := draw(filepath.Join(dir, name)); err != nil {
			w("_(no chart: %v)_\n\n", err)
			return
		}
		w("![%s](%s)\n\n", alt, filepath.ToSlash(filepath.Join(rel, name)))
	}

	w("# Benchmark report (issue 10)\n\n")
	if m.Scale != "full" {
		w("> **SMOKE RUN (SCALE=%s): short durations on a shared machine. These numbers only show that the pipeline works; they are not measurements.**\n\n", m.Scale)
	}
	w("Generated by `make bench-report SCALE=%s` (`go run ./bench/report`), started %s, commit **%s**. ", m.Scale, m.Started.Format("2006-01-02 15:04 UTC"), m.Commit)
	w("Raw output of every command, charts and `manifest.json`: [`%s`](%s). ", filepath.ToSlash(dir), filepath.ToSlash(rel))
	if m.Machine != "" {
		w("Machine: %s. ", m.Machine)
	}
	if h := firstHeader(d); h != "" {
		w("Referee header of the first run: `%s`.", h)
	}
	w("\n\nEvery figure below is read off the raw output of the command printed next to it, from the project root, ")
	w("with the referee scripts of `../shared/referee` as they are; pass/fail is computed by `bench/report` from those figures.\n\n")

	// Targets
	w("## Targets\n\n| scenario | command | measured | target | result |\n|---|---|---|---|---|\n")
	passed, total := 0, 0
	for _, t := range Targets(d) {
		total++
		if t.Pass {
			passed++
		}
		cmds := make([]string, len(t.Commands))
		for i, c := range t.Commands {
			cmds[i] = "`" + mdCell(c) + "`"
		}
		cmd := strings.Join(cmds, " vs ")
		if cmd == "" {
			cmd = "all of the above"
		}
		w("| %s | %s | %s | %s | %s |\n", t.Scenario, cmd, mdCell(t.Measured), t.Goal, t.Result())
	}
	w("\n%d of %d targets met (commit %s).\n\n", passed, total, m.Commit)

	// Sweep
	w("## Throughput and p99 versus tenants\n\n")
	w("Each point is one run of `tenants.sh -k K` (simple protocol, every client on its own connection, pool of 20 server connections; pgbouncer capped at 20 in all). K is the number of tenant schemas configured; the clients spread round-robin over them, so with more tenants than clients only as many tenants as clients are busy (the others exist, idle):\n\n")
	var tpsSeries, p99Series []Series
	for _, tg := range sweepTargets {
		s, p := Series{Name: tg}, Series{Name: tg}
		for _, k := range SweepTenants {
			r, ok := d.row(fmt.Sprintf("sweep-k%d", k), tg, "simple", "all")
			if !ok {
				continue
			}
			s.X, s.Y = append(s.X, float64(k)), append(s.Y, r.TPS)
			p.X, p.Y = append(p.X, float64(k)), append(p.Y, r.P99)
		}
		tpsSeries, p99Series = append(tpsSeries, s), append(p99Series, p)
	}
	img("tenants-tps.png", "throughput versus tenants", func(f string) error {
		return LineChart(f, "throughput versus tenants (simple)", "tenants", "tps", true, false, tpsSeries)
	})
	img("tenants-p99.png", "p99 latency versus tenants", func(f string) error {
		return LineChart(f, "p99 latency versus tenants (simple)", "tenants", "p99 (ms)", true, true, p99Series)
	})
	w("| tenants | command | direct tps / p99 ms | pgbouncer tps / p99 ms | tenantproxy tps / p99 ms | tenantproxy starved / Jain |\n|---|---|---|---|---|---|\n")
	for _, k := range SweepTenants {
		id := fmt.Sprintf("sweep-k%d", k)
		w("| %d | `%s` |", k, mdCell(d.Cmd(id)))
		for _, tg := range sweepTargets {
			if r, ok := d.row(id, tg, "simple", "all"); ok {
				w(" %.0f / %.2f |", r.TPS, r.P99)
			} else {
				w(" — |")
			}
		}
		if r, ok := d.row(id, "tenantproxy", "simple", "all"); ok {
			w(" %d / %.3f |\n", r.Starved, r.Jain)
		} else {
			w(" — |\n")
		}
	}
	w("\n")

	// Spread
	w("## Per-tenant throughput spread at 100 and 1,000 tenants\n\n")
	var cats []string
	spread := []Series{{Name: "min"}, {Name: "median"}, {Name: "max"}}
	w("| tenants | target | command | per-tenant tps min / median / max | Jain | starved |\n|---|---|---|---|---|---|\n")
	for _, k := range []int{100, 1000} {
		id := fmt.Sprintf("sweep-k%d", k)
		for _, tg := range sweepTargets {
			r, ok := d.row(id, tg, "simple", "all")
			if !ok {
				continue
			}
			cats = append(cats, fmt.Sprintf("%s k=%d\nJain %.2f", short(tg), k, r.Jain))
			spread[0].Y = append(spread[0].Y, r.TenantMin)
			spread[1].Y = append(spread[1].Y, r.TenantMedian)
			spread[2].Y = append(spread[2].Y, r.TenantMax)
			w("| %d | %s | `%s` | %.1f / %.1f / %.1f | %.3f | %d |\n", k, tg, mdCell(d.Cmd(id)), r.TenantMin, r.TenantMedian, r.TenantMax, r.Jain, r.Starved)
		}
	}
	w("\n")
	img("spread.png", "per-tenant throughput spread", func(f string) error {
		return BarChart(f, "per-tenant throughput (simple)", "tps per tenant", cats, spread, math.NaN(), "")
	})

	// Noisy
	w("## Noisy neighbour\n\n")
	w("The quiet tenants' latency with 200 extra clients on tenant t1 (`-n 200`: the `quiet` group) against the same 20 clients without them (`-n 0`: all clients are quiet).")
	if _, ok := d.Tenants["noisy-n200-nofair"]; ok {
		w(" `tenantproxy, no fairness` is the proxy with the fairness turned off (`%s`).", mdCell(d.Cmd("noisy-n200-nofair")))
	}
	w("\n\n| target | mode | quiet p50 ms, -n 0 → -n 200 | quiet p99 ms, -n 0 → -n 200 | quiet p99.9 ms, -n 0 → -n 200 |\n|---|---|---|---|---|\n")
	type noisyChart struct {
		target string
		cats   []string
		series []Series
	}
	var charts []noisyChart
	for _, tg := range sweepTargets {
		var cat []string
		s0, s1 := Series{Name: "-n 0"}, Series{Name: "-n 200"}
		var s2 *Series
		for _, mode := range modesOf(d, "noisy-n200") {
			a, ok0 := d.row("noisy-n0", tg, mode, "all")
			q, ok1 := d.row("noisy-n200", tg, mode, "quiet")
			if !ok0 && !ok1 {
				continue
			}
			a, q = orNaN(a, ok0), orNaN(q, ok1)
			cat = append(cat, mode+" p50", mode+" p99")
			s0.Y = append(s0.Y, a.P50, a.P99)
			s1.Y = append(s1.Y, q.P50, q.P99)
			w("| %s | %s | %.2f → %.2f | %.2f → %.2f | %.2f → %.2f |\n", tg, mode, a.P50, q.P50, a.P99, q.P99, a.P999, q.P999)
			if tg == "tenantproxy" {
				if nf, ok := d.row("noisy-n200-nofair", tg, mode, "quiet"); ok {
					if s2 == nil {
						s2 = &Series{Name: "-n 200, no fairness"}
					}
					s2.Y = append(s2.Y, nf.P50, nf.P99)
					w("| tenantproxy, no fairness | %s | %.2f → %.2f | %.2f → %.2f | %.2f → %.2f |\n", mode, a.P50, nf.P50, a.P99, nf.P99, a.P999, nf.P999)
				}
			}
		}
		if len(cat) == 0 {
			continue
		}
		series := []Series{s0, s1}
		if s2 != nil {
			series = append(series, *s2)
		}
		charts = append(charts, noisyChart{tg, cat, series})
	}
	w("\n")
	for _, c := range charts {
		img("noisy-"+c.target+".png", "noisy neighbour, "+c.target, func(f string) error {
			return BarChart(f, "quiet tenants' latency, "+c.target, "ms", c.cats, c.series, math.NaN(), "")
		})
	}
	w("Commands: `%s` and `%s`.\n\n", mdCell(d.Cmd("noisy-n200")), mdCell(d.Cmd("noisy-n0")))

	// Idle
	w("## Memory per idle client\n\n")
	var idleCats []string
	idle := []Series{{Name: "KiB per idle client"}}
	w("| target | clients held | RSS before / held (KiB) | KiB per client |\n|---|---|---|---|\n")
	for _, r := range d.Idle {
		idleCats = append(idleCats, r.Target)
		idle[0].Y = append(idle[0].Y, r.KiBPerClient)
		w("| %s | %d | %d / %d | %.2f |\n", r.Target, r.Held, r.RSSBefore, r.RSSHeld, r.KiBPerClient)
	}
	w("\nCommand: `%s`.\n\n", mdCell(d.Cmd("idle")))
	img("idle.png", "memory per idle client", func(f string) error {
		return BarChart(f, "resident memory per idle client", "KiB", idleCats, idle, 2, "target (2 KiB)")
	})

	// CPU
	w("## Proxy CPU per transaction (one tenant, `bench/ab.sh`)\n\n")
	w("| mode | command | target | median tps | proxy CPU µs/txn | machine CPU µs/txn |\n|---|---|---|---|---|---|\n")
	var cpuCats []string
	byLabel := map[string]*Series{}
	var labels []string
	for _, id := range []string{"ab-simple", "ab-extended"} {
		run, ok := d.AB[id]
		if !ok {
			continue
		}
		ci := len(cpuCats)
		cpuCats = append(cpuCats, run.Mode)
		for _, r := range run.Rows {
			proxy := "—"
			if r.HasProxyCPU {
				proxy = fmt.Sprintf("%.2f", r.ProxyCPU)
				s := byLabel[r.Label]
				if s == nil {
					s = &Series{Name: r.Label}
					byLabel[r.Label] = s
					labels = append(labels, r.Label)
				}
				for len(s.Y) < ci {
					s.Y = append(s.Y, math.NaN())
				}
				s.Y = append(s.Y, r.ProxyCPU)
			}
			w("| %s | `%s` | %s | %.0f | %s | %.2f |\n", run.Mode, mdCell(d.Cmd(id)), r.Label, r.TPS, proxy, r.MachineCPU)
		}
	}
	w("\n")
	sort.Strings(labels)
	var cpu []Series
	for _, l := range labels {
		cpu = append(cpu, *byLabel[l])
	}
	img("cpu.png", "proxy CPU per transaction", func(f string) error {
		return BarChart(f, "proxy CPU per transaction (user+system)", "µs per transaction", cpuCats, cpu, math.NaN(), "")
	})

	// Runs
	w("## Runs\n\n| id | command | exit status | seconds | raw output |\n|---|---|---|---|---|\n")
	for _, r := range m.Runs {
		w("| %s | `%s` | %d | %.0f | [%s](%s) |\n", r.ID, mdCell(r.Cmd), r.RC, r.Seconds, r.File, filepath.ToSlash(filepath.Join(rel, r.File)))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func firstHeader(d *Data) string {
	for _, r := range d.Runs {
		if run, ok := d.Tenants[r.ID]; ok && run.Header != "" {
			return run.Header
		}
	}
	return ""
}

func orNaN(r TenantsRow, ok bool) TenantsRow {
	if ok {
		return r
	}
	n := math.NaN()
	return TenantsRow{P50: n, P99: n, P999: n}
}

func short(target string) string {
	if target == "tenantproxy" {
		return "tp"
	}
	if target == "pgbouncer" {
		return "pgb"
	}
	return target
}

// mdCell escapes what would break a markdown table cell.
func mdCell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}
