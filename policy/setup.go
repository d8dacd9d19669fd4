package policy

import (
	"strings"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgident"
)

// Context is what a tenant's session gets on the server: its role, search_path and tenant setting.
type Context struct {
	Role       string
	SearchPath []string
	Setting    string
	Tenant     string
}

// ContextFor expands [tenancy] role and search_path for a tenant.
func ContextFor(c *config.Config, t config.Tenant) Context {
	return Context{
		Role:       c.TenantRole(t.Name, t.Schema),
		SearchPath: c.TenantSearchPath(t.Name, t.Schema),
		Setting:    c.Tenancy.Setting,
		Tenant:     t.Name,
	}
}

// SetupSQL is the statement list that puts a backend in the context: SET ROLE, SET search_path and SET of
// the tenant setting, every name quoted. The setting name was validated by config as [a-z0-9_.].
func (x Context) SetupSQL() string {
	var sb strings.Builder
	sb.WriteString("SET ROLE ")
	sb.WriteString(pgident.Quote(x.Role))
	sb.WriteString("; SET search_path TO ")
	for i, p := range x.SearchPath {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(pgident.Quote(p))
	}
	sb.WriteString("; SET ")
	sb.WriteString(x.Setting)
	sb.WriteString(" TO ")
	sb.WriteString(pgident.QuoteLiteral(x.Tenant))
	return sb.String()
}

// AllowedSchemas are the schemas a client of the tenant may name in its own SET search_path: those of
// the tenant's configured search_path, and pg_catalog.
func (x Context) AllowedSchemas() []string {
	out := append([]string(nil), x.SearchPath...)
	return append(out, "pg_catalog")
}

// TenantSearchPath returns the tenant's configured search_path from its AllowedSchemas (which end with
// pg_catalog): what RESET search_path restores.
func TenantSearchPath(allowed []string) []string {
	if n := len(allowed); n > 0 && allowed[n-1] == "pg_catalog" {
		return allowed[:n-1]
	}
	return allowed
}

// VerifySQL is the tripwire's query: it returns one row with one boolean, true when the backend's session
// user is the pool role, its role and tenant setting are the tenant's, and every schema on its effective
// search_path is one the tenant may use (the client may reorder or narrow them, never add another).
func (x Context) VerifySQL(poolRole string) string {
	allowed := x.AllowedSchemas()
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = pgident.QuoteLiteral(a)
	}
	return "SELECT current_user = " + pgident.QuoteLiteral(x.Role) +
		" AND session_user = " + pgident.QuoteLiteral(poolRole) +
		" AND coalesce(current_setting(" + pgident.QuoteLiteral(x.Setting) + ", true), '') = " + pgident.QuoteLiteral(x.Tenant) +
		" AND current_schemas(false) <@ ARRAY[" + strings.Join(quoted, ", ") + "]::name[]"
}

// AnalyticsContext is the context of an analytics user's session: the analytics role, only the analytics
// schema on its search_path, and the tenant setting "analytics", which no tenant has.
func AnalyticsContext(c *config.Config) Context {
	return Context{
		Role:       config.AnalyticsRole,
		SearchPath: []string{config.Analytics},
		Setting:    c.Tenancy.Setting,
		Tenant:     config.Analytics,
	}
}
