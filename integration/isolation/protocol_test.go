package isolation

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
	"github.com/tenantproxy/tenantproxy/session"
)

// rawCase drives a raw connection of alice@acme message by message.
type rawCase struct {
	name string
	run  func(t *testing.T, r *rawConn)
	// closes marks a case after which the connection is gone (closed by the proxy, or by the client).
	closes bool
	// after runs once the connection is gone, with the proxy.
	after func(t *testing.T, ctx context.Context, p *proxytest.Proxy)
}

// syncMsg ends an extended-protocol batch.
var syncMsg = &pgproto3.Sync{}

// wantCodes fails the test unless rs carries exactly the error codes codes, and no victim data.
func wantCodes(t *testing.T, what string, rs replies, codes ...string) {
	t.Helper()
	noForeignData(t, what, attacker, outcome{rows: rs.rows})
	if !slices.Equal(rs.codes, codes) {
		t.Errorf("%s: want errors %v, got %v", what, codes, rs)
	}
}

// wantRefusal fails the test unless rs carries exactly one error, a 42501 refusal of tenantproxy naming
// words, and no victim data.
func wantRefusal(t *testing.T, what string, rs replies, words ...string) {
	t.Helper()
	wantCodes(t, what, rs, "42501")
	if len(rs.errors) != 1 {
		return
	}
	msg := strings.ToLower(rs.errors[0])
	for _, w := range append([]string{"tenantproxy"}, words...) {
		if !strings.Contains(msg, strings.ToLower(w)) {
			t.Errorf("%s: the refusal %q does not name %q", what, rs.errors[0], w)
		}
	}
}

// functionOID returns, as the superuser, the OID of a function given as a regprocedure.
func functionOID(t *testing.T, ctx context.Context, signature string) uint32 {
	t.Helper()
	conn, err := fx.Cluster.Connect(ctx, proxytest.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var oid uint32
	if err := conn.QueryRow(ctx, "SELECT $1::regprocedure::oid", signature).Scan(&oid); err != nil {
		t.Fatal(err)
	}
	return oid
}

// vanishedRows counts, as the superuser, acme's employees named name.
func vanishedRows(t *testing.T, ctx context.Context, name string) int {
	t.Helper()
	conn, err := fx.Cluster.Connect(ctx, proxytest.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM acme.employees WHERE name = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// noRowNamed is an after check: the work of a client that vanished before committing it is gone.
func noRowNamed(name string) func(*testing.T, context.Context, *proxytest.Proxy) {
	return func(t *testing.T, ctx context.Context, _ *proxytest.Proxy) {
		t.Helper()
		if n := vanishedRows(t, ctx, name); n != 0 {
			fx.Cluster.MustExec(t, proxytest.Database, "DELETE FROM acme.employees WHERE name = '"+name+"'")
			t.Errorf("the work of a client that vanished before it committed was committed: %d row(s) named %q", n, name)
		}
	}
}

// copyThenQuery is a case that sends a Query message in the middle of COPY FROM STDIN. PostgreSQL ends
// the connection ("protocol synchronization was lost"): nothing of the Query nor of the COPY may run.
func copyThenQuery(name, sql string) rawCase {
	row := "copied by " + name
	return rawCase{name: name, closes: true, run: func(t *testing.T, r *rawConn) {
		r.send(&pgproto3.Query{String: "COPY employees (name) FROM STDIN"})
		r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if msg, err := r.fe.Receive(); err != nil {
			t.Fatalf("COPY: %v", err)
		} else if _, ok := msg.(*pgproto3.CopyInResponse); !ok {
			t.Fatalf("COPY: want CopyInResponse, got %T", msg)
		}
		r.conn.SetReadDeadline(time.Time{})
		r.fe.Send(&pgproto3.CopyData{Data: []byte(row + "\n")})
		r.fe.Send(&pgproto3.Query{String: sql})
		r.fe.Send(&pgproto3.CopyDone{})
		r.fe.Flush()
		rs := r.until(2)
		if !rs.closed || !slices.Contains(rs.codes, "08P01") || len(rs.rows) > 0 {
			t.Errorf("a Query in the middle of COPY: want the server's 08P01 and the end of the connection, got %v", rs)
		}
	}, after: noRowNamed(row)}
}

func protocolCases(t *testing.T) []rawCase {
	ctx := testContext(t, 30*time.Second)
	setConfig := functionOID(t, ctx, "pg_catalog.set_config(text,text,boolean)")
	backendPID := functionOID(t, ctx, "pg_catalog.pg_backend_pid()")
	return []rawCase{
		{name: "Parse of SET ROLE", run: func(t *testing.T, r *rawConn) {
			wantRefusal(t, "Parse SET ROLE", r.exchange(1, join(extended("SET ROLE tenant_globex"), []pgproto3.FrontendMessage{syncMsg})...), "role")
		}},
		{name: "Parse of set_config with parameters", run: func(t *testing.T, r *rawConn) {
			wantRefusal(t, "Parse set_config($1, $2)", r.exchange(1, join(extended("SELECT set_config($1, $2, false)", "role", "tenant_globex"), []pgproto3.FrontendMessage{syncMsg})...), "set_config")
		}},
		{name: "Parse of set_config with typed parameters", run: func(t *testing.T, r *rawConn) {
			rs := r.exchange(1, &pgproto3.Parse{Query: "select pg_catalog.set_config($1, $2, $3)", ParameterOIDs: []uint32{25, 25, 16}},
				&pgproto3.Bind{Parameters: [][]byte{[]byte("search_path"), []byte("globex"), {0}}, ParameterFormatCodes: []int16{0, 0, 1}},
				&pgproto3.Execute{}, syncMsg)
			wantRefusal(t, "typed set_config", rs, "set_config")
		}},
		{name: "Parse of RESET ROLE under a name, then Bind of the name", run: func(t *testing.T, r *rawConn) {
			rs := r.exchange(1, &pgproto3.Parse{Name: "s1", Query: "RESET ROLE"}, &pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, syncMsg)
			wantRefusal(t, "Parse s1", rs, "role")
			wantCodes(t, "Bind s1", r.exchange(1, &pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, syncMsg), "26000")
		}},
		{name: "Parse of two statements", run: func(t *testing.T, r *rawConn) {
			rs := r.exchange(1, join(extended("SELECT 1; RESET ROLE"), []pgproto3.FrontendMessage{syncMsg})...)
			if len(rs.codes) != 1 || !codeMatches(rs.codes[0], "42501|42601") {
				t.Errorf("Parse of two statements: want a refusal, got %v", rs)
			}
			wantCodes(t, "Parse of two harmless statements", r.exchange(1, join(extended("SELECT 1; SELECT 2"), []pgproto3.FrontendMessage{syncMsg})...), "42601")
		}},
		{name: "Parse of SET search_path and of the tenant setting", run: func(t *testing.T, r *rawConn) {
			wantRefusal(t, "search_path", r.exchange(1, join(extended("SET search_path TO globex"), []pgproto3.FrontendMessage{syncMsg})...), "search_path")
			wantRefusal(t, "tenant setting", r.exchange(1, join(extended("SET tenantproxy.tenant = 'globex'"), []pgproto3.FrontendMessage{syncMsg})...))
		}},
		{name: "hostile second in a pipeline", run: func(t *testing.T, r *rawConn) {
			rs := r.exchange(1, join(extended("SELECT tenant FROM employees LIMIT 1"), extended("RESET ROLE"), extended("SELECT tenant FROM globex.employees"), []pgproto3.FrontendMessage{syncMsg})...)
			wantRefusal(t, "pipeline", rs, "role")
			if rs.text() != "acme\n" {
				t.Errorf("pipeline: want the first statement's acme row only, got %v", rs)
			}
		}},
		{name: "hostile third of four batches", run: func(t *testing.T, r *rawConn) {
			s := []pgproto3.FrontendMessage{syncMsg}
			rs := r.exchange(4, join(extended("SELECT 1"), s, extended("SELECT 2"), s, extended("SET ROLE tenant_globex"), s, extended("SELECT current_user"), s)...)
			wantRefusal(t, "batches", rs, "role")
			if rs.text() != "1\n2\ntenant_acme\n" {
				t.Errorf("batches: want rows 1, 2, tenant_acme, got %v", rs)
			}
		}},
		{name: "several Query messages in one write", run: func(t *testing.T, r *rawConn) {
			rs := r.exchange(3, &pgproto3.Query{String: "SELECT 1"}, &pgproto3.Query{String: "RESET ROLE; SELECT * FROM globex.employees"}, &pgproto3.Query{String: "SELECT current_user"})
			wantRefusal(t, "queries", rs, "role")
			if rs.text() != "1\ntenant_acme\n" {
				t.Errorf("queries: want rows 1 and tenant_acme, got %v", rs)
			}
		}},
		{name: "Query in the middle of an unsynced batch", run: func(t *testing.T, r *rawConn) {
			rs := r.exchange(2, join(extended("SELECT 1"), []pgproto3.FrontendMessage{&pgproto3.Query{String: "RESET ROLE"}, syncMsg})...)
			wantRefusal(t, "query in a batch", rs, "role")
		}},
		{name: "FunctionCall of set_config", run: func(t *testing.T, r *rawConn) {
			rs := r.exchange(1, &pgproto3.FunctionCall{Function: setConfig, ArgFormatCodes: []uint16{0},
				Arguments: [][]byte{[]byte("role"), []byte("tenant_globex"), []byte("false")}})
			wantRefusal(t, "FunctionCall", rs, "FunctionCall")
		}},
		{name: "FunctionCall of set_config with binary arguments", run: func(t *testing.T, r *rawConn) {
			rs := r.exchange(1, &pgproto3.FunctionCall{Function: setConfig, ArgFormatCodes: []uint16{0, 0, 1},
				Arguments: [][]byte{[]byte("search_path"), []byte("globex"), {0}}, ResultFormatCode: 1})
			wantRefusal(t, "FunctionCall", rs, "FunctionCall")
		}},
		{name: "FunctionCall of a harmless function", run: func(t *testing.T, r *rawConn) {
			wantRefusal(t, "FunctionCall", r.exchange(1, &pgproto3.FunctionCall{Function: backendPID}), "FunctionCall")
		}},
		{name: "FunctionCall inside a transaction, then a Query in the same write", run: func(t *testing.T, r *rawConn) {
			rs := r.exchange(3, &pgproto3.Query{String: "BEGIN"}, &pgproto3.FunctionCall{Function: setConfig, ArgFormatCodes: []uint16{0},
				Arguments: [][]byte{[]byte("role"), []byte("tenant_globex"), []byte("false")}}, &pgproto3.Query{String: "ROLLBACK"})
			wantRefusal(t, "FunctionCall in a transaction", rs, "FunctionCall")
		}},
		{name: "DISCARD ALL with the extended protocol is emulated", run: func(t *testing.T, r *rawConn) {
			wantCodes(t, "DISCARD ALL", r.exchange(1, join(extended("DISCARD ALL"), []pgproto3.FrontendMessage{syncMsg})...))
		}},
		{name: "RESET ALL with the extended protocol is emulated", run: func(t *testing.T, r *rawConn) {
			wantCodes(t, "RESET ALL", r.exchange(1, join(extended("RESET ALL"), []pgproto3.FrontendMessage{syncMsg})...))
		}},
		{name: "named DISCARD ALL drops the client's statements as PostgreSQL's does", run: func(t *testing.T, r *rawConn) {
			rs := r.exchange(1, &pgproto3.Parse{Name: "keep", Query: "SELECT 1"}, &pgproto3.Parse{Name: "d", Query: "DISCARD ALL"},
				&pgproto3.Bind{PreparedStatement: "d"}, &pgproto3.Execute{}, syncMsg)
			wantCodes(t, "DISCARD ALL", rs)
			wantCodes(t, "Bind of a statement DISCARD ALL dropped", r.exchange(1, &pgproto3.Bind{PreparedStatement: "keep"}, &pgproto3.Execute{}, syncMsg), "26000")
		}},
		{name: "Describe and Bind of names the proxy gives server statements", run: func(t *testing.T, r *rawConn) {
			wantCodes(t, "Describe tp1", r.exchange(1, &pgproto3.Describe{ObjectType: 'S', Name: "tp1"}, syncMsg), "26000")
			wantCodes(t, "Bind tp1", r.exchange(1, &pgproto3.Bind{PreparedStatement: "tp1"}, &pgproto3.Execute{}, syncMsg), "26000")
		}},
		{name: "Execute of a portal never bound", run: func(t *testing.T, r *rawConn) {
			wantCodes(t, "Execute p1", r.exchange(1, &pgproto3.Execute{Portal: "p1"}, syncMsg), "34000")
		}},
		{name: "CopyData outside COPY is ignored", run: func(t *testing.T, r *rawConn) {
			rs := r.exchange(1, &pgproto3.CopyData{Data: []byte("RESET ROLE\n")}, &pgproto3.CopyDone{}, &pgproto3.Query{String: "SELECT current_user"})
			if rs.text() != "tenant_acme\n" {
				t.Errorf("after CopyData: %v", rs)
			}
		}},
		{name: "zero byte inside a Query", run: func(t *testing.T, r *rawConn) {
			rs := r.exchange(1, &pgproto3.Query{String: "SELECT 1\x00RESET ROLE"})
			if !rs.closed && (len(rs.codes) != 1 || !codeMatches(rs.codes[0], "08P01|42601")) {
				t.Errorf("a zero byte inside a Query: want a protocol or syntax error, got %v", rs)
			}
		}},
		{name: "zero byte inside a Parse", closes: true, run: func(t *testing.T, r *rawConn) {
			rs := r.exchange(1, &pgproto3.Parse{Query: "SELECT 1\x00RESET ROLE"}, &pgproto3.Bind{}, &pgproto3.Execute{}, syncMsg)
			if !rs.closed || !slices.Equal(rs.codes, []string{"08P01"}) {
				t.Errorf("a zero byte inside a Parse: want a FATAL 08P01 and the end of the connection, got %v", rs)
			}
		}},
		copyThenQuery("a refused Query in the middle of COPY FROM STDIN", "RESET ROLE; SELECT * FROM globex.employees"),
		copyThenQuery("an allowed SET in the middle of COPY FROM STDIN", "SET application_name = 'hostile in copy'"),
		{name: "invalid message type", closes: true, run: func(t *testing.T, r *rawConn) {
			r.conn.Write([]byte{'z', 0, 0, 0, 4})
			rs := r.until(1)
			if !rs.closed || !slices.Equal(rs.codes, []string{"08P01"}) {
				t.Errorf("invalid message type: want a FATAL 08P01 and the end of the connection, got %v", rs)
			}
		}},
		{name: "message longer than max_message_size", closes: true, run: func(t *testing.T, r *rawConn) {
			// The proxy may close the connection before the whole message is written.
			r.fe.Send(&pgproto3.Query{String: "SELECT '" + strings.Repeat("x", 2<<20) + "'; RESET ROLE"})
			r.fe.Flush()
			rs := r.until(1)
			// A reset connection may lose the FATAL message; it must never run anything.
			if !rs.closed || (len(rs.codes) > 0 && !slices.Equal(rs.codes, []string{"08P01"})) || len(rs.rows) > 0 {
				t.Errorf("oversized message: want a FATAL 08P01 and the end of the connection, got %v", rs)
			}
		}},
		{name: "client vanishes in a transaction", closes: true, run: func(t *testing.T, r *rawConn) {
			r.exchange(2, &pgproto3.Query{String: "BEGIN"}, &pgproto3.Query{String: "INSERT INTO employees (name) VALUES ('vanished in a transaction')"})
			r.conn.Close()
		}, after: noRowNamed("vanished in a transaction")},
		{name: "client vanishes after a refused statement in a transaction", closes: true, run: func(t *testing.T, r *rawConn) {
			rs := r.exchange(3, &pgproto3.Query{String: "BEGIN"}, &pgproto3.Query{String: "INSERT INTO employees (name) VALUES ('vanished after a refusal')"},
				&pgproto3.Query{String: "SET ROLE tenant_globex"})
			wantRefusal(t, "SET ROLE in a transaction", rs, "role")
			r.conn.Close()
		}, after: noRowNamed("vanished after a refusal")},
		{name: "client vanishes with an unsynced batch", closes: true, run: func(t *testing.T, r *rawConn) {
			r.send(join(extended("INSERT INTO employees (name) VALUES ('vanished before Sync')"), []pgproto3.FrontendMessage{&pgproto3.Flush{}})...)
			time.Sleep(50 * time.Millisecond)
			r.conn.Close()
		}, after: noRowNamed("vanished before Sync")},
		{name: "client vanishes in COPY FROM STDIN", closes: true, run: func(t *testing.T, r *rawConn) {
			r.send(&pgproto3.Query{String: "COPY employees (name) FROM STDIN"}, &pgproto3.CopyData{Data: []byte("vanished in COPY\n")})
			time.Sleep(50 * time.Millisecond)
			r.conn.Close()
		}, after: noRowNamed("vanished in COPY")},
	}
}

// The wire protocol offers no way around the guard: Parse, Bind and Execute are checked like Query
// messages, in pipelines and batches; FunctionCall is refused; malformed messages end the connection; and
// a client that vanishes leaves its backend clean for the next tenant.
func TestProtocol(t *testing.T) {
	cases := protocolCases(t)
	for _, s := range setups {
		t.Run(s.String(), func(t *testing.T) {
			p := startProxy(t, s, func(c *config.Config) { c.Listen.MaxMessageSize = 1 << 20 })
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { runRaw(t, p, c) })
			}
		})
	}
}

// runRaw runs a raw case, then checks the client's own context (unless its connection is gone), the
// next leases of every tenant, the victims' rows and the tripwire.
func runRaw(t *testing.T, p *proxytest.Proxy, c rawCase) {
	ctx := testContext(t, 60*time.Second)
	hits := tripwireHits(t, p)
	r := rawConnect(t, ctx, p.TenantURL(attacker))
	c.run(t, r)
	if !c.closes {
		if got := r.currentUser(); got != "tenant_acme|acme|acme" {
			t.Errorf("LEAK: the client after the case runs as %q, want tenant_acme|acme|acme", got)
		}
		r.send(&pgproto3.Terminate{})
	}
	r.conn.Close()
	defer checkVictimsUnchanged(t, ctx, "after the case")
	// The proxy cleans up after a client asynchronously; once the pool is idle again, every lease of
	// its backends comes after the cleanup. A pool that never comes back fails every later lease, so the
	// probes are not run against it.
	if !waitPoolIdle(t, p) {
		return
	}
	if c.after != nil {
		c.after(t, ctx, p)
	}
	for _, tn := range []string{"globex", attacker} {
		probeTenant(t, ctx, p, tn, "after the raw client")
	}
	if n := tripwireHits(t, p) - hits; n > 0 {
		t.Errorf("LEAK: the tripwire closed %v backend(s) during the case", n)
	}
}

// waitPoolIdle reports whether, within a few seconds, the proxy has no client and every backend it holds
// is idle in the pool; it fails the test when not: a backend a vanished client left busy is lost to every
// tenant.
func waitPoolIdle(t *testing.T, p *proxytest.Proxy) bool {
	t.Helper()
	var st session.Stats
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		st = p.Engine().Stats()
		if st.Clients == 0 && st.Idle == st.Backends && st.Dialing == 0 {
			return true
		}
	}
	t.Errorf("the pool did not come back: %d backend(s), %d idle, %d leased, %d client(s): a backend stays busy after its client left",
		st.Backends, st.Idle, st.Leased, st.Clients)
	return false
}

// extendedCases are escapes sent the way drivers send them with the extended protocol: pgconn's
// ExecParams (unnamed statement) and Prepare then ExecPrepared (named statement).
var extendedCases = []struct {
	sql  string
	args []string
	code string
}{
	{"SET ROLE tenant_globex", nil, "42501"},
	{"RESET ROLE", nil, "42501"},
	{"SET SESSION AUTHORIZATION DEFAULT", nil, "42501"},
	{"SELECT set_config($1, $2, false)", []string{"role", "tenant_globex"}, "42501"},
	{"SELECT set_config('search_path', $1, false)", []string{"globex"}, "42501"},
	{"SELECT pg_catalog.set_config($1, $2, $3::boolean)", []string{"tenantproxy.tenant", "globex", "false"}, "42501"},
	{"SELECT * FROM public.notes WHERE set_config($1, $2, true) IS NOT NULL", []string{"tenantproxy.tenant", "globex"}, "42501"},
	{"SELECT query_to_xml($1, true, false, '')", []string{"select * from globex.employees"}, "42501"},
	{"SET search_path TO globex", nil, "42501"},
	{"SET tenantproxy.tenant = 'globex'", nil, "42501"},
	{"DO $$ BEGIN RESET ROLE; END $$", nil, "42501"},
	{"SET standard_conforming_strings = off", nil, "42501"},
	{"SELECT * FROM globex.employees WHERE id > $1", []string{"0"}, "42501"},
	{"UPDATE pg_settings SET setting = $1 WHERE name = 'search_path'", []string{"globex"}, "42501"},
	{"SELECT 1; RESET ROLE", nil, "42501|42601"},
	{"SELEC $1", []string{"1"}, "42601"},
}

// Drivers' extended-protocol paths are guarded like simple queries, for the unnamed statement and for
// named ones; a refused named statement does not exist afterwards.
func TestExtendedProtocolDrivers(t *testing.T) {
	for _, s := range setups {
		t.Run(s.String(), func(t *testing.T) {
			p := startProxy(t, s, nil)
			ctx := testContext(t, 30*time.Second)
			c := connect(t, ctx, p.TenantURL(attacker))
			for i, ec := range extendedCases {
				o := params(ctx, c, ec.sql, ec.args...)
				checkStep(t, "ExecParams "+ec.sql, attacker, o, step{code: ec.code})
				name := "hostile" + strconv.Itoa(i)
				_, err := c.Prepare(ctx, name, ec.sql, nil)
				checkStep(t, "Prepare "+ec.sql, attacker, outcome{err: err}, step{code: ec.code})
				vals := make([][]byte, len(ec.args))
				for j, a := range ec.args {
					vals[j] = []byte(a)
				}
				r := c.ExecPrepared(ctx, name, vals, nil, nil).Read()
				checkStep(t, "ExecPrepared "+ec.sql, attacker, outcome{err: r.Err}, step{code: "26000"})
			}
			st, err := probe(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			checkTenant(t, "after the extended-protocol escapes", st, attacker)
			c.Close(ctx)
			probeTenant(t, ctx, p, "globex", "after the extended-protocol escapes")
			checkVictimsUnchanged(t, ctx, "after the extended-protocol escapes")
		})
	}
}
