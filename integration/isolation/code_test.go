package isolation

import "testing"

// codeCases hide an escape in code that runs later: anonymous blocks, functions, procedures, defaults,
// rules and triggers. The app profile may create none of them; the owner profile (olga) may create
// functions, but never with an escaping body, a SET role clause or SECURITY DEFINER.
func codeCases() []escape {
	app := func(name, sql string, words ...string) escape {
		return escape{name: name, steps: []step{refused(sql, words...)}}
	}
	own := func(name, sql string, words ...string) escape {
		return escape{name: "owner " + name, user: owner, steps: []step{refused(sql, words...)}}
	}
	return []escape{
		app("DO with EXECUTE", "DO $$ BEGIN EXECUTE 'RESET ROLE'; END $$", "DO"),
		app("do in lower case with a quoted body", "do 'begin execute ''reset role''; end'", "DO"),
		app("DO LANGUAGE plpgsql with a tagged body", "DO LANGUAGE plpgsql $body$ BEGIN PERFORM set_config('role', 'tenant_globex', false); END $body$", "DO"),
		app("DO as the second statement", "SELECT 1; DO $$ BEGIN RESET ROLE; END $$; SELECT * FROM globex.employees", "DO"),
		app("sql function whose body is RESET ROLE", "CREATE FUNCTION acme.f() RETURNS void LANGUAGE sql AS 'RESET ROLE'; SELECT acme.f()", "function"),
		app("function with SET role", "CREATE OR REPLACE FUNCTION acme.g() RETURNS text LANGUAGE sql SET role = tenant_globex AS 'select current_user::text'"),
		app("security definer function", "create function acme.g2() returns setof text language sql security definer as 'select name from globex.employees'"),
		app("procedure whose body is RESET ROLE", "CREATE PROCEDURE acme.p() LANGUAGE sql AS $$ RESET ROLE $$", "procedure"),
		app("temporary function", "CREATE FUNCTION pg_temp.f() RETURNS text LANGUAGE sql AS 'select current_user::text'"),
		app("plpgsql function with dynamic SQL", "CREATE FUNCTION acme.h() RETURNS text LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'RESET ROLE'; RETURN 'x'; END $$"),
		app("ALTER FUNCTION SET role", "ALTER FUNCTION acme.f() SET role = tenant_globex"),
		app("column DEFAULT calling set_config", "CREATE TABLE acme.t (x text DEFAULT set_config('role', 'tenant_globex', false))"),
		app("ALTER COLUMN SET DEFAULT then INSERT", "ALTER TABLE employees ALTER COLUMN email SET DEFAULT set_config('role', 'tenant_globex', false); INSERT INTO employees (name) VALUES ('later')"),
		app("temporary table with an escaping DEFAULT", "CREATE TEMP TABLE t (x text DEFAULT set_config('role', 'tenant_globex', false))", "set_config"),
		app("view calling set_config", "CREATE VIEW acme.v AS SELECT set_config('role', 'tenant_globex', false)"),
		app("trigger executing set_config", "CREATE TRIGGER t BEFORE INSERT ON employees FOR EACH ROW EXECUTE FUNCTION set_config()"),
		app("rule doing set_config", "CREATE RULE r AS ON INSERT TO employees DO ALSO SELECT set_config('role', 'tenant_globex', false)"),
		app("aggregate with set_config as state function", "CREATE AGGREGATE acme.a(text) (SFUNC = set_config, STYPE = text)"),
		app("event trigger", "CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION acme.f()"),
		app("policy opening the RLS table", "CREATE POLICY open ON public.notes USING (true)"),
		app("CHECK constraint calling set_config", "ALTER TABLE employees ADD CONSTRAINT c CHECK (set_config('role', 'tenant_globex', false) <> '')"),
		{name: "CALL of a missing procedure", steps: []step{fails("42883", "CALL acme.nothing()")}},
		own("sql function whose body is RESET ROLE", "CREATE FUNCTION acme.f() RETURNS void LANGUAGE sql AS 'RESET ROLE'", "role"),
		own("sql function whose body calls set_config", "CREATE FUNCTION acme.f() RETURNS text LANGUAGE sql AS $$ SELECT set_config('role', 'tenant_globex', false) $$", "set_config"),
		own("function with SET role", "CREATE FUNCTION acme.g() RETURNS text LANGUAGE sql SET role = tenant_globex AS 'select current_user::text'", "role"),
		own("function with SET search_path", "CREATE FUNCTION acme.g() RETURNS bigint LANGUAGE sql SET search_path = globex AS 'select count(*) from employees'", "search_path"),
		own("security definer function", "CREATE FUNCTION acme.g() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'select 1'", "security definer"),
		own("plpgsql function with dynamic SQL", "CREATE FUNCTION acme.h() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'RESET ' || 'ROLE'; END $$", "EXECUTE"),
		own("plpgsql function with SET ROLE", "CREATE FUNCTION acme.h() RETURNS void LANGUAGE plpgsql AS $$ BEGIN SET ROLE tenant_globex; END $$", "role"),
		own("plpgsql PERFORM set_config", "CREATE FUNCTION acme.h() RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_catalog.set_config('search_path', 'globex', false); END $$", "set_config"),
		own("LANGUAGE c", "CREATE FUNCTION acme.c() RETURNS void LANGUAGE c AS 'libc', 'system'", "language"),
		own("ALTER FUNCTION SET role", "ALTER FUNCTION acme.f() SET role = tenant_globex", "role"),
		own("ALTER FUNCTION SECURITY DEFINER", "ALTER FUNCTION acme.f() SECURITY DEFINER", "security definer"),
		own("DO", "DO $$ BEGIN RESET ROLE; END $$", "DO"),
		{name: "owner harmless function is stopped by the server's grants", user: owner, steps: []step{fails("42501", "CREATE FUNCTION acme.harmless() RETURNS int LANGUAGE sql AS 'select 1'")}},
	}
}

// Code that runs later never escapes: DO, functions, procedures, defaults, rules and triggers that would
// switch the role or settings are refused for the app profile and, for their escaping forms, for the
// owner profile too.
func TestCodeThatRunsLater(t *testing.T) {
	runCategory(t, codeCases(), withOwner)
}
