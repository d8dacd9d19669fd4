package isolation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
	"github.com/tenantproxy/tenantproxy/internal/app"
)

// stateCases leave session state on a shared backend: temporary tables that would shadow the next
// tenant's, WITH HOLD cursors, SQL prepared statements, advisory locks, large objects, sequences' last
// values and settings. Each kind is refused by the server's hardening, pins the backend to the client in
// transaction pooling, or is tracked per client; none reaches the next tenant.
func stateCases() []escape {
	temp := func(name, sql string) escape {
		// TEMPORARY is revoked on the database: the server refuses, after the guard pinned the backend.
		return escape{name: name, steps: []step{fails("42501", sql, "temporary")}, pins: true,
			next: []step{okRows("SELECT DISTINCT tenant FROM employees", "globex")}}
	}
	setting := func(name, sql, show, want string) escape {
		return escape{name: name, steps: []step{ok(sql), okRows(show, want)}, own: []step{okRows(show, want)}}
	}
	return []escape{
		temp("temporary table shadowing employees", "CREATE TEMP TABLE employees (id int, name text, email text, tenant text)"),
		temp("temporary table as select", "CREATE TEMPORARY TABLE employees AS SELECT 'acme'::text AS tenant"),
		temp("table in pg_temp", "CREATE TABLE pg_temp.employees (tenant text)"),
		temp("select into temp", "SELECT 'acme'::text AS tenant INTO TEMP employees"),
		temp("temporary view", "CREATE TEMP VIEW employees AS SELECT 'acme'::text AS tenant"),
		temp("temporary sequence", "create temporary sequence s"),
		{name: "WITH HOLD cursor in one message", pins: true, steps: []step{
			ok("BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT tenant FROM acme.employees; COMMIT"),
			okRows("FETCH 1 FROM c", "acme"),
		}, next: []step{fails("34000", "FETCH ALL FROM c", "does not exist"), fails("34000", "CLOSE c")}},
		{name: "WITH HOLD cursor quoted, over messages", pins: true, steps: []step{
			ok("BEGIN"),
			ok(`declare "C" no scroll cursor with hold for select tenant from employees`),
			ok("COMMIT"),
			okRows(`FETCH 1 FROM "C"`, "acme"),
		}, next: []step{fails("34000", `FETCH ALL FROM "C"`, "does not exist")}},
		{name: "pg_notify", steps: []step{refused("SELECT pg_notify('chan', 'acme secret')", "pg_notify")}},
		{name: "pg_notify qualified in a CTE", steps: []step{refused("WITH n AS (SELECT pg_catalog.pg_notify('globex.chan', 'acme forged')) SELECT * FROM n", "pg_notify")}},
		// Each LISTEN of a query of several statements is rewritten to the tenant's channel (issue 15);
		// TestNotificationsStayWithinTenant checks that its notifications stay within the tenant.
		{name: "LISTEN with another statement", pins: true, steps: []step{ok("LISTEN chan; SELECT 1")}},
		{name: "pg_cursors", steps: []step{refused("SELECT * FROM pg_cursors", "pg_cursors")}},
		{name: "pg_cursor()", steps: []step{refused("SELECT * FROM pg_catalog.pg_cursor()", "pg_cursor")}},
		{name: "SQL PREPARE", pins: true, steps: []step{
			ok("PREPARE p AS SELECT tenant FROM employees LIMIT 1"),
			okRows("EXECUTE p", "acme"),
		}, next: []step{fails("26000", "EXECUTE p", "does not exist"), fails("26000", "DEALLOCATE p")}},
		{name: "SQL PREPARE quoted with a parameter, in one message", pins: true, steps: []step{
			okRows(`prepare "P" (text) as select $1 || tenant from employees limit 1; execute "P"('x')`, "xacme"),
		}, next: []step{fails("26000", `EXECUTE "P"('y')`, "does not exist")}},
		{name: "pg_prepared_statements", steps: []step{refused("SELECT name, statement FROM pg_prepared_statements", "pg_prepared_statements")}},
		{name: "pg_prepared_statement()", steps: []step{refused("SELECT * FROM pg_catalog.pg_prepared_statement()", "pg_prepared_statement")}},
		{name: "session advisory lock", pins: true, steps: []step{fails("42501", "SELECT pg_advisory_lock(42)", "permission denied")},
			next: []step{fails("42501", "SELECT pg_advisory_unlock_all()")}},
		{name: "try advisory lock qualified", pins: true, steps: []step{fails("42501", "SELECT pg_catalog.pg_try_advisory_lock(42)", "permission denied")}},
		{name: "shared advisory lock in a query", pins: true, steps: []step{fails("42501", "SELECT pg_advisory_lock_shared(1, id) FROM employees", "permission denied")}},
		{name: "transaction advisory lock is fine", steps: []step{okRows("SELECT pg_advisory_xact_lock(42)", "")}},
		// Creating it may be refused; if it exists, only acme reaches it.
		{name: "large object", steps: []step{fails("|42501", "SELECT lo_from_bytea(424242, 'acme secret lob')::text")},
			next:    []step{fails("42501|42704", "SELECT lo_get(424242)"), fails("42501|42704", "SELECT lo_unlink(424242)")},
			cleanup: "SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE oid = 424242"},
		{name: "lastval of a sequence", steps: []step{
			okRows("INSERT INTO employees (name) VALUES ('sequence probe') RETURNING tenant", "acme"),
			ok("SELECT lastval()"),
			ok("DELETE FROM employees WHERE name = 'sequence probe'"),
		}, next: []step{fails("55000|42501", "SELECT lastval()")}},
		setting("statement_timeout", "SET statement_timeout = '4242s'", "SHOW statement_timeout", "4242s"),
		setting("statement_timeout in upper case", "SET STATEMENT_TIMEOUT TO 4242000", "SHOW statement_timeout", "4242s"),
		setting("SET SESSION statement_timeout", "SET SESSION statement_timeout = 4242000", "SHOW statement_timeout", "4242s"),
		setting("default_transaction_read_only", "SET default_transaction_read_only = on", "SHOW transaction_read_only", "on"),
		setting("SESSION CHARACTERISTICS read only", "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", "SHOW default_transaction_read_only", "on"),
		setting("SESSION CHARACTERISTICS serializable", "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", "SHOW default_transaction_isolation", "serializable"),
		setting("application_name", "SET application_name = 'hostile acme'", "SHOW application_name", "hostile acme"),
		setting("application_name hiding a statement", "SET application_name = 'hostile''; RESET ROLE; SELECT '''", "SHOW application_name", "hostile'; RESET ROLE; SELECT '"),
		setting("application_name with a backslash", `SET application_name = 'hostile\'`, "SHOW application_name", `hostile\`),
		setting("TIME ZONE", "SET TIME ZONE 'Pacific/Chatham'", "SHOW TimeZone", "Pacific/Chatham"),
		setting("work_mem", "set work_mem = '77kB'", "SHOW work_mem", "77kB"),
		{name: "statement_timeout of 1ms stays with the client", steps: []step{ok("SET statement_timeout = '1ms'")},
			own: []step{fails("57014", "SELECT pg_sleep(0.05)", "statement timeout"), ok("RESET statement_timeout"), ok("SELECT pg_sleep(0.01)")}},
		{name: "RESET ALL resets the client's settings", steps: []step{
			ok("SET application_name = 'hostile reset'"),
			ok("SET work_mem = '77kB'"),
			ok("RESET ALL"),
			okRows("SELECT current_setting('application_name') <> 'hostile reset', current_setting('work_mem') <> '77kB'", "t|t"),
		}},
		{name: "DISCARD ALL resets the client's settings", steps: []step{
			ok("SET statement_timeout = '4242s'"),
			ok("DISCARD ALL"),
			okRows("SHOW statement_timeout", "0"),
		}},
	}
}

// transactionSettingCases change tracked settings inside transactions that commit, roll back, fail or
// release and roll back to savepoints: the proxy must keep exactly what the server kept, or a setting
// reaches the next client of the tenant (no reset runs between two clients of one tenant) or is lost.
func transactionSettingCases() []escape {
	show := "SHOW application_name"
	kept := func(name, sql, value string) escape {
		return escape{name: name, steps: []step{ok(sql), okRows(show, value)}, own: []step{okRows(show, value)}}
	}
	undone := func(name string, steps ...step) escape {
		check := okRows("SELECT current_setting('application_name') LIKE 'hostile%'", "f")
		return escape{name: name, steps: append(steps, check), own: []step{check}}
	}
	return []escape{
		kept("SET in a committed transaction", "BEGIN; SET application_name = 'hostile tx'; COMMIT", "hostile tx"),
		kept("SET after a released savepoint", "BEGIN; SAVEPOINT s; SET application_name = 'hostile sp'; RELEASE SAVEPOINT s; COMMIT", "hostile sp"),
		kept("SET before COMMIT AND CHAIN", "BEGIN; SET application_name = 'hostile chain'; COMMIT AND CHAIN; ROLLBACK", "hostile chain"),
		kept("SET before a savepoint rolled back to", "BEGIN; SET application_name = 'hostile before'; SAVEPOINT s; SELECT 1; ROLLBACK TO SAVEPOINT s; COMMIT", "hostile before"),
		{name: "SET in a committed transaction over messages", steps: []step{ok("BEGIN"), ok("SET application_name = 'hostile msgs'"), ok("COMMIT"), okRows(show, "hostile msgs")},
			own: []step{okRows(show, "hostile msgs")}},
		undone("SET in a rolled back transaction", ok("BEGIN; SET application_name = 'hostile rb'; ROLLBACK")),
		undone("SET LOCAL", ok("BEGIN; SET LOCAL application_name = 'hostile local'; COMMIT")),
		undone("SET then an error in one message", fails("22012", "SET application_name = 'hostile implicit'; SELECT 1/0")),
		undone("SET in a transaction that failed", ok("BEGIN"), ok("SET application_name = 'hostile failed'"), fails("22012", "SELECT 1/0"), ok("COMMIT")),
		undone("SET in a transaction rolled back over messages", ok("BEGIN"), ok("SET application_name = 'hostile rb msgs'"), ok("ROLLBACK")),
		undone("SET after a savepoint rolled back to, over messages", ok("BEGIN"), ok("SAVEPOINT s"), ok("SET application_name = 'hostile sp msgs'"), ok("ROLLBACK TO SAVEPOINT s"), ok("COMMIT")),
		undone("SET after a savepoint rolled back to, in one message", ok("BEGIN; SAVEPOINT s; SET application_name = 'hostile sp one'; ROLLBACK TO SAVEPOINT s; COMMIT")),
		undone("SET in a transaction whose COMMIT fails", ok("BEGIN"), ok("SET application_name = 'hostile deferred'"),
			ok("SET CONSTRAINTS ALL DEFERRED"), fails("25P02|22012", "SELECT 1/0"), ok("COMMIT")),
	}
}

// Tracked settings follow the server's transaction semantics: kept when the server keeps them, dropped
// when it undoes them, so that the next client of the tenant never inherits one.
func TestTrackedSettingsFollowTransactions(t *testing.T) {
	runCategory(t, transactionSettingCases(), nil)
}

// Session state never reaches the next tenant: it is refused by the server's hardening, pins the backend
// until the client leaves, or is tracked per client and replayed only to it.
func TestStateLeftForTheNextTenant(t *testing.T) {
	runCategory(t, stateCases(), nil)
}

// notifyCase is a way of listening and notifying: acme and globex each listen on a channel and send one
// notification; each may hear its own, never the other's.
type notifyCase struct {
	name                      string
	acmeListen, globexListen  string // LISTEN statements
	acmeNotify, globexNotify  string // NOTIFY statements; the payload names the sender
	extended                  bool   // sent with the extended protocol instead of simple Query messages
	acmeHearsOwn, globexHears bool   // whether each must hear its own notification
}

// Notifications never cross tenants: channels are database-wide on the server, so the proxy gives each
// tenant channels of its own; the acme client must never receive a notification globex sent, nor globex
// one acme sent, whatever channel name acme spells (even the server-side name of globex's channel). With
// two backends, acme and globex hold one each (LISTEN pins in transaction pooling).
func TestNotificationsStayWithinTenant(t *testing.T) {
	same := func(name, listen, notify string) notifyCase {
		return notifyCase{name: name, acmeListen: "LISTEN " + listen, globexListen: "LISTEN " + listen,
			acmeNotify: "NOTIFY " + notify + ", 'acme secret notification'", globexNotify: "NOTIFY " + notify + ", 'globex secret notification'",
			acmeHearsOwn: true, globexHears: true}
	}
	cases := []notifyCase{
		same("LISTEN and NOTIFY", "chan", "chan"),
		same("quoted channel", `"Chan"`, `"Chan"`),
		same("unicode-escaped channel", `U&"ch\0061n2"`, "chan2"),
		same("channel with a dot", `"a.b"`, `"a.b"`),
		{name: "acme notifies the server-side name of globex's channel", acmeListen: "LISTEN chan4", globexListen: "LISTEN chan4",
			acmeNotify: `NOTIFY "globex.chan4", 'acme secret forged'`, globexNotify: "NOTIFY chan4, 'globex secret notification'", globexHears: true},
		{name: "acme listens on the server-side name of globex's channel", acmeListen: `LISTEN "globex.chan5"`, globexListen: "LISTEN chan5",
			acmeNotify: `NOTIFY "globex.chan5", 'acme secret forged'`, globexNotify: "NOTIFY chan5, 'globex secret notification'", acmeHearsOwn: true, globexHears: true},
		{name: "LISTEN and NOTIFY among other statements", acmeListen: "SELECT 1; LISTEN chan8", globexListen: "LISTEN chan8; SELECT 1",
			acmeNotify:   `NOTIFY chan8, 'acme secret notification'; NOTIFY "globex.chan8", 'acme secret forged'`,
			globexNotify: "SELECT 1; NOTIFY chan8, 'globex secret notification'", acmeHearsOwn: true, globexHears: true},
		{name: "extended protocol", extended: true, acmeListen: "LISTEN chan6", globexListen: "LISTEN chan6",
			acmeNotify: "NOTIFY chan6, 'acme secret notification'", globexNotify: "NOTIFY chan6, 'globex secret notification'", acmeHearsOwn: true, globexHears: true},
		{name: "extended protocol with server-side names", extended: true, acmeListen: `LISTEN "globex.chan7"`, globexListen: "LISTEN chan7",
			acmeNotify: `NOTIFY "globex.chan7", 'acme secret forged'`, globexNotify: "NOTIFY chan7, 'globex secret notification'", acmeHearsOwn: true, globexHears: true},
	}
	for _, s := range setups {
		if s.pool < 2 {
			continue
		}
		t.Run(s.String(), func(t *testing.T) {
			p := startProxy(t, s, nil)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { runNotify(t, p.TenantURL, c) })
			}
		})
	}
}

func runNotify(t *testing.T, url func(string) string, c notifyCase) {
	ctx := testContext(t, 30*time.Second)
	got := map[string][]string{}
	run := func(conn *pgconn.PgConn, tenant, sql string) {
		t.Helper()
		o := simple(ctx, conn, sql)
		if c.extended {
			o = params(ctx, conn, sql)
		}
		expect(t, tenant+" "+sql, o, "")
	}
	open := func(tenant, listen string) *pgconn.PgConn {
		cfg, err := pgconn.ParseConfig(url(tenant))
		if err != nil {
			t.Fatal(err)
		}
		cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) {
			got[tenant] = append(got[tenant], n.Channel+": "+n.Payload)
		}
		conn, err := pgconn.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		run(conn, tenant, listen)
		return conn
	}
	a := open("acme", c.acmeListen)
	g := open("globex", c.globexListen)
	run(g, "globex", c.globexNotify)
	run(a, "acme", c.acmeNotify)
	// A round trip after a pause collects what each backend received.
	time.Sleep(100 * time.Millisecond)
	simple(ctx, a, "SELECT 1")
	simple(ctx, g, "SELECT 1")
	for _, n := range got["acme"] {
		if strings.Contains(n, "globex secret") {
			t.Errorf("LEAK: the acme client received globex's notification %q", n)
		}
	}
	for _, n := range got["globex"] {
		if strings.Contains(n, "acme secret") {
			t.Errorf("LEAK: the globex client received acme's notification %q", n)
		}
	}
	if c.acmeHearsOwn && len(got["acme"]) == 0 {
		t.Errorf("the acme client did not receive its own notification")
	}
	if c.globexHears && len(got["globex"]) == 0 {
		t.Errorf("the globex client did not receive its own notification")
	}
}

// secretConstant is in the text of statements globex prepares; acme must never read it.
const secretConstant = "globex-statement-secret"

// A statement prepared for one tenant can never be run, explained, listed or dropped by another on the
// shared backend, under the names the proxy gives server-side statements: only the client's own names
// reach its statements. globex prepares statements (pgx's statement cache) holding a secret constant; acme
// then tries SQL EXECUTE, EXPLAIN EXECUTE and DEALLOCATE of every name the proxy uses, and of pgx's names.
func TestPreparedStatementsStayWithinTenant(t *testing.T) {
	for _, s := range setups {
		t.Run(s.String(), func(t *testing.T) {
			p := startProxy(t, s, nil)
			ctx := testContext(t, 60*time.Second)
			cfg, err := pgx.ParseConfig(p.TenantURL("globex"))
			if err != nil {
				t.Fatal(err)
			}
			cfg.DefaultQueryExecMode = pgx.QueryExecModeCacheStatement
			g, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close(context.Background())
			countSQL := "SELECT count(*) FROM employees WHERE email <> '" + secretConstant + "' AND tenant = $1"
			tenantSQL := "SELECT tenant FROM employees WHERE name <> $1 LIMIT 1"
			globexQuery := func() {
				t.Helper()
				var n int
				if err := g.QueryRow(ctx, countSQL, "globex").Scan(&n); err != nil {
					t.Errorf("globex's prepared statement failed: %v", err)
				} else if n == 0 {
					t.Errorf("globex's prepared statement returned no rows")
				}
				var tenant string
				if err := g.QueryRow(ctx, tenantSQL, secretConstant).Scan(&tenant); err != nil || tenant != "globex" {
					t.Errorf("globex's second prepared statement: %q %v", tenant, err)
				}
			}
			globexQuery()
			if s.mode == config.ModeSession && s.pool == 1 {
				// The only backend is globex's for its whole session: acme waits, so globex leaves first.
				g.Close(ctx)
			}
			a := connect(t, ctx, p.TenantURL(attacker))
			var names []string
			for i := 1; i <= 40; i++ {
				names = append(names, fmt.Sprintf("tp%d", i))
			}
			names = append(names, pgxStatementName(countSQL), pgxStatementName(tenantSQL))
			for _, name := range names {
				for _, sql := range []string{
					"EXECUTE " + name,
					"EXECUTE " + name + "('globex')",
					"EXPLAIN (VERBOSE, COSTS OFF) EXECUTE " + name + "('globex')",
					"EXPLAIN (VERBOSE, COSTS OFF) EXECUTE " + name,
				} {
					o := simple(ctx, a, sql)
					if strings.Contains(o.text(), secretConstant) || (o.pgErr() != nil && strings.Contains(o.pgErr().Message, secretConstant)) {
						t.Errorf("LEAK: acme's %q shows the text of globex's prepared statement: %v", sql, o)
					}
					if o.err == nil {
						t.Errorf("LEAK: acme's %q ran a statement globex prepared: %v", sql, o)
					}
				}
				if o := simple(ctx, a, "DEALLOCATE "+name); o.err == nil {
					t.Errorf("LEAK: acme's DEALLOCATE %s dropped a statement it never prepared (globex's): %v", name, o)
				}
			}
			if st, err := probe(ctx, a); err != nil {
				t.Errorf("acme's probe: %v", err)
			} else {
				checkTenant(t, "acme after trying globex's statements", st, attacker)
			}
			a.Close(ctx)
			if !g.IsClosed() {
				globexQuery()
			}
		})
	}
}

// pgxStatementName is the name pgx's statement cache gives the statement of sql.
func pgxStatementName(sql string) string {
	digest := sha256.Sum256([]byte(sql))
	return `"stmtcache_` + hex.EncodeToString(digest[:24]) + `"`
}

// A client's cancel requests reach only its own queries: acme cancels its connection again and again
// while its statements come and go over the backends globex uses too, and no query of globex's is ever
// cancelled.
func TestCancelStaysWithinTenant(t *testing.T) {
	for _, s := range setups {
		if s.mode != config.ModeTransaction {
			continue // in session pooling no other client shares acme's backend while it is connected
		}
		t.Run(s.String(), func(t *testing.T) {
			p := startProxy(t, s, nil)
			ctx := testContext(t, 30*time.Second)
			var a atomic.Pointer[pgconn.PgConn]
			a.Store(connect(t, ctx, p.TenantURL(attacker)))
			g := connect(t, ctx, p.TenantURL("globex"))
			deadline := time.Now().Add(3 * time.Second)
			var wg sync.WaitGroup
			var cancels, acmeCancelled, acmeKilled, globexQueries atomic.Int64
			var firstKill atomic.Value
			wg.Add(2)
			go func() {
				defer wg.Done()
				// Each statement gets a cancel request a few hundred microseconds after it is sent: some
				// reach it while the proxy is still switching the backend to acme, some while it runs,
				// some after it.
				for i := 0; time.Now().Before(deadline); i++ {
					c := a.Load()
					done := make(chan struct{})
					go func() {
						defer close(done)
						time.Sleep(time.Duration(i%8) * 50 * time.Microsecond)
						if c.CancelRequest(ctx) == nil {
							cancels.Add(1)
						}
					}()
					o := simple(ctx, c, "SELECT pg_sleep(0.0005)")
					<-done
					switch {
					case o.code() == "57014":
						acmeCancelled.Add(1)
					case o.err != nil:
						acmeKilled.Add(1)
						firstKill.CompareAndSwap(nil, o.err.Error())
						c, err := pgconn.Connect(ctx, p.TenantURL(attacker))
						if err != nil {
							t.Errorf("acme reconnects: %v", err)
							return
						}
						t.Cleanup(func() { c.Close(context.Background()) })
						a.Store(c)
					}
				}
			}()
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					o := simple(ctx, g, "SELECT DISTINCT tenant FROM employees")
					globexQueries.Add(1)
					if o.code() == "57014" {
						t.Errorf("LEAK: acme's cancel request cancelled globex's query: %v", o.err)
						return
					}
					if o.err != nil || o.text() != "globex\n" {
						t.Errorf("globex: %v", o)
						return
					}
				}
			}()
			wg.Wait()
			t.Logf("%d cancel requests, %d acme statements cancelled, %d acme sessions ended, %d globex queries",
				cancels.Load(), acmeCancelled.Load(), acmeKilled.Load(), globexQueries.Load())
			if acmeCancelled.Load() == 0 {
				t.Errorf("no acme statement was ever cancelled: the cancel requests reached nothing")
			}
			if n := acmeKilled.Load(); n > 0 {
				t.Logf("%d of acme's sessions ended on its own cancel request (see TestOwnCancelNeverEndsTheSession); first: %v", n, firstKill.Load())
			}
		})
	}
}

// A client's cancel request never ends its own session: PostgreSQL answers it with 57014 on the
// statement it reaches, or ignores it between statements, even when it reaches the backend while the
// proxy runs statements of its own there (switching it to the client's tenant, or the tripwire's check
// after the client's statement). Each acme statement here follows one of globex's on the only backend,
// so every lease of acme's starts with a switch, and gets a cancel request 0 to 4 ms after it was sent.
func TestOwnCancelNeverEndsTheSession(t *testing.T) {
	p := startProxy(t, setup{config.ModeTransaction, 1}, nil)
	ctx := testContext(t, 30*time.Second)
	a := connect(t, ctx, p.TenantURL(attacker))
	g := connect(t, ctx, p.TenantURL("globex"))
	var statements, cancelled int
	for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); statements++ {
		if o := simple(ctx, g, "SELECT 1"); o.err != nil {
			t.Fatalf("globex: %v", o.err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			time.Sleep(time.Duration(statements%40) * 100 * time.Microsecond)
			a.CancelRequest(ctx)
		}()
		o := simple(ctx, a, "SELECT pg_sleep(0.002)")
		<-done
		if o.code() == "57014" {
			cancelled++
		} else if o.err != nil {
			t.Fatalf("acme's session ended on its own cancel request after %d statements (%d cancelled as PostgreSQL would): %v", statements, cancelled, o.err)
		}
	}
	t.Logf("%d statements, %d cancelled", statements, cancelled)
}

// Nothing a tenant's client creates through the proxy stops the next proxy from starting: a large object
// is the one object a tenant role can own on the hardened server, and the hardening check that every
// start runs must not fail on it (or the client must not be able to create it).
func TestTenantObjectsDoNotStopTheProxy(t *testing.T) {
	p := startProxy(t, setups[0], nil)
	ctx := testContext(t, 30*time.Second)
	c := connect(t, ctx, p.TenantURL(attacker))
	t.Cleanup(func() {
		fx.Cluster.MustExec(t, proxytest.Database, "SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE lomowner = 'tenant_acme'::regrole")
	})
	if o := simple(ctx, c, "SELECT lo_from_bytea(0, 'acme lob')::text"); o.err != nil {
		return // refused: nothing was created
	}
	c.Close(ctx)
	a, err := app.Start(fx.Config(nil), zap.NewNop(), "test")
	if err != nil {
		t.Fatalf("a large object that acme's client created stops the next proxy from starting: %v", err)
	}
	a.Shutdown(2 * time.Second)
}

// A setting that acts while a backend is idle stays with the client that set it: acme's
// idle_session_timeout must not end, in the pool or during globex's lease, a backend globex is given.
func TestIdleSettingsDoNotReachOthers(t *testing.T) {
	for _, s := range setups {
		if s.mode != config.ModeTransaction {
			continue // in session pooling the backend is acme's until it leaves, and then reset
		}
		t.Run(s.String(), func(t *testing.T) {
			p := startProxy(t, s, nil)
			ctx := testContext(t, 30*time.Second)
			a := connect(t, ctx, p.TenantURL(attacker))
			for _, sql := range []string{"SET idle_session_timeout = '50ms'", "SET idle_in_transaction_session_timeout = '50ms'", "SELECT 1"} {
				expect(t, sql, simple(ctx, a, sql), "")
			}
			g := connect(t, ctx, p.TenantURL("globex"))
			for i := 0; i < 5; i++ {
				time.Sleep(150 * time.Millisecond)
				if o := simple(ctx, g, "SELECT DISTINCT tenant FROM employees"); o.err != nil || o.text() != "globex\n" {
					t.Fatalf("globex's query %d after acme set idle_session_timeout: %v", i+1, o)
				}
				if o := simple(ctx, g, "BEGIN; SELECT pg_sleep(0.1); COMMIT"); o.err != nil {
					t.Fatalf("globex's transaction %d after acme set idle_in_transaction_session_timeout: %v", i+1, o)
				}
			}
		})
	}
}
