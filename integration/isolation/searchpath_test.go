package isolation

import "testing"

// searchPathCases change search_path or the tenant setting: search_path may name only the tenant's own
// schemas (acme, public, pg_catalog), the tenant setting never changes, and RESET ALL is emulated so that
// it keeps both.
func searchPathCases() []escape {
	sp := func(name, sql string) escape {
		return escape{name: name, steps: []step{refused(sql, "search_path")}}
	}
	ts := func(name, sql string) escape {
		return escape{name: name, steps: []step{refused(sql)}}
	}
	return []escape{
		sp("SET search_path TO globex", "SET search_path TO globex; SELECT * FROM employees"),
		sp("SET search_path = globex, public", "SET search_path = globex, public"),
		sp("upper-case name with a quoted schema", `set SEARCH_PATH to "globex"`),
		sp("own schema first, globex second", "SET search_path TO acme, globex"),
		sp("unicode-escaped schema", `SET search_path TO U&"gl\006Fbex"`),
		sp("string literal", "SET search_path TO 'globex'"),
		sp("string literal holding a list", "SET search_path TO 'acme, globex'"),
		sp("$user", `SET search_path TO "$user", public`),
		sp("pg_temp first", "SET search_path TO pg_temp, acme"),
		sp("quoted upper-case ACME is another schema", `SET search_path TO "ACME"`),
		// RESET search_path restores the tenant's search_path, never the server's default (issue 15).
		{name: "RESET search_path restores the tenant's", steps: []step{
			ok("SET search_path TO public"),
			ok("RESET search_path"),
			okRows("SELECT current_schemas(false)::text", "{acme,tenant_stats,pg_catalog,public}"),
		}, own: []step{okRows("SELECT current_schemas(false)::text", "{acme,tenant_stats,pg_catalog,public}")}},
		{name: "SET search_path TO DEFAULT restores the tenant's", steps: []step{
			okRows("SET search_path TO public; SET search_path TO DEFAULT; SELECT current_schemas(false)::text", "{acme,tenant_stats,pg_catalog,public}"),
		}, own: []step{okRows("SELECT current_schemas(false)::text", "{acme,tenant_stats,pg_catalog,public}")}},
		sp("SET SCHEMA", "SET SCHEMA 'globex'"),
		sp("SET SESSION search_path", "SET SESSION search_path TO globex"),
		sp("SET LOCAL search_path in a transaction", "BEGIN; SET LOCAL search_path TO globex; SELECT * FROM employees; COMMIT"),
		sp("allowed SET then a forbidden one", "SET search_path TO acme; SET search_path TO globex"),
		sp("with comments and newlines", "SET /* x */ search_path\n=\n-- y\nglobex"),
		{name: "ALTER ROLE SET search_path", steps: []step{refused("ALTER ROLE tenant_acme SET search_path = globex")}},
		{name: "ALTER DATABASE SET search_path", steps: []step{refused("ALTER DATABASE agentichr SET search_path = globex")}},
		{name: "own schema is allowed and stays with the client", steps: []step{
			ok("SET search_path TO acme"),
			okRows("SHOW search_path", "acme"),
		}, own: []step{okRows("SHOW search_path", "acme")}},
		{name: "unquoted ACME folds to acme", steps: []step{
			ok("SET search_path TO ACME, public"),
			okRows("SELECT current_schemas(false)::text", "{acme,public}"),
		}, own: []step{okRows("SELECT current_schemas(false)::text", "{acme,public}")}},
		{name: "own schema and pg_catalog", steps: []step{
			ok("SET search_path = acme, pg_catalog"),
			okRows("SELECT DISTINCT tenant FROM employees", "acme"),
		}, own: []step{okRows("SELECT DISTINCT tenant FROM employees", "acme")}},
		{name: "SET LOCAL search_path to the own schema", steps: []step{
			okRows("BEGIN; SET LOCAL search_path TO acme; SELECT DISTINCT tenant FROM employees; COMMIT", "acme"),
		}},
		ts("SET tenant setting then the RLS table", "SET tenantproxy.tenant = 'globex'; SELECT * FROM public.notes"),
		ts("quoted tenant setting", `SET "tenantproxy"."tenant" TO 'globex'`),
		ts("upper-case tenant setting", "SET TENANTPROXY.TENANT TO globex"),
		ts("unicode-escaped tenant setting", `SET U&"tenantproxy".U&"tenan\0074" = 'globex'`),
		ts("RESET tenant setting", "RESET tenantproxy.tenant"),
		ts("tenant setting TO DEFAULT", "SET tenantproxy.tenant TO DEFAULT"),
		ts("SET LOCAL tenant setting in a transaction", "BEGIN; SET LOCAL tenantproxy.tenant = 'globex'; SELECT * FROM public.notes; COMMIT"),
		ts("another custom setting", "SET app.tenant_id = 'globex'"),
		ts("another setting of tenantproxy", "SET tenantproxy.other = 'x'"),
		{name: "RESET ALL then SHOW in one message", steps: []step{refused("RESET ALL; SHOW search_path", "RESET ALL")}},
		{name: "RESET ALL alone is emulated", steps: []step{
			ok("RESET ALL"),
			okRows("SELECT current_user, current_setting('tenantproxy.tenant'), (current_schemas(false))[1]", "tenant_acme|acme|acme"),
		}},
		{name: "reset all in lower case with a comment", steps: []step{
			ok("reset /* everything */ all"),
			okRows("SELECT DISTINCT tenant FROM public.notes", "acme"),
		}},
		{name: "RESET ALL drops the client's own search_path", steps: []step{
			ok("SET search_path TO pg_catalog, acme"),
			ok("RESET ALL"),
			okRows("SELECT (current_schemas(false))[1]", "acme"),
		}},
	}
}

// search_path and the tenant setting stay the tenant's: SET search_path may name only the tenant's
// schemas, the tenant setting and other custom settings never change, and RESET ALL keeps both.
func TestSearchPathAndTenantSetting(t *testing.T) {
	runCategory(t, searchPathCases(), nil)
}
