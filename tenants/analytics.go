package tenants

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// Cross-tenant analytics (ADR-002 phase 4). The schema "analytics", owned by the owner role, holds one view
// per tenant table name: the UNION ALL of that table across every active tenant, with a leading column
// "tenant" holding the tenant's name as a constant of each branch, so that a query filtering on tenant
// reads only that tenant's table (the planner drops the other branches). `analytics refresh` rebuilds the
// views in one transaction; tenant create, drop, suspend, resume, restore and migrate up run it
// afterwards. A [[users]] profile = "analytics" user connects through the proxy as the NOLOGIN role
// tenantproxy_analytics, which reads the analytics schema and nothing else: the views run with their
// owner's privileges, so the role needs no privilege on any tenant schema.
//
// A view has the columns that every tenant having the table has with the same type, in the order of the
// first tenant (by name); a tenant's own column named "tenant" gives way to the view's. A tenant lacking
// the table (its migrations behind) is left out of that view.

// lockClassAnalytics serializes refreshes (transaction level, paired with 0).
const lockClassAnalytics int32 = 0x74705f61 // "tp_a"

// analyticsSetupStatements create the analytics role and schema (init; refresh repeats them).
func analyticsSetupStatements(cfg *config.Config, roleExists bool) []string {
	owner, role, s := q(cfg.Admin.OwnerRole), q(config.AnalyticsRole), q(config.Analytics)
	var out []string
	if !roleExists {
		out = append(out, "CREATE ROLE "+role+" NOLOGIN NOINHERIT")
	} else {
		out = append(out, "ALTER ROLE "+role+" NOLOGIN NOINHERIT NOCREATEDB NOCREATEROLE")
	}
	return append(out,
		"GRANT "+role+" TO "+q(cfg.Backend.User),
		"CREATE SCHEMA IF NOT EXISTS "+s+" AUTHORIZATION "+owner,
		"ALTER SCHEMA "+s+" OWNER TO "+owner,
		"REVOKE ALL ON SCHEMA "+s+" FROM PUBLIC",
		"GRANT USAGE ON SCHEMA "+s+" TO "+role,
	)
}

func analyticsRoleExists(ctx context.Context, db querier) (bool, error) {
	var ok bool
	err := db.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", config.AnalyticsRole).Scan(&ok)
	return ok, err
}

// analyticsColumn is one column of a tenant table.
type analyticsColumn struct {
	tenant, schema, table, column, typ string
}

// analyticsView is one view to create: its table name, the columns, and the tenants (name, schema).
type analyticsView struct {
	table   string
	columns []string
	tenants [][2]string
}

// planAnalytics groups the columns of every active tenant's tables into views. cols is ordered by tenant
// name, table name and column number.
func planAnalytics(cols []analyticsColumn) []analyticsView {
	type tableInfo struct {
		first   []analyticsColumn // columns of the first tenant having the table
		types   map[string]map[string]string
		tenants [][2]string
	}
	tables := map[string]*tableInfo{}
	var names []string
	for _, c := range cols {
		ti := tables[c.table]
		if ti == nil {
			ti = &tableInfo{types: map[string]map[string]string{}}
			tables[c.table] = ti
			names = append(names, c.table)
		}
		if n := len(ti.tenants); n == 0 || ti.tenants[n-1][0] != c.tenant {
			ti.tenants = append(ti.tenants, [2]string{c.tenant, c.schema})
			ti.types[c.tenant] = map[string]string{}
		}
		if len(ti.tenants) == 1 {
			ti.first = append(ti.first, c)
		}
		ti.types[c.tenant][c.column] = c.typ
	}
	slices.Sort(names)
	out := make([]analyticsView, 0, len(names))
	for _, name := range names {
		ti := tables[name]
		v := analyticsView{table: name, tenants: ti.tenants}
		for _, c := range ti.first {
			if c.column == "tenant" {
				continue
			}
			common := true
			for _, t := range ti.tenants {
				if ti.types[t[0]][c.column] != c.typ {
					common = false
					break
				}
			}
			if common {
				v.columns = append(v.columns, c.column)
			}
		}
		out = append(out, v)
	}
	return out
}

// sql is the view's CREATE statement.
func (v analyticsView) sql() string {
	var b strings.Builder
	b.WriteString("CREATE VIEW " + q(config.Analytics) + "." + q(v.table) + " AS\n")
	cols := ""
	for _, c := range v.columns {
		cols += ", " + q(c)
	}
	for i, t := range v.tenants {
		if i > 0 {
			b.WriteString("\nUNION ALL\n")
		}
		b.WriteString("SELECT " + lit(t[0]) + "::text AS tenant" + cols + " FROM " + q(t[1]) + "." + q(v.table))
	}
	return b.String()
}

// RefreshResult says what a refresh built.
type RefreshResult struct {
	Views, Tenants int
	Took           time.Duration
}

// RefreshAnalytics rebuilds the analytics views over every active tenant in one transaction.
func RefreshAnalytics(ctx context.Context, cfg *config.Config) (RefreshResult, error) {
	conn, err := connectAdmin(ctx, cfg, "")
	if err != nil {
		return RefreshResult{}, err
	}
	defer conn.Close(context.Background())
	return refreshAnalytics(ctx, conn, cfg)
}

func refreshAnalytics(ctx context.Context, conn *pgx.Conn, cfg *config.Config) (RefreshResult, error) {
	start := time.Now()
	var res RefreshResult
	tx, err := conn.Begin(ctx)
	if err != nil {
		return res, err
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, 0)", lockClassAnalytics); err != nil {
		return res, err
	}
	exists, err := analyticsRoleExists(ctx, tx)
	if err != nil {
		return res, err
	}
	// Suspended tenants of a [tenancy] catalog = "config" list are left out as well.
	suspended := []string{}
	for _, t := range cfg.Tenants {
		if t.Suspended {
			suspended = append(suspended, t.Name)
		}
	}
	rows, err := tx.Query(ctx, `
SELECT t.name, t.schema, c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod)
FROM tenantproxy.tenants t
JOIN pg_namespace n ON n.nspname = t.schema
JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE t.status = 'active' AND t.name <> ALL($1) AND NOT c.relispartition
ORDER BY t.name, c.relname, a.attnum`, suspended)
	if err != nil {
		return res, catalogError(err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (analyticsColumn, error) {
		var c analyticsColumn
		err := r.Scan(&c.tenant, &c.schema, &c.table, &c.column, &c.typ)
		return c, err
	})
	if err != nil {
		return res, catalogError(err)
	}
	old, err := analyticsViews(ctx, tx)
	if err != nil {
		return res, err
	}
	views := planAnalytics(cols)
	stmts := analyticsSetupStatements(cfg, exists)
	// Views are owned by the owner role, which owns every tenant table: reading a view needs no
	// privilege on the tenant schemas.
	stmts = append(stmts, "SET LOCAL ROLE "+q(cfg.Admin.OwnerRole))
	if len(old) > 0 {
		stmts = append(stmts, "DROP VIEW "+strings.Join(old, ", "))
	}
	tenants := map[string]bool{}
	for _, v := range views {
		stmts = append(stmts, v.sql())
		for _, t := range v.tenants {
			tenants[t[0]] = true
		}
	}
	stmts = append(stmts, "GRANT SELECT ON ALL TABLES IN SCHEMA "+q(config.Analytics)+" TO "+q(config.AnalyticsRole), "RESET ROLE")
	if err := execScript(ctx, tx, stmts); err != nil {
		return res, fmt.Errorf("analytics refresh: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("analytics refresh: commit: %w", err)
	}
	return RefreshResult{Views: len(views), Tenants: len(tenants), Took: time.Since(start)}, nil
}

func runAnalyticsRefresh(ctx context.Context, cfg *config.Config, out io.Writer) error {
	res, err := RefreshAnalytics(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "analytics: %d views over %d tenants refreshed in schema %s (%s)\n",
		res.Views, res.Tenants, q(config.Analytics), res.Took.Round(time.Millisecond))
	return nil
}

// afterChange refreshes the analytics views after a command that changed the tenants or their tables;
// the command's own error wins.
func afterChange(e *env, err error) error {
	if err != nil {
		return err
	}
	if rerr := runAnalyticsRefresh(e.ctx, e.cfg, e.stdout); rerr != nil {
		return fmt.Errorf("the command succeeded, but %w (run `tenantproxy analytics refresh` again)", rerr)
	}
	return nil
}

// checkAnalytics verifies the analytics role: NOLOGIN, granted to the pool role, a member of nothing,
// with privileges on the analytics schema only.
func (d *doctor) checkAnalytics(ctx context.Context) error {
	var (
		exists, login, ofPool bool
		memberOf, reach       []string
		schemaOwner           *string
		exposed               []string
	)
	err := d.conn.QueryRow(ctx, `
SELECT r.oid IS NOT NULL, coalesce(r.rolcanlogin OR r.rolsuper OR r.rolbypassrls, false),
       coalesce(pg_has_role($1::oid, r.oid, 'MEMBER'), false),
       ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid ORDER BY 1),
       ARRAY(SELECT n.nspname::text || ' ' || a.privilege_type FROM pg_namespace n, aclexplode(n.nspacl) a
             WHERE a.grantee = r.oid AND n.nspname <> $3 ORDER BY 1),
       (SELECT o.rolname::text FROM pg_namespace n JOIN pg_roles o ON o.oid = n.nspowner WHERE n.nspname = $3),
       ARRAY(SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END || ' ' || a.privilege_type
             FROM pg_namespace n, aclexplode(n.nspacl) a
             WHERE n.nspname = $3 AND a.grantee NOT IN (n.nspowner, coalesce(r.oid, 0)) ORDER BY 1)
FROM (SELECT 1) one LEFT JOIN pg_roles r ON r.rolname = $2`, d.poolOID, config.AnalyticsRole, config.Analytics).Scan(
		&exists, &login, &ofPool, &memberOf, &reach, &schemaOwner, &exposed)
	if err != nil {
		return err
	}
	role := q(config.AnalyticsRole)
	var f findings
	switch {
	case !exists || schemaOwner == nil:
		f.add(fmt.Sprintf("role %s or schema %s is missing", role, q(config.Analytics)), "tenantproxy init")
	default:
		if login {
			f.add(role+" can log in, or is a superuser or bypasses RLS", "ALTER ROLE "+role+" NOLOGIN NOSUPERUSER NOBYPASSRLS;")
		}
		if !ofPool && d.poolOID != nil {
			f.add("the pool role cannot SET ROLE "+role, "GRANT "+role+" TO "+q(d.cfg.Backend.User)+";")
		}
		for _, m := range memberOf {
			f.add(role+" is a member of "+q(m), "REVOKE "+q(m)+" FROM "+role+";")
		}
		for _, r := range reach {
			schema, priv, _ := strings.Cut(r, " ")
			f.add(fmt.Sprintf("%s has %s on schema %s", role, priv, q(schema)), fmt.Sprintf("REVOKE %s ON SCHEMA %s FROM %s;", priv, q(schema), role))
		}
		if *schemaOwner != d.cfg.Admin.OwnerRole {
			f.add(fmt.Sprintf("schema %s is owned by %s", q(config.Analytics), q(*schemaOwner)), "ALTER SCHEMA "+q(config.Analytics)+" OWNER TO "+q(d.cfg.Admin.OwnerRole)+";")
		}
		for _, x := range exposed {
			g, priv, _ := strings.Cut(x, " ")
			f.add(fmt.Sprintf("%s has %s on schema %s", g, priv, q(config.Analytics)), fmt.Sprintf("REVOKE %s ON SCHEMA %s FROM %s;", priv, q(config.Analytics), granteeSQL(g)))
		}
	}
	d.check("analytics role reads the analytics schema only", f, role+" on schema "+q(config.Analytics))
	return nil
}

// analyticsViews lists the views of the analytics schema, as SQL names them.
func analyticsViews(ctx context.Context, db querier) ([]string, error) {
	rows, err := db.Query(ctx, "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = to_regnamespace($1) AND c.relkind = 'v' ORDER BY 1", config.Analytics)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// dropAnalyticsViews drops the analytics views inside tx: they depend on the tenant tables, so a DROP
// SCHEMA, DROP TABLE or DROP COLUMN would otherwise fail on them. The next refresh rebuilds them.
func dropAnalyticsViews(ctx context.Context, tx pgx.Tx) error {
	views, err := analyticsViews(ctx, tx)
	if err != nil || len(views) == 0 {
		return err
	}
	_, err = tx.Exec(ctx, "DROP VIEW "+strings.Join(views, ", "))
	return err
}

// DropAnalyticsViews drops the analytics views in a transaction of their own (before migrate up).
func DropAnalyticsViews(ctx context.Context, cfg *config.Config) error {
	conn, err := connectAdmin(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, 0)", lockClassAnalytics); err != nil {
			return err
		}
		if err := dropAnalyticsViews(ctx, tx); err != nil {
			return fmt.Errorf("drop the analytics views before migrating: %w", err)
		}
		return nil
	})
}
