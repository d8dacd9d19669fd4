package tenants

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// hardenedFunctions are the pg_catalog functions whose EXECUTE init revokes from PUBLIC (every signature),
// and why; see docs/security-model.md, layer 1. current_setting stays executable: RLS policies read the
// tenant setting with it, and reading cannot switch anything.
var hardenedFunctions = []struct{ name, why string }{
	{"set_config", "switches role and settings from inside any expression"},
	{"query_to_xml", "runs a SQL string"},
	{"query_to_xml_and_xmlschema", "runs a SQL string"},
	{"query_to_xmlschema", "runs a SQL string"},
	{"cursor_to_xml", "reads another tenant's open cursor"},
	{"cursor_to_xmlschema", "reads another tenant's open cursor"},
	{"database_to_xml", "dumps every schema it can read"},
	{"database_to_xml_and_xmlschema", "dumps every schema it can read"},
	{"database_to_xmlschema", "dumps every schema it can read"},
	{"schema_to_xml", "dumps a whole schema"},
	{"schema_to_xml_and_xmlschema", "dumps a whole schema"},
	{"schema_to_xmlschema", "dumps a whole schema"},
	{"ts_stat", "runs a SQL string"},
	{"pg_advisory_lock", "a session lock outlives the tenant's lease"},
	{"pg_advisory_lock_shared", "a session lock outlives the tenant's lease"},
	{"pg_try_advisory_lock", "a session lock outlives the tenant's lease"},
	{"pg_try_advisory_lock_shared", "a session lock outlives the tenant's lease"},
	{"pg_advisory_unlock", "releases another tenant's session lock"},
	{"pg_advisory_unlock_shared", "releases another tenant's session lock"},
	{"pg_advisory_unlock_all", "releases other tenants' session locks"},
	{"pg_prepared_statement", "lists the statements of every tenant on a shared backend"},
	{"pg_cursor", "lists the cursors of every tenant on a shared backend"},
	{"pg_stat_get_activity", "shows the SQL text of other pool backends"},
	{"pg_stat_get_backend_activity", "shows the SQL text of other pool backends"},
}

// closedViews are the pg_catalog views whose SELECT init revokes from PUBLIC.
var closedViews = []struct{ name, why string }{
	{"pg_prepared_statements", "lists the statements of every tenant on a shared backend"},
	{"pg_cursors", "lists the cursors of every tenant on a shared backend"},
	{"pg_stat_activity", "shows the SQL text of other pool backends"},
}

// monitoringFunctions keep pg_stat_activity working for members of pg_read_all_stats (pg_monitor), to
// whom init grants them back. The pool role must never be such a member; doctor checks it.
var monitoringFunctions = []string{"pg_stat_get_activity", "pg_stat_get_backend_activity"}

func hardenedFunctionNames() []string {
	out := make([]string, len(hardenedFunctions))
	for i, f := range hardenedFunctions {
		out[i] = f.name
	}
	return out
}

func closedViewNames() []string {
	out := make([]string, len(closedViews))
	for i, v := range closedViews {
		out[i] = v.name
	}
	return out
}

// roleState is what init needs to know about one role.
type roleState struct {
	exists, login bool
}

// initState is the server as init finds it.
type initState struct {
	adminSuper   bool
	adminInOwner bool
	owner, pool  roleState
	database     string
	signatures   []string // pg_catalog.name(args) of every hardened function signature
	monitoring   []string // pg_catalog.name(args) of the monitoring functions
	languages    []string // trusted procedural languages
	publicSchema bool
	readAllStats bool
}

func readInitState(ctx context.Context, tx pgx.Tx, cfg *config.Config) (initState, error) {
	var st initState
	err := tx.QueryRow(ctx, `
SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
       current_database(),
       EXISTS (SELECT FROM pg_roles WHERE rolname = $1),
       coalesce((SELECT rolcanlogin FROM pg_roles WHERE rolname = $1), false),
       EXISTS (SELECT FROM pg_roles WHERE rolname = $1) AND pg_has_role(current_user, $1, 'MEMBER'),
       EXISTS (SELECT FROM pg_roles WHERE rolname = $2),
       coalesce((SELECT rolcanlogin FROM pg_roles WHERE rolname = $2), false),
       ARRAY(SELECT 'pg_catalog.' || p.oid::regprocedure::text FROM pg_proc p
             WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY($3) ORDER BY 1),
       ARRAY(SELECT 'pg_catalog.' || p.oid::regprocedure::text FROM pg_proc p
             WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY($4) ORDER BY 1),
       ARRAY(SELECT quote_ident(lanname) FROM pg_language WHERE lanpltrusted ORDER BY 1),
       EXISTS (SELECT FROM pg_namespace WHERE nspname = 'public'),
       EXISTS (SELECT FROM pg_roles WHERE rolname = 'pg_read_all_stats')`,
		cfg.Admin.OwnerRole, cfg.Backend.User, hardenedFunctionNames(), monitoringFunctions).Scan(
		&st.adminSuper, &st.database, &st.owner.exists, &st.owner.login, &st.adminInOwner,
		&st.pool.exists, &st.pool.login, &st.signatures, &st.monitoring, &st.languages, &st.publicSchema,
		&st.readAllStats)
	return st, err
}

// checkRoleNames refuses a config in which the admin, owner and pool roles are not three roles.
func checkRoleNames(cfg *config.Config) error {
	a, o, p := cfg.Admin.User, cfg.Admin.OwnerRole, cfg.Backend.User
	switch {
	case p == a:
		return fmt.Errorf("[backend] user and [admin] user are both %q; the pool role must be a role of its own", p)
	case p == o:
		return fmt.Errorf("[backend] user and [admin] owner_role are both %q; the pool role must not own tenant objects", p)
	case o == a:
		return fmt.Errorf("[admin] user and [admin] owner_role are both %q; use a NOLOGIN owner role", o)
	}
	return nil
}

// initStatements are the statements that bring the server to the state doctor expects.
func initStatements(cfg *config.Config, st initState) (roles, catalog, hardening []string) {
	owner, pool := q(cfg.Admin.OwnerRole), q(cfg.Backend.User)
	switch {
	case !st.owner.exists:
		roles = append(roles, "CREATE ROLE "+owner+" NOLOGIN")
	case st.owner.login:
		roles = append(roles, "ALTER ROLE "+owner+" NOLOGIN")
	}
	if !st.adminSuper && !st.adminInOwner {
		roles = append(roles, "GRANT "+owner+" TO CURRENT_USER")
	}
	attrs := "LOGIN NOCREATEDB NOCREATEROLE NOINHERIT"
	if st.adminSuper {
		attrs += " NOSUPERUSER NOREPLICATION NOBYPASSRLS"
	}
	if !st.pool.exists {
		roles = append(roles, "CREATE ROLE "+pool+" "+attrs)
	} else {
		roles = append(roles, "ALTER ROLE "+pool+" "+attrs)
	}
	if pw := cfg.BackendPassword(); pw != "" {
		roles = append(roles, "ALTER ROLE "+pool+" PASSWORD "+lit(pw))
	}

	cs := q(CatalogSchema)
	catalog = []string{
		"CREATE SCHEMA IF NOT EXISTS " + cs + " AUTHORIZATION " + owner,
		"ALTER SCHEMA " + cs + " OWNER TO " + owner,
		"REVOKE ALL ON SCHEMA " + cs + " FROM PUBLIC",
		`CREATE TABLE IF NOT EXISTS ` + cs + `.tenants (
	name       text PRIMARY KEY,
	schema     text NOT NULL UNIQUE,
	status     text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
	created_at timestamptz NOT NULL DEFAULT now())`,
		`CREATE TABLE IF NOT EXISTS ` + cs + `.migrations (
	tenant     text NOT NULL,
	version    integer NOT NULL,
	name       text NOT NULL,
	checksum   text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant, version))`,
		"ALTER TABLE " + cs + ".tenants OWNER TO " + owner,
		"ALTER TABLE " + cs + ".migrations OWNER TO " + owner,
		"REVOKE ALL ON ALL TABLES IN SCHEMA " + cs + " FROM PUBLIC, " + pool,
		"GRANT USAGE ON SCHEMA " + cs + " TO " + pool,
		"GRANT SELECT ON " + cs + ".tenants TO " + pool,
	}
	catalog = append(catalog, limitColumnStatements()...)
	catalog = append(catalog, userCatalogStatements(cfg)...)

	if !st.adminSuper {
		// Privileges on pg_catalog objects belong to the bootstrap superuser; doctor prints the SQL.
		return roles, catalog, nil
	}
	if len(st.signatures) > 0 {
		hardening = append(hardening, "REVOKE EXECUTE ON FUNCTION "+strings.Join(st.signatures, ", ")+" FROM PUBLIC")
	}
	// The owner role restores dumps (pg_restore --role), whose scripts call set_config.
	hardening = append(hardening, "GRANT EXECUTE ON FUNCTION pg_catalog.set_config(text,text,boolean) TO "+owner)
	if st.readAllStats && len(st.monitoring) > 0 {
		hardening = append(hardening,
			"GRANT EXECUTE ON FUNCTION "+strings.Join(st.monitoring, ", ")+" TO pg_read_all_stats",
			"GRANT SELECT ON pg_catalog.pg_stat_activity TO pg_read_all_stats")
	}
	if len(st.languages) > 0 {
		langs := strings.Join(st.languages, ", ")
		hardening = append(hardening,
			"REVOKE USAGE ON LANGUAGE "+langs+" FROM PUBLIC",
			"GRANT USAGE ON LANGUAGE "+langs+" TO "+owner)
	}
	hardening = append(hardening, "REVOKE TEMPORARY ON DATABASE "+q(st.database)+" FROM PUBLIC")
	if st.publicSchema {
		hardening = append(hardening, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
	}
	views := make([]string, len(closedViews))
	for i, v := range closedViews {
		views[i] = "pg_catalog." + q(v.name)
	}
	hardening = append(hardening, "REVOKE SELECT ON "+strings.Join(views, ", ")+" FROM PUBLIC")
	return roles, catalog, hardening
}

// runInit creates the owner and pool roles and the catalog, applies the hardening, and runs doctor over
// the server and the tenants already in the catalog ([[tenants]] of the config are created afterwards).
func runInit(ctx context.Context, cfg *config.Config, out io.Writer) error {
	if err := checkRoleNames(cfg); err != nil {
		return err
	}
	conn, err := connectAdmin(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())

	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, 0)", lockClassInit); err != nil {
		return err
	}
	st, err := readInitState(ctx, tx, cfg)
	if err != nil {
		return fmt.Errorf("init: read server state: %w", err)
	}
	roles, catalog, hardening := initStatements(cfg, st)
	analyticsRole, err := analyticsRoleExists(ctx, tx)
	if err != nil {
		return err
	}
	for _, step := range []struct {
		what  string
		stmts []string
	}{{"roles", roles}, {"catalog", catalog}, {"hardening", hardening}, {"analytics", analyticsSetupStatements(cfg, analyticsRole)}} {
		if err := execScript(ctx, tx, step.stmts); err != nil {
			return fmt.Errorf("init: %s: %w", step.what, err)
		}
	}
	if st.adminSuper {
		stats, err := statsHardening(ctx, tx, cfg, st.readAllStats)
		if err == nil {
			err = execScript(ctx, tx, stats)
		}
		if err != nil {
			return fmt.Errorf("init: statistics views: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("init: commit: %w", err)
	}

	fmt.Fprintf(out, "init: owner role %s (NOLOGIN) ready\n", q(cfg.Admin.OwnerRole))
	fmt.Fprintf(out, "init: pool role %s (LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT) ready\n", q(cfg.Backend.User))
	fmt.Fprintf(out, "init: catalog schema %s ready\n", q(CatalogSchema))
	fmt.Fprintf(out, "init: analytics role %s (NOLOGIN) and schema %s ready\n", q(config.AnalyticsRole), q(config.Analytics))
	if st.adminSuper {
		fmt.Fprintf(out, "init: statistics views and pg_stat_get_* functions closed to tenants; tenant-scoped views in schema %s\n", q(StatsSchema))
		fmt.Fprintf(out, "init: hardening applied in database %s: EXECUTE revoked on %d functions, USAGE on %d languages, TEMPORARY, CREATE on public, SELECT on %d views\n",
			q(st.database), len(st.signatures), len(st.languages), len(closedViews))
	} else {
		fmt.Fprintf(out, "init: admin role %s is not a superuser, so the hardening of pg_catalog was NOT applied; run the fixes doctor prints as a superuser\n",
			q(cfg.Admin.User))
	}
	rep, err := doctorConn(ctx, cfg, conn, true)
	if err != nil {
		return err
	}
	if failed := rep.Failed(); len(failed) > 0 {
		fmt.Fprintf(out, "doctor: %d of %d checks fail:\n", len(failed), len(rep.Checks))
		Report{Checks: failed}.Print(out)
		return fmt.Errorf("init: %d doctor checks fail", len(failed))
	}
	fmt.Fprintf(out, "doctor: all %d checks pass\n", len(rep.Checks))
	return nil
}
