// Package integration runs tenantproxy end to end: the real proxy in-process (integration/proxytest) in
// front of a real PostgreSQL cluster, driven by pgx, lib/pq, psql and pgbench in both pool modes.
package integration

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// fx is the provisioned cluster (tenants acme and globex, five employees each) shared by the package's
// tests, started once by TestMain. Each test starts proxies of its own over it; tests that change rows
// mark them with a name of their own and remove them.
var fx *proxytest.Fixture

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// runTests starts the shared fixture, runs the tests, stops the cluster and then checks that no goroutine
// outlived its test: every proxy a test starts is shut down by the test's cleanup, so its relay loop,
// dialers and TLS bridges must be gone by now.
func runTests(m *testing.M) int {
	f, err := proxytest.StartFixture()
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: start the fixture: %v\n", err)
		return 1
	}
	fx = f
	code := m.Run()
	f.Cluster.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "integration: leaked goroutines: %v\n", err)
			return 1
		}
	}
	return code
}
