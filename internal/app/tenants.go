package app

import (
	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/policy"
	"github.com/tenantproxy/tenantproxy/session"
)

// relayTenants turns catalog tenants into what the relay needs: each tenant's setup SQL (role,
// search_path, tenant setting) and the schemas its clients may name, plus the pseudo-tenant "analytics"
// that users of profile "analytics" connect to.
func relayTenants(c *config.Config, ts []config.Tenant) []session.Tenant {
	out := make([]session.Tenant, 0, len(ts)+1)
	for _, t := range ts {
		if t.Name == config.Analytics {
			continue // reserved; config and tenant create refuse it
		}
		x := policy.ContextFor(c, t)
		out = append(out, session.Tenant{Name: t.Name, Schema: t.Schema, SetupSQL: x.SetupSQL(), VerifySQL: x.VerifySQL(c.Backend.User),
			AllowedSchemas: x.AllowedSchemas(), Suspended: t.Suspended,
			Limits: session.TenantLimits{MaxClients: t.MaxClients, MaxBackends: t.MaxBackends, Weight: t.Weight, StatementTimeout: t.StatementTimeout.Duration}})
	}
	// The analytics user's pseudo-tenant: Authorize lets only analytics users in.
	x := policy.AnalyticsContext(c)
	out = append(out, session.Tenant{Name: config.Analytics, Schema: config.Analytics, SetupSQL: x.SetupSQL(),
		VerifySQL: x.VerifySQL(c.Backend.User), AllowedSchemas: x.AllowedSchemas()})
	return out
}
