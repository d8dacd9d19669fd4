package integration

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/pgtest"
)

// TestMetricsEndpoint runs transactions of acme through a proxy with [metrics] addr set and reads
// /metrics: clients, backends by state, acme's transactions and the lease wait histogram are there with
// the values the traffic implies.
func TestMetricsEndpoint(t *testing.T) {
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := startProxy(t, config.ModeTransaction, func(c *config.Config) { c.Metrics.Addr = addr })
	ctx := testContext(t, 30*time.Second)
	conn := connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeSimpleProtocol)
	const txs = 5
	for i := 0; i < txs; i++ {
		if _, err := conn.Exec(ctx, "SELECT count(*) FROM employees"); err != nil {
			t.Fatal(err)
		}
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	want := []*regexp.Regexp{
		regexp.MustCompile(`(?m)^tenantproxy_clients 1$`),
		regexp.MustCompile(`(?m)^tenantproxy_backends\{state="idle"\} [1-9]`),
		regexp.MustCompile(`(?m)^tenantproxy_backends\{state="active"\} 0$`),
		regexp.MustCompile(`(?m)^tenantproxy_stats_totals_xacts_total\{tenant="acme"\} ([5-9]|\d\d+)$`),
		regexp.MustCompile(`(?m)^tenantproxy_lease_wait_seconds_bucket\{le="\+Inf"\} ([5-9]|\d\d+)$`),
		regexp.MustCompile(`(?m)^tenantproxy_lease_wait_seconds_count ([5-9]|\d\d+)$`),
	}
	// Backend gauges are refreshed by the relay's tick, every quarter second.
	var body string
	for deadline := time.Now().Add(3 * time.Second); ; {
		body = getMetrics(t, client, "http://"+addr+"/metrics")
		missing := 0
		for _, re := range want {
			if !re.MatchString(body) {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, re := range want {
		if !re.MatchString(body) {
			t.Errorf("/metrics lacks a line matching %s", re)
		}
	}
	t.Logf("/metrics:\n%s", body)
}

// getMetrics returns the body of a GET of url.
func getMetrics(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	return string(b)
}
