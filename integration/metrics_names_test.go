package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/pgtest"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// metricName matches a tenantproxy metric name in a PromQL expression.
var metricName = regexp.MustCompile(`\btenantproxy_[a-z0-9_]+\b`)

// dashboardNames returns the metric names that deploy/grafana/tenantproxy.json's queries (panel targets
// and template variables) use; the file must be valid JSON.
func dashboardNames(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../deploy/grafana/tenantproxy.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("deploy/grafana/tenantproxy.json is not JSON: %v", err)
	}
	names := map[string]bool{}
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(e, k)
			}
		case []any:
			for _, e := range v {
				walk(e, key)
			}
		case string:
			if key == "expr" || key == "query" || key == "definition" {
				for _, n := range metricName.FindAllString(v, -1) {
					names[n] = true
				}
			}
		}
	}
	walk(dash, "")
	return names
}

// alertNames returns the metric names that deploy/prometheus/alerts.yml's expressions use; each rule
// must have an alert name, an expression and a severity.
func alertNames(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	alerts := regexp.MustCompile(`(?m)^\s+- alert: \w+$`).FindAllStringIndex(text, -1)
	if len(alerts) == 0 {
		t.Fatal("alerts.yml has no rule")
	}
	names := map[string]bool{}
	for i, a := range alerts {
		end := len(text)
		if i+1 < len(alerts) {
			end = alerts[i+1][0]
		}
		rule := text[a[0]:end]
		expr := regexp.MustCompile(`(?m)^\s+expr: (.+)$`).FindStringSubmatch(rule)
		if expr == nil || !regexp.MustCompile(`(?m)^\s+severity: (critical|warning|info)$`).MatchString(rule) {
			t.Errorf("rule %q lacks a one-line expr or a severity", strings.TrimSpace(text[a[0]:a[1]]))
			continue
		}
		for _, n := range metricName.FindAllString(expr[1], -1) {
			names[n] = true
		}
	}
	return names
}

// exposedNames returns the metric names of a /metrics body that have at least one series.
func exposedNames(body string) map[string]bool {
	names := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// TestDashboardAndAlertMetricsExistOnALiveProxy runs traffic of every kind the dashboard and the
// alerts watch (transactions, a refused statement, a server error, a failed login, the per-schema
// collector) through a proxy and checks that every metric name they use is on its /metrics, and that
// the per-tenant series carry acme's figures.
func TestDashboardAndAlertMetricsExistOnALiveProxy(t *testing.T) {
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := startProxy(t, config.ModeTransaction, func(c *config.Config) {
		c.Metrics.Addr = addr
		c.Metrics.SchemaStatsInterval = config.Duration{Duration: 200 * time.Millisecond}
		c.Tenants[0].MaxClients = 50
	})
	ctx := testContext(t, 60*time.Second)
	conn := connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeSimpleProtocol)
	const txs = 5
	for i := 0; i < txs; i++ {
		if _, err := conn.Exec(ctx, "SELECT count(*) FROM employees"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, "SET ROLE postgres"); sqlstate(err) != "42501" {
		t.Fatalf("SET ROLE: %v, want 42501 from the guard", err)
	}
	if _, err := conn.Exec(ctx, "SELECT 1/0"); sqlstate(err) != "22012" {
		t.Fatalf("SELECT 1/0: %v, want 22012 from the server", err)
	}
	if c, err := dialPgx(ctx, strings.Replace(p.TenantURL("globex"), proxytest.Password, "wrong", 1), pgx.QueryExecModeSimpleProtocol, nil); err == nil {
		c.Close(ctx)
		t.Fatal("a wrong password got in")
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	want := []*regexp.Regexp{
		regexp.MustCompile(`(?m)^tenantproxy_stats_totals_queries_total\{tenant="acme"\} ([6-9]|\d\d+)$`),
		regexp.MustCompile(`(?m)^tenantproxy_stats_totals_xacts_total\{tenant="acme"\} ([5-9]|\d\d+)$`),
		regexp.MustCompile(`(?m)^tenantproxy_stats_totals_refused_statements_total\{tenant="acme"\} 1$`),
		regexp.MustCompile(`(?m)^tenantproxy_stats_totals_received_bytes_total\{tenant="acme"\} [1-9]`),
		regexp.MustCompile(`(?m)^tenantproxy_stats_totals_query_seconds_total\{tenant="acme"\} [0-9.e-]+$`),
		regexp.MustCompile(`(?m)^tenantproxy_pools_client_active_connections\{tenant="acme"\} 1$`),
		regexp.MustCompile(`(?m)^tenantproxy_pools_client_max_connections\{tenant="acme"\} 50$`),
		regexp.MustCompile(`(?m)^tenantproxy_pools_client_waiting_connections\{tenant="_other"\} 0$`),
		regexp.MustCompile(`(?m)^tenantproxy_guard_refusals_total\{reason="policy"\} 1$`),
		regexp.MustCompile(`(?m)^tenantproxy_errors_total\{source="proxy",sqlstate="42501"\} 1$`),
		regexp.MustCompile(`(?m)^tenantproxy_errors_total\{source="server",sqlstate="22012"\} 1$`),
		regexp.MustCompile(`(?m)^tenantproxy_auth_failures_total 1$`),
		regexp.MustCompile(`(?m)^tenantproxy_pool_size 4$`),
		regexp.MustCompile(`(?m)^tenantproxy_schema_tables\{tenant="acme"\} [1-9]`),
		regexp.MustCompile(`(?m)^tenantproxy_schema_size_bytes\{tenant="globex"\} [1-9]`),
		regexp.MustCompile(`(?m)^tenantproxy_schema_stats_schemas 2$`),
	}
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; {
		body = getMetrics(t, client, "http://"+addr+"/metrics")
		missing := 0
		for _, re := range want {
			if !re.MatchString(body) {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, re := range want {
		if !re.MatchString(body) {
			t.Errorf("/metrics lacks a line matching %s", re)
		}
	}
	exposed := exposedNames(body)
	for file, names := range map[string]map[string]bool{"deploy/grafana/tenantproxy.json": dashboardNames(t), "deploy/prometheus/alerts.yml": alertNames(t)} {
		if len(names) < 5 {
			t.Errorf("%s uses only %d metric names; the parser missed its queries", file, len(names))
		}
		var missing []string
		for n := range names {
			if !exposed[n] {
				missing = append(missing, n)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("%s uses metrics that /metrics does not have: %s", file, strings.Join(missing, ", "))
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

// TestTenantSeriesStayBoundedWithTenThousandTenants configures 10,000 tenants (acme and globex, which
// have schemas, and 9,998 that have none and never connect) with [metrics] tenant_series = 20 and the
// per-schema collector on: every per-tenant family on /metrics has K series and _other, acme (the one
// with traffic) among them.
func TestTenantSeriesStayBoundedWithTenThousandTenants(t *testing.T) {
	const tenants, k = 10000, 20
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := startProxy(t, config.ModeTransaction, func(c *config.Config) {
		off := false
		c.Tenancy.RequireHardening = &off // the 9,998 extra tenants have no schema to check
		c.Metrics.Addr = addr
		c.Metrics.TenantSeries = k
		c.Metrics.SchemaStatsInterval = config.Duration{Duration: 500 * time.Millisecond}
		for i := len(c.Tenants); i < tenants; i++ {
			name := fmt.Sprintf("t%05d", i)
			c.Tenants = append(c.Tenants, config.Tenant{Name: name, Schema: name})
		}
	})
	ctx := testContext(t, 60*time.Second)
	conn := connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeSimpleProtocol)
	if _, err := conn.Exec(ctx, "SELECT count(*) FROM employees"); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var body string
	ready := regexp.MustCompile(`(?m)^tenantproxy_schema_stats_schemas 2$`)
	for deadline := time.Now().Add(20 * time.Second); ; {
		body = getMetrics(t, client, "http://"+addr+"/metrics")
		if ready.MatchString(body) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !ready.MatchString(body) {
		t.Fatalf("the per-schema collector never reported acme's and globex's schemas")
	}
	series := map[string]int{}
	var tenantSeries int
	for _, line := range strings.Split(body, "\n") {
		if i := strings.Index(line, `{tenant="`); i > 0 && line[0] != '#' {
			series[line[:i]]++
			tenantSeries++
		}
	}
	for name, n := range series {
		want := k + 1
		switch {
		case name == "tenantproxy_pools_client_max_connections" || name == "tenantproxy_pools_server_max_connections":
			want = k // limits have no _other
		case strings.HasPrefix(name, "tenantproxy_schema_"):
			want = 3 // acme, globex and _other: only two tenants have a schema
		}
		if n != want {
			t.Errorf("%s: %d series, want %d", name, n, want)
		}
	}
	if len(series) < 20 {
		t.Errorf("only %d per-tenant families: %v", len(series), series)
	}
	if !regexp.MustCompile(`(?m)^tenantproxy_stats_totals_queries_total\{tenant="acme"\} [1-9]`).MatchString(body) {
		t.Error("acme, the only tenant with traffic, has no series of its own")
	}
	scrape := regexp.MustCompile(`(?m)^tenantproxy_tenant_metrics_scrape_seconds (\S+)$`).FindStringSubmatch(body)
	collect := regexp.MustCompile(`(?m)^tenantproxy_schema_stats_duration_seconds (\S+)$`).FindStringSubmatch(body)
	if scrape == nil || collect == nil {
		t.Fatal("no scrape or collection time on /metrics")
	}
	t.Logf("%d tenants, tenant_series = %d: %d per-tenant series in %d families; tenant series scrape %s s; per-schema collection %s s",
		tenants, k, tenantSeries, len(series), scrape[1], collect[1])
}

// TestConsoleSetTenantSeriesChangesTheBoundAtTheNextScrape: SET metrics.tenant_series = 1 in the admin
// console leaves one tenant (the busier, acme) with series of its own and globex in _other; a bad
// value is refused with 22023; SHOW CONFIG lists the key as changeable.
func TestConsoleSetTenantSeriesChangesTheBoundAtTheNextScrape(t *testing.T) {
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := startProxy(t, config.ModeTransaction, func(c *config.Config) {
		consoleUsers(c)
		c.Metrics.Addr = addr
	})
	ctx := testContext(t, 30*time.Second)
	acme := connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeSimpleProtocol)
	globex := connectPgx(t, ctx, p.TenantURL("globex"), pgx.QueryExecModeSimpleProtocol)
	for i := 0; i < 3; i++ {
		if _, err := acme.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := globex.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	queries := func() string {
		var lines []string
		for _, l := range strings.Split(getMetrics(t, client, "http://"+addr+"/metrics"), "\n") {
			if strings.HasPrefix(l, "tenantproxy_stats_totals_queries_total{") {
				lines = append(lines, l)
			}
		}
		return strings.Join(lines, "\n")
	}
	// The analytics user's pseudo-tenant is one of the relay's tenants too (it has no traffic here).
	before := `tenantproxy_stats_totals_queries_total{tenant="_other"} 0
tenantproxy_stats_totals_queries_total{tenant="acme"} 3
tenantproxy_stats_totals_queries_total{tenant="analytics"} 0
tenantproxy_stats_totals_queries_total{tenant="globex"} 1`
	if got := queries(); got != before {
		t.Fatalf("before SET:\n%s\nwant\n%s", got, before)
	}
	admin := connectPgx(t, ctx, consoleURL(p, "opsadmin", "pgbouncer"), pgx.QueryExecModeSimpleProtocol)
	for _, q := range []string{"SET metrics.tenant_series = '0'", "SET metrics.tenant_series = 'many'"} {
		if _, err := admin.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol); sqlstate(err) != "22023" {
			t.Errorf("%s: %v, want 22023", q, err)
		}
	}
	if _, err := admin.Exec(ctx, "SET metrics.tenant_series = '1'", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("SET metrics.tenant_series: %v", err)
	}
	after := `tenantproxy_stats_totals_queries_total{tenant="_other"} 1
tenantproxy_stats_totals_queries_total{tenant="acme"} 3`
	if got := queries(); got != after {
		t.Errorf("after SET metrics.tenant_series = 1:\n%s\nwant\n%s", got, after)
	}
	_, rows, err := consoleQuery(ctx, admin, "SHOW CONFIG")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rows {
		if r[0] == "metrics.tenant_series" {
			found = true
			if r[1] != "1" || r[2] != "100" || r[3] != "yes" {
				t.Errorf("SHOW CONFIG metrics.tenant_series = %v, want value 1, default 100, changeable yes", r)
			}
		}
	}
	if !found {
		t.Error("SHOW CONFIG has no metrics.tenant_series")
	}
}
