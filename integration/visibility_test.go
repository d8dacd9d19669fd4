package integration

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
	"github.com/tenantproxy/tenantproxy/tenants"
)

// browseQuery is one query a client tool or driver runs when it connects or browses a database,
// paraphrased from the tool's source. own, when set, must appear in the answer: the tool still shows the
// tenant's own objects.
type browseQuery struct {
	tool, sql string
	own       string
}

// browseQueries are what psql, information_schema readers, pgAdmin, DBeaver, Metabase and the pgx, JDBC
// and node-postgres drivers ask of the catalogs. {schema} is the tenant's own schema.
var browseQueries = []browseQuery{
	// psql's \dn, \du, \dt *.*, \d+ employees (describe.c), as psql 15 sends them.
	{"psql \\dn", `SELECT n.nspname AS "Name", pg_catalog.pg_get_userbyid(n.nspowner) AS "Owner" FROM pg_catalog.pg_namespace n
		WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' ORDER BY 1`, "{schema}"},
	{"psql \\du", `SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin, r.rolconnlimit,
		r.rolvaliduntil, ARRAY(SELECT b.rolname FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid)
		WHERE m.member = r.oid) AS memberof, r.rolreplication, r.rolbypassrls FROM pg_catalog.pg_roles r WHERE r.rolname !~ '^pg_' ORDER BY 1`, ""},
	{"psql \\dt *.*", `SELECT n.nspname AS "Schema", c.relname AS "Name", CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' END AS "Type",
		pg_catalog.pg_get_userbyid(c.relowner) AS "Owner" FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r','p','') ORDER BY 1,2`, "employees"},
	{"psql \\d+ employees (lookup)", `SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relname OPERATOR(pg_catalog.~) '^(employees)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3`, "employees"},
	{"psql \\d+ employees (columns)", `SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
		(SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),
		a.attnotnull, a.attstorage, pg_catalog.col_description(a.attrelid, a.attnum)
		FROM pg_catalog.pg_attribute a WHERE a.attrelid = 'employees'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, "email"},
	{"psql \\d+ employees (size)", `SELECT pg_catalog.pg_size_pretty(pg_catalog.pg_table_size('employees'::regclass))`, ""},
	{"psql \\d+ employees (indexes)", `SELECT c2.relname, i.indisprimary, pg_catalog.pg_get_indexdef(i.indexrelid, 0, true)
		FROM pg_catalog.pg_class c, pg_catalog.pg_class c2, pg_catalog.pg_index i
		WHERE c.oid = 'employees'::regclass AND c.oid = i.indrelid AND i.indexrelid = c2.oid ORDER BY i.indisprimary DESC, c2.relname`, "employees_pkey"},

	// information_schema, which BI tools and ORMs read.
	{"information_schema.schemata", `SELECT catalog_name, schema_name, schema_owner FROM information_schema.schemata`, ""},
	{"information_schema.tables", `SELECT table_schema, table_name, table_type FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')`, "employees"},
	{"information_schema.columns", `SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', 'information_schema')`, "email"},
	{"information_schema.table_privileges", `SELECT grantor, grantee, table_schema, table_name, privilege_type FROM information_schema.table_privileges WHERE table_schema NOT IN ('pg_catalog', 'information_schema')`, "employees"},
	{"information_schema.role_table_grants", `SELECT grantee, table_schema, table_name FROM information_schema.role_table_grants WHERE table_schema NOT IN ('pg_catalog', 'information_schema')`, "employees"},
	{"information_schema.applicable_roles", `SELECT grantee, role_name FROM information_schema.applicable_roles`, ""},

	// pgAdmin 4's browser: the schema nodes and the table nodes of a schema (schemas/templates/schema/pg/sql/nodes.sql,
	// tables/templates/tables/sql/nodes.sql).
	{"pgAdmin schema nodes", `SELECT nsp.oid, nsp.nspname AS name, has_schema_privilege(nsp.oid, 'CREATE') AS can_create,
		has_schema_privilege(nsp.oid, 'USAGE') AS has_usage, des.description
		FROM pg_catalog.pg_namespace nsp LEFT OUTER JOIN pg_catalog.pg_description des ON (des.objoid = nsp.oid AND des.classoid = 'pg_namespace'::regclass)
		WHERE nspname NOT LIKE E'pg\\_%' AND NOT (nspname = 'information_schema') ORDER BY nspname`, "{schema}"},
	{"pgAdmin table nodes", `SELECT rel.oid, rel.relname AS name, (SELECT count(*) FROM pg_catalog.pg_trigger WHERE tgrelid = rel.oid AND tgisinternal = FALSE) AS triggercount,
		rel.relrowsecurity AS rlspolicy, des.description
		FROM pg_catalog.pg_class rel LEFT OUTER JOIN pg_catalog.pg_description des ON (des.objoid = rel.oid AND des.objsubid = 0 AND des.classoid = 'pg_class'::regclass)
		WHERE rel.relkind IN ('r','s','t','p') AND rel.relnamespace = '{schema}'::regnamespace ORDER BY rel.relname`, "employees"},
	{"pgAdmin role nodes", `SELECT r.oid, r.rolname, r.rolcanlogin, r.rolsuper FROM pg_catalog.pg_roles r ORDER BY r.rolcanlogin, r.rolname`, ""},
	{"pgAdmin database nodes", `SELECT db.oid, db.datname AS name, pg_catalog.has_database_privilege(db.oid, 'CREATE') AS cancreate, datallowconn
		FROM pg_catalog.pg_database db WHERE db.datname = current_database()`, ""},

	// DBeaver's PostgreSQL plugin: schemas, the tables of a schema with their pg_class row, the connection's
	// own checks.
	{"DBeaver schemas", `SELECT n.oid, n.*, d.description FROM pg_catalog.pg_namespace n
		LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid = n.oid AND d.objsubid = 0 AND d.classoid = 'pg_namespace'::regclass ORDER BY nspname`, "{schema}"},
	{"DBeaver tables of a schema", `SELECT c.oid, c.*, d.description, pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS partition_expr, pg_catalog.pg_get_partkeydef(c.oid) AS partition_key
		FROM pg_catalog.pg_class c LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid = c.oid AND d.objsubid = 0 AND d.classoid = 'pg_class'::regclass
		WHERE c.relnamespace = '{schema}'::regnamespace AND c.relkind NOT IN ('i', 'I', 'c')`, "employees"},
	{"DBeaver session", `SELECT current_schema(), session_user`, "{schema}"},
	{"DBeaver database", `SELECT db.oid, db.* FROM pg_catalog.pg_database db WHERE datname = current_database()`, ""},

	// Metabase's sync (driver/postgres.clj get-tables-sql, describe-fields-sql): note the unqualified
	// pg_stat_user_tables, which the search_path resolves to tenant_stats.
	{"Metabase tables", `SELECT n.nspname AS schema, c.relname AS name, CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW'
		WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS type, d.description AS description, stat.n_live_tup AS estimated_row_count
		FROM pg_catalog.pg_class AS c INNER JOIN pg_catalog.pg_namespace AS n ON c.relnamespace = n.oid
		LEFT JOIN pg_catalog.pg_description AS d ON (c.oid = d.objoid) AND (d.objsubid = 0) AND (d.classoid = 'pg_class'::regclass)
		LEFT JOIN pg_stat_user_tables AS stat ON (n.nspname = stat.schemaname) AND (c.relname = stat.relname)
		WHERE (c.relnamespace = n.oid) AND (n.nspname !~ '^pg_') AND (n.nspname <> 'information_schema') AND c.relkind IN ('r', 'p', 'v', 'f', 'm')
		  AND n.nspname IN ('{schema}') ORDER BY type ASC, schema ASC, name ASC`, "employees"},
	{"Metabase fields", `SELECT c.column_name AS name, c.udt_name AS database_type, c.ordinal_position - 1 AS database_position, c.table_schema, c.table_name
		FROM information_schema.columns AS c WHERE c.table_schema !~ '^information_schema|catalog_history|pg_' ORDER BY table_schema, table_name, database_position`, "email"},
	{"Metabase privileges", `SELECT has_table_privilege(quote_ident(n.nspname) || '.' || quote_ident(c.relname), 'SELECT') FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '{schema}'`, ""},
	{"Metabase enum types", `SELECT nspname, typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid IN (SELECT DISTINCT enumtypid FROM pg_enum e)`, ""},

	// Drivers: pgx's LoadType of a table's composite type, pgjdbc's TypeInfoCache lookup and
	// DatabaseMetaData.getTables, node-postgres' (pg-types) array/oid lookup.
	{"pgx LoadType", `SELECT t.oid, t.typname, t.typtype, t.typrelid FROM pg_catalog.pg_type t WHERE t.oid = 'employees'::regtype`, "employees"},
	{"pgx composite fields", `SELECT a.attname, a.atttypid FROM pg_catalog.pg_attribute a WHERE a.attrelid = (SELECT typrelid FROM pg_type WHERE oid = 'employees'::regtype) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, "email"},
	{"JDBC TypeInfoCache", `SELECT pg_type.oid, typname FROM pg_catalog.pg_type LEFT JOIN (SELECT ns.oid AS nspoid, ns.nspname, r.r FROM pg_namespace AS ns
		JOIN (SELECT s.r, (current_schemas(false))[s.r] AS nspname FROM generate_series(1, array_upper(current_schemas(false), 1)) AS s(r)) AS r USING (nspname)) AS sp
		ON sp.nspoid = typnamespace WHERE typname = 'employees' ORDER BY sp.r, pg_type.oid DESC LIMIT 1`, "employees"},
	{"JDBC getTables", `SELECT NULL AS TABLE_CAT, n.nspname AS TABLE_SCHEM, c.relname AS TABLE_NAME, d.description AS REMARKS
		FROM pg_catalog.pg_namespace n, pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_description d ON (c.oid = d.objoid AND d.objsubid = 0 AND d.classoid = 'pg_class'::regclass)
		WHERE c.relnamespace = n.oid AND c.relkind IN ('r','p','v') ORDER BY TABLE_SCHEM, TABLE_NAME`, "employees"},
	{"JDBC getSchemas", `SELECT nspname AS TABLE_SCHEM, NULL AS TABLE_CATALOG FROM pg_catalog.pg_namespace WHERE nspname <> 'pg_toast' AND (nspname !~ '^pg_temp_' OR nspname = (pg_catalog.current_schemas(true))[1]) AND (nspname !~ '^pg_toast_temp_' OR nspname = replace((pg_catalog.current_schemas(true))[1], 'pg_temp_', 'pg_toast_temp_')) ORDER BY TABLE_SCHEM`, "{schema}"},
	{"node-postgres array types", `SELECT oid, typname, typarray FROM pg_catalog.pg_type WHERE typname IN ('employees', '_employees')`, "employees"},

	// Definitions and sources every role can read: the analytics views must not name the tenants in them.
	{"pg_views", `SELECT schemaname, viewname, definition FROM pg_catalog.pg_views`, ""},
	{"pg_get_viewdef of every view", `SELECT c.oid::regclass, pg_catalog.pg_get_viewdef(c.oid) FROM pg_catalog.pg_class c WHERE c.relkind IN ('v', 'm')`, ""},
	{"pg_rewrite", `SELECT ev_class::regclass, ev_action::text FROM pg_catalog.pg_rewrite`, ""},
	{"pg_proc sources", `SELECT proname, prosrc, proconfig FROM pg_catalog.pg_proc WHERE pronamespace <> 'pg_catalog'::regnamespace`, ""},
	{"comments", `SELECT description FROM pg_catalog.pg_description UNION ALL SELECT description FROM pg_catalog.pg_shdescription`, ""},

	// Monitoring a tenant still can do: its own statistics, through tenant_stats (unqualified too).
	{"tenant_stats tables", `SELECT schemaname, relname, n_live_tup, seq_scan FROM tenant_stats.pg_stat_user_tables`, "employees"},
	{"tenant_stats unqualified", `SELECT schemaname, relname, n_live_tup FROM pg_stat_user_tables`, "employees"},
	{"tenant_stats indexes", `SELECT schemaname, relname, indexrelname, idx_scan FROM pg_stat_user_indexes`, "employees_pkey"},
}

// closedToTenants are the statistics a tenant may not read at all (42501).
var closedToTenants = []string{
	"SELECT * FROM pg_catalog.pg_stat_user_tables", "SELECT * FROM pg_catalog.pg_stat_all_tables",
	"SELECT * FROM pg_catalog.pg_statio_user_tables", "SELECT * FROM pg_catalog.pg_stat_user_indexes",
	"SELECT * FROM pg_catalog.pg_stat_xact_user_tables", "SELECT * FROM pg_catalog.pg_stat_activity",
	"SELECT * FROM pg_catalog.pg_locks", "SELECT * FROM pg_catalog.pg_stat_database",
	"SELECT pg_stat_get_live_tuples(c.oid) FROM pg_class c WHERE relname = 'employees'",
	"SELECT pg_stat_get_numscans(c.oid) FROM pg_class c WHERE relname = 'employees'",
	"SELECT * FROM analytics.employees", "SELECT * FROM analytics_parts.tenant_name('x')",
}

// render is every value of every row of the answer, as text.
func render(rows pgx.Rows) (string, error) {
	var b strings.Builder
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return "", err
		}
		fmt.Fprintln(&b, vals...)
	}
	return b.String(), rows.Err()
}

// visibilityCase is a tenant session to check and the other tenants whose names it must not learn.
type visibilityCase struct {
	naming         string
	url            func(p *proxytest.Proxy) string
	schema         string
	others         []string // names that must appear nowhere (empty for explicit names, which are visible by choice)
	otherStatsRows string   // a value only another tenant's rows contain
}

func checkVisibility(t *testing.T, ctx context.Context, p *proxytest.Proxy, c visibilityCase) {
	conn := connectWhenServed(t, ctx, c.url(p))
	// Activity of its own, so that its statistics have rows.
	if _, err := conn.Exec(ctx, "SELECT count(*) FROM employees"); err != nil {
		t.Fatal(err)
	}
	leaks := func(what, answer string) {
		t.Helper()
		low := strings.ToLower(answer)
		for _, o := range c.others {
			if strings.Contains(low, o) {
				t.Errorf("%s shows tenant %q:\n%s", what, o, answer)
			}
		}
		if c.otherStatsRows != "" && strings.Contains(low, c.otherStatsRows) {
			t.Errorf("%s shows another tenant's rows:\n%s", what, answer)
		}
	}
	for _, q := range browseQueries {
		sql := strings.ReplaceAll(q.sql, "{schema}", c.schema)
		rows, err := conn.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
		var answer string
		if err == nil {
			answer, err = render(rows)
		}
		if err != nil {
			t.Errorf("%s: %v", q.tool, err)
			continue
		}
		if own := strings.ReplaceAll(q.own, "{schema}", c.schema); own != "" && !strings.Contains(answer, own) {
			t.Errorf("%s does not show the tenant's own %s:\n%s", q.tool, own, answer)
		}
		leaks(q.tool, answer)
	}
	for _, sql := range closedToTenants {
		if _, err := conn.Exec(ctx, sql); sqlstate(err) != "42501" {
			t.Errorf("%s: %v, want 42501", sql, err)
		}
	}
	// The statistics it does get are its own schema's only.
	rows, err := conn.Query(ctx, "SELECT DISTINCT schemaname::text FROM pg_stat_user_tables")
	if err != nil {
		t.Fatal(err)
	}
	schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(schemas) != 1 || schemas[0] != c.schema {
		t.Errorf("tenant statistics cover schemas %v (%v), want only %s", schemas, err, c.schema)
	}

	// psql itself, through the proxy.
	for _, cmd := range []string{`\dn`, `\du`, `\dt *.*`, `\d+ employees`, `\dv tenant_stats.*`} {
		out, stderr, err := runPsql(t, c.url(p), nil, "-c", cmd)
		if err != nil || stderr != "" {
			t.Errorf("psql %s: %v\n%s", cmd, err, stderr)
			continue
		}
		if cmd == `\d+ employees` && !strings.Contains(out, "email") {
			t.Errorf("psql %s does not describe the tenant's table:\n%s", cmd, out)
		}
		leaks("psql "+cmd, out)
	}
}

// TestTenantLearnsNothingOfOtherTenants connects as a tenant and runs what psql, information_schema
// readers, pgAdmin, DBeaver, Metabase and the pgx, JDBC and node-postgres drivers run when they connect
// and browse: every answer works for the tenant's own objects, no statistics of another tenant can be
// read, and under opaque names no answer contains another tenant's name. With explicit names (acme,
// globex: schema and role named after the tenant) the names are visible by the operator's choice, and
// doctor warns about them.
func TestTenantLearnsNothingOfOtherTenants(t *testing.T) {
	f := proxytest.NewFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := f.Config(func(c *config.Config) {
		c.Tenancy.Catalog = config.CatalogDatabase
		c.Users = append(c.Users,
			config.User{Name: "uma", Password: proxytest.Password, Tenants: []string{"umbrella"}, Profile: config.ProfileApp},
			config.User{Name: "hank", Password: proxytest.Password, Tenants: []string{"hooli"}, Profile: config.ProfileApp})
	})
	var out bytes.Buffer
	for _, name := range []string{"umbrella", "hooli"} {
		if code := tenants.Main(ctx, cfg, []string{"tenant", "create", name}, &out, &out); code != 0 {
			t.Fatalf("tenant create %s: exit %d\n%s", name, code, out.String())
		}
	}
	su, err := f.Cluster.Connect(ctx, proxytest.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(ctx)
	schemaOf := func(name string) string {
		var s string
		if err := su.QueryRow(ctx, "SELECT schema FROM tenantproxy.tenants WHERE name = $1", name).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	umbrella, hooli := schemaOf("umbrella"), schemaOf("hooli")
	if strings.Contains(umbrella, "umbrella") || strings.Contains(hooli, "hooli") {
		t.Fatalf("schemas %s, %s are not opaque", umbrella, hooli)
	}
	// hooli is busy: rows, scans and updates that its statistics would show.
	if _, err := su.Exec(ctx, fmt.Sprintf(`INSERT INTO %[1]q.employees (name, email, tenant) SELECT 'hooli employee ' || i, 'e' || i || '@hooli.example', 'hooli' FROM generate_series(1, 37) i;
		INSERT INTO %[2]q.employees (name, email, tenant) VALUES ('umbrella employee 1', 'e1@umbrella.example', 'umbrella');
		SELECT count(*) FROM %[1]q.employees; UPDATE %[1]q.employees SET name = name`, hooli, umbrella)); err != nil {
		t.Fatal(err)
	}

	cases := []visibilityCase{
		{naming: "opaque", url: func(p *proxytest.Proxy) string { return p.URL("uma", "umbrella") }, schema: umbrella,
			others: []string{"hooli"}, otherStatsRows: "@hooli.example"},
		{naming: "explicit", url: func(p *proxytest.Proxy) string { return p.URL("alice", "acme") }, schema: "acme",
			otherStatsRows: "@globex.example"},
	}
	for _, mode := range poolModes {
		p := f.Start(t, func(c *config.Config) { *c = *cfg; c.Pool.Mode = mode })
		for _, c := range cases {
			t.Run(string(mode)+"/"+c.naming, func(t *testing.T) { checkVisibility(t, ctx, p, c) })
		}
	}

	// doctor passes, and warns about the explicit names only.
	rep, err := tenants.Doctor(ctx, cfg)
	if err != nil || len(rep.Failed()) > 0 {
		t.Fatalf("doctor: %v %+v", err, rep.Failed())
	}
	for _, c := range rep.Checks {
		if c.Name == "tenant schema and role names do not reveal the tenant" {
			if !c.Warn || !strings.Contains(c.Detail, "acme") || strings.Contains(c.Detail, "umbrella") || strings.Contains(c.Detail, "hooli") {
				t.Errorf("naming check: %+v", c)
			}
		}
	}
}
