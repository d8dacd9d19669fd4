package reliability

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// fx is the provisioned cluster (tenants acme and globex) shared by the package's tests. Tests run one at
// a time: several stop, crash or freeze the server, and each leaves it running when it ends.
var fx *proxytest.Fixture

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// runTests starts the shared fixture, runs the tests and, when they passed, checks that no goroutine
// outlived the proxies the tests started.
func runTests(m *testing.M) int {
	f, err := proxytest.StartFixture()
	if err != nil {
		fmt.Fprintf(os.Stderr, "reliability: start the fixture: %v\n", err)
		return 1
	}
	fx = f
	code := m.Run()
	f.Cluster.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "reliability: leaked goroutines: %v\n", err)
			return 1
		}
	}
	return code
}
