package tenants

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tenantproxy/tenantproxy/config"
)

// expectLimits waits up to within for a delivered list whose tenant name has the given limits.
func expectLimits(t *testing.T, lists <-chan []config.Tenant, name string, want config.Tenant, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	var last config.Tenant
	for {
		select {
		case ts := <-lists:
			for _, x := range ts {
				if x.Name != name {
					continue
				}
				last = x
				if x.MaxClients == want.MaxClients && x.MaxBackends == want.MaxBackends && x.Weight == want.Weight && x.StatementTimeout == want.StatementTimeout && slices.Equal(x.Allow, want.Allow) {
					return
				}
			}
		case <-deadline:
			t.Fatalf("WatchCatalog did not deliver %s with limits %+v within %v; last %+v", name, want, within, last)
		}
	}
}

// A catalog made by an init without the limit columns still feeds the proxy (no limits); the first
// `tenant set` adds the columns, and every change reaches the watcher within a second.
func TestTenantSetLimitsReachTheCatalogWatchEvenOnAnOlderCatalog(t *testing.T) {
	e := newEnv(t, nil)
	e.must("init")
	e.must("tenant", "create", "acme", "--schema", "acme")
	e.exec(`ALTER TABLE tenantproxy.tenants DROP COLUMN max_clients, DROP COLUMN max_backends, DROP COLUMN weight, DROP COLUMN statement_timeout, DROP COLUMN allow`)
	lists := watch(t, e)
	expectList(t, lists, "acme/acme", 5*time.Second)

	steps := []struct {
		args []string
		want config.Tenant
	}{
		{[]string{"max_clients=3", "weight=2"}, config.Tenant{MaxClients: 3, Weight: 2}},
		{[]string{"max_backends=1", "statement_timeout=1.5s"}, config.Tenant{MaxClients: 3, MaxBackends: 1, Weight: 2, StatementTimeout: config.Duration{Duration: 1500 * time.Millisecond}}},
		{[]string{"allow=10.0.0.0/8,192.0.2.7"}, config.Tenant{MaxClients: 3, MaxBackends: 1, Weight: 2, StatementTimeout: config.Duration{Duration: 1500 * time.Millisecond}, Allow: []string{"10.0.0.0/8", "192.0.2.7/32"}}},
		{[]string{"max_clients=0", "max_backends=0", "weight=0", "statement_timeout=0", "allow="}, config.Tenant{}},
	}
	for _, s := range steps {
		out := e.must(append([]string{"tenant", "set", "acme"}, s.args...)...)
		if !strings.Contains(out.String(), "tenant acme:") {
			t.Fatalf("tenant set output: %s", out)
		}
		start := time.Now()
		expectLimits(t, lists, "acme", s.want, time.Second)
		t.Logf("tenant set acme %s: seen after %v", strings.Join(s.args, " "), time.Since(start).Round(time.Millisecond))
	}
	// init is idempotent over the columns tenant set added.
	e.must("init")
}

func TestParseLimitArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"max_clients=10"}, true},
		{[]string{"statement_timeout=250ms", "weight=3", "max_backends=2"}, true},
		{[]string{"statement_timeout=0"}, true},
		{[]string{"statement_timeout=25h"}, false},
		{[]string{"statement_timeout=-1s"}, false},
		{[]string{"weight=1.5"}, false},
		{[]string{"max_clients=99999999999"}, false},
		{[]string{"=3"}, false},
		{[]string{"max_clients"}, false},
		{[]string{"MAX_CLIENTS=1"}, false},
		{[]string{"allow=10.0.0.0/8,::1/128"}, true},
		{[]string{"allow="}, true},
		{[]string{"allow=10.0.0.0/40"}, false},
	} {
		_, err := parseLimitArgs(tc.args)
		if (err == nil) != tc.ok {
			t.Errorf("parseLimitArgs(%v): %v, want ok=%v", tc.args, err, tc.ok)
		}
	}
}
