package isolation

import (
	"fmt"
	"testing"
)

// roleCases are the escapes through the role and the session authorization: PostgreSQL checks SET ROLE
// against the session user, the pool role, which is a member of every tenant role.
func roleCases() []escape {
	pool, super := fx.Base.Backend.User, fx.Cluster.User
	readGlobex := "SELECT * FROM globex.employees"
	return []escape{
		{name: "RESET ROLE then read globex", steps: []step{refused("RESET ROLE; "+readGlobex, "role")}},
		{name: "reset role in lower case", steps: []step{refused("reset role", "role")}},
		{name: "mixed case with a block comment", steps: []step{refused("ReSeT /* just a comment */ RoLe", "role")}},
		{name: "line comments and newlines", steps: []step{refused("-- innocent\nRESET\n\tROLE -- trailing\n;\n", "role")}},
		{name: "SET ROLE NONE", steps: []step{refused("SET ROLE NONE; "+readGlobex, "role")}},
		{name: "SET ROLE tenant_globex", steps: []step{refused("SET ROLE tenant_globex; "+readGlobex, "role")}},
		{name: "SET ROLE quoted", steps: []step{refused(`SET ROLE "tenant_globex"`, "role")}},
		{name: "SET ROLE string literal", steps: []step{refused(`set role 'tenant_globex'`, "role")}},
		{name: "SET ROLE unicode escape", steps: []step{refused(`SET ROLE U&"tenant\005Fglobex"`, "role")}},
		{name: "SET ROLE the pool role", steps: []step{refused("SET ROLE "+pool, "role")}},
		{name: "SET SESSION ROLE", steps: []step{refused("SET SESSION ROLE tenant_globex", "role")}},
		{name: "SET role TO DEFAULT", steps: []step{refused("SET role = DEFAULT", "role")}},
		{name: "quoted upper-case setting name", steps: []step{refused(`SET "ROLE" TO tenant_globex`, "role")}},
		{name: "unicode-escaped setting name", steps: []step{refused(`SET U&"r\006Fle" TO 'tenant_globex'`, "role")}},
		{name: "SET LOCAL ROLE in one message", steps: []step{refused("BEGIN; SET LOCAL ROLE tenant_globex; "+readGlobex+"; COMMIT", "role")}},
		{name: "SET LOCAL ROLE in a transaction of messages", steps: []step{
			ok("BEGIN"),
			refused("SET LOCAL ROLE tenant_globex", "role"),
			fails("25P02", readGlobex),
			okRows("COMMIT", ""),
		}},
		{name: "SET ROLE as the third statement", steps: []step{refused("SELECT 1; SELECT 2; SET ROLE tenant_globex", "role")}},
		{name: "RESET ROLE after a committed transaction", steps: []step{refused("BEGIN; SELECT 1; COMMIT; RESET ROLE; "+readGlobex, "role")}},
		{name: "SET SESSION AUTHORIZATION DEFAULT", steps: []step{refused("SET SESSION AUTHORIZATION DEFAULT; "+readGlobex, "authorization")}},
		{name: "SET SESSION AUTHORIZATION the pool role", steps: []step{refused("SET SESSION AUTHORIZATION " + pool)}},
		{name: "SET SESSION AUTHORIZATION the superuser", steps: []step{refused(fmt.Sprintf("set session authorization '%s'", super))}},
		{name: "RESET SESSION AUTHORIZATION", steps: []step{refused("RESET SESSION AUTHORIZATION")}},
		{name: "session_authorization as a setting", steps: []step{refused(fmt.Sprintf("SET session_authorization = '%s'", pool), "role")}},
		{name: "SET LOCAL SESSION AUTHORIZATION", steps: []step{refused("BEGIN; SET LOCAL SESSION AUTHORIZATION DEFAULT; COMMIT")}},
		{name: "DISCARD ALL then current_user in one message", steps: []step{refused("DISCARD ALL; SELECT current_user", "DISCARD ALL")}},
		{name: "DISCARD ALL after a statement", steps: []step{refused("SELECT 1; DISCARD ALL", "DISCARD ALL")}},
		{name: "DISCARD ALL alone is emulated", steps: []step{
			ok("DISCARD ALL"),
			okRows("SELECT current_user, current_setting('tenantproxy.tenant')", "tenant_acme|acme"),
		}},
		{name: "discard all with comments and spacing", steps: []step{
			ok("/* pool reset */ discard\n   all ;"),
			okRows("SELECT current_user", "tenant_acme"),
		}},
		{name: "DISCARD ALL inside a transaction", steps: []step{
			ok("BEGIN"),
			fails("25001", "DISCARD ALL"),
			ok("ROLLBACK"),
			okRows("SELECT current_user", "tenant_acme"),
		}},
		{name: "ALTER ROLE of the pool role", steps: []step{refused(fmt.Sprintf("ALTER ROLE %s SET role = 'tenant_globex'", pool), "role")}},
		{name: "ALTER ROLE CURRENT_USER", steps: []step{refused("ALTER ROLE CURRENT_USER SET search_path = globex", "role")}},
		{name: "GRANT of a role", steps: []step{refused("GRANT tenant_globex TO tenant_acme", "role")}},
		{name: "CREATE ROLE", steps: []step{refused("CREATE ROLE intruder LOGIN SUPERUSER", "role")}},
		{name: "reading globex directly", steps: []step{fails("42501", readGlobex, "permission denied")}},
		{name: "reading globex quoted", steps: []step{fails("42501", `TABLE "globex"."employees"`, "permission denied")}},
	}
}

// The role and the session authorization of a backend never change: every form of SET ROLE, RESET ROLE,
// SET SESSION AUTHORIZATION and DISCARD ALL is refused or emulated.
func TestRoleAndSessionAuthorization(t *testing.T) {
	runCategory(t, roleCases(), nil)
}
