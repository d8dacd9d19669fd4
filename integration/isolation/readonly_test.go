package isolation

import (
	"testing"
	"time"

	"github.com/tenantproxy/tenantproxy/config"
)

// readonlyCases are run by reader@acme, whose profile is read-only: it may not write, nor turn read-only
// transactions off in any spelling, nor escape like any other client; RESET ALL and DISCARD ALL keep its
// transactions read-only.
func readonlyCases() []escape {
	ro := func(name, sql string) escape {
		return escape{name: name, user: "reader", steps: []step{{sql: sql, code: "25006", words: []string{"read-only"}}}}
	}
	return []escape{
		ro("INSERT", "INSERT INTO employees (name) VALUES ('ro')"),
		ro("UPDATE", "UPDATE employees SET name = name"),
		ro("DELETE of the RLS table", "DELETE FROM public.notes"),
		ro("data-modifying CTE", "WITH d AS (DELETE FROM employees RETURNING *) SELECT * FROM d"),
		ro("SELECT FOR UPDATE", "SELECT * FROM employees FOR UPDATE"),
		ro("temporary table", "CREATE TEMP TABLE x (a int)"),
		ro("SELECT INTO TEMP", "SELECT * INTO TEMP x FROM employees"),
		ro("COPY FROM STDIN", "COPY employees FROM STDIN"),
		ro("default_transaction_read_only off", "SET default_transaction_read_only = off"),
		ro("default_transaction_read_only prefix of off", "SET default_transaction_read_only TO 'of'"),
		ro("default_transaction_read_only 0 in upper case", "set DEFAULT_TRANSACTION_READ_ONLY = 0"),
		ro("default_transaction_read_only no", "SET default_transaction_read_only = 'no'"),
		ro("RESET default_transaction_read_only", "RESET default_transaction_read_only"),
		ro("default_transaction_read_only TO DEFAULT", "SET default_transaction_read_only TO DEFAULT"),
		ro("transaction_read_only off", "SET transaction_read_only = off"),
		ro("BEGIN READ WRITE", "BEGIN READ WRITE"),
		ro("START TRANSACTION with READ WRITE last", "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE"),
		ro("SET TRANSACTION READ WRITE in one message", "BEGIN; SET TRANSACTION READ WRITE; INSERT INTO employees (name) VALUES ('ro'); COMMIT"),
		ro("SESSION CHARACTERISTICS READ WRITE", "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"),
		{name: "nextval is stopped by the server", user: "reader", steps: []step{fails("25006", "SELECT nextval('employees_id_seq')", "read-only")}},
		{name: "RESET ALL keeps transactions read-only", user: "reader", steps: []step{ok("RESET ALL"), okRows("SHOW transaction_read_only", "on")},
			own: []step{okRows("SHOW transaction_read_only", "on")}},
		{name: "DISCARD ALL keeps transactions read-only", user: "reader", steps: []step{ok("DISCARD ALL"), okRows("SHOW default_transaction_read_only", "on")},
			own: []step{okRows("SHOW default_transaction_read_only", "on")}},
		{name: "reads are the own tenant's", user: "reader", steps: []step{okRows("SELECT DISTINCT tenant FROM employees", "acme")}},
		{name: "RESET ROLE", user: "reader", steps: []step{refused("RESET ROLE", "role")}},
		{name: "SET ROLE tenant_globex", user: "reader", steps: []step{refused("SET ROLE tenant_globex", "role")}},
		{name: "set_config", user: "reader", steps: []step{refused("SELECT set_config('role', 'tenant_globex', false)", "set_config")}},
		{name: "SET search_path TO globex", user: "reader", steps: []step{refused("SET search_path TO globex", "search_path")}},
	}
}

// A read-only user stays read-only and in its tenant: writes and every way of turning read-only
// transactions off are refused with 25006, escapes with 42501, and the app user leased the backend next
// is not read-only.
func TestReadonlyProfile(t *testing.T) {
	runCategory(t, readonlyCases(), nil)
}

// The read-only user's transactions stay read-only on the server too, even on a backend an app user of
// the same tenant left with settings the proxy lost track of: the app user makes its tracked settings
// look like the read-only user's, then turns read-only transactions off in a way the proxy misses
// (COMMIT AND CHAIN), so no reset runs before the read-only user's lease.
func TestReadonlyUserInheritsNoSettings(t *testing.T) {
	for _, s := range setups {
		if s.pool != 1 {
			continue
		}
		t.Run(s.String(), func(t *testing.T) {
			p := startProxy(t, s, nil)
			ctx := testContext(t, 30*time.Second)
			a := connect(t, ctx, p.TenantURL(attacker))
			for _, sql := range []string{
				"SET default_transaction_read_only = on",
				"BEGIN; SET default_transaction_read_only = off; COMMIT AND CHAIN; ROLLBACK",
			} {
				expect(t, sql, simple(ctx, a, sql), "")
			}
			if s.mode == config.ModeSession {
				a.Close(ctx)
			}
			r := connect(t, ctx, p.URL("reader", attacker))
			expect(t, "the read-only user's transaction", simple(ctx, r, "SHOW transaction_read_only"), "")
			o := simple(ctx, r, "SELECT nextval('employees_id_seq')")
			if o.code() != "25006" {
				t.Errorf("LEAK: the read-only user ran a write on a backend the app user left read-write: want 25006, got %v", o)
			}
		})
	}
}
