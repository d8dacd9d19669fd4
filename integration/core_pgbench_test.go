package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// pgbenchScript is a custom pgbench transaction over the employees table of tenant TENANT; it divides
// by zero, failing the transaction, when the session is not TENANT's or sees a row of another tenant.
const pgbenchScript = `\set id random(1, 5)
BEGIN;
SELECT name, email FROM employees WHERE id = :id;
UPDATE employees SET email = email WHERE id = :id;
SELECT 1 / ((current_setting('tenantproxy.tenant') = 'TENANT') AND current_user = 'tenant_TENANT')::int;
SELECT 1 / (count(*) = 0)::int FROM employees WHERE tenant <> 'TENANT';
END;
`

var (
	pgbenchProcessed = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
	pgbenchFailed    = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
)

// TestPgbenchBothTenantsEveryProtocol runs pgbench for acme (4 clients) and globex (2 clients) at once
// through the proxy for 2 s, in every pgbench query mode and both pool modes: no transaction fails, and
// every transaction saw only its own tenant. In transaction pooling the six clients share two backends.
func TestPgbenchBothTenantsEveryProtocol(t *testing.T) {
	clients := map[string]int{"acme": 4, "globex": 2}
	for _, pm := range poolModes {
		t.Run(string(pm), func(t *testing.T) {
			p := startProxy(t, pm, func(c *config.Config) {
				// Session pooling holds a backend per client for the client's whole life.
				c.Backend.PoolSize = 2
				c.Pool.WaitTimeout.Duration = 5 * time.Second
				if pm == config.ModeSession {
					c.Backend.PoolSize = 6
				}
			})
			dir := t.TempDir()
			for tenant := range clients {
				script := strings.ReplaceAll(pgbenchScript, "TENANT", tenant)
				if err := os.WriteFile(filepath.Join(dir, tenant+".sql"), []byte(script), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for _, protocol := range []string{"simple", "extended", "prepared"} {
				t.Run(protocol, func(t *testing.T) {
					type result struct {
						tenant string
						out    string
						err    error
					}
					results := make(chan result, len(clients))
					for tenant, n := range clients {
						go func() {
							// A thread per client: with -M prepared pgbench prepares each statement with a
							// blocking PQprepare, which needs a backend; on a shared thread that wait would
							// stall the clients holding the backends in their transactions.
							out, err := runPgbench(p, tenant, "-n", "-T", "2", "-c", strconv.Itoa(n), "-j", strconv.Itoa(n), "-M", protocol, "-f", filepath.Join(dir, tenant+".sql"))
							results <- result{tenant, out, err}
						}()
					}
					for range clients {
						r := <-results
						if r.err != nil {
							t.Errorf("pgbench %s -M %s: %v\n%s", r.tenant, protocol, r.err, r.out)
							continue
						}
						processed, failed := pgbenchProcessed.FindStringSubmatch(r.out), pgbenchFailed.FindStringSubmatch(r.out)
						if processed == nil || failed == nil {
							t.Errorf("pgbench %s -M %s: no summary in its output:\n%s", r.tenant, protocol, r.out)
							continue
						}
						if n, _ := strconv.Atoi(processed[1]); n == 0 {
							t.Errorf("pgbench %s -M %s processed no transaction:\n%s", r.tenant, protocol, r.out)
						}
						if failed[1] != "0" {
							t.Errorf("pgbench %s -M %s: %s failed transactions:\n%s", r.tenant, protocol, failed[1], r.out)
						}
					}
				})
			}
		})
	}
}

// runPgbench runs pgbench through p as the app user of tenant and returns its combined output.
func runPgbench(p *proxytest.Proxy, tenant string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args = append(args, "-h", p.Host, "-p", strconv.Itoa(p.Port), "-U", p.F.UserOf(tenant)+"@"+tenant, proxytest.Database)
	cmd := exec.CommandContext(ctx, fx.Cluster.Bin("pgbench"), args...)
	cmd.Env = append(cleanPGEnv(), "PGPASSWORD="+proxytest.Password, "PGSSLMODE=disable")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}
