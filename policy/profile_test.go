package policy

import (
	"testing"

	"github.com/tenantproxy/tenantproxy/config"
)

func TestAnalyticsProfileIsReadOnlyOnTheAnalyticsSchema(t *testing.T) {
	p, err := ParseProfile(string(config.ProfileAnalytics))
	if err != nil || p != ProfileReadonly {
		t.Fatalf("ParseProfile(analytics) = %v, %v; want the read-only profile", p, err)
	}
	cfg, err := config.Parse("[auth]\nmethod = \"trust\"\n")
	if err != nil {
		t.Fatal(err)
	}
	x := AnalyticsContext(cfg)
	g := NewGuard(GuardConfig{TenantSetting: cfg.Tenancy.Setting})
	for _, c := range []struct {
		sql     string
		refused bool
	}{
		{"SELECT tenant, count(*) FROM employees GROUP BY 1", false},
		{"SET search_path TO analytics", false},
		{"SET search_path TO acme", true},
		{"INSERT INTO employees VALUES (1)", true},
		{"SET tenantproxy.tenant = 'acme'", true},
		{"SET ROLE tenant_acme", true},
	} {
		if a := g.Check(c.sql, p, x.AllowedSchemas()); a.Refused != c.refused {
			t.Errorf("%s: refused=%v (%s), want %v", c.sql, a.Refused, a.Reason, c.refused)
		}
	}
}
