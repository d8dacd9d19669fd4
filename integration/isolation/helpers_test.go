package isolation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// setup is one proxy configuration the cases run under: a pool mode and a pool size.
type setup struct {
	mode config.PoolMode
	pool int
}

func (s setup) String() string { return fmt.Sprintf("%s/pool%d", s.mode, s.pool) }

// setups are the configurations every category runs under: both pool modes, with one backend (every
// lease after the hostile client's runs on its backend) and with two.
var setups = []setup{
	{config.ModeTransaction, 1},
	{config.ModeTransaction, 2},
	{config.ModeSession, 1},
	{config.ModeSession, 2},
}

// startProxy starts a proxy over the shared fixture in s, with the base configuration changed by configure
// (may be nil).
func startProxy(t *testing.T, s setup, configure func(*config.Config)) *proxytest.Proxy {
	t.Helper()
	return fx.Start(t, func(c *config.Config) {
		c.Pool.Mode = s.mode
		c.Backend.PoolSize = s.pool
		c.Pool.WaitTimeout = config.Duration{Duration: 5 * time.Second}
		// The tripwire checks every backend's identity after every lease: a hit is an escape that got
		// past the guard, and fails the case that caused it.
		c.Tenancy.TripwireSampleRate = 1
		if configure != nil {
			configure(c)
		}
	})
}

// testContext is a context that ends after d or with the test.
func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// connect opens a pgconn connection to url; it is closed when the test ends.
func connect(t *testing.T, ctx context.Context, url string) *pgconn.PgConn {
	t.Helper()
	c, err := pgconn.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", redact(url), err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// redact hides the password of a connection URL.
func redact(url string) string { return strings.Replace(url, ":"+proxytest.Password+"@", ":***@", 1) }

// outcome is what a client got for one message or batch: every row of every result, as text, the command
// tags, and the first error.
type outcome struct {
	rows [][]string
	tags []string
	err  error
}

// pgErr returns the server or proxy error of o, or nil.
func (o outcome) pgErr() *pgconn.PgError {
	var pe *pgconn.PgError
	if errors.As(o.err, &pe) {
		return pe
	}
	return nil
}

// code returns the SQLSTATE of o's error, "" without one, or "non-pg" for an error without a SQLSTATE
// (a lost connection).
func (o outcome) code() string {
	if o.err == nil {
		return ""
	}
	if pe := o.pgErr(); pe != nil {
		return pe.Code
	}
	return "non-pg"
}

func (o outcome) String() string {
	if o.err != nil {
		return fmt.Sprintf("error %v after rows %v", o.err, o.rows)
	}
	return fmt.Sprintf("tags %v rows %v", o.tags, o.rows)
}

// text returns every value of o on one line, for leak checks.
func (o outcome) text() string {
	var b strings.Builder
	for _, r := range o.rows {
		b.WriteString(strings.Join(r, "|"))
		b.WriteByte('\n')
	}
	return b.String()
}

// simple sends sql as one simple-protocol Query message and reads every result.
func simple(ctx context.Context, c *pgconn.PgConn, sql string) outcome {
	results, err := c.Exec(ctx, sql).ReadAll()
	var o outcome
	for _, r := range results {
		o.tags = append(o.tags, r.CommandTag.String())
		for _, row := range r.Rows {
			o.rows = append(o.rows, textRow(row))
		}
		if r.Err != nil && o.err == nil {
			o.err = r.Err
		}
	}
	if o.err == nil {
		o.err = err
	}
	return o
}

// params runs sql with the extended protocol (Parse, Bind, Describe, Execute, Sync of the unnamed
// statement) with text parameters.
func params(ctx context.Context, c *pgconn.PgConn, sql string, args ...string) outcome {
	vals := make([][]byte, len(args))
	for i, a := range args {
		vals[i] = []byte(a)
	}
	r := c.ExecParams(ctx, sql, vals, nil, nil, nil).Read()
	o := outcome{err: r.Err, tags: []string{r.CommandTag.String()}}
	for _, row := range r.Rows {
		o.rows = append(o.rows, textRow(row))
	}
	return o
}

func textRow(row [][]byte) []string {
	out := make([]string, len(row))
	for i, v := range row {
		if v == nil {
			out[i] = "<null>"
		} else {
			out[i] = string(v)
		}
	}
	return out
}

// expect checks that o has SQLSTATE code ("" for success) and, for an error, a message containing every
// one of words (case-insensitive).
func expect(t *testing.T, what string, o outcome, code string, words ...string) {
	t.Helper()
	if o.code() != code {
		if code == "" {
			t.Errorf("%s: want success, got %v", what, o)
		} else {
			t.Errorf("%s: want SQLSTATE %s, got %v", what, code, o)
		}
		return
	}
	if code == "" {
		return
	}
	msg := strings.ToLower(o.pgErr().Message)
	for _, w := range words {
		if !strings.Contains(msg, strings.ToLower(w)) {
			t.Errorf("%s: SQLSTATE %s as wanted, but the message %q does not name %q", what, code, o.pgErr().Message, w)
		}
	}
}

// noForeignData fails the test when anything o returned to a client of reader names another tenant:
// their rows carry the tenant's name in the tenant column, the employees' names and emails and the notes'
// bodies. Error messages may echo what the client itself typed (a schema it asked for), so they are
// checked for the other tenants' data only.
func noForeignData(t *testing.T, what, reader string, o outcome) {
	t.Helper()
	text := strings.ToLower(o.text())
	var msg string
	if pe := o.pgErr(); pe != nil {
		msg = strings.ToLower(pe.Message + " " + pe.Detail + " " + pe.Hint)
	}
	for _, v := range allTenants {
		if v == reader {
			continue
		}
		for _, d := range []string{v + " employee", v + " secret", "@" + v + ".example"} {
			if strings.Contains(msg, d) {
				t.Errorf("LEAK: %s: an error message shows %s's data to %s: %v", what, v, reader, o.err)
			}
		}
		if strings.Contains(text, v) {
			t.Errorf("LEAK: %s: the %s client read data of %s:\n%s", what, reader, v, o.text())
		}
	}
}

// probeSQL reads everything that makes a backend's context: role, session user, search_path, tenant
// setting, the tenants of the rows the client sees, and the settings a previous client could leave.
const probeSQL = `SELECT current_user::text, session_user::text, current_setting('search_path'),
	coalesce(current_setting('tenantproxy.tenant', true), '<unset>'),
	coalesce((SELECT string_agg(DISTINCT tenant, ',' ORDER BY tenant) FROM employees), ''),
	coalesce((SELECT string_agg(DISTINCT tenant, ',' ORDER BY tenant) FROM public.notes), ''),
	current_setting('transaction_read_only'), current_setting('statement_timeout'),
	current_setting('application_name'), current_setting('TimeZone'), current_setting('work_mem'),
	current_setting('default_transaction_isolation'), pg_backend_pid()::text`

// ctxState is a backend's context as the probe read it.
type ctxState struct {
	user, sessionUser, searchPath, tenant, employees, notes string
	readOnly, statementTimeout, appName, timeZone, workMem  string
	isolation, pid                                          string
}

// probe reads the context of the backend that c's next statement runs on.
func probe(ctx context.Context, c *pgconn.PgConn) (ctxState, error) {
	o := simple(ctx, c, probeSQL)
	if o.err != nil {
		return ctxState{}, o.err
	}
	if len(o.rows) != 1 || len(o.rows[0]) != 13 {
		return ctxState{}, fmt.Errorf("probe: unexpected result %v", o.rows)
	}
	r := o.rows[0]
	return ctxState{user: r[0], sessionUser: r[1], searchPath: r[2], tenant: r[3], employees: r[4], notes: r[5],
		readOnly: r[6], statementTimeout: r[7], appName: r[8], timeZone: r[9], workMem: r[10], isolation: r[11],
		pid: r[12]}, nil
}

// firstSchema returns the first schema of a search_path as current_setting shows it.
func firstSchema(sp string) string {
	first, _, _ := strings.Cut(sp, ",")
	return strings.Trim(strings.TrimSpace(first), `"`)
}

// checkTenant fails the test unless c is in tenant's context: its role, the pool role as session user,
// search_path starting with the tenant's schema, the tenant setting, and only the tenant's rows.
func checkTenant(t *testing.T, what string, c ctxState, tenant string) {
	t.Helper()
	if firstSchema(c.searchPath) != tenant {
		t.Errorf("LEAK: %s: not in tenant %s's context: search_path = %q, want it to start with %q", what, tenant, c.searchPath, tenant)
	}
	checkOwnContext(t, what, c, tenant)
}

// checkOwnContext is checkTenant for the client that ran the case: its search_path may be one it set
// itself, so it only has to name nothing but the tenant's own schemas.
func checkOwnContext(t *testing.T, what string, c ctxState, tenant string) {
	t.Helper()
	role := fx.Base.TenantRole(tenant, tenant)
	var bad []string
	if c.user != role {
		bad = append(bad, fmt.Sprintf("current_user = %q, want %q", c.user, role))
	}
	if c.sessionUser != fx.Base.Backend.User {
		bad = append(bad, fmt.Sprintf("session_user = %q, want the pool role %q", c.sessionUser, fx.Base.Backend.User))
	}
	for _, s := range strings.Split(c.searchPath, ",") {
		switch strings.Trim(strings.TrimSpace(s), `"`) {
		case tenant, "public", "pg_catalog", "tenant_stats": // tenant_stats shows each tenant its own statistics only
		default:
			bad = append(bad, fmt.Sprintf("search_path = %q names a schema that is not the tenant's", c.searchPath))
		}
	}
	if c.tenant != tenant {
		bad = append(bad, fmt.Sprintf("tenant setting = %q, want %q", c.tenant, tenant))
	}
	if c.employees != tenant {
		bad = append(bad, fmt.Sprintf("employees rows of tenants %q, want only %q", c.employees, tenant))
	}
	if c.notes != tenant {
		bad = append(bad, fmt.Sprintf("notes rows of tenants %q, want only %q", c.notes, tenant))
	}
	if len(bad) > 0 {
		t.Errorf("LEAK: %s: not in tenant %s's context: %s", what, tenant, strings.Join(bad, "; "))
	}
}

// checkFresh fails the test unless c carries none of the settings a previous client of its backend may
// have changed (a fresh connection of the app profile).
func checkFresh(t *testing.T, what string, c ctxState) {
	t.Helper()
	var bad []string
	if c.readOnly != "off" {
		bad = append(bad, "transaction_read_only = "+c.readOnly)
	}
	if c.statementTimeout != "0" {
		bad = append(bad, "statement_timeout = "+c.statementTimeout)
	}
	if strings.Contains(c.appName, "hostile") {
		bad = append(bad, "application_name = "+c.appName)
	}
	if c.timeZone == "Pacific/Chatham" {
		bad = append(bad, "TimeZone = "+c.timeZone)
	}
	if c.workMem == "77kB" {
		bad = append(bad, "work_mem = "+c.workMem)
	}
	if c.isolation != "read committed" {
		bad = append(bad, "default_transaction_isolation = "+c.isolation)
	}
	if len(bad) > 0 {
		t.Errorf("LEAK: %s: a previous client's settings reached this client: %s", what, strings.Join(bad, "; "))
	}
}

// probeTenant connects as tenant's app user, probes, checks the context and the settings, and returns
// the backend pid.
func probeTenant(t *testing.T, ctx context.Context, p *proxytest.Proxy, tenant, what string) string {
	t.Helper()
	c, err := pgconn.Connect(ctx, p.TenantURL(tenant))
	if err != nil {
		t.Errorf("%s: the proxy refused a %s client after the case: %v", what, tenant, err)
		return ""
	}
	defer c.Close(context.Background())
	st, err := probe(ctx, c)
	if err != nil {
		t.Errorf("%s: %s's probe failed: %v", what, tenant, err)
		return ""
	}
	checkTenant(t, what+": "+tenant+"'s next lease", st, tenant)
	checkFresh(t, what+": "+tenant+"'s next lease", st)
	return st.pid
}

// checkVictimsUnchanged fails the test when a victim row (employees or notes) differs from the baseline.
func checkVictimsUnchanged(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	now, err := victimSnapshot(ctx)
	if err != nil {
		t.Errorf("%s: victim snapshot: %v", what, err)
		return
	}
	if now != baseline {
		t.Errorf("LEAK: %s: another tenant's rows changed:\nbefore:\n%s\nafter:\n%s", what, baseline, now)
	}
}

// counter returns the value of the proxy's counter metric name (summed over labels).
func counter(t *testing.T, p *proxytest.Proxy, name string) float64 {
	t.Helper()
	mfs, err := p.Registry().Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// tripwireHits is how many backends the proxy closed because their identity was not their tenant's: each
// one is an escape that got past the guard.
func tripwireHits(t *testing.T, p *proxytest.Proxy) float64 {
	return counter(t, p, "tenantproxy_tripwire_hits_total")
}
