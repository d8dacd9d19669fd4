package importrules

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/tenantproxy/tenantproxy"

// deps returns every package pkg imports, directly or not (go list -deps, without tests).
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", module+"/"+pkg).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg += ": " + string(ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %s", pkg, msg)
	}
	return strings.Fields(string(out))
}

// TestImportsRunOneWay checks the rules of issue 13's "straight imports".
func TestImportsRunOneWay(t *testing.T) {
	rules := []struct {
		from, mustNot, why string
	}{
		{"cmd/tenantproxy", "testing", "the shipped binary must not link the testing package (the demo uses internal/pgcluster, not integration/pgtest)"},
		{"cmd/tenantproxy", module + "/integration/pgtest", "the test harness is for tests; the demo uses internal/pgcluster"},
		{"routing", module + "/session", "routing decides who the tenant is; backends are session's (the dialer is session/dial)"},
		{"session", module + "/routing", "the relay knows tenants only as session.Tenant"},
		{"internal/app", module + "/tenants", "serve must not link the lifecycle CLI; what both need is in package catalog"},
		{"catalog", module + "/tenants", "catalog is what serve and the lifecycle share, below both"},
	}
	for _, r := range rules {
		t.Run(r.from+" does not import "+r.mustNot, func(t *testing.T) {
			if slices.ContainsFunc(deps(t, r.from), func(p string) bool { return p == r.mustNot || strings.HasPrefix(p, r.mustNot+"/") }) {
				t.Errorf("%s imports %s (directly or through another package): %s", r.from, r.mustNot, r.why)
			}
		})
	}
}

// TestDepsSeesImports guards the rules above against a go list that returns nothing: the binary does
// link serve and the lifecycle.
func TestDepsSeesImports(t *testing.T) {
	d := deps(t, "cmd/tenantproxy")
	for _, want := range []string{module + "/internal/app", module + "/tenants", module + "/session/dial", "fmt"} {
		if !slices.Contains(d, want) {
			t.Errorf("go list -deps cmd/tenantproxy lacks %s; the import rules cannot be trusted", want)
		}
	}
}
