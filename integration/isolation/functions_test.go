package isolation

import "testing"

// functionCases set the role, search_path or tenant setting through set_config() and its kin, anywhere in
// an expression, or run SQL strings through functions. init revoked EXECUTE on them from PUBLIC; the guard
// refuses them by name wherever they appear.
func functionCases() []escape {
	const role = "set_config('role', 'tenant_globex', false)"
	fn := func(name, sql string) escape {
		return escape{name: name, steps: []step{refused(sql, "set_config")}}
	}
	return []escape{
		fn("set_config of role", "SELECT "+role),
		fn("schema-qualified", "SELECT pg_catalog.set_config('role', 'tenant_globex', false)"),
		fn("quoted function name", `select "set_config"('role', 'tenant_globex', false)`),
		fn("quoted schema and function", `SELECT "pg_catalog"."set_config"('role', 'tenant_globex', false)`),
		fn("upper case", "SELECT PG_CATALOG.SET_CONFIG('ROLE', 'tenant_globex', FALSE)"),
		fn("unicode-escaped function name", `SELECT U&"set\005Fconfig"('role', 'tenant_globex', false)`),
		fn("unicode-escaped argument", `SELECT set_config(U&'r\006Fle', 'tenant_globex', false)`),
		fn("dollar-quoted arguments", "SELECT set_config($$role$$, $x$tenant_globex$x$, false)"),
		fn("is_local true", "SELECT set_config('role', 'tenant_globex', true)"),
		fn("comments around the call", "SELECT /* a */ set_config /* b */ ( -- c\n'role', 'tenant_globex', false)"),
		fn("in WHERE", "SELECT * FROM acme.employees WHERE "+role+" IS NOT NULL"),
		fn("in a LATERAL subquery", "SELECT e.* FROM employees e, LATERAL (SELECT "+role+") s"),
		fn("as a LATERAL function", "SELECT * FROM employees CROSS JOIN LATERAL set_config('search_path', 'globex', false) AS s"),
		fn("in COPY (query) TO STDOUT", "COPY (SELECT "+role+") TO STDOUT"),
		fn("in EXPLAIN ANALYZE", "EXPLAIN ANALYZE SELECT "+role),
		fn("in EXPLAIN ANALYZE JSON with a filter", "EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM employees WHERE "+role+" <> ''"),
		fn("in a CTE", "WITH s AS (SELECT set_config('search_path', 'globex', false)) SELECT * FROM s, employees"),
		fn("in a recursive CTE", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE "+role+" = '' AND n < 2) SELECT * FROM r"),
		fn("in a scalar subquery", "SELECT (SELECT "+role+")"),
		fn("in VALUES", "VALUES ("+role+")"),
		fn("in ORDER BY", "SELECT 1 ORDER BY "+role),
		fn("as an argument", "SELECT format('%s', "+role+")"),
		fn("in INSERT ... SELECT", "INSERT INTO employees (name) SELECT "+role+" RETURNING tenant"),
		fn("in UPDATE SET", "UPDATE employees SET name = "+role+" WHERE false"),
		fn("in a CASE branch never taken", "SELECT CASE WHEN false THEN "+role+" END"),
		fn("in a cursor's query", "BEGIN; DECLARE c CURSOR FOR SELECT "+role+"; FETCH c; COMMIT"),
		fn("in a SQL prepared statement", "PREPARE p AS SELECT "+role),
		fn("in a temporary table's query", "CREATE TEMP TABLE t AS SELECT "+role),
		fn("in ROWS FROM", "SELECT * FROM ROWS FROM (set_config('role', 'tenant_globex', false)) AS r"),
		fn("in MERGE", "MERGE INTO employees e USING (SELECT "+role+" AS r) s ON false WHEN NOT MATCHED THEN INSERT (name) VALUES (s.r)"),
		fn("in ON CONFLICT DO UPDATE", "INSERT INTO employees (id, name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET name = "+role),
		fn("in a window", "SELECT count(*) OVER (PARTITION BY "+role+") FROM employees"),
		fn("in GROUP BY and HAVING", "SELECT count(*) FROM employees GROUP BY tenant HAVING "+role+" <> ''"),
		fn("in a lateral VALUES", "SELECT * FROM employees, LATERAL (VALUES ("+role+")) v(r)"),
		fn("in an array subscript", "SELECT (ARRAY[1])[length("+role+")]"),
		fn("second statement of three", "SELECT 1; SELECT "+role+"; SELECT * FROM globex.employees"),
		fn("search_path then unqualified read", "SELECT set_config('search_path', 'globex', false); SELECT * FROM employees"),
		fn("tenant setting then the RLS table", "SELECT set_config('tenantproxy.tenant', 'globex', false); SELECT * FROM public.notes"),
		fn("tenant setting in the same query as the RLS table", "SELECT n.* FROM (SELECT set_config('tenantproxy.tenant', 'globex', true)) s, public.notes n"),
		{name: "query_to_xml running set_config", steps: []step{refused("SELECT query_to_xml('select set_config(''role'',''none'',false)', true, false, '')", "query_to_xml")}},
		{name: "query_to_xml dollar-quoted", steps: []step{refused("SELECT query_to_xml($q$SELECT * FROM globex.employees$q$, true, false, '')", "query_to_xml")}},
		{name: "query_to_xml_and_xmlschema qualified", steps: []step{refused("SELECT pg_catalog.query_to_xml_and_xmlschema('select 1', true, false, '')", "query_to_xml")}},
		{name: "ts_stat running a query", steps: []step{refused("SELECT * FROM ts_stat('select to_tsvector(set_config(''role'',''none'',false))')", "ts_stat")}},
		{name: "ts_rewrite with a query", steps: []step{refused("SELECT ts_rewrite('a & b'::tsquery, 'SELECT ''a''::tsquery, set_config(''role'', ''none'', false)::tsquery')", "ts_rewrite")}},
		{name: "cursor_to_xml", steps: []step{refused("SELECT cursor_to_xml('c', 1, false, false, '')", "cursor_to_xml")}},
		{name: "schema_to_xml of globex", steps: []step{refused("SELECT schema_to_xml('globex', true, false, '')", "schema_to_xml")}},
		{name: "database_to_xml", steps: []step{refused("SELECT database_to_xml(true, false, '')", "database_to_xml")}},
		{name: "UPDATE pg_settings of role", steps: []step{refused("UPDATE pg_settings SET setting = 'tenant_globex' WHERE name = 'role'", "pg_settings")}},
		{name: "UPDATE pg_catalog.pg_settings of search_path", steps: []step{refused("UPDATE pg_catalog.pg_settings SET setting = 'globex' WHERE name = 'search_path'", "pg_settings")}},
		{name: "UPDATE pg_settings in a CTE", steps: []step{refused("WITH u AS (UPDATE pg_settings SET setting = 'globex' WHERE name = 'tenantproxy.tenant' RETURNING 1) SELECT * FROM u, public.notes", "pg_settings")}},
		{name: "setseed", steps: []step{refused("SELECT setseed(0.5)", "setseed")}},
		{name: "pg_reload_conf", steps: []step{refused("SELECT pg_reload_conf()", "pg_reload_conf")}},
		{name: "pg_read_file", steps: []step{refused("SELECT pg_read_file('postgresql.conf')", "pg_read_file")}},
		{name: "pg_cancel_backend", steps: []step{refused("SELECT pg_cancel_backend(pg_backend_pid() + 1)", "pg_cancel_backend")}},
		{name: "pg_stat_activity of the pool's backends", steps: []step{fails("42501", "SELECT query FROM pg_stat_activity")}},
		{name: "pg_stat_get_backend_activity", steps: []step{fails("42501", "SELECT pg_stat_get_backend_activity(s) FROM pg_stat_get_backend_idset() s")}},
		{name: "current_setting is harmless", steps: []step{okRows("SELECT current_setting('role'), current_setting('tenantproxy.tenant')", "tenant_acme|acme")}},
	}
}

// Settings never change through functions: set_config and every function that runs a SQL string are
// refused anywhere in a statement, in every spelling.
func TestSettingsThroughFunctions(t *testing.T) {
	runCategory(t, functionCases(), nil)
}
