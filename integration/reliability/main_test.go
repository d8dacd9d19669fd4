package reliability

import (
	"os"
	"testing"

	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// fx is the provisioned cluster (tenants acme and globex) shared by the package's tests. Tests run one at
// a time: several stop, crash or freeze the server, and each leaves it running when it ends.
var fx *proxytest.Fixture

func TestMain(m *testing.M) {
	os.Exit(proxytest.RunTests(m, "reliability", func(f *proxytest.Fixture) { fx = f }))
}
