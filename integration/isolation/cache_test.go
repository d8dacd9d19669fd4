package isolation

import (
	"testing"
	"time"

	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// cacheCase first has one user run an allowed statement, so that the proxy caches its verdict (by text,
// and by the text with its constants replaced), then has another user send a statement that differs from
// it in a way that changes the verdict.
type cacheCase struct {
	name             string
	primeUser, prime string
	attackUser, sql  string
	code             string
}

func cacheCases() []cacheCase {
	alice, reader := fx.UserOf(attacker), "reader"
	return []cacheCase{
		{"a statement appended to a cached text", alice, "SELECT 'x'", alice, "SELECT 'x'; RESET ROLE", "42501"},
		{"a statement after a cached comment", alice, "SELECT 1 /* a */", alice, "SELECT 1 /* a */; SET ROLE tenant_globex", "42501"},
		{"other constants around a statement", alice, "SELECT tenant FROM employees WHERE name = 'a'", alice, "SELECT tenant FROM employees WHERE name = 'b'; RESET ROLE", "42501"},
		{"a constant closing early", alice, "SELECT tenant FROM employees WHERE name = 'a; RESET ROLE'", alice, "SELECT tenant FROM employees WHERE name = 'a'; RESET ROLE; SELECT ''", "42501"},
		{"a dollar quote closing early", alice, "SELECT $$a; RESET ROLE; $$", alice, "SELECT $$a$$; RESET ROLE; SELECT $$ $$", "42501"},
		{"a function name instead of a constant", alice, "SELECT length('role')", alice, "SELECT length(set_config('role', 'tenant_globex', false))", "42501"},
		{"INSERT cached for the app profile, sent by the read-only user", alice, "INSERT INTO employees (name) VALUES ('cache probe 1') RETURNING tenant", reader, "INSERT INTO employees (name) VALUES ('cache probe 2') RETURNING tenant", "25006"},
		{"UPDATE cached for the app profile, sent by the read-only user", alice, "UPDATE employees SET email = email WHERE id = 1", reader, "UPDATE employees SET email = email WHERE id = 2", "25006"},
		{"FOR UPDATE cached for the app profile, sent by the read-only user", alice, "SELECT id FROM employees WHERE id = 1 FOR UPDATE", reader, "SELECT id FROM employees WHERE id = 2 FOR UPDATE", "25006"},
		{"a data-modifying CTE cached for the app profile", alice, "WITH d AS (DELETE FROM employees WHERE id = -1 RETURNING *) SELECT count(*) FROM d", reader, "WITH d AS (DELETE FROM employees WHERE id = -2 RETURNING *) SELECT count(*) FROM d", "25006"},
		{"search_path cached for acme, sent by globex", alice, "SET search_path TO acme", fx.UserOf("globex"), "SET search_path TO acme", "42501"},
	}
}

// A cached verdict never applies to a statement that differs in what the verdict depends on: an appended
// statement, a function in place of a constant, another profile, another tenant's schemas.
func TestVerdictCache(t *testing.T) {
	for _, s := range setups {
		t.Run(s.String(), func(t *testing.T) {
			p := startProxy(t, s, nil)
			for _, c := range cacheCases() {
				t.Run(c.name, func(t *testing.T) {
					ctx := testContext(t, 30*time.Second)
					pc := connect(t, ctx, p.URL(c.primeUser, attacker))
					for i := 0; i < 3; i++ {
						expect(t, "prime "+c.prime, simple(ctx, pc, c.prime), "")
					}
					pc.Close(ctx)
					tenant := attacker
					if c.attackUser == fx.UserOf("globex") {
						tenant = "globex"
					}
					ac := connect(t, ctx, p.URL(c.attackUser, tenant))
					o := simple(ctx, ac, c.sql)
					checkStep(t, c.sql, tenant, o, step{code: c.code})
					st, err := probe(ctx, ac)
					if err != nil {
						t.Errorf("probe: %v", err)
					} else {
						checkOwnContext(t, "after the attack", st, tenant)
					}
					ac.Close(ctx)
					probeTenant(t, ctx, p, "globex", "after the cache case")
					probeTenant(t, ctx, p, attacker, "after the cache case")
				})
			}
		})
	}
	fx.Cluster.MustExec(t, proxytest.Database, "DELETE FROM acme.employees WHERE name LIKE 'cache probe %'")
}
