package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgcluster"
	"github.com/tenantproxy/tenantproxy/tenants"
)

// database is the soak's backend database.
const database = "soak"

// password is every soak user's password.
const password = "secret"

// fixture is a throwaway cluster provisioned as an operator would: hardened by init, with n tenants
// created by tenant create from the proxytest migrations (an employees table whose tenant column
// defaults to the injected tenant setting), and one app user per tenant.
type fixture struct {
	cluster *pgcluster.Cluster
	cfg     *config.Config
	tenants []string
}

// tenantName and userName name the i-th tenant and its user.
func tenantName(i int) string { return fmt.Sprintf("t%03d", i+1) }
func userName(i int) string   { return fmt.Sprintf("u%03d", i+1) }

// startFixture starts and provisions the cluster; the caller stops f.cluster.
func startFixture(ctx context.Context, n int, mode string, pool int) (*fixture, error) {
	c, err := pgcluster.Start(pgcluster.Options{})
	if err != nil {
		return nil, err
	}
	f := &fixture{cluster: c}
	fail := func(err error) (*fixture, error) {
		c.Stop()
		return nil, err
	}
	if err := c.Exec(ctx, "postgres", "CREATE DATABASE "+database); err != nil {
		return fail(err)
	}
	for i := 0; i < n; i++ {
		f.tenants = append(f.tenants, tenantName(i))
	}
	if f.cfg, err = f.config(mode, pool); err != nil {
		return fail(err)
	}
	var out bytes.Buffer
	bare := *f.cfg
	bare.Tenants = nil
	if code := tenants.Main(ctx, &bare, []string{"init"}, &out, &out); code != 0 {
		return fail(fmt.Errorf("tenantproxy init: exit %d\n%s", code, out.String()))
	}
	for _, t := range f.tenants {
		if code := tenants.Main(ctx, f.cfg, []string{"tenant", "create", t}, &out, &out); code != 0 {
			return fail(fmt.Errorf("tenantproxy tenant create %s: exit %d\n%s", t, code, out.String()))
		}
	}
	return f, nil
}

// config is the proxy's configuration over the fixture.
func (f *fixture) config(mode string, pool int) (*config.Config, error) {
	var b strings.Builder
	fmt.Fprintf(&b, `
[listen]
addr = "127.0.0.1:0"
[backend]
host = %q
port = %d
database = %q
user = "tenantproxy_pool"
password = "pool-secret"
pool_size = %d
query_timeout = "30s"
[pool]
mode = %q
wait_timeout = "10s"
shutdown_timeout = "5s"
[auth]
method = "scram-sha-256"
[admin]
user = %q
password = %q
[migrations]
dir = %q
`, f.cluster.Host, f.cluster.Port, database, pool, mode, f.cluster.User, f.cluster.Password, migrationsDir())
	for i, t := range f.tenants {
		fmt.Fprintf(&b, "[[tenants]]\nname = %q\n[[users]]\nname = %q\npassword = %q\ntenants = [%q]\n", t, userName(i), password, t)
	}
	return config.Parse(b.String())
}

// url is the connection URL of tenant i's user through the proxy at addr.
func (f *fixture) url(addr string, i int) string {
	return fmt.Sprintf("postgresql://%s%%40%s:%s@%s/%s?sslmode=disable", userName(i), tenantName(i), password, addr, database)
}

// migrationsDir is the proxytest migrations directory, found from this source file.
func migrationsDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "integration", "proxytest", "testdata", "migrations")
}
