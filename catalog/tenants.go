package catalog

import (
	"reflect"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// catalogTenantsQuery reads every tenant with its limits. It goes through to_jsonb so that a catalog
// without the limit columns yet (an older init, the pool role cannot add them) reads as "no limits"
// instead of failing the proxy's catalog watch.
const catalogTenantsQuery = `SELECT name, schema, status = 'suspended',
	coalesce((to_jsonb(t) ->> 'max_clients')::integer, 0),
	coalesce((to_jsonb(t) ->> 'max_backends')::integer, 0),
	coalesce((to_jsonb(t) ->> 'weight')::integer, 0),
	coalesce((extract(epoch FROM (to_jsonb(t) ->> 'statement_timeout')::interval) * 1000)::bigint, 0),
	ARRAY(SELECT jsonb_array_elements_text(coalesce(to_jsonb(t) -> 'allow', '[]')))
FROM tenantproxy.tenants t ORDER BY name`

// scanCatalogTenant reads one row of catalogTenantsQuery.
func scanCatalogTenant(row pgx.CollectableRow) (config.Tenant, error) {
	var t config.Tenant
	var ms int64
	err := row.Scan(&t.Name, &t.Schema, &t.Suspended, &t.MaxClients, &t.MaxBackends, &t.Weight, &ms, &t.Allow)
	if len(t.Allow) == 0 {
		t.Allow = nil
	}
	t.StatementTimeout = config.Duration{Duration: time.Duration(ms) * time.Millisecond}
	return t, err
}

// sameTenant compares two catalog tenants field by field (config.Tenant holds a slice).
func sameTenant(a, b config.Tenant) bool { return reflect.DeepEqual(a, b) }
