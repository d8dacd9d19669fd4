package isolation

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// randomSeed is the randomized test's seed: TP_SEED when set, a fixed value otherwise, so that a failure
// reproduces with the seed the log shows.
func randomSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(20261125)
	if v := os.Getenv("TP_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("TP_SEED=%q: %v", v, err)
		}
		seed = n
	}
	t.Logf("seed %d (set TP_SEED=%d to reproduce)", seed, seed)
	return seed
}

// randomDuration is how long each setup of the randomized test runs.
const randomDuration = 10 * time.Second

// hostile is a statement a client may not run, and the SQLSTATE it must get; {other} stands for another
// tenant.
type hostile struct {
	sql  string
	code string
}

// hostiles are the escapes the randomized clients mix into their work.
var hostiles = []hostile{
	{"RESET ROLE", "42501"},
	{"SET ROLE tenant_{other}", "42501"},
	{`SET ROLE "tenant_{other}"; SELECT * FROM employees`, "42501"},
	{"SELECT set_config('role', 'tenant_{other}', false)", "42501"},
	{"SELECT * FROM employees WHERE set_config('search_path', '{other}', false) <> ''", "42501"},
	{"SET search_path TO {other}", "42501"},
	{"SET search_path = {other}, public; SELECT * FROM employees", "42501"},
	{"SET tenantproxy.tenant = '{other}'", "42501"},
	{"SELECT set_config('tenantproxy.tenant', '{other}', false), * FROM public.notes", "42501"},
	{"DISCARD ALL; SELECT current_user", "42501"},
	{"RESET ALL; SELECT * FROM employees", "42501"},
	{"SELECT * FROM {other}.employees", "42501"},
	{"DO $$ BEGIN RESET ROLE; END $$", "42501"},
	{"SET SESSION AUTHORIZATION DEFAULT", "42501"},
	{"BEGIN; SET LOCAL ROLE tenant_{other}; SELECT * FROM employees; COMMIT", "42501"},
	{"SELECT query_to_xml('select * from {other}.employees', true, false, '')", "42501"},
	{"UPDATE pg_settings SET setting = '{other}' WHERE name = 'search_path'", "42501"},
	{"SET standard_conforming_strings = off", "42501"},
	{"SET client_encoding = 'SJIS'", "42501"},
	{"SELECT * FROM pg_prepared_statements", "42501"},
	{"SELEC * FROM {other}.employees", "42601"},
	{"EXECUTE tp1", "26000"},
	{"EXPLAIN (VERBOSE, COSTS OFF) EXECUTE tp2('{other}')", "26000"},
	{"DEALLOCATE tp3", "26000"},
	{"PREPARE tp9 AS SELECT * FROM employees", "42501"},
	{"CREATE FUNCTION {other}.f() RETURNS void LANGUAGE sql AS 'RESET ROLE'", "42501"},
}

// randomStats counts what the randomized clients did.
type randomStats struct {
	sessions, ops, transactions, hostile, rows atomic.Int64
}

// Two or more tenants' clients run random mixes of allowed statements (reads, inserts and updates with
// RETURNING, transactions committed and rolled back, tracked settings, pgx's prepared statements) and
// hostile ones over one or two shared backends, in both pool modes. Every row a client reads is its
// tenant's, every write lands in its tenant, every refusal carries its SQLSTATE, and tracked settings
// (application_name, statement_timeout) stay with the client that set them.
func TestRandomizedTenants(t *testing.T) {
	seed := randomSeed(t)
	for i, s := range setups {
		t.Run(s.String(), func(t *testing.T) {
			runRandom(t, s, seed+uint64(i)*1000)
		})
	}
}

func runRandom(t *testing.T, s setup, seed uint64) {
	p := startProxy(t, s, func(c *config.Config) {
		// Nine clients share one or two backends, for whole sessions in session pooling and for whole
		// transactions (some with statements that sleep) in transaction pooling: on a loaded machine a
		// client may wait longer than any short wait_timeout. This test is about isolation; waits have
		// tests of their own.
		c.Pool.WaitTimeout = config.Duration{Duration: randomDuration + 30*time.Second}
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		checkRowsInTheirTenant(t, ctx)
		var sql strings.Builder
		for _, tn := range allTenants {
			fmt.Fprintf(&sql, "DELETE FROM %s.employees WHERE name LIKE 'rnd %%';\n", tn)
		}
		sql.WriteString("DELETE FROM public.notes WHERE body LIKE 'rnd %';\n")
		fx.Cluster.MustExec(t, proxytest.Database, sql.String())
		checkVictimsUnchanged(t, ctx, "after the randomized clients")
	})
	ctx := testContext(t, randomDuration+60*time.Second)
	deadline := time.Now().Add(randomDuration)
	var st randomStats
	var wg sync.WaitGroup
	id := 0
	for _, tn := range allTenants {
		for _, user := range []string{fx.UserOf(tn), fx.UserOf(tn), "reader"} {
			w := &worker{t: t, p: p, id: id, tenant: tn, user: user, readonly: user == "reader", seed: seed,
				rng: rand.New(rand.NewPCG(seed, uint64(id))), st: &st}
			id++
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.loop(ctx, deadline)
			}()
		}
	}
	wg.Wait()
	t.Logf("%s: %d sessions, %d statements (%d transactions, %d hostile), %d rows checked",
		s, st.sessions.Load(), st.ops.Load(), st.transactions.Load(), st.hostile.Load(), st.rows.Load())
}

// checkRowsInTheirTenant fails the test when a tenant's table holds a row marked with another tenant: a
// write that ran in the wrong tenant's context.
func checkRowsInTheirTenant(t *testing.T, ctx context.Context) {
	t.Helper()
	conn, err := fx.Cluster.Connect(ctx, proxytest.Database)
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close(context.Background())
	for _, tn := range allTenants {
		var n int
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s.employees WHERE tenant <> $1 OR name NOT LIKE $1 || ' %%' AND name NOT LIKE 'rnd ' || $1 || ' %%'", tn), tn).Scan(&n); err != nil {
			t.Error(err)
		} else if n > 0 {
			t.Errorf("LEAK: %s.employees holds %d row(s) written for another tenant", tn, n)
		}
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM public.notes WHERE body LIKE 'rnd %' AND body NOT LIKE 'rnd ' || tenant || ' %'").Scan(&n); err != nil {
		t.Error(err)
	} else if n > 0 {
		t.Errorf("LEAK: public.notes holds %d note(s) written under another tenant's setting", n)
	}
}

// worker is one randomized client: it connects, runs a few random statements, disconnects, and again.
type worker struct {
	t        *testing.T
	p        *proxytest.Proxy
	id       int
	tenant   string
	user     string
	readonly bool
	seed     uint64
	rng      *rand.Rand
	st       *randomStats
	errs     int
	seq      int

	conn    *pgx.Conn
	appName string // the application_name the client expects
	own     string // the prefix of every application_name this client sets
	timeout string // the statement_timeout, in milliseconds, the client expects
}

// fail records a violation; a worker reports its first few only.
func (w *worker) fail(format string, args ...any) {
	w.errs++
	if w.errs <= 5 {
		w.t.Errorf("seed %d, worker %d (%s@%s): %s", w.seed, w.id, w.user, w.tenant, fmt.Sprintf(format, args...))
	}
}

// other returns a random tenant that is not the worker's.
func (w *worker) other() string {
	for {
		if tn := allTenants[w.rng.IntN(len(allTenants))]; tn != w.tenant {
			return tn
		}
	}
}

var execModes = []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol}

func (w *worker) loop(ctx context.Context, deadline time.Time) {
	w.own = fmt.Sprintf("rnd-%s-%d-", w.tenant, w.id)
	for time.Now().Before(deadline) && w.errs < 5 && ctx.Err() == nil {
		cfg, err := pgx.ParseConfig(w.p.URL(w.user, w.tenant))
		if err != nil {
			w.fail("parse config: %v", err)
			return
		}
		cfg.DefaultQueryExecMode = execModes[w.rng.IntN(len(execModes))]
		w.conn, err = pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			w.fail("connect: %v", err)
			return
		}
		w.st.sessions.Add(1)
		w.timeout = "0"
		if err := w.conn.QueryRow(ctx, "SHOW application_name").Scan(&w.appName); err != nil {
			w.fail("SHOW application_name: %v", err)
		}
		for n := 1 + w.rng.IntN(15); n > 0 && w.errs < 5; n-- {
			if !w.op(ctx) {
				break
			}
		}
		w.conn.Close(ctx)
	}
}

// op runs one random statement or transaction and checks what came back; false ends the session.
func (w *worker) op(ctx context.Context) bool {
	w.st.ops.Add(1)
	w.seq++
	switch k := w.rng.IntN(100); {
	case k < 15:
		w.checkRows(ctx, "SELECT tenant FROM employees")
	case k < 22:
		w.checkRows(ctx, "SELECT tenant FROM public.notes WHERE body <> $1", "x")
	case k < 30:
		w.checkContext(ctx)
	case k < 40:
		w.insert(ctx)
	case k < 45:
		w.checkRows(ctx, "UPDATE employees SET email = email WHERE name LIKE 'rnd %' RETURNING tenant")
	case k < 55:
		w.transaction(ctx)
	case k < 60:
		w.setAppName(ctx)
	case k < 63:
		w.setTimeout(ctx)
	case k < 67:
		w.showSettings(ctx)
	case k < 70:
		w.reset(ctx)
		return false
	default:
		w.hostile(ctx)
	}
	return true
}

// checkRows runs a query and checks that every row's first column is the worker's tenant.
func (w *worker) checkRows(ctx context.Context, sql string, args ...any) {
	rows, err := w.conn.Query(ctx, sql, args...)
	if err != nil {
		if w.readonly && pgCode(err) == "25006" {
			return
		}
		w.fail("%s: %v", sql, err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var tenant string
		if err := rows.Scan(&tenant); err != nil {
			w.fail("%s: %v", sql, err)
			return
		}
		w.st.rows.Add(1)
		if tenant != w.tenant {
			w.fail("LEAK: %s returned a row of tenant %q", sql, tenant)
		}
	}
	if err := rows.Err(); err != nil {
		if w.readonly && pgCode(err) == "25006" {
			return
		}
		w.fail("%s: %v", sql, err)
	}
}

// checkContext reads the backend's context.
func (w *worker) checkContext(ctx context.Context) {
	var user, sp, tenant string
	err := w.conn.QueryRow(ctx, "SELECT current_user::text, current_setting('search_path'), current_setting('tenantproxy.tenant')").Scan(&user, &sp, &tenant)
	if err != nil {
		w.fail("context: %v", err)
		return
	}
	if user != "tenant_"+w.tenant || firstSchema(sp) != w.tenant || tenant != w.tenant {
		w.fail("LEAK: context is user %q, search_path %q, tenant %q", user, sp, tenant)
	}
}

// insert writes a row whose tenant column defaults to the tenant setting, and a note under the policy.
func (w *worker) insert(ctx context.Context) {
	name := fmt.Sprintf("rnd %s %d-%d", w.tenant, w.id, w.seq)
	var tenant string
	err := w.conn.QueryRow(ctx, "INSERT INTO employees (name) VALUES ($1) RETURNING tenant", name).Scan(&tenant)
	switch {
	case w.readonly:
		if pgCode(err) != "25006" {
			w.fail("read-only INSERT: want 25006, got %v", err)
		}
		return
	case err != nil:
		w.fail("INSERT: %v", err)
		return
	case tenant != w.tenant:
		w.fail("LEAK: INSERT ... RETURNING tenant gave %q", tenant)
	}
	if err := w.conn.QueryRow(ctx, "INSERT INTO public.notes (body) VALUES ($1) RETURNING tenant", name).Scan(&tenant); err != nil {
		w.fail("INSERT note: %v", err)
	} else if tenant != w.tenant {
		w.fail("LEAK: INSERT note RETURNING tenant gave %q", tenant)
	}
}

// transaction runs a read-write (or, for the reader, read-only) transaction and commits or rolls back.
func (w *worker) transaction(ctx context.Context) {
	w.st.transactions.Add(1)
	tx, err := w.conn.Begin(ctx)
	if err != nil {
		w.fail("BEGIN: %v", err)
		return
	}
	defer tx.Rollback(ctx)
	var tenant string
	if w.readonly {
		err = tx.QueryRow(ctx, "SELECT min(tenant) FROM employees").Scan(&tenant)
	} else {
		err = tx.QueryRow(ctx, "INSERT INTO employees (name) VALUES ($1) RETURNING tenant", fmt.Sprintf("rnd %s %d-%d tx", w.tenant, w.id, w.seq)).Scan(&tenant)
	}
	if err != nil {
		w.fail("transaction: %v", err)
		return
	}
	if tenant != w.tenant {
		w.fail("LEAK: a transaction's statement saw tenant %q", tenant)
	}
	if err := tx.QueryRow(ctx, "SELECT current_setting('tenantproxy.tenant')").Scan(&tenant); err != nil || tenant != w.tenant {
		w.fail("LEAK: the tenant setting in a transaction is %q (%v)", tenant, err)
	}
	if w.rng.IntN(2) == 0 {
		err = tx.Commit(ctx)
	} else {
		err = tx.Rollback(ctx)
	}
	if err != nil {
		w.fail("end of transaction: %v", err)
	}
}

// setAppName sets a tracked setting with a value only this client uses.
func (w *worker) setAppName(ctx context.Context) {
	name := w.own + strconv.Itoa(w.seq)
	if _, err := w.conn.Exec(ctx, "SET application_name = '"+name+"'"); err != nil {
		w.fail("SET application_name: %v", err)
		return
	}
	w.appName = name
}

// setTimeout sets statement_timeout to a value (hours, harmless) only this client uses.
func (w *worker) setTimeout(ctx context.Context) {
	ms := strconv.Itoa(3600000 + w.id*1000 + w.seq%1000)
	if _, err := w.conn.Exec(ctx, "SET statement_timeout = "+ms); err != nil {
		w.fail("SET statement_timeout: %v", err)
		return
	}
	w.timeout = ms
}

// showSettings checks that the client's tracked settings stayed its own.
func (w *worker) showSettings(ctx context.Context) {
	var app, timeout string
	if err := w.conn.QueryRow(ctx, "SELECT current_setting('application_name'), (SELECT setting FROM pg_settings WHERE name = 'statement_timeout')").Scan(&app, &timeout); err != nil {
		w.fail("settings: %v", err)
		return
	}
	if app != w.appName && !strings.HasPrefix(app, w.own) {
		w.fail("LEAK: application_name is %q, want %q: another client's setting", app, w.appName)
	}
	if timeout != w.timeout {
		w.fail("LEAK: statement_timeout is %s ms, want %s", timeout, w.timeout)
	}
}

// reset sends a driver's pool reset, emulated by the proxy, as a driver does before it hands the
// connection to another user of its pool; the session ends there, since the statements pgx cached are
// gone.
func (w *worker) reset(ctx context.Context) {
	sql := "DISCARD ALL"
	if w.rng.IntN(2) == 0 {
		sql = "RESET ALL"
	}
	if _, err := w.conn.PgConn().Exec(ctx, sql).ReadAll(); err != nil {
		w.fail("%s: %v", sql, err)
	}
	o := simple(ctx, w.conn.PgConn(), "SELECT current_user::text || '|' || current_setting('tenantproxy.tenant') || '|' || (current_schemas(false))[1]")
	if want := fmt.Sprintf("tenant_%[1]s|%[1]s|%[1]s\n", w.tenant); o.err != nil || o.text() != want {
		w.fail("LEAK: after %s the context is %v, want %q", sql, o, want)
	}
}

// hostile sends an escape, by the simple protocol or, when it is one statement, by the extended one.
func (w *worker) hostile(ctx context.Context) {
	w.st.hostile.Add(1)
	h := hostiles[w.rng.IntN(len(hostiles))]
	sql := strings.ReplaceAll(h.sql, "{other}", w.other())
	var err error
	var text string
	if strings.Contains(sql, ";") || w.rng.IntN(2) == 0 {
		results, rerr := w.conn.PgConn().Exec(ctx, sql).ReadAll()
		err = rerr
		for _, r := range results {
			for _, row := range r.Rows {
				text += strings.Join(textRow(row), "|") + "\n"
			}
		}
	} else {
		var tag pgconn.CommandTag
		tag, err = w.conn.Exec(ctx, sql)
		text = tag.String()
	}
	if code := pgCode(err); code != h.code {
		w.fail("%q: want SQLSTATE %s, got %v (returned %q)", sql, h.code, err, text)
	}
	for _, tn := range allTenants {
		if tn != w.tenant && strings.Contains(text, tn) {
			w.fail("LEAK: %q returned data of %s: %q", sql, tn, text)
		}
	}
	if w.conn.PgConn().TxStatus() != 'I' {
		w.conn.PgConn().Exec(ctx, "ROLLBACK").ReadAll()
	}
}

// pgCode returns the SQLSTATE of err, "" for nil.
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	if err != nil {
		return "non-pg: " + err.Error()
	}
	return ""
}
