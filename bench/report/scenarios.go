package main

import (
	"fmt"
	"strings"
)

// Kind says which parser reads a scenario's output.
type Kind string

const (
	KindTenants Kind = "tenants"
	KindIdle    Kind = "idle"
	KindAB      Kind = "ab"
)

// Scenario is one command of the report. Cmd is exactly what runs (bash -c, from the project root) and
// exactly what REPORT.md prints next to the figures read off it.
type Scenario struct {
	ID   string `json:"id"`
	Kind Kind   `json:"kind"`
	Cmd  string `json:"cmd"`
}

// SweepTenants are the tenant counts of the throughput and p99 versus tenants charts.
var SweepTenants = []int{1, 10, 100, 1000, 10000}

// Scale holds the knobs that make a quick smoke run out of the commands.
type Scale struct {
	Name string
	// T is the -T of tenants.sh ("" leaves the referee's default, 10 s).
	T string
	// SweepClients is -c of the tenants sweep.
	SweepClients int
	// SweepRows is -r of the sweep ("" leaves the referee's default, 1000 rows per tenant).
	SweepRows string
	// IdleClients is -n of idle.sh.
	IdleClients int
	// ABArgs are ab.sh's -T/-r.
	ABArgs string
}

// Scales are the knobs of `make bench-report SCALE=...`.
var Scales = map[string]Scale{
	"full":  {Name: "full", SweepClients: 1000, IdleClients: 10000, ABArgs: "-r 6"},
	"quick": {Name: "quick", T: "2", SweepClients: 100, SweepRows: "100", IdleClients: 500, ABArgs: "-T 2 -r 1"},
}

// Scenarios lists the commands of the report. referee is the referee directory as the commands name it
// (relative to the project root), tp the tenantproxy binary, nofair an optional TP_EXTRA that turns the
// proxy's fairness off (an extra noisy-neighbour run when not empty).
func Scenarios(s Scale, referee, tp, nofair string) []Scenario {
	env := "TP_BIN=" + tp
	tenants := func(id, args string) Scenario {
		if s.T != "" {
			args += " -T " + s.T
		}
		return Scenario{ID: id, Kind: KindTenants, Cmd: fmt.Sprintf("%s bash %s/tenants.sh %s", env, referee, args)}
	}
	var out []Scenario
	for _, k := range SweepTenants {
		args := fmt.Sprintf("-k %d -c %d -m simple", k, s.SweepClients)
		if s.SweepRows != "" {
			args += " -r " + s.SweepRows
		}
		out = append(out, tenants(fmt.Sprintf("sweep-k%d", k), args))
	}
	out = append(out,
		tenants("flat-k1", `-k 1 -c 1000 -m simple -t tenantproxy`),
		tenants("flat-k1000", `-k 1000 -c 1000 -m simple -t tenantproxy`),
		tenants("unbudgeted-k100", `-k 100 -c 100 -u -t "pgbouncer tenantproxy"`),
		tenants("k10000-a10", `-k 10000 -a 10 -c 200 -r 100 -t tenantproxy`),
		tenants("k10-a10", `-k 10 -a 10 -c 200 -r 100 -t tenantproxy`),
		tenants("noisy-n200", `-k 21 -c 20 -n 200`),
		tenants("noisy-n0", `-k 21 -c 20 -n 0`),
		tenants("tail-k21", `-k 21 -c 20 -t "pgbouncer tenantproxy"`),
	)
	if nofair != "" {
		sc := tenants("noisy-n200-nofair", `-k 21 -c 20 -n 200 -t tenantproxy`)
		sc.Cmd = "TP_EXTRA=" + shellQuote(nofair) + " " + sc.Cmd
		out = append(out, sc)
	}
	out = append(out,
		Scenario{ID: "ab-simple", Kind: KindAB, Cmd: fmt.Sprintf("bash bench/ab.sh %s -m simple pgbouncer tenantproxy=%s", s.ABArgs, tp)},
		Scenario{ID: "ab-extended", Kind: KindAB, Cmd: fmt.Sprintf("bash bench/ab.sh %s -m extended pgbouncer tenantproxy=%s", s.ABArgs, tp)},
		Scenario{ID: "idle", Kind: KindIdle, Cmd: fmt.Sprintf("%s bash %s/idle.sh -n %d", env, referee, s.IdleClients)},
	)
	return out
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
