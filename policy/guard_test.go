package policy

import (
	"reflect"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

// tenantSchemas are the schemas of the test tenant acme.
var tenantSchemas = []string{"acme", "public"}

var allProfiles = []Profile{ProfileReadonly, ProfileApp, ProfileOwner}

func newTestGuard() *Guard {
	return NewGuard(GuardConfig{TenantSetting: "tenantproxy.tenant"})
}

// escapes are refused for every profile: 42501 for app and owner (a read-only user may get 25006 when the
// statement is a write anyway), with a reason containing the given text. They cover every category of
// shared/corpus/escapes.md in variants of case, quoting, comments, qualified names, white space, unicode
// escapes, dollar quoting, nesting and position in a multi-statement message.
var escapes = []struct{ sql, reason string }{
	// Role and session authorization.
	{"RESET ROLE; SELECT * FROM globex.employees", "RESET ROLE is not allowed: the session's role is fixed by its tenant"},
	{"reset role", "RESET ROLE"},
	{"ReSeT\n\t  RoLe", "RESET ROLE"},
	{"/* hello */ RESET /* there */ ROLE", "RESET ROLE"},
	{"-- a comment\nRESET ROLE", "RESET ROLE"},
	{"SET ROLE NONE", "SET ROLE is not allowed: the session's role is fixed by its tenant"},
	{"SET ROLE tenant_globex", "SET ROLE"},
	{"set role 'tenant_globex'", "SET ROLE"},
	{"SET SESSION ROLE tenant_globex", "SET ROLE"},
	{`SET "role" TO tenant_globex`, "SET ROLE"},
	{`SET "ROLE" TO tenant_globex`, "SET ROLE"},
	{`SET U&"rol\0065" TO tenant_globex`, "SET ROLE"},
	{"SET role TO DEFAULT", "SET ROLE"},
	{"SET LOCAL ROLE tenant_globex", "SET LOCAL ROLE"},
	{"BEGIN; SET LOCAL ROLE tenant_globex; SELECT * FROM globex.employees; COMMIT", "SET LOCAL ROLE"},
	{"SELECT 1; SELECT 2; RESET ROLE", "RESET ROLE"},
	{"SELECT 1; RESET ROLE; SELECT * FROM globex.employees", "RESET ROLE"},
	{"SET SESSION AUTHORIZATION DEFAULT", "SET SESSION AUTHORIZATION is not allowed"},
	{"set session authorization pool", "SET SESSION AUTHORIZATION"},
	{"SET SESSION AUTHORIZATION 'postgres'", "SET SESSION AUTHORIZATION"},
	{"RESET SESSION AUTHORIZATION", "RESET SESSION AUTHORIZATION"},
	{"SET session_authorization = 'x'", "SET SESSION AUTHORIZATION"},
	{"DISCARD ALL; SELECT current_user", "DISCARD ALL must be the only statement of its message"},
	{"select 1;\ndiscard all", "DISCARD ALL must be the only statement"},
	// Parser parity: with standard_conforming_strings on, a backslash does not escape a quote.
	{`SELECT '\'; RESET ROLE; --'`, "RESET ROLE"},
	{`SELECT E'\\'; RESET ROLE; --'`, "RESET ROLE"},
	{"SELECT $a$ x $a$; RESET ROLE", "RESET ROLE"},

	// Settings through functions.
	{"SELECT set_config('role', 'tenant_globex', false)", "function set_config() is not allowed"},
	{"select SET_CONFIG('role','tenant_globex',false)", "set_config()"},
	{"SELECT pg_catalog.set_config('role', 'tenant_globex', false)", "set_config()"},
	{`SELECT "pg_catalog"."set_config"('role', 'x', false)`, "set_config()"},
	{`SELECT "Set_Config"('role', 'x', false)`, "set_config()"},
	{`SELECT U&"set\005fconfig"('role', 'x', false)`, "set_config()"},
	{`SELECT U&"\0073et_config"('role', 'x', false)`, "set_config()"},
	{`SELECT U&"!0073et_config" UESCAPE '!'('role', 'x', false)`, "set_config()"},
	{"SELECT * FROM acme.employees WHERE set_config('role', 'x', false) IS NOT NULL", "set_config()"},
	{"SELECT * FROM acme.employees e, LATERAL (SELECT set_config('role', 'x', false)) s", "set_config()"},
	{"SELECT * FROM acme.employees e CROSS JOIN LATERAL set_config('role', 'x', false) s", "set_config()"},
	{"COPY (SELECT set_config('role', 'x', false)) TO STDOUT", "set_config()"},
	{"EXPLAIN ANALYZE SELECT set_config('role', 'x', false)", "set_config()"},
	{"EXPLAIN (ANALYZE, FORMAT JSON) SELECT 1 FROM acme.employees WHERE set_config('role', 'x', false) = ''", "set_config()"},
	{"WITH c AS (SELECT set_config('role', 'x', false)) SELECT * FROM c", "set_config()"},
	{"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE set_config('role', 'x', false) = '') SELECT * FROM r", "set_config()"},
	{"SELECT (SELECT (SELECT set_config('role', 'x', false)))", "set_config()"},
	{"SELECT * FROM acme.employees WHERE id IN (SELECT 1 WHERE set_config('role', 'x', false) = '')", "set_config()"},
	{"SELECT EXISTS (SELECT set_config('role', 'x', false))", "set_config()"},
	{"SELECT CASE WHEN true THEN set_config('role', 'x', false) END", "set_config()"},
	{"SELECT count(*) FILTER (WHERE set_config('role', 'x', false) = '') FROM acme.employees", "set_config()"},
	{"SELECT * FROM acme.employees ORDER BY set_config('role', name, false)", "set_config()"},
	{"SELECT ARRAY[set_config('role', 'x', false)]", "set_config()"},
	{"SELECT ROW(set_config('role', 'x', false))", "set_config()"},
	{"SELECT json_build_object('a', set_config('role', 'x', false))", "set_config()"},
	{"SELECT xmlelement(name a, set_config('role', 'x', false))", "set_config()"},
	{"SELECT upper(lower(set_config('role', 'x', false)))", "set_config()"},
	{"SELECT * FROM set_config('role', 'x', false)", "set_config()"},
	{"SELECT * FROM ROWS FROM (set_config('role', 'x', false))", "set_config()"},
	{"SELECT set_config(setting_name => 'role', new_value => 'x', is_local => false)", "set_config()"},
	{"VALUES (set_config('role', 'x', false))", "set_config()"},
	{"INSERT INTO acme.employees (name) VALUES (set_config('role', 'x', false))", "set_config()"},
	{"UPDATE acme.employees SET name = set_config('role', 'x', false)", "set_config()"},
	{"DELETE FROM acme.employees WHERE name = set_config('role', 'x', false)", "set_config()"},
	{"PREPARE p AS SELECT set_config('role', 'x', false)", "set_config()"},
	{"EXECUTE p(set_config('role', 'x', false))", "set_config()"},
	{"DECLARE c CURSOR FOR SELECT set_config('role', 'x', false)", "set_config()"},
	{"CALL acme.p(set_config('role', 'x', false))", "set_config()"},
	{"SELECT 1; SELECT set_config('role', 'x', false)", "set_config()"},
	{"SELECT 1; SELECT 2; /* third */ SELECT set_config('role', 'x', false)", "set_config()"},
	{"SELECT set_config('search_path', 'globex', false)", "set_config()"},
	{"SELECT set_config('tenantproxy.tenant', 'globex', false)", "set_config()"},
	{"SELECT set_config($1, $2, false)", "set_config()"},
	{"SELECT query_to_xml('select set_config(''role'',''none'',false)', true, false, '')", "function query_to_xml() is not allowed: it runs SQL text"},
	{"SELECT pg_catalog.QUERY_TO_XML($$select 1$$, true, false, '')", "query_to_xml()"},
	{"SELECT query_to_xml_and_xmlschema('select 1', true, false, '')", "query_to_xml_and_xmlschema()"},
	{"SELECT query_to_xmlschema('select 1', true, false, '')", "query_to_xmlschema()"},
	{"SELECT ts_stat('select to_tsvector(name) from acme.employees')", "ts_stat()"},
	{"SELECT ts_rewrite('a'::tsquery, 'select set_config(''role'', ''x'', false)')", "ts_rewrite()"},
	{"SELECT cursor_to_xml('c', 10, false, false, '')", "cursor_to_xml()"},
	{"SELECT cursor_to_xmlschema('c', false, false, '')", "cursor_to_xmlschema()"},
	{"SELECT database_to_xml(true, false, '')", "database_to_xml()"},
	{"SELECT schema_to_xml('globex', true, false, '')", "schema_to_xml()"},
	{"SELECT * FROM dblink('dbname=postgres', 'select 1') AS t(a int)", "dblink()"},
	{"SELECT dblink_exec('dbname=postgres', 'RESET ROLE')", "dblink_exec()"},
	{"SELECT pg_read_file('/etc/passwd')", "pg_read_file()"},
	{"SELECT pg_read_binary_file('/etc/passwd')", "pg_read_binary_file()"},
	{"SELECT * FROM pg_ls_dir('.')", "pg_ls_dir()"},
	{"SELECT pg_stat_file('postgresql.conf')", "pg_stat_file()"},
	{"SELECT lo_import('/etc/passwd')", "lo_import()"},
	{"SELECT lo_export(1, '/tmp/x')", "lo_export()"},
	{"SELECT pg_reload_conf()", "pg_reload_conf()"},
	{"SELECT pg_terminate_backend(pid) FROM pg_stat_activity", "pg_terminate_backend()"},
	{"SELECT pg_cancel_backend(1)", "pg_cancel_backend()"},
	{"SELECT pg_create_logical_replication_slot('s', 'test_decoding')", "pg_create_logical_replication_slot()"},
	{"SELECT pg_stat_reset()", "pg_stat_reset()"},
	{"SELECT setseed(0.5)", "setseed()"},
	{"SELECT * FROM pg_prepared_statements", "pg_prepared_statements is not allowed"},
	{"select * from PG_CATALOG.pg_cursors", "pg_cursors is not allowed"},
	{"SELECT * FROM pg_prepared_statement()", "pg_prepared_statement()"},
	{"UPDATE pg_settings SET setting = 'tenant_globex' WHERE name = 'role'", "UPDATE on pg_settings is not allowed"},
	{"update PG_CATALOG.PG_SETTINGS set setting = 'globex' where name = 'search_path'", "pg_settings"},
	{"WITH u AS (UPDATE pg_settings SET setting = 'x' WHERE name = 'role' RETURNING 1) SELECT * FROM u", "pg_settings"},

	// Code that runs later.
	{"DO $$ BEGIN EXECUTE 'RESET ROLE'; END $$", "DO is not allowed"},
	{"do 'begin null; end'", "DO is not allowed"},
	{"DO LANGUAGE plpgsql $x$ BEGIN PERFORM 1; END $x$", "DO is not allowed"},
	{"select 1; DO $$ begin end $$", "DO is not allowed"},
	{"CREATE FUNCTION acme.f() RETURNS void LANGUAGE sql AS 'RESET ROLE'; SELECT acme.f()", "its body is refused: RESET ROLE"},
	{"CREATE FUNCTION acme.f() RETURNS void LANGUAGE sql AS $$ SELECT 1; reset role $$", "its body is refused"},
	{"CREATE OR REPLACE FUNCTION acme.f() RETURNS text LANGUAGE sql AS $$ SELECT set_config('role', $1, false) $$", "its body is refused: function set_config()"},
	{"CREATE FUNCTION acme.f() RETURNS text LANGUAGE sql BEGIN ATOMIC SELECT set_config('role', 'x', false); END", "set_config()"},
	{"CREATE FUNCTION acme.f() RETURNS void LANGUAGE sql AS 'CREATE FUNCTION acme.g() RETURNS void LANGUAGE sql AS ''RESET ROLE'''", "RESET ROLE"},
	{"CREATE FUNCTION acme.f() RETURNS void LANGUAGE sql AS 'SET statement_timeout = 1'", "changes the state of the session"},
	{"CREATE FUNCTION acme.g() RETURNS text LANGUAGE sql SET role = tenant_globex AS 'select current_user::text'", "CREATE FUNCTION ... SET ROLE is not allowed"},
	{"CREATE FUNCTION acme.g() RETURNS text LANGUAGE sql SET session_authorization = pool AS 'select 1'", "SET SESSION AUTHORIZATION"},
	{"CREATE FUNCTION acme.g() RETURNS text LANGUAGE sql SET tenantproxy.tenant = globex AS 'select 1'", "tenantproxy.tenant"},
	{"CREATE OR REPLACE FUNCTION acme.h() RETURNS int LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN RETURN 1; END $$", "SECURITY DEFINER is not allowed"},
	{"CREATE PROCEDURE acme.p() LANGUAGE sql EXTERNAL SECURITY DEFINER AS 'select 1'", "SECURITY DEFINER"},
	{"CREATE PROCEDURE acme.p() LANGUAGE sql AS $$ SELECT set_config('role', 'x', false) $$", "set_config()"},
	{"ALTER FUNCTION acme.f() SET role = tenant_globex", "ALTER FUNCTION ... SET ROLE is not allowed"},
	{"ALTER FUNCTION acme.f() SECURITY DEFINER", "SECURITY DEFINER"},
	{"alter procedure acme.p() set SESSION_AUTHORIZATION to 'x'", "SET SESSION AUTHORIZATION"},
	{"CREATE FUNCTION acme.x() RETURNS void LANGUAGE plpgsql AS $$ BEGIN RESET ROLE; END $$", "its body is refused: RESET ROLE"},
	{"CREATE FUNCTION acme.x() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'RESET ROLE'; END $$", "built at run time (EXECUTE)"},
	{"CREATE FUNCTION acme.x() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE format('SET ROLE %I', 'x'); END $$", "built at run time"},
	{"CREATE FUNCTION acme.x() RETURNS SETOF int LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY EXECUTE 'select 1'; END $$", "built at run time"},
	{"CREATE FUNCTION acme.x() RETURNS void LANGUAGE plpgsql AS $$ DECLARE r record; BEGIN FOR r IN EXECUTE 'select 1' LOOP END LOOP; END $$", "built at run time"},
	{"CREATE FUNCTION acme.x() RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM set_config('role', 'x', false); END $$", "set_config()"},
	{"CREATE FUNCTION acme.x() RETURNS text LANGUAGE plpgsql AS $$ DECLARE v text; BEGIN v := pg_catalog.set_config('role', 'x', false); RETURN v; END $$", "set_config()"},
	{"CREATE FUNCTION acme.x() RETURNS void LANGUAGE plpgsql AS $$ DECLARE v text := set_config('role', 'x', false); BEGIN END $$", "set_config()"},
	{"CREATE FUNCTION acme.x() RETURNS void LANGUAGE plpgsql AS $$ BEGIN IF set_config('role', 'x', false) = '' THEN NULL; END IF; END $$", "set_config()"},
	{"CREATE FUNCTION acme.x() RETURNS void LANGUAGE plpgsql AS $$ BEGIN SET LOCAL role = tenant_globex; END $$", "SET LOCAL ROLE"},
	{"CREATE FUNCTION acme.x() RETURNS void LANGUAGE plpgsql AS $$ BEGIN SET statement_timeout = 1; END $$", "changes the state of the session"},
	{"CREATE FUNCTION acme.x() RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_lock(1); END $$", "changes the state of the session"},
	{"CREATE PROCEDURE acme.x() LANGUAGE plpgsql AS $$ BEGIN DISCARD ALL; END $$", "changes the state of the session"},
	{"CREATE FUNCTION acme.x() RETURNS void LANGUAGE plpgsql AS $$ BEGIN RESET ROLE $$", "PL/pgSQL body cannot be parsed"},
	{"CREATE FUNCTION acme.f() RETURNS void LANGUAGE c AS 'lib', 'sym'", "LANGUAGE c is not allowed"},
	{"CREATE FUNCTION acme.f(text, text, bool) RETURNS text LANGUAGE internal AS 'set_config_by_name'", "LANGUAGE internal"},
	{"CREATE AGGREGATE acme.a(text, boolean) (SFUNC = set_config, STYPE = text, INITCOND = 'role')", "SFUNC = set_config is not allowed"},
	{"CREATE AGGREGATE acme.a(text, boolean) (SFUNC = pg_catalog.set_config, STYPE = text)", "set_config"},
	{"CREATE OPERATOR acme.### (LEFTARG = text, RIGHTARG = text, FUNCTION = query_to_xml)", "query_to_xml"},
	{"CREATE CAST (text AS acme.t) WITH FUNCTION set_config(text, text, boolean)", "set_config()"},
	{"CREATE TRIGGER t BEFORE INSERT ON acme.employees FOR EACH ROW EXECUTE FUNCTION set_config()", "set_config()"},
	{"CREATE TABLE acme.t (a text DEFAULT set_config('role', 'tenant_globex', false))", "set_config()"},
	{"ALTER TABLE acme.employees ALTER COLUMN name SET DEFAULT set_config('role', 'x', false)", "set_config()"},
	{"CREATE TABLE acme.t (a text CHECK (set_config('role', a, false) <> ''))", "set_config()"},
	{"CREATE INDEX ON acme.employees ((set_config('role', name, false)))", "set_config()"},
	{"CREATE VIEW acme.v AS SELECT set_config('role', 'x', false)", "set_config()"},
	{"CREATE RULE r AS ON INSERT TO acme.employees DO ALSO SELECT set_config('role', 'x', false)", "set_config()"},
	{"CREATE POLICY p ON acme.employees USING (set_config('role', 'x', false) IS NOT NULL)", "set_config()"},
	{"CREATE DOMAIN acme.d AS text CHECK (set_config(VALUE, 'x', false) <> '')", "set_config()"},
	{"CREATE TEMP TABLE t (a text DEFAULT set_config('role', 'x', false))", "set_config()"},

	// Search path and the tenant setting.
	{"SET search_path TO globex", `"globex" is not one of them`},
	{"SET search_path = globex, public", "globex"},
	{"set SEARCH_PATH to \"globex\"", "globex"},
	{"SET search_path = acme, globex", "globex"},
	{"SET SCHEMA 'globex'", "globex"},
	{"SET search_path = acme, 'Acme'", `"Acme" is not one of them`},
	{"SET search_path = 'ACME'", "ACME"},
	{`SET search_path TO "$user", public`, `may not name "$user"`},
	{"SET LOCAL search_path = globex", "globex"},
	{"BEGIN; SET LOCAL search_path TO globex; SELECT * FROM employees; COMMIT", "globex"},
	{"SET search_path = pg_catalog", "pg_catalog"},
	{"CREATE FUNCTION acme.f() RETURNS int LANGUAGE sql SET search_path = globex AS 'select 1'", "globex"},
	{"SET tenantproxy.tenant = 'globex'", "SET tenantproxy.tenant is not allowed: it carries the tenant"},
	{`SET "TenantProxy"."Tenant" = 'globex'`, "tenantproxy.tenant"},
	{"SET LOCAL tenantproxy.tenant TO 'globex'", "SET LOCAL tenantproxy.tenant"},
	{"RESET tenantproxy.tenant", "RESET tenantproxy.tenant"},
	{"set tenantproxy . tenant to globex", "tenantproxy.tenant"},
	{"SET app.tenant_id = 'globex'", "custom settings"},
	{"set myapp.user_id to 5", "custom settings"},
	{"RESET ALL; SHOW search_path", "RESET ALL must be the only statement"},
	{"SELECT 1; RESET ALL", "RESET ALL must be the only statement"},

	// Settings that would break parser parity or the backend.
	{"SET standard_conforming_strings = off", "standard_conforming_strings"},
	{"SET standard_conforming_strings TO false", "standard_conforming_strings"},
	{"set STANDARD_CONFORMING_STRINGS = 0", "standard_conforming_strings"},
	{"SET LOCAL standard_conforming_strings = 'no'", "standard_conforming_strings"},
	{"SET client_encoding = 'SJIS'", "client-only encoding"},
	{"SET NAMES 'sjis'", "client-only encoding"},
	{"SET client_encoding TO 'Shift-JIS'", "client-only encoding"},
	{"SET client_encoding = BIG5", "client-only encoding"},
	{"set client_encoding to 'win950'", "client-only encoding"},
	{"SET client_encoding = 'gb18030'", "client-only encoding"},
	{"SET client_encoding = 'UHC'", "client-only encoding"},
	{"SET client_encoding = 'johab'", "client-only encoding"},
	{"SET client_encoding = 'SHIFT_JIS_2004'", "client-only encoding"},
	{"SET LOCAL client_encoding = 'GBK'", "client-only encoding"},
	{"SET session_replication_role = replica", "session_replication_role"},
	{"SET allow_system_table_mods = on", "allow_system_table_mods"},
	{"SET backslash_quote = on", "backslash_quote"},
	{"SET exit_on_error = on", "exit_on_error"},
	{"SET some_unknown_setting = 1", `SET some_unknown_setting is not allowed: it is not on tenantproxy's list`},
	{"SET log_statement = 'all'", "log_statement"},

	// Server-wide and privileged statements.
	{"CREATE ROLE x", "roles are managed by tenantproxy"},
	{"CREATE USER x PASSWORD 'x'", "roles are managed"},
	{"ALTER ROLE tenant_acme SUPERUSER", "roles are managed"},
	{"ALTER USER pool SET search_path = globex", "roles are managed"},
	{"ALTER ROLE pool SET role = tenant_globex", "roles are managed"},
	{"DROP ROLE tenant_globex", "roles are managed"},
	{"DROP GROUP g", "roles are managed"},
	{"GRANT tenant_globex TO tenant_acme", "roles are managed"},
	{"REVOKE tenant_acme FROM pool", "roles are managed"},
	{"GRANT SELECT ON acme.employees TO tenant_globex", "privileges are managed"},
	{"REVOKE ALL ON acme.employees FROM PUBLIC", "privileges are managed"},
	{"ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC", "privileges are managed"},
	{"REASSIGN OWNED BY tenant_acme TO pool", "roles are managed"},
	{"DROP OWNED BY tenant_globex", "roles are managed"},
	{"ALTER SYSTEM SET search_path = globex", "ALTER SYSTEM"},
	{"ALTER DATABASE postgres SET search_path = globex", "the database is shared"},
	{"ALTER DATABASE postgres OWNER TO tenant_acme", "the database is shared"},
	{"CREATE DATABASE x", "the database is shared"},
	{"DROP DATABASE postgres", "the database is shared"},
	{"CREATE TABLESPACE t LOCATION '/tmp'", "tablespaces"},
	{"CREATE EXTENSION dblink", "extensions"},
	{"ALTER EXTENSION dblink UPDATE", "extensions"},
	{"DROP EXTENSION dblink", "extensions"},
	{"LOAD 'auto_explain'", "LOAD is not allowed"},
	{"COPY acme.employees TO '/tmp/x'", "COPY to or from a file is not allowed"},
	{"COPY acme.employees FROM '/etc/passwd'", "COPY to or from a file"},
	{"COPY acme.employees FROM PROGRAM 'id'", "PROGRAM"},
	{"COPY (SELECT 1) TO PROGRAM 'cat > /tmp/x'", "PROGRAM"},
	{"CHECKPOINT", "CHECKPOINT is not allowed"},
	{"CREATE SCHEMA globex2", "each tenant has exactly its own schema"},
	{"CREATE SCHEMA IF NOT EXISTS acme AUTHORIZATION pool", "own schema"},
	{"ALTER SCHEMA acme RENAME TO globex", "own schema"},
	{"ALTER SCHEMA acme OWNER TO pool", "own schema"},
	{"DROP SCHEMA globex CASCADE", "own schema"},
	{"SECURITY LABEL ON TABLE acme.employees IS 'x'", "SECURITY LABEL"},
	{"CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION acme.f()", "event triggers"},
	{"PREPARE TRANSACTION 'x'", "two-phase commit"},
	{"COMMIT PREPARED 'x'", "two-phase commit"},
	{"ROLLBACK PREPARED 'x'", "two-phase commit"},
	{"CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw", "foreign data wrappers"},
	{"CREATE FOREIGN TABLE acme.f (a int) SERVER s", "foreign data wrappers"},
	{"IMPORT FOREIGN SCHEMA public FROM SERVER s INTO acme", "foreign data wrappers"},
	{"CREATE USER MAPPING FOR CURRENT_USER SERVER s", "foreign data wrappers"},
	{"CREATE PUBLICATION p FOR ALL TABLES", "logical replication"},
	{"CREATE LANGUAGE plperl", "installed by the administrator"},
	{"CREATE CONVERSION acme.c FOR 'UTF8' TO 'LATIN1' FROM f", "encoding conversions"},

	// A zero byte (unparsable text gets the server's own error: TestCheckGivesTheServersParseErrors).
	{"SELECT 1\x00; RESET ROLE", "zero byte"},
}

// TestCheckRefusesEscapes checks that every escape is refused for every profile, with its reason.
func TestCheckRefusesEscapes(t *testing.T) {
	g := newTestGuard()
	for _, tc := range escapes {
		for _, p := range allProfiles {
			a := g.Check(tc.sql, p, tenantSchemas)
			if !a.Refused {
				t.Errorf("%s: %q was allowed (effects %+v)", p, tc.sql, a.Effects)
				continue
			}
			wantState := SQLStatePolicy
			if strings.Contains(tc.reason, "cannot be parsed") || strings.Contains(tc.reason, "zero byte") {
				wantState = SQLStateSyntax
			}
			if a.SQLState != wantState && !(p == ProfileReadonly && a.SQLState == SQLStateReadOnly) {
				t.Errorf("%s: %q: SQLSTATE %s, want %s (%s)", p, tc.sql, a.SQLState, wantState, a.Reason)
			}
			if a.Effects != nil {
				t.Errorf("%s: %q: a refused message has effects %+v", p, tc.sql, a.Effects)
			}
			if !strings.HasPrefix(a.Reason, "tenantproxy: ") {
				t.Errorf("%s: %q: reason %q does not start with tenantproxy:", p, tc.sql, a.Reason)
			}
			if p == ProfileOwner && !strings.Contains(a.Reason, tc.reason) {
				t.Errorf("%q: reason %q, want it to contain %q", tc.sql, a.Reason, tc.reason)
			}
		}
	}
}

// driverStatements are what drivers, pools, ORMs, BI tools and pgbench send: every profile may run them.
var driverStatements = []string{
	"",
	";",
	"-- just a comment",
	"SELECT 1",
	"select version()",
	"select pg_catalog.version()",
	"SELECT current_user, session_user, current_schema()",
	"SHOW TRANSACTION ISOLATION LEVEL",
	"SHOW server_version",
	"SHOW search_path",
	"SHOW ALL",
	"SET extra_float_digits = 3",
	"SET application_name = 'PostgreSQL JDBC Driver'",
	"SET application_name TO DEFAULT",
	"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
	"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
	"BEGIN",
	"BEGIN ISOLATION LEVEL REPEATABLE READ",
	"BEGIN READ ONLY",
	"START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE",
	"COMMIT",
	"END",
	"ROLLBACK",
	"ABORT",
	"SAVEPOINT s1",
	"RELEASE SAVEPOINT s1",
	"ROLLBACK TO SAVEPOINT s1",
	"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
	"SET TRANSACTION READ ONLY",
	"SET CONSTRAINTS ALL DEFERRED",
	"DISCARD ALL",
	"discard all;",
	"RESET ALL",
	"DISCARD PLANS",
	"DISCARD SEQUENCES",
	"DISCARD TEMP",
	"SET TIME ZONE 'UTC'",
	"SET TIME ZONE LOCAL",
	"SET TimeZone = 'Europe/Paris'",
	"SET datestyle = ISO",
	"SET DateStyle = 'ISO, MDY'",
	"SET intervalstyle = 'iso_8601'",
	"SET client_encoding = 'UTF8'",
	"SET NAMES 'utf8'",
	"SET client_encoding TO 'SQL_ASCII'",
	"SET client_encoding = 'LATIN1'",
	"SET client_encoding = 'EUC_JP'",
	"RESET client_encoding",
	"SET standard_conforming_strings = on",
	"SET statement_timeout = '5s'",
	"SET statement_timeout = 0",
	"SET lock_timeout TO 1000",
	"RESET statement_timeout",
	"SET LOCAL statement_timeout = 100",
	"SET idle_in_transaction_session_timeout = '1min'",
	"SET bytea_output = 'hex'",
	"SET client_min_messages TO warning",
	"SET jit = off",
	"SET enable_seqscan = off",
	"SET random_page_cost = 1.1",
	"SET work_mem = '64MB'",
	"SET sort_mem = 1024",
	"SET default_transaction_read_only = on",
	"SET default_transaction_isolation = 'serializable'",
	"SET row_security = on",
	"SET row_security = off",
	"SET check_function_bodies = false",
	"SET xmloption = content",
	"SET default_tablespace = ''",
	"SET statement_timeout FROM CURRENT",
	"SET search_path = acme",
	"SET search_path TO acme, public",
	`SET search_path = "acme"`,
	"SET search_path = ACME, Public",
	"SET SCHEMA 'acme'",
	"SET LOCAL search_path = public",
	"select current_setting('search_path')",
	"SELECT current_setting('tenantproxy.tenant', true)",
	"SELECT current_setting('role')",
	"SELECT oid, typname FROM pg_type",
	"SELECT t.typname, t.oid FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON (t.typnamespace = n.oid) WHERE n.nspname != 'pg_toast'",
	"SELECT n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p','v','m','S','f','') AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1,2",
	"SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = 'acme'",
	"SELECT * FROM information_schema.columns WHERE table_name = 'employees'",
	`WITH RECURSIVE typeinfo_tree(oid, ns, name, kind, basetype, elemtype, elemdelim, range_subtype, attrtypoids, attrnames, depth) AS (SELECT ti.oid, ti.ns, ti.name, ti.kind, ti.basetype, ti.elemtype, ti.elemdelim, ti.range_subtype, ti.attrtypoids, ti.attrnames, 0 FROM (SELECT t.oid, t.typnamespace AS ns, t.typname AS name, t.typtype AS kind, NULL::oid AS basetype, t.typelem AS elemtype, ',' AS elemdelim, NULL::oid AS range_subtype, NULL::oid[] AS attrtypoids, NULL::text[] AS attrnames FROM pg_catalog.pg_type t) AS ti WHERE ti.oid = any($1::oid[])) SELECT * FROM typeinfo_tree`,
	"SELECT abalance FROM pgbench_accounts WHERE aid = $1",
	"SELECT * FROM pg_stat_activity",
	"SELECT table_to_xml('acme.employees', true, false, '')",
	"SELECT ts_rewrite('a & b'::tsquery, 'a'::tsquery, 'c'::tsquery)",
	"SELECT 'set_config(''role'', ''x'', false)'",
	"SELECT $$ RESET ROLE $$",
	"SELECT 1 -- ; RESET ROLE",
	"SELECT 1 /* ; RESET ROLE */",
	"SELECT '; RESET ROLE; '",
	"SELECT set_config FROM acme.settings",
	"SELECT pg_sleep(0.01)",
	"SELECT pg_advisory_xact_lock(1)",
	"SELECT pg_try_advisory_xact_lock_shared(1)",
	"SELECT pg_notify('chan', 'payload')",
	"LISTEN chan",
	"UNLISTEN *",
	"NOTIFY chan, 'x'",
	"DECLARE c CURSOR FOR SELECT 1",
	"DECLARE c CURSOR WITH HOLD FOR SELECT * FROM acme.employees",
	"FETCH 10 FROM c",
	"MOVE NEXT IN c",
	"CLOSE c",
	"CLOSE ALL",
	"COPY (SELECT 1) TO STDOUT",
	"COPY acme.employees TO STDOUT WITH (FORMAT csv)",
	"EXPLAIN SELECT 1",
	"EXPLAIN ANALYZE SELECT * FROM acme.employees",
	"VALUES (1), (2)",
	"TABLE acme.employees",
	"PREPARE p AS SELECT 1",
	"EXECUTE p",
	"DEALLOCATE p",
	"DEALLOCATE ALL",
	"SELECT 1; SELECT 2; SELECT 3",
	"SELECT * FROM acme.employees e JOIN LATERAL (SELECT e.id) s ON true",
}

// TestCheckAllowsDriverStatements checks that ordinary client traffic passes for every profile.
func TestCheckAllowsDriverStatements(t *testing.T) {
	g := newTestGuard()
	for _, sql := range driverStatements {
		for _, p := range allProfiles {
			if a := g.Check(sql, p, tenantSchemas); a.Refused {
				t.Errorf("%s: %q refused: %s %s", p, sql, a.SQLState, a.Reason)
			}
		}
	}
}

// TestCheckProfiles checks what each profile may run. A want is "" (allowed) or the SQLSTATE of the refusal.
func TestCheckProfiles(t *testing.T) {
	const ok, ro, pol = "", SQLStateReadOnly, SQLStatePolicy
	type want struct{ readonly, app, owner string }
	dml, temp, ddl, readWrite := want{ro, ok, ok}, want{ro, ok, ok}, want{ro, pol, ok}, want{ro, ok, ok}
	cases := []struct {
		sql  string
		want want
	}{
		{"INSERT INTO acme.employees (name) VALUES ('x')", dml},
		{"UPDATE acme.employees SET name = 'y'", dml},
		{"DELETE FROM acme.employees", dml},
		{"MERGE INTO acme.employees e USING (SELECT 1 AS id) s ON e.id = s.id WHEN MATCHED THEN DELETE", dml},
		{"TRUNCATE acme.employees", dml},
		{"COPY acme.employees FROM STDIN", dml},
		{"LOCK TABLE acme.employees", dml},
		{"CALL acme.p()", dml},
		{"VACUUM acme.employees", dml},
		{"ANALYZE acme.employees", dml},
		{"REFRESH MATERIALIZED VIEW acme.m", dml},
		{"SELECT * FROM acme.employees FOR UPDATE", dml},
		{"SELECT * FROM (SELECT * FROM acme.employees FOR SHARE) s", dml},
		{"WITH x AS (DELETE FROM acme.employees RETURNING *) SELECT * FROM x", dml},
		{"EXPLAIN ANALYZE INSERT INTO acme.employees (name) VALUES ('x')", dml},
		{"COPY (INSERT INTO acme.employees (name) VALUES ('x') RETURNING *) TO STDOUT", dml},
		{"PREPARE p AS INSERT INTO acme.employees (name) VALUES ($1)", dml},
		{"DECLARE c CURSOR FOR SELECT * FROM acme.employees FOR UPDATE", dml},
		{"SELECT 1; UPDATE acme.employees SET name = 'y'", dml},
		{"CREATE TEMP TABLE x (a int)", temp},
		{"CREATE TEMPORARY TABLE x AS SELECT 1", temp},
		{"SELECT 1 AS a INTO TEMP x", temp},
		{"CREATE TABLE pg_temp.x (a int)", temp},
		{"CREATE TEMP VIEW v AS SELECT 1", temp},
		{"CREATE TEMP SEQUENCE s", temp},
		{"DROP TABLE pg_temp.x", temp},
		{"DROP TABLE IF EXISTS pg_temp.x, pg_temp.y", temp},
		{"CREATE INDEX ON pg_temp.x (a)", temp},
		{"ALTER TABLE pg_temp.x ADD COLUMN b int", temp},
		{"CREATE TABLE acme.t (a int)", ddl},
		{"CREATE TABLE t (a int)", ddl},
		{"CREATE UNLOGGED TABLE t (a int)", ddl},
		{"ALTER TABLE acme.employees ADD COLUMN b int", ddl},
		{"DROP TABLE acme.employees", ddl},
		{"DROP TABLE pg_temp.x, acme.employees", ddl},
		{"CREATE INDEX ON acme.employees (name)", ddl},
		{"CREATE VIEW acme.v AS SELECT 1", ddl},
		{"CREATE MATERIALIZED VIEW acme.m AS SELECT 1", ddl},
		{"CREATE SEQUENCE acme.s", ddl},
		{"SELECT 1 INTO acme.newtable", ddl},
		{"CREATE TABLE acme.n AS SELECT 1", ddl},
		{"CREATE TYPE acme.mood AS ENUM ('happy')", ddl},
		{"CREATE DOMAIN acme.d AS int", ddl},
		{"COMMENT ON TABLE acme.employees IS 'x'", ddl},
		{"ALTER TABLE acme.employees RENAME TO staff", ddl},
		{"CREATE TRIGGER t BEFORE INSERT ON acme.employees FOR EACH ROW EXECUTE FUNCTION acme.f()", ddl},
		{"CREATE POLICY p ON acme.employees USING (true)", ddl},
		{"VACUUM FULL acme.employees", ddl},
		{"CLUSTER acme.employees USING employees_pkey", ddl},
		{"REINDEX TABLE acme.employees", ddl},
		{"CREATE FUNCTION acme.f() RETURNS int LANGUAGE sql AS 'select 1'", ddl},
		{"CREATE FUNCTION acme.f() RETURNS int LANGUAGE sql AS $$ SELECT count(*)::int FROM acme.employees $$", ddl},
		{"CREATE PROCEDURE acme.p() LANGUAGE plpgsql AS $$ BEGIN NULL; END $$", ddl},
		{`CREATE OR REPLACE FUNCTION acme.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  IF NEW.name IS NULL THEN
    RAISE EXCEPTION 'name is required' USING ERRCODE = '23502';
  END IF;
  INSERT INTO acme.audit (row_id, at) VALUES (NEW.id, now());
  RETURN NEW;
END
$$`, ddl},
		{`CREATE PROCEDURE acme.batch(n int) LANGUAGE plpgsql AS $$
DECLARE
  total bigint := 0;
  c CURSOR FOR SELECT id FROM acme.employees;
BEGIN
  FOR i IN 1..n LOOP
    UPDATE acme.employees SET visits = visits + 1 WHERE id = i;
    total := total + 1;
    COMMIT;
  END LOOP;
  SELECT count(*) INTO total FROM acme.employees;
  SET LOCAL statement_timeout = 1000;
  PERFORM pg_notify('batch', total::text);
END
$$`, ddl},
		{"CREATE FUNCTION acme.f(a int) RETURNS int LANGUAGE sql SET search_path = acme SET statement_timeout = 5 AS 'select a'", ddl},
		{"CREATE FUNCTION acme.f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END", ddl},
		{"ALTER FUNCTION acme.f() SET statement_timeout = 5", ddl},
		{"ALTER FUNCTION acme.f() RESET ALL", ddl},
		{"ALTER FUNCTION acme.f() RESET role", ddl},
		{"DROP FUNCTION acme.f()", ddl},
		{"CREATE AGGREGATE acme.a(int) (SFUNC = int4pl, STYPE = int)", ddl},
		{"BEGIN READ WRITE", readWrite},
		{"START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE", readWrite},
		{"SET TRANSACTION READ WRITE", readWrite},
		{"SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", readWrite},
		{"SET default_transaction_read_only = off", readWrite},
		{"SET default_transaction_read_only TO false", readWrite},
		{"RESET default_transaction_read_only", readWrite},
		{"SET default_transaction_read_only TO DEFAULT", readWrite},
		{"SET transaction_read_only = off", readWrite},
		{"SET LOCAL default_transaction_read_only = off", readWrite},
	}
	g := newTestGuard()
	for _, tc := range cases {
		for _, p := range allProfiles {
			w := map[Profile]string{ProfileReadonly: tc.want.readonly, ProfileApp: tc.want.app, ProfileOwner: tc.want.owner}[p]
			a := g.Check(tc.sql, p, tenantSchemas)
			switch {
			case w == "" && a.Refused:
				t.Errorf("%s: %q refused: %s %s", p, tc.sql, a.SQLState, a.Reason)
			case w != "" && !a.Refused:
				t.Errorf("%s: %q allowed, want %s", p, tc.sql, w)
			case w != "" && a.SQLState != w:
				t.Errorf("%s: %q: SQLSTATE %s (%s), want %s", p, tc.sql, a.SQLState, a.Reason, w)
			}
		}
	}
}

// TestCheckReasonsNameTheStatement checks the messages of profile refusals.
func TestCheckReasonsNameTheStatement(t *testing.T) {
	g := newTestGuard()
	cases := []struct {
		sql    string
		p      Profile
		reason string
	}{
		{"INSERT INTO acme.employees VALUES (1)", ProfileReadonly, "tenantproxy: INSERT is not allowed: the user is read-only"},
		{"WITH x AS (DELETE FROM acme.employees RETURNING *) SELECT * FROM x", ProfileReadonly, "tenantproxy: DELETE is not allowed: the user is read-only"},
		{"BEGIN READ WRITE", ProfileReadonly, "tenantproxy: BEGIN READ WRITE is not allowed: the user is read-only, so transactions stay read-only"},
		{"SET default_transaction_read_only = off", ProfileReadonly, "tenantproxy: SET default_transaction_read_only TO 'off' is not allowed"},
		{"CREATE TABLE acme.t (a int)", ProfileApp, "tenantproxy: CREATE TABLE is not allowed: schema changes need the owner profile; a temporary table may be created with CREATE TEMPORARY TABLE"},
		{"DROP TABLE x", ProfileApp, "a temporary object may be dropped as pg_temp.<name>"},
		{"CREATE FUNCTION acme.f() RETURNS int LANGUAGE sql AS 'select 1'", ProfileApp, "tenantproxy: CREATE FUNCTION is not allowed: only the owner profile may create functions and procedures"},
		{"SELECT 1; SELECT 2; ALTER TABLE acme.employees ADD b int", ProfileApp, "tenantproxy: ALTER TABLE is not allowed"},
	}
	for _, tc := range cases {
		a := g.Check(tc.sql, tc.p, tenantSchemas)
		if !a.Refused || !strings.Contains(a.Reason, tc.reason) {
			t.Errorf("%s: %q: refused=%v reason %q, want it to contain %q", tc.p, tc.sql, a.Refused, a.Reason, tc.reason)
		}
	}
	if a := g.Check("SELECT 1; SELECT 2; RESET ROLE", ProfileApp, tenantSchemas); a.Statement != 2 || a.Statements != 3 {
		t.Errorf("refused statement %d of %d, want 2 of 3", a.Statement, a.Statements)
	}
}

// TestCheckEffects checks the effects the session acts on.
func TestCheckEffects(t *testing.T) {
	cases := []struct {
		sql  string
		want []Effect
	}{
		{"SELECT 1", nil},
		{"SET statement_timeout = '1ms'", []Effect{{Kind: EffectSetTracked, Name: "statement_timeout", Value: "1ms"}}},
		{"SET Statement_Timeout TO 5000", []Effect{{Kind: EffectSetTracked, Name: "statement_timeout", Value: "5000"}}},
		{"SET extra_float_digits = -3", []Effect{{Kind: EffectSetTracked, Name: "extra_float_digits", Value: "-3"}}},
		{"SET random_page_cost = 1.5", []Effect{{Kind: EffectSetTracked, Name: "random_page_cost", Value: "1.5"}}},
		{"SET jit = on", []Effect{{Kind: EffectSetTracked, Name: "jit", Value: "on"}}},
		{"SET application_name = 'O''Brien'", []Effect{{Kind: EffectSetTracked, Name: "application_name", Value: "O'Brien"}}},
		{"SET TIME ZONE 'UTC'", []Effect{{Kind: EffectSetTracked, Name: "timezone", Value: "UTC"}}},
		{"SET TIME ZONE LOCAL", []Effect{{Kind: EffectSetTracked, Name: "timezone", Reset: true}}},
		{"RESET application_name", []Effect{{Kind: EffectSetTracked, Name: "application_name", Reset: true}}},
		{"SET datestyle = ISO, MDY", []Effect{{Kind: EffectSetTracked, Name: "datestyle", Value: "iso, mdy"}}},
		{"SET XML OPTION DOCUMENT", []Effect{{Kind: EffectSetTracked, Name: "xmloption", Value: "DOCUMENT"}}},
		{"SET sort_mem = 1024", []Effect{{Kind: EffectSetTracked, Name: "work_mem", Value: "1024"}}},
		{"SET NAMES 'LATIN1'", []Effect{{Kind: EffectSetTracked, Name: "client_encoding", Value: "LATIN1"}}},
		{`SET search_path TO acme, "public"`, []Effect{{Kind: EffectSetTracked, Name: "search_path", Value: `"acme", "public"`, List: []string{"acme", "public"}}}},
		{"SET LOCAL search_path = acme", []Effect{{Kind: EffectSetLocal, Name: "search_path", Value: `"acme"`, List: []string{"acme"}}}},
		{"SET LOCAL statement_timeout = 10", []Effect{{Kind: EffectSetLocal, Name: "statement_timeout", Value: "10"}}},
		{"SET LOCAL statement_timeout TO DEFAULT", []Effect{{Kind: EffectSetLocal, Name: "statement_timeout", Reset: true}}},
		{"SET standard_conforming_strings = on", nil},
		{"SET transaction_isolation = 'serializable'", nil},
		{"SET statement_timeout FROM CURRENT", nil},
		{"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, NOT DEFERRABLE", []Effect{
			{Kind: EffectSetTracked, Name: "default_transaction_isolation", Value: "serializable"},
			{Kind: EffectSetTracked, Name: "default_transaction_read_only", Value: "on"},
			{Kind: EffectSetTracked, Name: "default_transaction_deferrable", Value: "off"},
		}},
		{"DISCARD ALL", []Effect{{Kind: EffectDiscardAll}}},
		{"RESET ALL", []Effect{{Kind: EffectResetAll}}},
		{"DISCARD TEMP", []Effect{{Kind: EffectDiscardTemp}}},
		{"DISCARD PLANS", nil},
		{"CREATE TEMP TABLE employees (id int)", []Effect{{Kind: EffectTempTable, Name: "employees"}}},
		{"CREATE TEMP TABLE t (id int) ON COMMIT DROP", []Effect{{Kind: EffectTempTable, Name: "t", Transient: true}}},
		{"CREATE TABLE pg_temp.x (a int)", []Effect{{Kind: EffectTempTable, Name: "x"}}},
		{"CREATE TABLE PG_TEMP.x (a int)", []Effect{{Kind: EffectTempTable, Name: "x"}}},
		{"SELECT 1 INTO TEMPORARY x", []Effect{{Kind: EffectTempTable, Name: "x"}}},
		{"CREATE TEMP VIEW v AS SELECT 1", []Effect{{Kind: EffectTempTable, Name: "v"}}},
		{"BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT * FROM acme.employees; COMMIT", []Effect{
			{Kind: EffectBegin}, {Kind: EffectHoldCursor, Stmt: 1, Name: "c"}, {Kind: EffectCommit, Stmt: 2}}},
		{"DECLARE c CURSOR FOR SELECT 1", nil},
		{"CLOSE c", []Effect{{Kind: EffectClose, Name: "c"}}},
		{"CLOSE ALL", []Effect{{Kind: EffectClose}}},
		{"LISTEN chan", []Effect{{Kind: EffectListen, Name: "chan"}}},
		{`LISTEN "Chan"`, []Effect{{Kind: EffectListen, Name: "Chan"}}},
		{"UNLISTEN chan", []Effect{{Kind: EffectUnlisten, Name: "chan"}}},
		{"UNLISTEN *", []Effect{{Kind: EffectUnlisten}}},
		{"NOTIFY chan, 'hi'", []Effect{{Kind: EffectNotify, Name: "chan", Value: "hi"}}},
		{"SELECT pg_notify('chan', 'hi')", []Effect{{Kind: EffectNotify, Name: "chan"}}},
		{"SELECT pg_notify($1, $2)", []Effect{{Kind: EffectNotify}}},
		{"SELECT pg_advisory_lock(42)", []Effect{{Kind: EffectAdvisoryLock, Name: "pg_advisory_lock"}}},
		{"SELECT pg_catalog.PG_TRY_ADVISORY_LOCK_SHARED(1)", []Effect{{Kind: EffectAdvisoryLock, Name: "pg_try_advisory_lock_shared"}}},
		{"SELECT * FROM acme.employees WHERE pg_advisory_lock(id) IS NOT NULL", []Effect{{Kind: EffectAdvisoryLock, Name: "pg_advisory_lock"}}},
		{"SELECT 1; SELECT 2; SELECT pg_advisory_lock_shared(1)", []Effect{{Kind: EffectAdvisoryLock, Stmt: 2, Name: "pg_advisory_lock_shared"}}},
		{"SELECT pg_advisory_unlock_all()", []Effect{{Kind: EffectAdvisoryUnlock, Name: "pg_advisory_unlock_all"}}},
		{"SELECT pg_advisory_xact_lock(1)", nil},
		{"PREPARE p AS SELECT 1; EXECUTE p; DEALLOCATE p", []Effect{
			{Kind: EffectPrepare, Name: "p"}, {Kind: EffectExecute, Stmt: 1, Name: "p"}, {Kind: EffectDeallocate, Stmt: 2, Name: "p"}}},
		{"DEALLOCATE ALL", []Effect{{Kind: EffectDeallocate}}},
		{"PREPARE q AS SELECT pg_advisory_lock($1)", []Effect{{Kind: EffectPrepare, Name: "q"}, {Kind: EffectAdvisoryLock, Name: "pg_advisory_lock"}}},
		{"BEGIN ISOLATION LEVEL SERIALIZABLE", []Effect{{Kind: EffectBegin}}},
		{"COMMIT AND CHAIN", []Effect{{Kind: EffectCommit, Chain: true}}},
		{"ROLLBACK", []Effect{{Kind: EffectRollback}}},
		{"SAVEPOINT a; RELEASE a; ROLLBACK TO SAVEPOINT a", []Effect{
			{Kind: EffectSavepoint, Name: "a"}, {Kind: EffectRelease, Stmt: 1, Name: "a"}, {Kind: EffectRollbackTo, Stmt: 2, Name: "a"}}},
	}
	g := newTestGuard()
	for _, tc := range cases {
		a := g.Check(tc.sql, ProfileApp, tenantSchemas)
		if a.Refused {
			t.Errorf("%q refused: %s", tc.sql, a.Reason)
			continue
		}
		if !reflect.DeepEqual(a.Effects, tc.want) {
			t.Errorf("%q: effects\n  %+v\nwant\n  %+v", tc.sql, a.Effects, tc.want)
		}
	}
}

// TestEffectReplaySQL checks the statements the session replays for tracked settings.
func TestEffectReplaySQL(t *testing.T) {
	g := newTestGuard()
	cases := []struct{ sql, want string }{
		{"SET statement_timeout = '1ms'", "SET statement_timeout TO '1ms'"},
		{"SET application_name = 'O''Brien'", "SET application_name TO 'O''Brien'"},
		{"SET application_name = E'a\\\\b'", `SET application_name TO 'a\b'`},
		{"SET search_path TO acme, public", `SET search_path TO "acme", "public"`},
		{"SET datestyle = ISO, DMY", "SET datestyle TO 'iso, dmy'"},
		{"SET TIME ZONE 'America/New_York'", "SET timezone TO 'America/New_York'"},
		{"RESET statement_timeout", ""},
		{"SET LOCAL statement_timeout = 1", ""},
		{"LISTEN x", ""},
	}
	for _, tc := range cases {
		a := g.Check(tc.sql, ProfileApp, tenantSchemas)
		if a.Refused || len(a.Effects) != 1 {
			t.Fatalf("%q: refused=%v effects %+v", tc.sql, a.Refused, a.Effects)
		}
		if got := a.Effects[0].ReplaySQL(); got != tc.want {
			t.Errorf("%q: ReplaySQL %q, want %q", tc.sql, got, tc.want)
		}
	}
}

// TestCheckSearchPathUsesTheTenantsSchemas checks that search_path follows the allowed schemas given.
func TestCheckSearchPathUsesTheTenantsSchemas(t *testing.T) {
	g := newTestGuard()
	cases := []struct {
		sql     string
		schemas []string
		allowed bool
	}{
		{"SET search_path = acme, public", []string{"acme", "public"}, true},
		{"SET search_path = acme, public", []string{"acme"}, false},
		{"SET search_path = globex", []string{"globex"}, true},
		{"SET search_path = globex", []string{"acme"}, false},
		{"SET search_path = acme, pg_catalog", []string{"acme", "public", "pg_catalog"}, true},
		{`SET search_path = "$user"`, []string{"$user", "acme"}, false},
		{"SET search_path = acme", nil, false},
		{"CREATE FUNCTION acme.f() RETURNS int LANGUAGE sql SET search_path = acme AS 'select 1'", []string{"acme"}, true},
		{"CREATE FUNCTION acme.f() RETURNS int LANGUAGE sql AS 'SET LOCAL search_path = globex; SELECT 1'", []string{"acme"}, false},
	}
	for _, tc := range cases {
		a := g.Check(tc.sql, ProfileOwner, tc.schemas)
		if a.Refused == tc.allowed {
			t.Errorf("%q with %v: refused=%v (%s), want allowed=%v", tc.sql, tc.schemas, a.Refused, a.Reason, tc.allowed)
		}
	}
}

// TestCheckParse checks Parse messages: one statement at most, the empty query allowed.
func TestCheckParse(t *testing.T) {
	g := newTestGuard()
	cases := []struct {
		sql   string
		state string
	}{
		{"SELECT * FROM acme.employees WHERE id = $1", ""},
		{"", ""},
		{"SET ROLE tenant_globex", SQLStatePolicy},
		{"SELECT set_config($1, $2, false)", SQLStatePolicy},
		{"select pg_catalog.set_config($1::text, $2::text, $3::bool)", SQLStatePolicy},
		{"SELECT 1; SELECT 2", SQLStateSyntax},
		{"SELECT 1; RESET ROLE", SQLStatePolicy},
		{"DISCARD ALL", ""},
	}
	for _, tc := range cases {
		a := g.CheckParse(tc.sql, ProfileApp, tenantSchemas)
		if (tc.state == "") == a.Refused || a.SQLState != tc.state {
			t.Errorf("CheckParse(%q): refused=%v %s %s, want SQLSTATE %q", tc.sql, a.Refused, a.SQLState, a.Reason, tc.state)
		}
	}
	if a := g.CheckParse("", ProfileApp, nil); a.Statements != 0 || a.Effects != nil {
		t.Errorf("empty query: %+v", a)
	}
}

// TestCheckRefusesUnknownProfile checks that a Profile outside the three refuses everything.
func TestCheckRefusesUnknownProfile(t *testing.T) {
	if a := newTestGuard().Check("SELECT 1", Profile(42), tenantSchemas); !a.Refused || a.SQLState != SQLStatePolicy {
		t.Errorf("unknown profile: %+v", a)
	}
}

// TestParseProfile checks the configuration names of the profiles.
func TestParseProfile(t *testing.T) {
	for _, p := range allProfiles {
		got, err := ParseProfile(p.String())
		if err != nil || got != p {
			t.Errorf("ParseProfile(%q) = %v, %v", p.String(), got, err)
		}
	}
	for _, s := range []string{"", "App", "admin", "read-only"} {
		if _, err := ParseProfile(s); err == nil {
			t.Errorf("ParseProfile(%q) succeeded", s)
		}
	}
}

// TestStartupSetting checks startup parameters against the same rules as SET.
func TestStartupSetting(t *testing.T) {
	g := newTestGuard()
	cases := []struct {
		name, value string
		p           Profile
		state       string
		effect      Effect
	}{
		{"application_name", "psql", ProfileApp, "", Effect{Kind: EffectSetTracked, Name: "application_name", Value: "psql"}},
		{"DateStyle", "ISO, MDY", ProfileReadonly, "", Effect{Kind: EffectSetTracked, Name: "datestyle", Value: "ISO, MDY"}},
		{"extra_float_digits", "3", ProfileApp, "", Effect{Kind: EffectSetTracked, Name: "extra_float_digits", Value: "3"}},
		{"client_encoding", "UTF8", ProfileApp, "", Effect{Kind: EffectSetTracked, Name: "client_encoding", Value: "UTF8"}},
		{"search_path", ` acme ,  "public"`, ProfileApp, "", Effect{Kind: EffectSetTracked, Name: "search_path", Value: `"acme", "public"`, List: []string{"acme", "public"}}},
		{"search_path", "ACME", ProfileApp, "", Effect{Kind: EffectSetTracked, Name: "search_path", Value: `"acme"`, List: []string{"acme"}}},
		{"search_path", "globex", ProfileApp, SQLStatePolicy, Effect{}},
		{"search_path", `"$user", public`, ProfileApp, SQLStatePolicy, Effect{}},
		{"search_path", `acme,`, ProfileApp, SQLStateInvalidValue, Effect{}},
		{"search_path", `"acme`, ProfileApp, SQLStateInvalidValue, Effect{}},
		{"role", "tenant_globex", ProfileApp, SQLStatePolicy, Effect{}},
		{"session_authorization", "postgres", ProfileOwner, SQLStatePolicy, Effect{}},
		{"tenantproxy.tenant", "globex", ProfileApp, SQLStatePolicy, Effect{}},
		{"_pq_.protocol_extension", "x", ProfileApp, SQLStatePolicy, Effect{}},
		{"client_encoding", "SJIS", ProfileApp, SQLStatePolicy, Effect{}},
		{"standard_conforming_strings", "off", ProfileApp, SQLStatePolicy, Effect{}},
		{"default_transaction_read_only", "off", ProfileReadonly, SQLStateReadOnly, Effect{}},
		{"default_transaction_read_only", "on", ProfileReadonly, "", Effect{Kind: EffectSetTracked, Name: "default_transaction_read_only", Value: "on"}},
		{"log_statement", "all", ProfileApp, SQLStatePolicy, Effect{}},
		{"bad name", "x", ProfileApp, SQLStatePolicy, Effect{}},
	}
	for _, tc := range cases {
		a := g.StartupSetting(tc.name, tc.value, tc.p, tenantSchemas)
		if a.SQLState != tc.state || a.Refused != (tc.state != "") {
			t.Errorf("StartupSetting(%q, %q): refused=%v %s %s, want SQLSTATE %q", tc.name, tc.value, a.Refused, a.SQLState, a.Reason, tc.state)
			continue
		}
		if tc.state == "" && (len(a.Effects) != 1 || !reflect.DeepEqual(a.Effects[0], tc.effect)) {
			t.Errorf("StartupSetting(%q, %q): effects %+v, want %+v", tc.name, tc.value, a.Effects, tc.effect)
		}
	}
}

// TestSplitIdentifierList checks the reading of list settings such as search_path.
func TestSplitIdentifierList(t *testing.T) {
	cases := []struct {
		raw  string
		want []string
		ok   bool
	}{
		{"", nil, true},
		{"  ", nil, true},
		{"a", []string{"a"}, true},
		{"A, b ,C", []string{"a", "b", "c"}, true},
		{`"A", "b""c"`, []string{"A", `b"c`}, true},
		{`"$user",public`, []string{"$user", "public"}, true},
		{strings.Repeat("x", 70), []string{strings.Repeat("x", 63)}, true},
		{"a,", nil, false},
		{",a", nil, false},
		{"a b", nil, false},
		{`"a`, nil, false},
		{`""`, nil, false},
	}
	for _, tc := range cases {
		got, err := splitIdentifierList(tc.raw)
		if (err == "") != tc.ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitIdentifierList(%q) = %q, %q; want %q, ok=%v", tc.raw, got, err, tc.want, tc.ok)
		}
	}
}

// TestCheckCachedMatchesUncached checks that a cached verdict equals a fresh one, for every profile.
func TestCheckCachedMatchesUncached(t *testing.T) {
	g := newTestGuard()
	var texts []string
	for _, e := range escapes {
		texts = append(texts, e.sql)
	}
	texts = append(texts, driverStatements...)
	for _, sql := range texts {
		for _, p := range allProfiles {
			first := g.Check(sql, p, tenantSchemas)
			cached := g.Check(sql, p, tenantSchemas)
			fresh := g.classify(sql).Decide(p, tenantSchemas)
			if !reflect.DeepEqual(first, cached) || !reflect.DeepEqual(cached, fresh) {
				t.Errorf("%s: %q: first %+v, cached %+v, fresh %+v", p, sql, first, cached, fresh)
			}
		}
	}
}

// TestCheckCachedDoesNotAllocate checks that a cached verdict costs no allocation.
func TestCheckCachedDoesNotAllocate(t *testing.T) {
	g := newTestGuard()
	for _, sql := range []string{"SELECT abalance FROM pgbench_accounts WHERE aid = $1", "SET search_path = acme", "DISCARD ALL"} {
		g.Check(sql, ProfileApp, tenantSchemas)
		if n := testing.AllocsPerRun(100, func() { g.Check(sql, ProfileApp, tenantSchemas) }); n != 0 {
			t.Errorf("%q: %v allocations per cached Check", sql, n)
		}
	}
}

// TestVerdictCacheEvictsLeastRecentlyUsed checks the LRU order and the bound of the cache.
func TestVerdictCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := newVerdictCache(2*cacheShards, 100)
	// Find three keys of one shard.
	var keys []string
	shard := c.shardOf("SELECT 0")
	for i := 0; len(keys) < 3; i++ {
		k := "SELECT " + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i/26)
		if c.shardOf(k) == shard {
			keys = append(keys, k)
		}
	}
	va, vb, vc := &Classification{}, &Classification{}, &Classification{}
	c.put(keys[0], va)
	c.put(keys[1], vb)
	if c.get(keys[0]) != va { // keys[0] is now the most recently used
		t.Fatal("first key not cached")
	}
	c.put(keys[2], vc) // evicts keys[1]
	if c.get(keys[1]) != nil {
		t.Error("least recently used key not evicted")
	}
	if c.get(keys[0]) != va || c.get(keys[2]) != vc {
		t.Error("recently used keys evicted")
	}
	long := "SELECT '" + strings.Repeat("z", 200) + "'"
	c.put(long, va)
	if c.get(long) != nil {
		t.Error("a text longer than the limit was cached")
	}
	for i := 0; i < 1000; i++ {
		c.put("SELECT "+strings.Repeat("q", i%90)+string(rune('a'+i%26)), va)
	}
	if n := c.len(); n > 2*cacheShards {
		t.Errorf("cache holds %d entries, more than %d", n, 2*cacheShards)
	}
}

// TestCheckCopiesTheCachedText checks that the cache keeps its own copy of a text whose memory the caller
// reuses, as a zero-copy wire reader would.
func TestCheckCopiesTheCachedText(t *testing.T) {
	g := newTestGuard()
	buf := []byte("SELECT 1")
	g.Check(unsafe.String(&buf[0], len(buf)), ProfileApp, tenantSchemas)
	copy(buf, "RESET RO")
	if a := g.Check("SELECT 1", ProfileApp, tenantSchemas); a.Refused {
		t.Fatalf("SELECT 1 refused: %s", a.Reason)
	}
	if a := g.Check(unsafe.String(&buf[0], len(buf)), ProfileApp, tenantSchemas); !a.Refused {
		t.Error("RESET ROLE allowed after the buffer of a cached text was reused")
	}
}

// TestGuardIsSafeForConcurrentUse runs checks from several goroutines (meaningful under -race).
func TestGuardIsSafeForConcurrentUse(t *testing.T) {
	g := NewGuard(GuardConfig{TenantSetting: "tenantproxy.tenant", CacheSize: 32})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				sql := driverStatements[(i*7+w)%len(driverStatements)]
				if a := g.Check(sql, ProfileApp, tenantSchemas); a.Refused {
					t.Errorf("%q refused: %s", sql, a.Reason)
					return
				}
			}
		}(w)
	}
	wg.Wait()
}

// TestEffectKindString checks that every kind has a name.
func TestEffectKindString(t *testing.T) {
	for k := EffectNone; k <= EffectRollbackTo; k++ {
		if s := k.String(); s == "" || strings.HasPrefix(s, "EffectKind(") {
			t.Errorf("kind %d has no name", k)
		}
	}
}

// TestFingerprintAndNormalize checks the locked wrappers of libpg_query's fingerprint and normalization.
func TestFingerprintAndNormalize(t *testing.T) {
	a, err := Fingerprint("SELECT * FROM acme.employees WHERE id = 1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Fingerprint("select *  from acme.employees where id = 42 -- other")
	if err != nil || a != b {
		t.Errorf("fingerprints %q and %q (%v), want equal", a, b, err)
	}
	if n, err := Normalize("SELECT 'x', 1 FROM t"); err != nil || n != "SELECT $1, $2 FROM t" {
		t.Errorf("Normalize = %q, %v", n, err)
	}
	if _, err := Fingerprint("SELEKT"); err == nil {
		t.Error("Fingerprint of unparsable text succeeded")
	}
}
