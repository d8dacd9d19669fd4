package tenants

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// Check is one verified property of the server, the pool role or the tenants.
type Check struct {
	// Name says what must hold, for example "EXECUTE on set_config revoked".
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Warn marks a passed check that found something worth changing (printed as WARN).
	Warn bool `json:"warn,omitempty"`
	// Detail says what was found.
	Detail string `json:"detail,omitempty"`
	// Fix is the SQL or command that repairs a failed check.
	Fix string `json:"fix,omitempty"`
}

// Report is the outcome of Doctor: every check, in a stable order.
type Report struct {
	Checks []Check `json:"checks"`
}

// Failed returns the checks that did not pass.
func (r Report) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

// Print writes the checks as an aligned table: check, PASS or FAIL, detail, fix.
func (r Report) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tDETAIL\tFIX")
	for _, c := range r.Checks {
		res := "PASS"
		switch {
		case !c.OK:
			res = "FAIL"
		case c.Warn:
			res = "WARN"
		}
		fix := c.Fix
		if c.OK && !c.Warn {
			fix = ""
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, res, oneLine(c.Detail), oneLine(fix))
	}
	return tw.Flush()
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Doctor verifies the server hardening of docs/security-model.md layer 1, the pool role's attributes and
// every tenant's role, grants and schema (the [[tenants]] list when [tenancy] catalog = "config", the
// catalog's rows when it is "database"). It connects as the admin role. The error is non-nil only when
// the checks could not run; failed checks are in the Report.
func Doctor(ctx context.Context, cfg *config.Config) (Report, error) {
	conn, err := connectAdmin(ctx, cfg, "")
	if err != nil {
		return Report{}, err
	}
	defer conn.Close(context.Background())
	return doctorConn(ctx, cfg, conn, false)
}

type doctor struct {
	cfg  *config.Config
	conn *pgx.Conn
	rep  Report
	// catalogOnly checks the tenants of the catalog even when [tenancy] catalog = "config": init runs
	// before the [[tenants]] of the config are created.
	catalogOnly bool

	database   string
	poolOID    *uint32
	catalogOK  bool
	languages  []string
	rlsSchemas map[string]bool
}

func (d *doctor) add(name string, ok bool, detail, fix string) {
	if ok {
		fix = ""
	}
	d.rep.Checks = append(d.rep.Checks, Check{Name: name, OK: ok, Detail: detail, Fix: fix})
}

// findings collects the problems of one check over many objects, keeping the report readable.
type findings struct {
	details, fixes []string
}

func (f *findings) add(detail string, fixes ...string) {
	f.details = append(f.details, detail)
	for _, x := range fixes {
		if !slices.Contains(f.fixes, x) {
			f.fixes = append(f.fixes, x)
		}
	}
}

const maxListed = 8

func listed(items []string, sep string) string {
	if len(items) <= maxListed {
		return strings.Join(items, sep)
	}
	return strings.Join(items[:maxListed], sep) + fmt.Sprintf("%s… and %d more", sep, len(items)-maxListed)
}

// check adds one check that passes when nothing was found.
func (d *doctor) check(name string, f findings, okDetail string) {
	if len(f.details) == 0 {
		d.add(name, true, okDetail, "")
		return
	}
	d.add(name, false, listed(f.details, "; "), listed(f.fixes, " "))
}

func doctorConn(ctx context.Context, cfg *config.Config, conn *pgx.Conn, catalogOnly bool) (Report, error) {
	d := &doctor{cfg: cfg, conn: conn, catalogOnly: catalogOnly, rlsSchemas: map[string]bool{}}
	for _, step := range []func(context.Context) error{d.checkBasics, d.checkExposedGrants, d.checkStats, d.checkPool, d.checkAnalytics, d.checkTenants} {
		if err := step(ctx); err != nil {
			return Report{}, fmt.Errorf("doctor: %w", err)
		}
	}
	return d.rep, nil
}

func (d *doctor) checkBasics(ctx context.Context) error {
	cfg := d.cfg
	var (
		ownerLogin                 *bool
		catalogOwner               *string
		tablesOK, adminCan, poolOK bool
	)
	err := d.conn.QueryRow(ctx, `
SELECT current_database(),
       (SELECT oid FROM pg_roles WHERE rolname = $1),
       (SELECT rolcanlogin FROM pg_roles WHERE rolname = $2),
       (SELECT r.rolname::text FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE n.nspname = $3),
       to_regclass(quote_ident($3) || '.tenants') IS NOT NULL AND to_regclass(quote_ident($3) || '.migrations') IS NOT NULL,
       has_function_privilege('pg_catalog.pg_try_advisory_lock(bigint)', 'EXECUTE')
         AND has_function_privilege('pg_catalog.pg_advisory_unlock(bigint)', 'EXECUTE')
         AND has_function_privilege('pg_catalog.pg_advisory_lock(integer,integer)', 'EXECUTE')
         AND has_function_privilege('pg_catalog.pg_advisory_unlock(integer,integer)', 'EXECUTE')
         AND has_function_privilege('pg_catalog.set_config(text,text,boolean)', 'EXECUTE'),
       ARRAY(SELECT lanname::text FROM pg_language WHERE lanpltrusted ORDER BY 1)`,
		cfg.Backend.User, cfg.Admin.OwnerRole, CatalogSchema).Scan(
		&d.database, &d.poolOID, &ownerLogin, &catalogOwner, &tablesOK, &adminCan, &d.languages)
	if err != nil {
		return err
	}

	d.add("admin database is the backend database", cfg.Admin.Database == cfg.Backend.Database,
		fmt.Sprintf("[admin] database %q, [backend] database %q", cfg.Admin.Database, cfg.Backend.Database),
		fmt.Sprintf("set [admin] database = %q (tenant schemas must live where the proxy connects)", cfg.Backend.Database))

	switch {
	case ownerLogin == nil:
		d.add("owner role exists and is NOLOGIN", false, fmt.Sprintf("role %s does not exist", q(cfg.Admin.OwnerRole)), "tenantproxy init")
	case *ownerLogin:
		d.add("owner role exists and is NOLOGIN", false, fmt.Sprintf("role %s can log in", q(cfg.Admin.OwnerRole)),
			"ALTER ROLE "+q(cfg.Admin.OwnerRole)+" NOLOGIN;")
	default:
		d.add("owner role exists and is NOLOGIN", true, q(cfg.Admin.OwnerRole), "")
	}

	switch {
	case catalogOwner == nil || !tablesOK:
		d.add("catalog exists", false, fmt.Sprintf("schema %s or its tables are missing", q(CatalogSchema)), "tenantproxy init")
	case *catalogOwner != cfg.Admin.OwnerRole:
		d.add("catalog exists", false, fmt.Sprintf("schema %s is owned by %s, not the owner role", q(CatalogSchema), q(*catalogOwner)),
			"tenantproxy init")
	default:
		d.catalogOK = true
		d.add("catalog exists", true, fmt.Sprintf("schema %s owned by %s", q(CatalogSchema), q(cfg.Admin.OwnerRole)), "")
	}

	if d.catalogOK && d.poolOID != nil {
		var extra []string
		if err := d.conn.QueryRow(ctx, `
SELECT has_table_privilege($1::oid, 'tenantproxy.tenants', 'SELECT'),
       ARRAY(SELECT c.relname || ': ' || a.privilege_type || ' to ' ||
                    CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
             FROM pg_class c, aclexplode(c.relacl) a
             WHERE c.relnamespace = 'tenantproxy'::regnamespace
               AND (a.grantee = 0 OR pg_has_role($1::oid, a.grantee, 'MEMBER'))
               AND NOT (c.relname = 'tenants' AND a.privilege_type = 'SELECT' AND a.grantee = $1::oid)
             ORDER BY 1)`, *d.poolOID).Scan(&poolOK, &extra); err != nil {
			return err
		}
		var f findings
		if !poolOK {
			f.add("the pool role cannot read tenantproxy.tenants (catalog = \"database\" needs it)",
				"GRANT USAGE ON SCHEMA tenantproxy TO "+q(cfg.Backend.User)+"; GRANT SELECT ON tenantproxy.tenants TO "+q(cfg.Backend.User)+";")
		}
		for _, e := range extra {
			f.add(e, "REVOKE ALL ON ALL TABLES IN SCHEMA tenantproxy FROM PUBLIC, "+q(cfg.Backend.User)+"; GRANT SELECT ON tenantproxy.tenants TO "+q(cfg.Backend.User)+";")
		}
		d.check("pool role reads the catalog and changes nothing in it", f, "SELECT on tenantproxy.tenants only")
	}

	adminFuncs := "pg_catalog.pg_try_advisory_lock(bigint), pg_catalog.pg_advisory_unlock(bigint), " +
		"pg_catalog.pg_advisory_lock(integer,integer), pg_catalog.pg_advisory_unlock(integer,integer), pg_catalog.set_config(text,text,boolean)"
	d.add("admin role can take lifecycle locks and run pg_dump", adminCan,
		fmt.Sprintf("admin role %s needs EXECUTE on %s", q(cfg.Admin.User), adminFuncs),
		"GRANT EXECUTE ON FUNCTION "+adminFuncs+" TO "+q(cfg.Admin.User)+";")
	return nil
}

// exposedGrant is a privilege held by PUBLIC, the pool role or a role the pool role can SET ROLE to.
type exposedGrant struct {
	kind, group, object, privilege, grantee string
}

func (d *doctor) checkExposedGrants(ctx context.Context) error {
	rows, err := d.conn.Query(ctx, `
SELECT g.kind, g.grp, g.object, g.privilege,
       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END
FROM (
  SELECT 'function' AS kind, p.proname::text AS grp, 'pg_catalog.' || p.oid::regprocedure::text AS object,
         a.privilege_type AS privilege, a.grantee
  FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
  WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY($2) AND a.privilege_type = 'EXECUTE'
  UNION ALL
  SELECT 'language', l.lanname::text, quote_ident(l.lanname), a.privilege_type, a.grantee
  FROM pg_language l, aclexplode(coalesce(l.lanacl, acldefault('l', l.lanowner))) a
  WHERE l.lanpltrusted AND a.privilege_type = 'USAGE'
  UNION ALL
  SELECT 'database', d.datname::text, quote_ident(d.datname), a.privilege_type, a.grantee
  FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
  WHERE d.datname = current_database() AND a.privilege_type IN ('TEMPORARY', 'CREATE')
  UNION ALL
  SELECT 'schema', n.nspname::text, quote_ident(n.nspname), a.privilege_type, a.grantee
  FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
  WHERE a.privilege_type = 'CREATE'
  UNION ALL
  SELECT 'view', c.relname::text, 'pg_catalog.' || quote_ident(c.relname), a.privilege_type, a.grantee
  FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
  WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relname = ANY($3) AND a.privilege_type = 'SELECT'
) g
WHERE g.grantee = 0 OR pg_has_role($1::oid, g.grantee, 'MEMBER')
ORDER BY 1, 2, 3, 5`, d.poolOID, hardenedFunctionNames(), closedViewNames())
	if err != nil {
		return err
	}
	grants, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (exposedGrant, error) {
		var g exposedGrant
		err := r.Scan(&g.kind, &g.group, &g.object, &g.privilege, &g.grantee)
		return g, err
	})
	if err != nil {
		return err
	}
	of := func(kind, group string) (out []exposedGrant) {
		for _, g := range grants {
			if g.kind == kind && (group == "" || g.group == group) {
				out = append(out, g)
			}
		}
		return out
	}
	revoke := func(kind string, gs []exposedGrant) findings {
		var f findings
		for _, g := range gs {
			on := g.object
			if kind != "" {
				on = kind + " " + g.object
			}
			f.add(fmt.Sprintf("%s can use %s (%s)", g.grantee, g.object, g.privilege),
				fmt.Sprintf("REVOKE %s ON %s FROM %s;", g.privilege, on, g.grantee))
		}
		return f
	}

	for _, fn := range hardenedFunctions {
		d.check("EXECUTE on "+fn.name+" revoked", revoke("FUNCTION", of("function", fn.name)),
			"tenants cannot call it ("+fn.why+")")
	}
	for _, l := range d.languages {
		d.check("USAGE on LANGUAGE "+l+" revoked", revoke("LANGUAGE", of("language", l)),
			"tenants cannot run DO or CREATE FUNCTION in it")
	}
	var temp, create []exposedGrant
	for _, g := range of("database", "") {
		if g.privilege == "TEMPORARY" {
			temp = append(temp, g)
		} else {
			create = append(create, g)
		}
	}
	d.check("TEMPORARY on database revoked", revoke("DATABASE", temp), "no temp tables for tenants in "+q(d.database))
	d.check("CREATE on database not granted", revoke("DATABASE", create), "tenants cannot create schemas")
	var public, others []exposedGrant
	for _, g := range of("schema", "") {
		if g.group == "public" {
			public = append(public, g)
		} else {
			others = append(others, g)
		}
	}
	d.check("CREATE on schema public revoked", revoke("SCHEMA", public), "schema public is read-only for tenants")
	d.check("no schema writable by the pool or tenant roles", revoke("SCHEMA", others),
		"tenants create nothing; migrations run as the owner role")
	for _, v := range closedViews {
		d.check("SELECT on pg_catalog."+v.name+" revoked", revoke("", of("view", v.name)), "closed to tenants ("+v.why+")")
	}
	return nil
}

func (d *doctor) checkPool(ctx context.Context) error {
	pool := d.cfg.Backend.User
	if d.poolOID == nil {
		d.add("pool role exists and can log in", false, fmt.Sprintf("role %s does not exist", q(pool)), "tenantproxy init")
		return nil
	}
	var (
		login, super, bypass, createdb, createrole, repl, inherit bool
		owned                                                     []string
		ownedCount                                                int
		memberOf, settings                                        []string
	)
	err := d.conn.QueryRow(ctx, `
SELECT r.rolcanlogin, r.rolsuper, r.rolbypassrls, r.rolcreatedb, r.rolcreaterole, r.rolreplication, r.rolinherit,
       ARRAY(SELECT pg_describe_object(s.classid, s.objid, s.objsubid) FROM pg_shdepend s
             WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = r.oid AND s.deptype = 'o'
               AND s.dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database())) ORDER BY 1),
       (SELECT count(*) FROM pg_shdepend s WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = r.oid AND s.deptype = 'o'),
       ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid ORDER BY 1),
       ARRAY(SELECT coalesce(quote_ident(d.datname), '') || ' ' || c
             FROM pg_db_role_setting s CROSS JOIN LATERAL unnest(s.setconfig) c
             LEFT JOIN pg_database d ON d.oid = s.setdatabase
             WHERE s.setrole = r.oid ORDER BY 1)
FROM pg_roles r WHERE r.oid = $1`, *d.poolOID).Scan(
		&login, &super, &bypass, &createdb, &createrole, &repl, &inherit, &owned, &ownedCount, &memberOf, &settings)
	if err != nil {
		return err
	}
	d.add("pool role exists and can log in", login, q(pool), "ALTER ROLE "+q(pool)+" LOGIN;")

	var f findings
	for _, a := range []struct {
		on   bool
		attr string
	}{{super, "SUPERUSER"}, {bypass, "BYPASSRLS"}, {createdb, "CREATEDB"}, {createrole, "CREATEROLE"}, {repl, "REPLICATION"}, {inherit, "INHERIT"}} {
		if a.on {
			f.add("has "+a.attr, "ALTER ROLE "+q(pool)+" NO"+a.attr+";")
		}
	}
	d.check("pool role is NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION NOINHERIT", f, q(pool))

	f = findings{}
	if ownedCount > 0 {
		detail := fmt.Sprintf("owns %d objects", ownedCount)
		if len(owned) > 0 {
			detail += ": " + listed(owned, ", ")
		}
		if elsewhere := ownedCount - len(owned); elsewhere > 0 {
			detail += fmt.Sprintf(" (%d in other databases: run the fix there too)", elsewhere)
		}
		f.add(detail, fmt.Sprintf("REASSIGN OWNED BY %s TO %s;", q(pool), q(d.cfg.Admin.OwnerRole)))
	}
	d.check("pool role owns nothing", f, "no owned objects")

	tenants, err := d.tenantRoleSet(ctx)
	if err != nil {
		return err
	}
	f = findings{}
	for _, m := range memberOf {
		if !tenants[m] {
			f.add("member of "+q(m), "REVOKE "+q(m)+" FROM "+q(pool)+";")
		}
	}
	d.check("pool role is a member of tenant roles only", f, fmt.Sprintf("member of %d tenant roles", len(memberOf)))

	f = findings{}
	for _, s := range settings {
		db, setting, _ := strings.Cut(s, " ")
		if db == "" {
			f.add("ALTER ROLE ... SET "+setting, "ALTER ROLE "+q(pool)+" RESET ALL;")
		} else {
			f.add("ALTER ROLE ... IN DATABASE "+db+" SET "+setting, "ALTER ROLE "+q(pool)+" IN DATABASE "+db+" RESET ALL;")
		}
	}
	d.check("pool role has no role settings", f, "no ALTER ROLE ... SET")
	return nil
}

// tenantRoleSet is every role of a tenant known to the config or the catalog.
func (d *doctor) tenantRoleSet(ctx context.Context) (map[string]bool, error) {
	set := map[string]bool{config.AnalyticsRole: true}
	for _, t := range d.cfg.Tenants {
		set[d.cfg.TenantRole(t.Name, t.Schema)] = true
	}
	if d.catalogOK {
		ts, err := catalogTenants(ctx, d.conn, d.cfg)
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			set[t.Role] = true
		}
	}
	return set, nil
}

// catalogTenants reads every tenant of the catalog, ordered by name.
func catalogTenants(ctx context.Context, db querier, cfg *config.Config) ([]tenantRef, error) {
	rows, err := db.Query(ctx, "SELECT name, schema, status FROM tenantproxy.tenants ORDER BY name")
	if err != nil {
		return nil, catalogError(err)
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenantRef, error) {
		var name, schema, status string
		err := r.Scan(&name, &schema, &status)
		return newTenantRef(cfg, name, schema, status), err
	})
	return ts, catalogError(err)
}

// doctorTenants is the tenant list doctor checks.
func (d *doctor) doctorTenants(ctx context.Context) ([]tenantRef, error) {
	if d.cfg.Tenancy.Catalog == config.CatalogDatabase || d.catalogOnly {
		if !d.catalogOK {
			return nil, nil
		}
		return catalogTenants(ctx, d.conn, d.cfg)
	}
	out := make([]tenantRef, len(d.cfg.Tenants))
	for i, t := range d.cfg.Tenants {
		out[i] = newTenantRef(d.cfg, t.Name, t.Schema, StatusActive)
	}
	if d.catalogOK {
		cat, err := catalogTenants(ctx, d.conn, d.cfg)
		if err != nil {
			return nil, err
		}
		var f findings
		for _, t := range out {
			if !slices.ContainsFunc(cat, func(c tenantRef) bool { return c.Name == t.Name && c.Schema == t.Schema }) {
				f.add(fmt.Sprintf("%s (schema %s) is not in the catalog", t.Name, t.Schema),
					fmt.Sprintf("tenantproxy tenant create %s --schema %s;", t.Name, t.Schema))
			}
		}
		d.check("config tenants are provisioned", f, fmt.Sprintf("%d [[tenants]] in the catalog", len(out)))
	}
	return out, nil
}

func (d *doctor) checkTenants(ctx context.Context) error {
	ts, err := d.doctorTenants(ctx)
	if err != nil {
		return err
	}
	if err := d.checkRLS(ctx); err != nil {
		return err
	}
	names, schemas, roles := make([]string, len(ts)), make([]string, len(ts)), make([]string, len(ts))
	for i, t := range ts {
		names[i], schemas[i], roles[i] = t.Name, t.Schema, t.Role
	}
	rows, err := d.conn.Query(ctx, `
SELECT t.name, t.schema, t.role, r.oid IS NOT NULL,
       coalesce(r.rolcanlogin, false), coalesce(r.rolsuper, false), coalesce(r.rolbypassrls, false),
       coalesce(r.rolcreatedb, false), coalesce(r.rolcreaterole, false), coalesce(r.rolreplication, false),
       EXISTS (SELECT FROM pg_auth_members m WHERE m.roleid = r.oid AND m.member = $4::oid),
       ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid ORDER BY 1),
       (SELECT count(*) FROM pg_shdepend s WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = r.oid AND s.deptype = 'o'),
       n.oid IS NOT NULL, coalesce(o.rolname::text, ''),
       ARRAY(SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END
             FROM aclexplode(n.nspacl) a WHERE a.grantee <> n.nspowner ORDER BY a.grantee, a.privilege_type),
       ARRAY(SELECT a.privilege_type FROM aclexplode(n.nspacl) a WHERE a.grantee <> n.nspowner ORDER BY a.grantee, a.privilege_type)
FROM unnest($1::text[], $2::text[], $3::text[]) AS t(name, schema, role)
LEFT JOIN pg_roles r ON r.rolname = t.role
LEFT JOIN pg_namespace n ON n.nspname = t.schema
LEFT JOIN pg_roles o ON o.oid = n.nspowner
ORDER BY t.name`, names, schemas, roles, d.poolOID)
	if err != nil {
		return err
	}
	defer rows.Close()
	var roleF, poolF, memberF, ownF, schemaF, grantF findings
	owner := d.cfg.Admin.OwnerRole
	for rows.Next() {
		var (
			t                                                   tenantRef
			exists, login, super, bypass, cdb, crole, repl, ofP bool
			memberOf, grantees, privs                           []string
			owned                                               int
			schemaExists                                        bool
			schemaOwner                                         string
		)
		if err := rows.Scan(&t.Name, &t.Schema, &t.Role, &exists, &login, &super, &bypass, &cdb, &crole, &repl, &ofP,
			&memberOf, &owned, &schemaExists, &schemaOwner, &grantees, &privs); err != nil {
			return err
		}
		create := fmt.Sprintf("tenantproxy tenant create %s --schema %s;", t.Name, t.Schema)
		if !exists {
			roleF.add(fmt.Sprintf("%s: role %s does not exist", t.Name, q(t.Role)), create)
		} else {
			var bad []string
			for _, a := range []struct {
				on   bool
				attr string
			}{{login, "LOGIN"}, {super, "SUPERUSER"}, {bypass, "BYPASSRLS"}, {cdb, "CREATEDB"}, {crole, "CREATEROLE"}, {repl, "REPLICATION"}} {
				if a.on {
					bad = append(bad, a.attr)
				}
			}
			if len(bad) > 0 {
				roleF.add(fmt.Sprintf("%s: role %s has %s", t.Name, q(t.Role), strings.Join(bad, " ")),
					"ALTER ROLE "+q(t.Role)+" NO"+strings.Join(bad, " NO")+";")
			}
			if !ofP {
				poolF.add(fmt.Sprintf("%s: the pool role cannot SET ROLE %s", t.Name, q(t.Role)),
					"GRANT "+q(t.Role)+" TO "+q(d.cfg.Backend.User)+";")
			}
			for _, m := range memberOf {
				memberF.add(fmt.Sprintf("%s: role %s is a member of %s", t.Name, q(t.Role), q(m)), "REVOKE "+q(m)+" FROM "+q(t.Role)+";")
			}
			if owned > 0 {
				ownF.add(fmt.Sprintf("%s: role %s owns %d objects", t.Name, q(t.Role), owned),
					"REASSIGN OWNED BY "+q(t.Role)+" TO "+q(owner)+";")
			}
		}
		switch {
		case !schemaExists:
			schemaF.add(fmt.Sprintf("%s: schema %s does not exist", t.Name, q(t.Schema)), create)
		case schemaOwner != owner:
			schemaF.add(fmt.Sprintf("%s: schema %s is owned by %s", t.Name, q(t.Schema), q(schemaOwner)),
				"ALTER SCHEMA "+q(t.Schema)+" OWNER TO "+q(owner)+";")
		}
		if schemaExists {
			usage := false
			for i, g := range grantees {
				switch {
				case g == t.Role && privs[i] == "USAGE":
					usage = true
				case g == owner:
				default:
					grantF.add(fmt.Sprintf("%s: %s has %s on schema %s", t.Name, g, privs[i], q(t.Schema)),
						fmt.Sprintf("REVOKE %s ON SCHEMA %s FROM %s;", privs[i], q(t.Schema), granteeSQL(g)))
				}
			}
			if !usage && exists {
				grantF.add(fmt.Sprintf("%s: role %s has no USAGE on schema %s", t.Name, q(t.Role), q(t.Schema)),
					"GRANT USAGE ON SCHEMA "+q(t.Schema)+" TO "+q(t.Role)+";")
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	n := fmt.Sprintf("%d tenants", len(ts))
	d.check("tenant roles exist, NOLOGIN, no superuser or bypassrls", roleF, n)
	d.check("tenant roles granted to the pool role", poolF, n)
	d.check("tenant roles are members of no role", memberF, n)
	d.check("tenant roles own nothing", ownF, n)
	d.check("tenant schemas exist and belong to the owner role", schemaF, n)
	d.check("tenant schemas grant USAGE to their own tenant role only", grantF, n)
	d.checkNaming(ts)
	return d.checkTenantReach(ctx, ts)
}

func granteeSQL(g string) string {
	if g == "PUBLIC" {
		return g
	}
	return q(g)
}

// checkTenantReach verifies that no tenant role holds a privilege on a schema other than its own, the
// shared schema, public and the schemas of RLS-enabled shared tables.
func (d *doctor) checkTenantReach(ctx context.Context, ts []tenantRef) error {
	own := map[string]string{}
	roles := make([]string, len(ts))
	for i, t := range ts {
		own[t.Role] = t.Schema
		roles[i] = t.Role
	}
	rows, err := d.conn.Query(ctx, `
SELECT n.nspname::text, r.rolname::text, a.privilege_type
FROM pg_namespace n, aclexplode(n.nspacl) a JOIN pg_roles r ON r.oid = a.grantee
WHERE r.rolname = ANY($1) ORDER BY 2, 1`, roles)
	if err != nil {
		return err
	}
	defer rows.Close()
	var f findings
	for rows.Next() {
		var schema, role, priv string
		if err := rows.Scan(&schema, &role, &priv); err != nil {
			return err
		}
		if schema == own[role] || (priv == "USAGE" && (schema == "public" || schema == SharedSchema || d.rlsSchemas[schema])) {
			continue
		}
		f.add(fmt.Sprintf("%s has %s on schema %s", q(role), priv, q(schema)),
			fmt.Sprintf("REVOKE %s ON SCHEMA %s FROM %s;", priv, q(schema), q(role)))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	d.check("tenant roles reach no other tenant's schema", f, fmt.Sprintf("%d tenants", len(ts)))
	return nil
}

// checkRLS verifies every shared table carrying the tenant_isolation policy.
func (d *doctor) checkRLS(ctx context.Context) error {
	tables, err := rlsTables(ctx, d.conn)
	if err != nil {
		return err
	}
	if len(tables) == 0 {
		return nil
	}
	want := "current_setting(" + lit(d.cfg.Tenancy.Setting) + "::text, true)"
	var f findings
	for _, t := range tables {
		d.rlsSchemas[t.schema] = true
		name := q(t.schema) + "." + q(t.table)
		if !t.enabled || !t.forced {
			f.add(name+": row level security is not enabled and forced", "tenantproxy rls enable "+t.schema+"."+t.table)
		}
		if !strings.Contains(t.using, want) || !strings.Contains(t.check, want) {
			f.add(fmt.Sprintf("%s: policy %s does not read [tenancy] setting %q", name, PolicyName, d.cfg.Tenancy.Setting),
				"tenantproxy rls enable "+t.schema+"."+t.table)
		}
	}
	d.check("row level security of shared tables", f, fmt.Sprintf("%d tables with policy %s", len(tables), PolicyName))
	return nil
}
