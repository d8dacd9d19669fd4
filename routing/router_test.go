package routing

import (
	"testing"

	"github.com/tenantproxy/tenantproxy/config"
)

func TestAuthorizeKeepsAnalyticsUsersAndTenantsApart(t *testing.T) {
	cfg, err := config.Parse(`
[auth]
method = "trust"
[[tenants]]
name = "acme"
[[users]]
name = "alice"
tenants = ["acme"]
[[users]]
name = "insights"
profile = "analytics"
tenants = ["acme"]
`)
	if err != nil {
		t.Fatal(err)
	}
	snap := NewRouter(cfg, cfg.Tenants).Snapshot()
	cases := []struct {
		user, database string
		wantTenant     string
		wantCode       string
	}{
		{"insights", "analytics", "analytics", ""},
		{"insights@analytics", "", "analytics", ""},
		{"insights@acme", "", "", "28000"}, // bound to acme in the config, but an analytics user reaches no tenant
		{"alice@acme", "", "acme", ""},
		{"alice@analytics", "", "", "28000"},
		{"alice", "analytics", "", "28000"},
	}
	for _, c := range cases {
		id, rerr := snap.Identify(c.user, c.database)
		if rerr != nil {
			t.Fatalf("identify %s/%s: %v", c.user, c.database, rerr)
		}
		tn, aerr := snap.Authorize(id)
		switch {
		case c.wantCode != "" && (aerr == nil || aerr.Code != c.wantCode):
			t.Errorf("%s/%s: %v %v, want %s", c.user, c.database, tn, aerr, c.wantCode)
		case c.wantCode == "" && (aerr != nil || tn.Name != c.wantTenant):
			t.Errorf("%s/%s: %v %v, want tenant %s", c.user, c.database, tn, aerr, c.wantTenant)
		}
	}
	for _, tn := range snap.Tenants() {
		if tn.Name == config.Analytics {
			t.Errorf("Tenants lists the analytics pseudo-tenant")
		}
	}
}
