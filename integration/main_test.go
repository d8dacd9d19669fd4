// Package integration runs tenantproxy end to end: the real proxy in-process (integration/proxytest) in
// front of a real PostgreSQL cluster, driven by pgx, lib/pq, psql and pgbench in both pool modes.
package integration

import (
	"os"
	"testing"

	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// fx is the provisioned cluster (tenants acme and globex, five employees each) shared by the package's
// tests, started once by TestMain. Each test starts proxies of its own over it; tests that change rows
// mark them with a name of their own and remove them.
var fx *proxytest.Fixture

func TestMain(m *testing.M) {
	os.Exit(proxytest.RunTests(m, "integration", func(f *proxytest.Fixture) { fx = f }))
}
