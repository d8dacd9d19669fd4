package app

import (
	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/policy"
	"github.com/tenantproxy/tenantproxy/session"
)

// relayTenants turns catalog tenants into what the relay needs: each tenant's setup SQL (role,
// search_path, tenant setting) and the schemas its clients may name.
func relayTenants(c *config.Config, ts []config.Tenant) []session.Tenant {
	out := make([]session.Tenant, 0, len(ts))
	for _, t := range ts {
		x := policy.ContextFor(c, t)
		out = append(out, session.Tenant{Name: t.Name, Schema: t.Schema, SetupSQL: x.SetupSQL(), VerifySQL: x.VerifySQL(c.Backend.User),
			AllowedSchemas: x.AllowedSchemas(), Suspended: t.Suspended,
			Limits: session.TenantLimits{MaxClients: t.MaxClients, MaxBackends: t.MaxBackends, Weight: t.Weight, StatementTimeout: t.StatementTimeout.Duration}})
	}
	return out
}
