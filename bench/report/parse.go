package main

import (
	"bufio"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// TenantsRow is one result line of the referee's tpload, as printed by tenants.sh:
//
//	tenantproxy simple group=all tenants=100 clients=100 tps=12925 p50_ms=... cross_reads=0
type TenantsRow struct {
	Target, Mode, Group                      string
	Tenants, Clients                         int
	TPS, P50, P99, P999                      float64
	TenantMin, TenantMedian, TenantMax, Jain float64
	Starved, Errors, ConnectErrors, Cross    int
}

// TenantsRun is the parsed output of one tenants.sh run.
type TenantsRun struct {
	Header string // the "# tenants=... " line
	Rows   []TenantsRow
}

// Find returns the row of target, mode and group, or false.
func (r TenantsRun) Find(target, mode, group string) (TenantsRow, bool) {
	for _, row := range r.Rows {
		if row.Target == target && row.Mode == mode && row.Group == group {
			return row, true
		}
	}
	return TenantsRow{}, false
}

// Modes lists the modes of the run in the order they appear.
func (r TenantsRun) Modes() []string {
	var out []string
	seen := map[string]bool{}
	for _, row := range r.Rows {
		if !seen[row.Mode] {
			seen[row.Mode] = true
			out = append(out, row.Mode)
		}
	}
	return out
}

var tenantsLine = regexp.MustCompile(`^(\S+) (\S+) group=(\S+) (.*\btps=.*)$`)

// ParseTenants reads tenants.sh output (stdout and stderr mixed); lines it does not know are skipped.
func ParseTenants(in io.Reader) (TenantsRun, error) {
	var run TenantsRun
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "# tenants=") {
			run.Header = line
			continue
		}
		m := tenantsLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		kv := fields(m[4])
		row := TenantsRow{Target: m[1], Mode: m[2], Group: m[3]}
		ok := true
		num := func(k string) float64 {
			v, present := kv[k]
			if !present {
				ok = false
				return 0
			}
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				ok = false
			}
			return f
		}
		row.Tenants = int(num("tenants"))
		row.Clients = int(num("clients"))
		row.TPS = num("tps")
		row.P50, row.P99, row.P999 = num("p50_ms"), num("p99_ms"), num("p999_ms")
		row.TenantMin, row.TenantMedian, row.TenantMax = num("tenant_tps_min"), num("tenant_tps_median"), num("tenant_tps_max")
		row.Jain = num("jain")
		row.Starved, row.Errors = int(num("starved")), int(num("errors"))
		row.ConnectErrors, row.Cross = int(num("connect_errors")), int(num("cross_reads"))
		if ok {
			run.Rows = append(run.Rows, row)
		}
	}
	return run, sc.Err()
}

func fields(s string) map[string]string {
	kv := map[string]string{}
	for _, f := range strings.Fields(s) {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

// IdleRow is one line of idle.sh:
//
//	tenantproxy  clients_held=10000 rss_before_kib=12000 rss_held_kib=56000 kib_per_client=4.44
type IdleRow struct {
	Target                   string
	Held, RSSBefore, RSSHeld int
	KiBPerClient             float64
}

var idleLine = regexp.MustCompile(`^(\S+)\s+clients_held=(\d+) rss_before_kib=(\d+) rss_held_kib=(\d+) kib_per_client=(-?[0-9.]+)`)

// ParseIdle reads idle.sh output.
func ParseIdle(in io.Reader) ([]IdleRow, error) {
	var rows []IdleRow
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		m := idleLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		r := IdleRow{Target: m[1]}
		r.Held, _ = strconv.Atoi(m[2])
		r.RSSBefore, _ = strconv.Atoi(m[3])
		r.RSSHeld, _ = strconv.Atoi(m[4])
		r.KiBPerClient, _ = strconv.ParseFloat(m[5], 64)
		rows = append(rows, r)
	}
	return rows, sc.Err()
}

// ABRow is one "median" line of bench/ab.sh.
type ABRow struct {
	Label, Mode string
	TPS         float64
	MachineCPU  float64 // µs per transaction, all CPUs
	ProxyCPU    float64 // µs per transaction, the proxy process; 0 for direct
	HasProxyCPU bool
}

// ABRun is the parsed output of one ab.sh run.
type ABRun struct {
	Mode   string
	Rows   []ABRow
	Ratios map[string]float64 // label -> ratio of medians to pgbouncer
}

var (
	abHeader = regexp.MustCompile(`^# ab\.sh .* -m (\S+):`)
	abMedian = regexp.MustCompile(`^(\S+)\s+median tps=([0-9.]+)\s+machine cpu=([0-9.]+) us/txn(?:\s+proxy cpu=([0-9.]+) us/txn)?`)
	abRatio  = regexp.MustCompile(`^ratio of medians (\S+)/pgbouncer: ([0-9.]+)`)
)

// ParseAB reads bench/ab.sh output.
func ParseAB(in io.Reader) (ABRun, error) {
	run := ABRun{Ratios: map[string]float64{}}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := abHeader.FindStringSubmatch(line); m != nil {
			run.Mode = m[1]
			continue
		}
		if m := abMedian.FindStringSubmatch(line); m != nil {
			r := ABRow{Label: m[1], Mode: run.Mode}
			r.TPS, _ = strconv.ParseFloat(m[2], 64)
			r.MachineCPU, _ = strconv.ParseFloat(m[3], 64)
			if m[4] != "" {
				r.ProxyCPU, _ = strconv.ParseFloat(m[4], 64)
				r.HasProxyCPU = true
			}
			run.Rows = append(run.Rows, r)
			continue
		}
		if m := abRatio.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			run.Ratios[m[1]] = v
		}
	}
	return run, sc.Err()
}
