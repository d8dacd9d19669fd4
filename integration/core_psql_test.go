package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runPsql runs psql against url with args and extra environment, and returns its stdout and stderr.
func runPsql(t *testing.T, url string, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, fx.Cluster.Bin("psql"), append([]string{"-X", "-q", "-A", "-t", "-d", url}, args...)...)
	cmd.Env = append(cleanPGEnv(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// cleanPGEnv is the process environment without the PG* variables libpq would read.
func cleanPGEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "PGCONNECT_TIMEOUT=10")
}

// TestPsqlScriptInBothPoolModes runs a psql script through the proxy: variables, a committed
// transaction, errors in and out of a transaction, \copy both ways; everything psql shows is acme's.
func TestPsqlScriptInBothPoolModes(t *testing.T) {
	for _, pm := range poolModes {
		t.Run(string(pm), func(t *testing.T) {
			p := startProxy(t, pm, nil)
			mark := marker(t)
			dir := t.TempDir()
			in, out := filepath.Join(dir, "in.csv"), filepath.Join(dir, "out.csv")
			if err := os.WriteFile(in, []byte(mark+"-copy,c1@acme.example\n"+mark+"-copy,c2@acme.example\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			script := strings.NewReplacer("{{mark}}", mark, "{{in}}", in, "{{out}}", out).Replace(`\set who '{{mark}}'
SELECT current_user, current_setting('tenantproxy.tenant');
BEGIN;
INSERT INTO employees (name, email) VALUES (:'who', 'psql@acme.example');
COMMIT;
SELECT 1/0;
BEGIN;
INSERT INTO employees (name, email) VALUES (:'who' || '-rolled', 'psql@acme.example');
SELECT no_such_column FROM employees;
ROLLBACK;
\copy employees (name, email) from '{{in}}' with (format csv)
\copy (SELECT name, tenant FROM employees ORDER BY id) to '{{out}}' with (format csv)
SELECT 'committed=' || count(*) FROM employees WHERE name = :'who';
SELECT 'rolled=' || count(*) FROM employees WHERE name = :'who' || '-rolled';
SELECT 'copied=' || count(*) FROM employees WHERE name = :'who' || '-copy';
SELECT 'tenants=' || string_agg(DISTINCT tenant, ',') FROM employees;
`)
			path := filepath.Join(dir, "script.sql")
			if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, err := runPsql(t, p.TenantURL("acme"), nil, "-f", path)
			if err != nil {
				t.Fatalf("psql: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
			}
			want := "tenant_acme|acme\ncommitted=1\nrolled=0\ncopied=2\ntenants=acme\n"
			if stdout != want {
				t.Fatalf("psql output:\n%s\nwant:\n%s\nstderr:\n%s", stdout, want, stderr)
			}
			for _, e := range []string{"ERROR:  division by zero", `ERROR:  column "no_such_column" does not exist`} {
				if !strings.Contains(stderr, e) {
					t.Errorf("psql stderr lacks %q:\n%s", e, stderr)
				}
			}
			if n := strings.Count(stderr, "ERROR:"); n != 2 {
				t.Errorf("psql reported %d errors, want 2:\n%s", n, stderr)
			}
			copied, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(copied)), "\n")
			for _, line := range lines {
				if !strings.HasSuffix(line, ",acme") {
					t.Fatalf("\\copy to a file wrote a row of another tenant: %q", line)
				}
			}
			if !strings.Contains(string(copied), mark+"-copy,acme\n") || !strings.Contains(string(copied), mark+",acme\n") {
				t.Fatalf("\\copy to a file lacks the rows the script wrote:\n%s", copied)
			}
		})
	}
}
