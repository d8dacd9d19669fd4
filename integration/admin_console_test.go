package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/pgtest"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// consoleUsers adds the console's users to a fixture config: opsadmin (admin_users) and watcher
// (stats_users), bound to no tenant.
func consoleUsers(c *config.Config) {
	c.Users = append(c.Users,
		config.User{Name: "opsadmin", Password: proxytest.Password, Profile: config.ProfileApp},
		config.User{Name: "watcher", Password: proxytest.Password, Profile: config.ProfileApp},
		config.User{Name: "latecomer", Password: proxytest.Password, Profile: config.ProfileApp})
	c.AdminConsole.AdminUsers = []string{"opsadmin"}
	c.AdminConsole.StatsUsers = []string{"watcher"}
}

func consoleURL(p *proxytest.Proxy, user, db string) string {
	u := url.URL{Scheme: "postgresql", User: url.UserPassword(user, proxytest.Password), Host: net.JoinHostPort(p.Host, strconv.Itoa(p.Port)), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// consoleQuery runs one console command over the simple protocol and returns its rows as text.
func consoleQuery(ctx context.Context, conn *pgx.Conn, q string) ([]string, [][]string, error) {
	rows, err := conn.Query(ctx, q, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var names []string
	for _, f := range rows.FieldDescriptions() {
		names = append(names, f.Name)
	}
	var out [][]string
	for rows.Next() {
		raw := rows.RawValues()
		row := make([]string, len(raw))
		for i, v := range raw {
			row[i] = string(v)
		}
		out = append(out, row)
	}
	return names, out, rows.Err()
}

func column(names []string, rows [][]string, key, keyCol, valCol string) string {
	ki, vi := -1, -1
	for i, n := range names {
		if n == keyCol {
			ki = i
		}
		if n == valCol {
			vi = i
		}
	}
	for _, r := range rows {
		if ki >= 0 && vi >= 0 && r[ki] == key {
			return r[vi]
		}
	}
	return "<missing>"
}

// TestAdminConsoleThroughTheProxy opens the console through the real front door with pgx and psql:
// what the app answers itself (databases, users, config, lists, version, state) with values that move
// with load, permissions, and RELOAD. The relay's sections: TestAdminConsoleRelaySections.
func TestAdminConsoleThroughTheProxy(t *testing.T) {
	cfgPath := filepath.Join(t.TempDir(), "config.toml")
	p := startProxy(t, config.ModeTransaction, func(c *config.Config) {
		consoleUsers(c)
		c.Path = cfgPath
	})
	writeTOML(t, cfgPath, p.Cfg)
	ctx := testContext(t, 60*time.Second)
	for _, db := range []string{"pgbouncer", "tenantproxy"} {
		conn := connectPgx(t, ctx, consoleURL(p, "opsadmin", db), pgx.QueryExecModeSimpleProtocol)
		_, rows, err := consoleQuery(ctx, conn, "SHOW VERSION")
		if err != nil || len(rows) != 1 || rows[0][0] != "tenantproxy test" {
			t.Fatalf("SHOW VERSION on %s: %v %v", db, rows, err)
		}
	}
	admin := connectPgx(t, ctx, consoleURL(p, "opsadmin", "pgbouncer"), pgx.QueryExecModeSimpleProtocol)
	names, rows, err := consoleQuery(ctx, admin, "SHOW DATABASES")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names[:5], ",") != "name,host,port,database,force_user" || len(rows) != len(fx.Tenants) {
		t.Errorf("SHOW DATABASES: %v %v", names, rows)
	}
	if got := column(names, rows, "acme", "name", "force_user"); got != "tenantproxy_pool" {
		t.Errorf("acme force_user = %s", got)
	}
	names, rows, _ = consoleQuery(ctx, admin, "SHOW USERS")
	if got := column(names, rows, "watcher", "name", "name"); got != "watcher" {
		t.Errorf("SHOW USERS lacks watcher: %v", rows)
	}
	names, rows, _ = consoleQuery(ctx, admin, "SHOW CONFIG")
	if got := column(names, rows, "max_client_conn", "key", "value"); got != strconv.Itoa(p.Cfg.Pool.MaxClientConn) {
		t.Errorf("SHOW CONFIG max_client_conn = %s", got)
	}
	if got := column(names, rows, "pool_mode", "key", "value"); got != "transaction" {
		t.Errorf("SHOW CONFIG pool_mode = %s", got)
	}
	if got := column(names, rows, "admin_users", "key", "changeable"); got != "yes" {
		t.Errorf("SHOW CONFIG admin_users changeable = %s", got)
	}
	if _, rows, _ = consoleQuery(ctx, admin, "SHOW STATE"); len(rows) != 3 || rows[0][1] != "yes" {
		t.Errorf("SHOW STATE: %v", rows)
	}

	// SHOW LISTS moves with load: a tenant client raises used_clients.
	_, before, _ := consoleQuery(ctx, admin, "SHOW LISTS")
	app := connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeSimpleProtocol)
	if _, err := app.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	_, after, _ := consoleQuery(ctx, admin, "SHOW LISTS")
	b, _ := strconv.Atoi(column([]string{"list", "items"}, before, "used_clients", "list", "items"))
	a, _ := strconv.Atoi(column([]string{"list", "items"}, after, "used_clients", "list", "items"))
	if a != b+1 {
		t.Errorf("used_clients %d -> %d with one more client", b, a)
	}

	// A control command naming a tenant that does not exist.
	if _, err := admin.Exec(ctx, "PAUSE nosuch", pgx.QueryExecModeSimpleProtocol); sqlstate(err) != "08P01" || !strings.Contains(errorMessage(err), "no such database: nosuch") {
		t.Errorf("PAUSE nosuch: %v", err)
	}
	// The extended protocol is refused, as by pgbouncer.
	ext, err := dialPgx(ctx, consoleURL(p, "opsadmin", "pgbouncer"), pgx.QueryExecModeExec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ext.PgConn().Prepare(ctx, "", "SHOW VERSION", nil); err == nil || !strings.Contains(errorMessage(err), "extended query protocol not supported by admin console") {
		t.Errorf("extended protocol: %v", err)
	}
	ext.Close(ctx)

	// Permissions: stats users see, may not act; tenant users and unknown passwords do not get in.
	watcher := connectPgx(t, ctx, consoleURL(p, "watcher", "pgbouncer"), pgx.QueryExecModeSimpleProtocol)
	if _, _, err := consoleQuery(ctx, watcher, "SHOW DATABASES"); err != nil {
		t.Errorf("SHOW DATABASES by a stats user: %v", err)
	}
	for _, q := range []string{"RELOAD", "PAUSE acme", "SHUTDOWN", "KILL_CLIENT 1", "SET max_client_conn = 1"} {
		if _, err := watcher.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol); sqlstate(err) != "08P01" || errorMessage(err) != "admin access needed" {
			t.Errorf("%s by a stats user: %v", q, err)
		}
	}
	for _, tc := range []struct{ url, code string }{
		{consoleURL(p, "alice", "pgbouncer"), "28000"},
		{consoleURL(p, "latecomer", "tenantproxy"), "28000"},
		{strings.Replace(consoleURL(p, "opsadmin", "pgbouncer"), proxytest.Password, "wrong", 1), "28P01"},
	} {
		c, err := dialPgx(ctx, tc.url, pgx.QueryExecModeSimpleProtocol, nil)
		if err == nil {
			c.Close(ctx)
		}
		if sqlstate(err) != tc.code {
			t.Errorf("%s: %v, want %s", redact(tc.url), err, tc.code)
		}
	}

	// DISABLE refuses the tenant's new clients, keeps its connected ones; ENABLE undoes it.
	if _, err := admin.Exec(ctx, "DISABLE acme", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("DISABLE acme: %v", err)
	}
	if c, err := dialPgx(ctx, p.TenantURL("acme"), pgx.QueryExecModeSimpleProtocol, nil); sqlstate(err) != "57P03" {
		if err == nil {
			c.Close(ctx)
		}
		t.Errorf("a new acme client while disabled: %v", err)
	}
	if _, err := app.Exec(ctx, "SELECT 1"); err != nil {
		t.Errorf("a connected acme client while disabled: %v", err)
	}
	if c, err := dialPgx(ctx, p.TenantURL("globex"), pgx.QueryExecModeSimpleProtocol, nil); err != nil {
		t.Errorf("globex while acme is disabled: %v", err)
	} else {
		c.Close(ctx)
	}
	names, rows, _ = consoleQuery(ctx, admin, "SHOW DATABASES")
	if got := column(names, rows, "acme", "name", "disabled"); got != "1" {
		t.Errorf("SHOW DATABASES disabled for acme = %s", got)
	}
	if _, err := admin.Exec(ctx, "ENABLE acme", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("ENABLE acme: %v", err)
	}
	if c, err := dialPgx(ctx, p.TenantURL("acme"), pgx.QueryExecModeSimpleProtocol, nil); err != nil {
		t.Errorf("acme after ENABLE: %v", err)
	} else {
		c.Close(ctx)
	}

	// SET of a setting the app owns takes effect at once; a bad value is refused with 22023.
	if _, err := admin.Exec(ctx, "SET stats_users = 'watcher,latecomer'", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("SET stats_users: %v", err)
	}
	if c, err := dialPgx(ctx, consoleURL(p, "latecomer", "pgbouncer"), pgx.QueryExecModeSimpleProtocol, nil); err != nil {
		t.Errorf("latecomer after SET stats_users: %v", err)
	} else {
		c.Close(ctx)
	}
	for _, q := range []string{"SET stats_users = 'ghost'", "SET auth_type = 'kerberos'", "SET auth.failure_delay = 'soon'"} {
		if _, err := admin.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol); sqlstate(err) != "22023" {
			t.Errorf("%s: %v", q, err)
		}
	}
	if _, err := admin.Exec(ctx, "SET stats_users = 'watcher'", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if c, err := dialPgx(ctx, consoleURL(p, "latecomer", "pgbouncer"), pgx.QueryExecModeSimpleProtocol, nil); sqlstate(err) != "28000" {
		if err == nil {
			c.Close(ctx)
		}
		t.Errorf("latecomer after SET stats_users without them: %v", err)
	}

	// RELOAD re-reads the file: latecomer becomes a stats user.
	cfg := *p.Cfg
	cfg.AdminConsole.StatsUsers = []string{"watcher", "latecomer"}
	writeTOML(t, cfgPath, &cfg)
	if _, err := admin.Exec(ctx, "RELOAD", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("RELOAD: %v", err)
	}
	late := connectPgx(t, ctx, consoleURL(p, "latecomer", "tenantproxy"), pgx.QueryExecModeSimpleProtocol)
	if _, _, err := consoleQuery(ctx, late, "SHOW STATE"); err != nil {
		t.Errorf("latecomer after RELOAD: %v", err)
	}
	os.WriteFile(cfgPath, []byte("[pool]\nmode = \"statement\"\n"), 0o600)
	if _, err := admin.Exec(ctx, "RELOAD", pgx.QueryExecModeSimpleProtocol); sqlstate(err) != "F0000" {
		t.Errorf("RELOAD of a broken file: %v", err)
	}

	// psql, as operators use it.
	psql := exec.CommandContext(ctx, "psql", "-X", "-A", "-t", "-c", "SHOW DATABASES", "-c", "SHOW HELP",
		fmt.Sprintf("host=%s port=%d user=watcher dbname=pgbouncer sslmode=disable", p.Host, p.Port))
	psql.Env = append(os.Environ(), "PGPASSWORD="+proxytest.Password)
	out, err := psql.CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("acme|")) || !bytes.Contains(out, []byte("SHOW TENANTS")) {
		t.Errorf("psql output:\n%s", out)
	}
}

func writeTOML(t *testing.T, path string, c *config.Config) {
	t.Helper()
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(c); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestHealthReadinessAndStatusPage reads /healthz, /readyz and /status beside /metrics.
func TestHealthReadinessAndStatusPage(t *testing.T) {
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := startProxy(t, config.ModeTransaction, func(c *config.Config) { c.Metrics.Addr = addr })
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string) (int, string) {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz: %d %q", code, body)
	}
	code, body := get("/status")
	if code != 200 || !strings.Contains(body, "tenantproxy test") || !strings.Contains(body, fmt.Sprintf("%d tenants", len(fx.Tenants))) {
		t.Errorf("/status: %d\n%s", code, body)
	}
	// Not ready once it shuts down; /healthz is gone with the process's metrics server.
	go p.Shutdown(5 * time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get("http://" + addr + "/readyz")
		if err != nil {
			break // the metrics server has closed
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz still ready while shutting down")
		}
	}
}

// TestReadyzFailsWithoutABackend points a proxy at a closed port.
func TestReadyzFailsWithoutABackend(t *testing.T) {
	port, _ := pgtest.FreePort()
	dead, _ := pgtest.FreePort()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	startProxy(t, config.ModeTransaction, func(c *config.Config) {
		c.Metrics.Addr = addr
		c.Backend.Port = dead
		c.Tenancy.RequireHardening = new(bool)
	})
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "backend server unreachable") {
		t.Errorf("/readyz without a backend: %d %s", resp.StatusCode, b)
	}
}

// TestAdminShutdownStopsTheProxy: SHUTDOWN from the console ends the app; new clients are refused.
func TestAdminShutdownStopsTheProxy(t *testing.T) {
	p := startProxy(t, config.ModeTransaction, consoleUsers)
	ctx := testContext(t, 30*time.Second)
	admin := connectPgx(t, ctx, consoleURL(p, "opsadmin", "pgbouncer"), pgx.QueryExecModeSimpleProtocol)
	admin.Exec(ctx, "SHUTDOWN", pgx.QueryExecModeSimpleProtocol) // the connection may end before the reply
	select {
	case <-p.Stopped():
	case <-ctx.Done():
		t.Fatal("SHUTDOWN did not stop the proxy")
	}
	if c, err := dialPgx(ctx, p.TenantURL("acme"), pgx.QueryExecModeSimpleProtocol, nil); err == nil {
		c.Close(ctx)
		t.Error("a client connected after SHUTDOWN")
	}
}

// TestAuditLogRecordsConnectionsFailuresAndConsoleCommands reads the JSON-lines audit log of a proxy.
func TestAuditLogRecordsConnectionsFailuresAndConsoleCommands(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	p := startProxy(t, config.ModeTransaction, func(c *config.Config) {
		consoleUsers(c)
		c.Audit.Path = path
	})
	ctx := testContext(t, 30*time.Second)
	app := connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeSimpleProtocol)
	app.Exec(ctx, "SELECT 1")
	if c, err := dialPgx(ctx, strings.Replace(p.TenantURL("globex"), proxytest.Password, "wrong", 1), pgx.QueryExecModeSimpleProtocol, nil); err == nil {
		c.Close(ctx)
		t.Fatal("a wrong password got in")
	}
	watcher := connectPgx(t, ctx, consoleURL(p, "watcher", "pgbouncer"), pgx.QueryExecModeSimpleProtocol)
	watcher.Exec(ctx, "RELOAD", pgx.QueryExecModeSimpleProtocol)
	p.Shutdown(5 * time.Second) // writes the log out
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type ev struct {
		Event, Tenant, User, Addr, SQLSTATE, Command string
	}
	var got []ev
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e ev
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		got = append(got, e)
	}
	has := func(want ev) bool {
		for _, e := range got {
			if e.Event == want.Event && e.Tenant == want.Tenant && e.User == want.User && (want.SQLSTATE == "" || e.SQLSTATE == want.SQLSTATE) &&
				(want.Command == "" || e.Command == want.Command) && e.Addr != "" {
				return true
			}
		}
		return false
	}
	for _, want := range []ev{
		{Event: "connect", Tenant: "acme", User: fx.UserOf("acme")},
		{Event: "auth_failed", Tenant: "globex", User: fx.UserOf("globex"), SQLSTATE: "28P01"},
		{Event: "connect", Tenant: "pgbouncer", User: "watcher"},
		{Event: "admin_command", User: "watcher", Command: "RELOAD", SQLSTATE: "08P01"},
	} {
		if !has(want) {
			t.Errorf("the audit log lacks %+v; it has %+v", want, got)
		}
	}
}

// TestAdminConsoleOpensWhenTheProxyIsFull: max_client_conn counts relay clients; an operator still gets in.
func TestAdminConsoleOpensWhenTheProxyIsFull(t *testing.T) {
	p := startProxy(t, config.ModeTransaction, func(c *config.Config) {
		consoleUsers(c)
		c.Pool.MaxClientConn = 1
	})
	ctx := testContext(t, 30*time.Second)
	connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeSimpleProtocol)
	if c, err := dialPgx(ctx, p.TenantURL("globex"), pgx.QueryExecModeSimpleProtocol, nil); sqlstate(err) != "53300" {
		if err == nil {
			c.Close(ctx)
		}
		t.Fatalf("a second client with max_client_conn = 1: %v", err)
	}
	admin := connectPgx(t, ctx, consoleURL(p, "opsadmin", "pgbouncer"), pgx.QueryExecModeSimpleProtocol)
	if _, rows, err := consoleQuery(ctx, admin, "SHOW LISTS"); err != nil || column([]string{"list", "items"}, rows, "used_clients", "list", "items") != "1" {
		t.Errorf("SHOW LISTS on a full proxy: %v %v", rows, err)
	}
}
