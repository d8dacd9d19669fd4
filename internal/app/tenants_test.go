package app

import (
	"testing"

	"github.com/tenantproxy/tenantproxy/config"
)

// The relay gets the analytics pseudo-tenant last, in the analytics role's context, and the tenants'
// own limits.
func TestRelayTenantsAddTheAnalyticsPseudoTenant(t *testing.T) {
	cfg, err := config.Parse("[auth]\nmethod = \"trust\"\n[[tenants]]\nname = \"acme\"\nweight = 3\n")
	if err != nil {
		t.Fatal(err)
	}
	relay := relayTenants(cfg, cfg.Tenants)
	if len(relay) != 2 || relay[0].Name != "acme" || relay[0].Limits.Weight != 3 {
		t.Fatalf("relay tenants: %+v", relay)
	}
	last := relay[len(relay)-1]
	if last.Name != config.Analytics || last.SetupSQL != `SET ROLE "tenantproxy_analytics"; SET search_path TO "analytics"; SET tenantproxy.tenant TO 'analytics'` ||
		len(last.AllowedSchemas) != 2 || last.AllowedSchemas[0] != "analytics" {
		t.Errorf("relay's analytics tenant: %+v", last)
	}
}
