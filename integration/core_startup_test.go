package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestStartupOptionsNeverApplied connects acme's user asking, in the startup packet, for globex's
// search_path and role (as options, as parameters of their own, and through psql's PGOPTIONS): the
// session is acme's in every way. application_name, a tracked parameter, is applied.
func TestStartupOptionsNeverApplied(t *testing.T) {
	hostile := map[string]string{
		"options":            "-c search_path=globex -c role=tenant_globex -c tenantproxy.tenant=globex",
		"search_path":        "globex",
		"role":               "tenant_globex",
		"tenantproxy.tenant": "globex",
		"application_name":   "startup-test",
	}
	for _, pm := range poolModes {
		t.Run(string(pm), func(t *testing.T) {
			p := startProxy(t, pm, nil)
			ctx := testContext(t, 30*time.Second)
			for _, em := range []struct {
				name string
				mode pgx.QueryExecMode
			}{{"CacheStatement", pgx.QueryExecModeCacheStatement}, {"SimpleProtocol", pgx.QueryExecModeSimpleProtocol}} {
				t.Run("pgx/"+em.name, func(t *testing.T) {
					conn, err := dialPgx(ctx, p.TenantURL("acme"), em.mode, hostile)
					if err != nil {
						t.Fatalf("connect with startup options: %v", err)
					}
					defer conn.Close(ctx)
					// Several transactions: each lease must carry acme's context, never the options'.
					for i := 0; i < 3; i++ {
						wantIdentity(t, ctx, conn, "acme")
					}
					var app string
					if err := conn.QueryRow(ctx, "SELECT current_setting('application_name')").Scan(&app); err != nil || app != "startup-test" {
						t.Fatalf("application_name %q (%v), want the client's startup-test", app, err)
					}
				})
			}
			t.Run("psql/PGOPTIONS", func(t *testing.T) {
				out, errOut, err := runPsql(t, p.TenantURL("acme"), []string{"PGOPTIONS=-c search_path=globex -c role=tenant_globex"},
					"-c", "SELECT current_user || '|' || current_setting('tenantproxy.tenant') || '|' || current_setting('search_path') || '|' || string_agg(DISTINCT tenant, ',') FROM employees")
				if err != nil {
					t.Fatalf("psql with PGOPTIONS: %v\n%s", err, errOut)
				}
				fields := strings.Split(strings.TrimSpace(out), "|")
				if len(fields) != 4 || fields[0] != "tenant_acme" || fields[1] != "acme" || !strings.HasPrefix(fields[2], "acme") || strings.Contains(fields[2], "globex") || fields[3] != "acme" {
					t.Fatalf("psql with PGOPTIONS for globex sees %q, want acme's role, setting, search_path and rows", out)
				}
			})
		})
	}
}
