package config

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const minimal = `
[backend]
pool_size = 5
[auth]
method = "trust"
[[tenants]]
name = "acme"
[[users]]
name = "alice"
tenants = ["acme"]
`

func TestParseAppliesDefaults(t *testing.T) {
	c, err := Parse(minimal)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen addr", c.Listen.Addr, "127.0.0.1:6432"},
		{"pool mode", c.Pool.Mode, ModeTransaction},
		{"tenant schema defaults to name", c.Tenants[0].Schema, "acme"},
		{"user profile", c.Users[0].Profile, ProfileApp},
		{"resolve", strings.Join(c.Tenancy.Resolve, ","), "user,database"},
		{"require hardening", c.RequiresHardening(), true},
		{"pool size kept", c.Backend.PoolSize, 5},
		{"role expands from the schema", c.TenantRole("acme", "acme_s"), "tenant_acme_s"},
		{"search_path expands", strings.Join(c.TenantSearchPath("acme", "acme_s"), ","), "acme_s,tenant_stats,pg_catalog,public"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s: got %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestParseRejectsBadInputNamingTheKey(t *testing.T) {
	cases := []struct {
		name, text, wantInErr string
	}{
		{"unknown key", minimal + "\n[pool]\nmood = \"x\"\n", "pool.mood"},
		{"unknown section", minimal + "\n[poool]\nmode = \"x\"\n", "poool"},
		{"bad mode", strings.Replace(minimal, "[auth]", "[pool]\nmode = \"statement\"\n[auth]", 1), "[pool] mode"},
		{"bad auth method", strings.Replace(minimal, `"trust"`, `"ldap"`, 1), "[auth] method"},
		{"bad duration", strings.Replace(minimal, "[auth]", "[pool]\nwait_timeout = \"soon\"\n[auth]", 1), "soon"},
		{"zero pool", strings.Replace(minimal, "pool_size = 5", "pool_size = -1", 1), "[backend] pool_size"},
		{"tenant name invalid", strings.Replace(minimal, `name = "acme"`, `name = "Acme"`, 1), "[[tenants]] #1 name"},
		{"user bound to unknown tenant", strings.Replace(minimal, `tenants = ["acme"]`, `tenants = ["globex"]`, 1), "[[users]] alice tenants"},
		{"password required", strings.Replace(minimal, `"trust"`, `"scram-sha-256"`, 1), "[[users]] alice password"},
		{"role without placeholder", minimal + "\n[tenancy]\nrole = \"shared\"\n", "[tenancy] role"},
		{"bad setting name", minimal + "\n[tenancy]\nsetting = \"role\"\n", "[tenancy] setting"},
		{"bad resolve", minimal + "\n[tenancy]\nresolve = [\"sni\"]\n", "[tenancy] resolve"},
		{"tls require without files", minimal + "\n[listen]\ntls_mode = \"require\"\n", "[listen] tls_mode"},
		{"syntax error", "[listen\naddr = 1", "line"},
		{"duplicate tenant", minimal + "\n[[tenants]]\nname = \"acme\"\n", "listed twice"},
		{"negative tenant weight", strings.Replace(minimal, `name = "acme"`, "name = \"acme\"\nweight = -1", 1), "[[tenants]] acme weight"},
		{"negative tenant max_clients", strings.Replace(minimal, `name = "acme"`, "name = \"acme\"\nmax_clients = -2", 1), "[[tenants]] acme max_clients"},
		{"bad tenant statement_timeout", strings.Replace(minimal, `name = "acme"`, "name = \"acme\"\nstatement_timeout = \"later\"", 1), "later"},
		{"negative tenant_max_clients", strings.Replace(minimal, "[auth]", "[pool]\ntenant_max_clients = -1\n[auth]", 1), "[pool] tenant_max_clients"},
		{"tenant named analytics", strings.Replace(minimal, `name = "acme"`, `name = "analytics"`, 1), "reserved for the analytics user"},
		{"tenant schema analytics", minimal + "\n[[tenants]]\nname = \"globex\"\nschema = \"analytics\"\n", "schema of the cross-tenant views"},
		{"unknown profile", minimal + "\n[[users]]\nname = \"bi\"\nprofile = \"analyst\"\n", "[[users]] bi profile"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.text)
			if err == nil {
				t.Fatalf("accepted")
			}
			if !strings.Contains(err.Error(), tc.wantInErr) {
				t.Fatalf("error %q does not name %q", err, tc.wantInErr)
			}
		})
	}
}

func TestRepositoryConfigIsValid(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "config.toml")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Tenants) != 3 || c.Pool.Mode != ModeTransaction {
		t.Fatalf("config.toml: %d tenants, mode %s", len(c.Tenants), c.Pool.Mode)
	}
}

func TestPasswordEnv(t *testing.T) {
	c, err := Parse(minimal + "\n[admin]\npassword_env = \"TP_TEST_ADMIN_PW\"\n")
	if err != nil {
		t.Fatal(err)
	}
	os.Setenv("TP_TEST_ADMIN_PW", "s3")
	defer os.Unsetenv("TP_TEST_ADMIN_PW")
	if c.AdminPassword() != "s3" {
		t.Fatalf("admin password from env: %q", c.AdminPassword())
	}
}
