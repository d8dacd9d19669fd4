package tenants

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// Statistics hardening. PostgreSQL's cumulative statistics views (pg_stat_*_tables, pg_statio_*,
// pg_stat_*_indexes, pg_stat_user_functions, pg_stat_xact_*, pg_stat_progress_*, pg_locks, and
// pg_stat_statements when installed) show every table's row counts, scans and activity to every role, and
// the pg_stat_get_* functions beneath them answer for any table's oid. init revokes them from PUBLIC (and
// grants them back to pg_read_all_stats, which pg_monitor includes, and to the owner role); doctor verifies
// it. The schema tenant_stats holds replacements of the per-table views that show the tenant's own schema
// only, so a tenant's monitoring keeps working: SELECT * FROM tenant_stats.pg_stat_user_tables.

// StatsSchema holds the tenant-scoped replacements of the statistics views.
const StatsSchema = config.StatsSchema

// scopedStatsViews are the pg_catalog views that tenant_stats replaces, each by a view of the same name
// and columns showing the rows of the caller's own tenant schema only.
var scopedStatsViews = []string{
	"pg_stat_user_tables", "pg_stat_xact_user_tables", "pg_statio_user_tables",
	"pg_stat_user_indexes", "pg_statio_user_indexes", "pg_statio_user_sequences",
	"pg_stat_user_functions", "pg_stat_xact_user_functions",
}

// statsObjectsQuery lists the statistics views and functions to close: kind ('view' or 'function'), the
// object as SQL names it, and the grantees (PUBLIC, the pool role or a role the pool role can use) that
// can still use it. $1 is the pool role's oid (may be NULL).
const statsObjectsQuery = `
WITH pss AS (
  SELECT d.classid, d.objid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
  WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND e.extname = 'pg_stat_statements'
), objs AS (
  SELECT 'view' AS kind, c.oid::regclass::text AS object, coalesce(c.relacl, acldefault('r', c.relowner)) AS acl
  FROM pg_class c
  WHERE c.relkind = 'v' AND (
        (c.relnamespace = 'pg_catalog'::regnamespace
         AND (c.relname LIKE 'pg\_stat\_%' OR c.relname LIKE 'pg\_statio\_%' OR c.relname = 'pg_locks'))
     OR c.oid IN (SELECT objid FROM pss WHERE classid = 'pg_class'::regclass))
  UNION ALL
  SELECT 'function', p.oid::regprocedure::text, coalesce(p.proacl, acldefault('f', p.proowner))
  FROM pg_proc p
  WHERE (p.pronamespace = 'pg_catalog'::regnamespace
         AND (p.proname LIKE 'pg\_stat\_get\_%' OR p.proname = 'pg_lock_status'))
     OR p.oid IN (SELECT objid FROM pss WHERE classid = 'pg_proc'::regclass)
)
SELECT o.kind, o.object,
       ARRAY(SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
             FROM aclexplode(o.acl) a
             WHERE a.privilege_type IN ('SELECT', 'EXECUTE')
               AND (a.grantee = 0 OR ($1::oid IS NOT NULL AND pg_has_role($1::oid, a.grantee, 'MEMBER')))
               -- predefined roles (pg_read_all_stats, pg_monitor) keep them; the pool role's membership in
               -- one is the concern of the check "pool role is a member of tenant roles only"
               AND (a.grantee = 0 OR a.grantee::regrole::text NOT LIKE 'pg\_%')
             ORDER BY 1)
FROM objs o ORDER BY 1, 2`

// statsObject is one statistics view or function and who can still use it.
type statsObject struct {
	kind, object string
	exposed      []string
}

func readStatsObjects(ctx context.Context, db querier, poolOID *uint32) ([]statsObject, error) {
	rows, err := db.Query(ctx, statsObjectsQuery, poolOID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (statsObject, error) {
		var o statsObject
		err := r.Scan(&o.kind, &o.object, &o.exposed)
		return o, err
	})
}

// statsHardening returns the statements that close the statistics objects to PUBLIC, grant them to
// pg_read_all_stats (when it exists) and the owner role, and (re)create the tenant_stats replacements.
func statsHardening(ctx context.Context, tx pgx.Tx, cfg *config.Config, readAllStats bool) ([]string, error) {
	var poolOID *uint32
	if err := tx.QueryRow(ctx, "SELECT oid FROM pg_roles WHERE rolname = $1", cfg.Backend.User).Scan(&poolOID); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, err
	}
	objs, err := readStatsObjects(ctx, tx, poolOID)
	if err != nil {
		return nil, err
	}
	// Grants to the pool role or to roles it can use (tenant roles) go too, not only PUBLIC's.
	var revokes []string
	for _, o := range objs {
		for _, g := range o.exposed {
			if g == "PUBLIC" {
				continue
			}
			priv, on := "SELECT ON ", o.object
			if o.kind == "function" {
				priv, on = "EXECUTE ON FUNCTION ", o.object
			}
			revokes = append(revokes, "REVOKE "+priv+on+" FROM "+q(g))
		}
	}
	owner := q(cfg.Admin.OwnerRole)
	var views, funcs []string
	for _, o := range objs {
		if o.kind == "view" {
			views = append(views, o.object)
		} else {
			funcs = append(funcs, o.object)
		}
	}
	to := owner
	if readAllStats {
		to += ", pg_read_all_stats"
	}
	var out []string
	if len(views) > 0 {
		list := strings.Join(views, ", ")
		out = append(out, "REVOKE SELECT ON "+list+" FROM PUBLIC", "GRANT SELECT ON "+list+" TO "+to)
	}
	if len(funcs) > 0 {
		list := strings.Join(funcs, ", ")
		out = append(out, "REVOKE EXECUTE ON FUNCTION "+list+" FROM PUBLIC", "GRANT EXECUTE ON FUNCTION "+list+" TO "+to)
	}
	out = append(out, revokes...)
	return append(out, statsSchemaStatements(cfg)...), nil
}

// ownSchemasSQL is the set of tenant schemas on which the role the session SET ROLE to (the proxy always
// does; the setting "role" keeps that role inside a SECURITY DEFINER function) has USAGE: its own tenant
// schema only, which doctor verifies.
const ownSchemasSQL = `(SELECT t.schema FROM tenantproxy.tenants t
   JOIN pg_catalog.pg_roles r ON r.rolname = pg_catalog.current_setting('role')
   WHERE pg_catalog.has_schema_privilege(r.oid, t.schema, 'USAGE'))`

// statsSchemaStatements create tenant_stats: per replaced view, a SECURITY DEFINER function owned by the
// owner role that returns the rows of the caller's own schema, and a view over it.
func statsSchemaStatements(cfg *config.Config) []string {
	owner, s := q(cfg.Admin.OwnerRole), q(StatsSchema)
	out := []string{
		"CREATE SCHEMA IF NOT EXISTS " + s + " AUTHORIZATION " + owner,
		"ALTER SCHEMA " + s + " OWNER TO " + owner,
		"REVOKE ALL ON SCHEMA " + s + " FROM PUBLIC",
		"GRANT USAGE ON SCHEMA " + s + " TO PUBLIC",
	}
	for _, v := range scopedStatsViews {
		fn := s + "." + q(v+"_scoped")
		out = append(out,
			"CREATE OR REPLACE FUNCTION "+fn+"() RETURNS SETOF pg_catalog."+v+
				" LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS "+
				lit("SELECT * FROM pg_catalog."+v+" WHERE schemaname IN "+ownSchemasSQL),
			"ALTER FUNCTION "+fn+"() OWNER TO "+owner,
			"REVOKE ALL ON FUNCTION "+fn+"() FROM PUBLIC",
			"GRANT EXECUTE ON FUNCTION "+fn+"() TO PUBLIC",
			"CREATE OR REPLACE VIEW "+s+"."+q(v)+" AS SELECT * FROM "+fn+"()",
			"ALTER VIEW "+s+"."+q(v)+" OWNER TO "+owner,
			"REVOKE ALL ON "+s+"."+q(v)+" FROM PUBLIC",
			"GRANT SELECT ON "+s+"."+q(v)+" TO PUBLIC",
		)
	}
	return out
}

// checkStats verifies that no statistics view or function is open to PUBLIC, the pool role or a tenant
// role, and that the tenant_stats replacements exist.
func (d *doctor) checkStats(ctx context.Context) error {
	objs, err := readStatsObjects(ctx, d.conn, d.poolOID)
	if err != nil {
		return err
	}
	// One REVOKE per grantee and kind, listing every object, so that the fix is whole however many
	// objects were opened.
	var views, funcs findings
	type key struct{ kind, grantee string }
	var order []key
	objects := map[key][]string{}
	for _, o := range objs {
		for _, g := range o.exposed {
			k := key{o.kind, g}
			if objects[k] == nil {
				order = append(order, k)
			}
			objects[k] = append(objects[k], o.object)
			if o.kind == "view" {
				views.add(fmt.Sprintf("%s can read %s", g, o.object))
			} else {
				funcs.add(fmt.Sprintf("%s can call %s", g, o.object))
			}
		}
	}
	for _, k := range order {
		list := strings.Join(objects[k], ", ")
		if k.kind == "view" {
			views.fixes = append(views.fixes, fmt.Sprintf("REVOKE SELECT ON %s FROM %s;", list, granteeSQL(k.grantee)))
		} else {
			funcs.fixes = append(funcs.fixes, fmt.Sprintf("REVOKE EXECUTE ON FUNCTION %s FROM %s;", list, granteeSQL(k.grantee)))
		}
	}
	d.check("SELECT on statistics views revoked", views,
		"tenants cannot read other tenants' row counts and activity (pg_stat_*, pg_statio_*, pg_locks, pg_stat_statements)")
	d.check("EXECUTE on statistics functions revoked", funcs, "tenants cannot call pg_stat_get_* for another tenant's table")

	var missing []string
	if err := d.conn.QueryRow(ctx, `
SELECT ARRAY(SELECT v FROM unnest($1::text[]) v
             WHERE to_regclass(quote_ident($2) || '.' || quote_ident(v)) IS NULL
                OR NOT has_table_privilege('public', quote_ident($2) || '.' || quote_ident(v), 'SELECT') ORDER BY 1)`,
		scopedStatsViews, StatsSchema).Scan(&missing); err != nil {
		return err
	}
	var f findings
	for _, v := range missing {
		f.add(StatsSchema+"."+v+" is missing or not readable", "tenantproxy init")
	}
	d.check("tenant-scoped statistics views in "+StatsSchema, f, fmt.Sprintf("%d views showing the tenant's own schema", len(scopedStatsViews)))
	return nil
}
