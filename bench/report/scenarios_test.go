package main

import (
	"strings"
	"testing"
)

// The targets are read off the issue's exact commands: at SCALE=full the report must run those, verbatim.
func TestFullScaleRunsTheIssuesExactCommands(t *testing.T) {
	const ref = "TP_BIN=bin/tenantproxy bash ../shared/referee/"
	want := map[string]string{
		"sweep-k1":        ref + "tenants.sh -k 1 -c 1000 -m simple",
		"sweep-k1000":     ref + "tenants.sh -k 1000 -c 1000 -m simple", // "same budget"
		"sweep-k10000":    ref + "tenants.sh -k 10000 -c 1000 -m simple",
		"flat-k1":         ref + "tenants.sh -k 1 -c 1000 -m simple -t tenantproxy",
		"flat-k1000":      ref + "tenants.sh -k 1000 -c 1000 -m simple -t tenantproxy",
		"unbudgeted-k100": ref + `tenants.sh -k 100 -c 100 -u -t "pgbouncer tenantproxy"`,
		"k10000-a10":      ref + "tenants.sh -k 10000 -a 10 -c 200 -r 100 -t tenantproxy",
		"k10-a10":         ref + "tenants.sh -k 10 -a 10 -c 200 -r 100 -t tenantproxy",
		"noisy-n200":      ref + "tenants.sh -k 21 -c 20 -n 200",
		"noisy-n0":        ref + "tenants.sh -k 21 -c 20 -n 0",
		"tail-k21":        ref + `tenants.sh -k 21 -c 20 -t "pgbouncer tenantproxy"`,
		"ab-simple":       "bash bench/ab.sh -r 6 -m simple pgbouncer tenantproxy=bin/tenantproxy",
		"ab-extended":     "bash bench/ab.sh -r 6 -m extended pgbouncer tenantproxy=bin/tenantproxy",
		"idle":            ref + "idle.sh -n 10000",
	}
	got := map[string]string{}
	for _, s := range Scenarios(Scales["full"], "../shared/referee", "bin/tenantproxy", "") {
		if _, dup := got[s.ID]; dup {
			t.Errorf("scenario id %s twice", s.ID)
		}
		got[s.ID] = s.Cmd
	}
	for id, cmd := range want {
		if got[id] != cmd {
			t.Errorf("%s:\n got %q\nwant %q", id, got[id], cmd)
		}
	}
	if _, ok := got["noisy-n200-nofair"]; ok {
		t.Error("a no-fairness run without -nofair")
	}
}

func TestQuickScaleShortensEveryTenantsRunAndNofairAddsAQuotedRun(t *testing.T) {
	var nofair string
	for _, s := range Scenarios(Scales["quick"], "../shared/referee", "bin/tenantproxy", `fair = "off"`) {
		if s.Kind == KindTenants && !strings.HasSuffix(s.Cmd, " -T 2") {
			t.Errorf("%s: %s", s.ID, s.Cmd)
		}
		if s.ID == "noisy-n200-nofair" {
			nofair = s.Cmd
		}
	}
	if want := `TP_EXTRA='fair = "off"' TP_BIN=bin/tenantproxy bash ../shared/referee/tenants.sh -k 21 -c 20 -n 200 -t tenantproxy -T 2`; nofair != want {
		t.Errorf("nofair run:\n got %q\nwant %q", nofair, want)
	}
}
