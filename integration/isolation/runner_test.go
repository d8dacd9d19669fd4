package isolation

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// step is one simple-protocol Query message of a case and what the client must get for it.
type step struct {
	sql string
	// code is the SQLSTATE the client must get, "" for success; alternatives are separated by "|".
	code string
	// words must all appear in the error message (case-insensitive).
	words []string
	// want is every row the message returns, values joined by "|" and rows by "\n", when checkRows is
	// set ("" for no row at all).
	want      string
	checkRows bool
}

// ok is a step that must succeed.
func ok(sql string) step { return step{sql: sql} }

// okRows is a step that must succeed and return exactly want.
func okRows(sql, want string) step { return step{sql: sql, want: want, checkRows: true} }

// refused is a step the guard must refuse with 42501 and a reason naming words.
func refused(sql string, words ...string) step {
	return step{sql: sql, code: "42501", words: append([]string{"tenantproxy"}, words...)}
}

// fails is a step that must fail with code (alternatives separated by "|") and a message naming words.
func fails(code, sql string, words ...string) step { return step{sql: sql, code: code, words: words} }

// escape is one case: a client (the app user of acme unless user says otherwise) sends steps, and then
// must still be in acme's context while every other tenant's next lease is in its own.
type escape struct {
	name  string
	user  string // "alice" (acme's app user) when empty; "reader" is read-only, "olga" has the owner profile
	steps []step
	// own are steps on the same connection after another tenant leased a backend in between (transaction
	// pooling, unless pinned): tracked state must have stayed with the client.
	own []step
	// next are steps of a globex client after the hostile client left.
	next []step
	// cleanup is SQL the superuser runs after the case, to remove what the case left on purpose.
	cleanup string
	// pins marks a case whose state keeps the backend with the client in transaction pooling: no other
	// client is leased a backend while it is connected (with one backend they would wait).
	pins bool
}

// owner is a user with the owner profile, bound to acme, added to the proxies of the code cases.
const owner = "olga"

// withOwner adds the owner-profile user olga@acme to a proxy's configuration.
func withOwner(c *config.Config) {
	c.Users = append(c.Users, config.User{Name: owner, Password: proxytest.Password, Tenants: []string{attacker}, Profile: config.ProfileOwner})
}

// runCategory runs every case in every setup, each setup with a proxy of its own whose backends the cases
// share one after the other.
func runCategory(t *testing.T, cases []escape, configure func(*config.Config)) {
	for _, s := range setups {
		t.Run(s.String(), func(t *testing.T) {
			p := startProxy(t, s, configure)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { runEscape(t, p, s, c) })
			}
			if counter(t, p, "tenantproxy_tripwire_checks_total") == 0 {
				t.Errorf("the tripwire never checked a backend: its hits would prove nothing")
			}
		})
	}
}

// codeMatches reports whether got is one of the "|"-separated codes of want.
func codeMatches(got, want string) bool {
	for _, w := range strings.Split(want, "|") {
		if got == w {
			return true
		}
	}
	return false
}

// runStep sends st on c and checks the outcome.
func runStep(t *testing.T, ctx context.Context, c *pgconn.PgConn, what string, st step) outcome {
	t.Helper()
	o := simple(ctx, c, st.sql)
	checkStep(t, fmt.Sprintf("%s %q", what, st.sql), attacker, o, st)
	return o
}

// checkStep checks an outcome of a client of reader against st, and that it shows no other tenant's data.
func checkStep(t *testing.T, what, reader string, o outcome, st step) {
	t.Helper()
	noForeignData(t, what, reader, o)
	if !codeMatches(o.code(), st.code) {
		if st.code == "" {
			t.Errorf("%s: want success, got %v", what, o)
		} else {
			t.Errorf("%s: want SQLSTATE %s, got %v", what, st.code, o)
		}
		return
	}
	if st.code != "" {
		expect(t, what, o, o.code(), st.words...)
		return
	}
	if st.checkRows {
		if got := strings.TrimSuffix(o.text(), "\n"); got != st.want {
			t.Errorf("%s: want rows %q, got %q", what, st.want, got)
		}
	}
}

// userURL is the connection URL of a case's user.
func userURL(p *proxytest.Proxy, user string) string {
	if user == "" {
		return p.TenantURL(attacker)
	}
	return p.URL(user, attacker)
}

// runEscape runs one case through p: the steps on the hostile connection, a lease of globex in between
// (transaction pooling), the own steps, the client's own context afterwards, and once the hostile
// client left, the next steps and a probe of every tenant on the same backends. No victim row may change,
// and the tripwire must never have fired: a hit means an escape got past the guard.
func runEscape(t *testing.T, p *proxytest.Proxy, s setup, c escape) {
	ctx := testContext(t, 60*time.Second)
	hits := tripwireHits(t, p)
	conn := connect(t, ctx, userURL(p, c.user))
	for i, st := range c.steps {
		runStep(t, ctx, conn, fmt.Sprintf("step %d", i+1), st)
	}
	if conn.TxStatus() != 'I' {
		simple(ctx, conn, "ROLLBACK")
	}
	if s.mode == config.ModeTransaction && !c.pins {
		// Another client of acme first (no tenant switch, so no reset of the backend), then globex.
		probeTenant(t, ctx, p, attacker, "another acme client's lease between the hostile client's transactions")
		probeTenant(t, ctx, p, "globex", "a lease between the hostile client's transactions")
	}
	for i, st := range c.own {
		runStep(t, ctx, conn, fmt.Sprintf("own step %d", i+1), st)
	}
	st, err := probe(ctx, conn)
	if err != nil {
		t.Errorf("the hostile client's own probe failed after the steps: %v", err)
	} else {
		checkOwnContext(t, "the hostile client after the steps", st, attacker)
	}
	if err := conn.Close(ctx); err != nil {
		t.Errorf("close the hostile client: %v", err)
	}
	if len(c.next) > 0 {
		g := connect(t, ctx, p.TenantURL("globex"))
		for i, st := range c.next {
			o := simple(ctx, g, st.sql)
			checkStep(t, fmt.Sprintf("globex's next step %d %q", i+1, st.sql), "globex", o, st)
		}
		g.Close(ctx)
	}
	// acme first: a state the proxy lost track of would pass to the next client of the same tenant
	// without the reset a tenant switch brings.
	for _, tn := range []string{attacker, "globex", "initech"} {
		probeTenant(t, ctx, p, tn, "after the hostile client left")
	}
	checkVictimsUnchanged(t, ctx, "after the case")
	if c.cleanup != "" {
		fx.Cluster.MustExec(t, proxytest.Database, c.cleanup)
	}
	if n := tripwireHits(t, p) - hits; n > 0 {
		t.Errorf("LEAK: the tripwire closed %v backend(s) during the case: a backend left the tenant's context past the guard", n)
	}
}
