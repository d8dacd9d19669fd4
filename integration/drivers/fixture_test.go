package drivers

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/tenantproxy/tenantproxy/integration/pgtest"
)

// Tenant names and users of the stand-in; TP_TENANT_A and TP_TENANT_B override the names when the DSNs come
// from the environment.
const (
	defaultTenantA = "acme"
	defaultTenantB = "globex"
	fixtureDB      = "agentichr"
	fixturePass    = "secret"
)

// fixtureDSNs returns the URLs of tenant A's user (a) and tenant B's user (b): TP_DSN_A and TP_DSN_B when
// TP_DSN_A is set, else those of a stand-in started for this test by startDirectStandIn.
func fixtureDSNs(t *testing.T) (a, b string) {
	t.Helper()
	if a := os.Getenv("TP_DSN_A"); a != "" {
		b := os.Getenv("TP_DSN_B")
		if b == "" {
			t.Fatal("TP_DSN_A is set but TP_DSN_B is not: set both, or neither to use the stand-in")
		}
		return a, b
	}
	return startDirectStandIn(t)
}

// fixtureTenants returns the names of tenant A and tenant B.
func fixtureTenants() (a, b string) {
	return envOr("TP_TENANT_A", defaultTenantA), envOr("TP_TENANT_B", defaultTenantB)
}

// fixtureMode returns the pool mode the DSNs are served in ("direct" for the stand-in).
func fixtureMode() string {
	if os.Getenv("TP_DSN_A") == "" {
		return "direct"
	}
	return envOr("TP_MODE", "transaction")
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// startDirectStandIn starts a PostgreSQL cluster (scram-sha-256) laid out as the proxy presents it to a
// tenant: database agentichr with one schema per tenant (acme, globex), each holding an employees table whose
// tenant column defaults to the schema's name, and one LOGIN role per tenant user ("alice@acme",
// "bob@globex", password "secret") whose search_path is its tenant's schema and whose privileges cover that
// schema only. Connecting straight to it as those users gives the view a client gets through the proxy.
// It returns the two users' URLs.
func startDirectStandIn(t *testing.T) (a, b string) {
	t.Helper()
	c := pgtest.New(t, pgtest.Options{Auth: "scram-sha-256"})
	c.MustExec(t, "postgres", "CREATE DATABASE "+fixtureDB)
	users := map[string]string{defaultTenantA: "alice@" + defaultTenantA, defaultTenantB: "bob@" + defaultTenantB}
	var sql strings.Builder
	sql.WriteString("REVOKE ALL ON SCHEMA public FROM PUBLIC;\n")
	for _, tenant := range []string{defaultTenantA, defaultTenantB} {
		fmt.Fprintf(&sql, `
CREATE SCHEMA %[1]s;
CREATE TABLE %[1]s.employees (
	id serial PRIMARY KEY,
	name text NOT NULL,
	email text,
	tenant text NOT NULL DEFAULT '%[1]s'
);
INSERT INTO %[1]s.employees (name, email)
	SELECT '%[1]s employee ' || i, 'e' || i || '@%[1]s.example' FROM generate_series(1, 5) AS i;
CREATE ROLE "%[2]s" LOGIN PASSWORD '%[3]s';
ALTER ROLE "%[2]s" SET search_path = %[1]s;
GRANT CONNECT ON DATABASE %[4]s TO "%[2]s";
GRANT USAGE ON SCHEMA %[1]s TO "%[2]s";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %[1]s TO "%[2]s";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %[1]s TO "%[2]s";
`, tenant, users[tenant], fixturePass, fixtureDB)
	}
	sql.WriteString("REVOKE CONNECT ON DATABASE " + fixtureDB + " FROM PUBLIC;\n")
	c.MustExec(t, fixtureDB, sql.String())
	dsn := func(user string) string {
		u := url.URL{
			Scheme:   "postgresql",
			User:     url.UserPassword(user, fixturePass),
			Host:     fmt.Sprintf("%s:%d", c.Host, c.Port),
			Path:     "/" + fixtureDB,
			RawQuery: "sslmode=disable",
		}
		return u.String()
	}
	return dsn(users[defaultTenantA]), dsn(users[defaultTenantB])
}
