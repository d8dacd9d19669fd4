package session_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/policy"
	"github.com/tenantproxy/tenantproxy/session"
)

// selectReply is what a client gets for "SELECT <v>" through the simple protocol, ending with status.
func selectReply(v string, status byte) []string {
	return []string{"RowDescription", "DataRow " + v, "CommandComplete SELECT 1", "ReadyForQuery " + string(status)}
}

// guardRefusal is the guard's verdict on sql for a client of acme with profile p.
func guardRefusal(t *testing.T, sql string, p policy.Profile, parse bool) (code, message string) {
	t.Helper()
	g := policy.NewGuard(policy.GuardConfig{TenantSetting: "tenantproxy.tenant"})
	allowed := testTenant("acme").AllowedSchemas
	var a policy.Analysis
	if parse {
		a = g.CheckParse(sql, p, allowed)
	} else {
		a = g.Check(sql, p, allowed)
	}
	if !a.Refused {
		t.Fatalf("the guard allows %q", sql)
	}
	return a.SQLState, a.Reason
}

func TestLeaseEndsOnlyAtReadyForQueryIdle(t *testing.T) {
	type step struct {
		sql    string
		status byte
		leased int
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"single statement", []step{{"SELECT 1", 'I', 0}}},
		{"transaction block", []step{{"BEGIN", 'T', 1}, {"SELECT 1", 'T', 1}, {"COMMIT", 'I', 0}}},
		{"failed transaction", []step{{"BEGIN", 'T', 1}, {"SELECT 1/0", 'E', 1}, {"SELECT 2", 'E', 1}, {"ROLLBACK", 'I', 0}}},
		{"failed transaction ended by COMMIT", []step{{"BEGIN", 'T', 1}, {"SELECT 1/0", 'E', 1}, {"COMMIT", 'I', 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil)
			c := r.connect(info("acme"))
			for _, s := range tt.steps {
				got := c.query(s.sql)
				if last := got[len(got)-1]; last != "ReadyForQuery "+string(s.status) {
					t.Fatalf("%s: got %v, want ReadyForQuery %c", s.sql, got, s.status)
				}
				if st := r.e.Stats(); st.Leased != s.leased {
					t.Errorf("after %s (status %c): %d backends leased, want %d", s.sql, s.status, st.Leased, s.leased)
				}
			}
		})
	}
}

func TestSetupPrecedesFirstFrameOncePerContext(t *testing.T) {
	r := newRig(t, nil)
	c := r.connect(info("acme"))
	equal(t, "first transaction's replies", c.query("SELECT 1"), selectReply("1", 'I'))
	equal(t, "server after the first transaction", r.fs.Messages(), []string{setupOf("acme", defaultSettings), "Q SELECT 1"})

	m := r.fs.Mark()
	equal(t, "second transaction's replies", c.query("SELECT 2"), selectReply("2", 'I'))
	equal(t, "server in the second transaction (same tenant and settings: no setup)", r.fs.Since(m), []string{"Q SELECT 2"})

	// Another client of the same tenant with the same settings reuses the context as it is.
	c2 := r.connect(info("acme"))
	m = r.fs.Mark()
	equal(t, "other client's replies", c2.query("SELECT 3"), selectReply("3", 'I'))
	equal(t, "server for another client of the same tenant", r.fs.Since(m), []string{"Q SELECT 3"})
}

// A switch of tenant goes in the client's own Query, ahead of its statement: one message, one implicit
// transaction, no RESET ROLE or RESET ALL needed (same settings).
func TestTenantSwitchTravelsWithTheClientsStatement(t *testing.T) {
	r := newRig(t, nil)
	acme := r.connect(info("acme"))
	globex := r.connect(info("globex"))
	acme.query("SELECT 1")

	m := r.fs.Mark()
	equal(t, "globex replies", globex.query("SELECT 2"), selectReply("2", 'I'))
	equal(t, "server when globex takes acme's backend", r.fs.Since(m),
		[]string{carriedOf("globex", "SELECT 2")})

	m = r.fs.Mark()
	acme.query("SELECT 3")
	equal(t, "server when acme takes it back", r.fs.Since(m),
		[]string{carriedOf("acme", "SELECT 3")})
	if pids := r.fs.PIDs(); len(pids) != 1 {
		t.Errorf("pool of one backend opened %d backends", len(pids))
	}
}

func TestReadonlyProfileSetupIsReadOnly(t *testing.T) {
	r := newRig(t, nil)
	ci := info("acme")
	ci.Profile = "readonly"
	c := r.connect(ci)
	c.query("SELECT 1")
	equal(t, "server", r.fs.Messages(), []string{
		setupOf("acme", defaultSettings+`SET "default_transaction_read_only" TO 'on'; `), "Q SELECT 1"})
}

func TestRefusedStatementNeverReachesServer(t *testing.T) {
	tests := []struct {
		name    string
		profile policy.Profile
		before  []string // statements run first, with their final status
		sql     string
		status  byte // ReadyForQuery status after the refusal
	}{
		{name: "SET ROLE", profile: policy.ProfileApp, sql: "SET ROLE x", status: 'I'},
		{name: "tenant setting", profile: policy.ProfileApp, sql: "SET tenantproxy.tenant TO 'globex'", status: 'I'},
		{name: "another tenant's schema", profile: policy.ProfileApp, sql: "SET search_path TO globex", status: 'I'},
		{name: "refused second statement of a multi-statement query", profile: policy.ProfileApp, sql: "SELECT 1; SET ROLE x", status: 'I'},
		{name: "write by a read-only user", profile: policy.ProfileReadonly, sql: "INSERT INTO t VALUES (1)", status: 'I'},
		{name: "inside a transaction block the transaction aborts", profile: policy.ProfileApp, before: []string{"BEGIN"}, sql: "SET ROLE x", status: 'E'},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil)
			ci := info("acme")
			ci.Profile = tt.profile.String()
			c := r.connect(ci)
			for _, s := range tt.before {
				c.query(s)
			}
			code, msg := guardRefusal(t, tt.sql, tt.profile, false)
			m := r.fs.Mark()
			equal(t, "client", c.query(tt.sql), []string{"ErrorResponse ERROR " + code + " " + msg, "ReadyForQuery " + string(tt.status)})
			got := r.fs.Since(m)
			if indexPrefix(got, "Q "+poisonSQL) < 0 {
				t.Errorf("the server did not get the poison statement: %v", got)
			}
			for _, g := range r.fs.Messages() {
				if strings.Contains(g, tt.sql) {
					t.Errorf("the refused statement reached the server: %q", g)
				}
			}
			if tt.status == 'I' {
				// The client just tried something: the backend's identity is checked before the lease ends.
				r.fs.WaitForMessage(t, m, verifyOf("acme"))
			}
			entries := r.logs.FilterMessage("statement refused").All()
			if len(entries) != 1 {
				t.Fatalf("%d audit records for the refusal, want 1", len(entries))
			}
			f := entries[0].ContextMap()
			if f["audit"] != true || f["tenant"] != "acme" || f["sqlstate"] != code || f["fingerprint"] == "" {
				t.Errorf("audit record fields: %v", f)
			}
			if _, ok := f["statement"]; ok {
				t.Errorf("audit record has the statement text although AuditStatementText is off: %v", f)
			}
			if tt.status == 'E' {
				equal(t, "rollback", c.query("ROLLBACK"), []string{"CommandComplete ROLLBACK", "ReadyForQuery I"})
			}
			equal(t, "next statement", c.query("SELECT 2"), selectReply("2", 'I'))
		})
	}
}

// A tenant without a tripwire query (Tenant.VerifySQL empty) must still have its backend released after a
// refusal: the refusal asks for an identity check, and with nothing to check the lease must end anyway.
func TestRefusalReleasesLeaseWithoutVerifySQL(t *testing.T) {
	r := newRig(t, func(c *session.Config) { c.WaitTimeout = time.Second })
	nv := testTenant("noverify")
	nv.VerifySQL = ""
	r.e.SetTenants([]session.Tenant{testTenant("acme"), nv})
	c := r.connect(info("noverify"))
	code, msg := guardRefusal(t, "SET ROLE x", policy.ProfileApp, false)
	equal(t, "refusal", c.query("SET ROLE x"), []string{"ErrorResponse ERROR " + code + " " + msg, "ReadyForQuery I"})
	other := r.connect(info("acme"))
	other.send(&pgproto3.Query{String: "SELECT 2"})
	if got := describeBackend(other.receive()); got != "RowDescription" {
		t.Errorf("another client waiting for the only backend got %q: the refusing client kept its lease (Stats %+v)", got, r.e.Stats())
	}
}

func TestRefusedParseInPipeline(t *testing.T) {
	r := newRig(t, nil)
	c := r.connect(info("acme"))
	code, msg := guardRefusal(t, "SET ROLE x", policy.ProfileApp, true)
	c.send(
		&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Parse{Query: "SET ROLE x"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Parse{Name: "s1", Query: "SET ROLE x"}, &pgproto3.Sync{},
		&pgproto3.Parse{Query: "SELECT 2"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
	)
	var got []string
	for i := 0; i < 4; i++ {
		got = append(got, c.untilReady()...)
	}
	refusal := "ErrorResponse ERROR " + code + " " + msg
	equal(t, "client", got, []string{
		"ParseComplete", "BindComplete", "DataRow 1", "CommandComplete SELECT 1", "ReadyForQuery I",
		refusal, "ReadyForQuery I",
		refusal, "ReadyForQuery I",
		"ParseComplete", "BindComplete", "DataRow 2", "CommandComplete SELECT 1", "ReadyForQuery I",
	})
	for _, m := range r.fs.Messages() {
		if strings.Contains(m, "SET ROLE x") {
			t.Errorf("the refused statement reached the server: %q", m)
		}
	}
	if n := countPrefix(r.fs.Messages(), "P tenantproxy_poison "+poisonSQL); n != 2 {
		t.Errorf("the server got %d poison Parse messages, want 2: %v", n, r.fs.Messages())
	}
	// The refused named statement does not exist for the client.
	c.send(&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Sync{})
	equal(t, "Bind of the refused statement", c.untilReady(), []string{`ErrorResponse ERROR 26000 prepared statement "s1" does not exist`, "ReadyForQuery I"})
}

func TestFunctionCallRefused(t *testing.T) {
	r := newRig(t, nil)
	c := r.connect(info("acme"))
	c.send(&pgproto3.FunctionCall{Function: 1242, Arguments: [][]byte{[]byte("x")}, ArgFormatCodes: []uint16{0}})
	got := c.untilReady()
	if len(got) != 2 || !strings.HasPrefix(got[0], "ErrorResponse ERROR 42501 tenantproxy: the FunctionCall protocol message is not allowed") || got[1] != "ReadyForQuery I" {
		t.Errorf("client got %v", got)
	}
	if i := indexPrefix(r.fs.Messages(), "F"); i >= 0 {
		t.Errorf("the FunctionCall reached the server: %v", r.fs.Messages())
	}
	equal(t, "next statement", c.query("SELECT 2"), selectReply("2", 'I'))
}

func TestDiscardAllEmulated(t *testing.T) {
	r := newRig(t, nil)
	c := r.connect(info("acme"))
	equal(t, "SET", c.query("SET application_name TO 'changed'"), []string{"CommandComplete SET", "ReadyForQuery I"})

	m := r.fs.Mark()
	equal(t, "DISCARD ALL", c.query("DISCARD ALL"), []string{"CommandComplete DISCARD ALL", "ReadyForQuery I"})
	equal(t, "server during DISCARD ALL", r.fs.Since(m), nil)

	// The tracked setting is back to its startup value: the next lease replays that, not 'changed'.
	m = r.fs.Mark()
	c.query("SELECT 1")
	equal(t, "server after DISCARD ALL", r.fs.Since(m), []string{resetSetupOf("acme", defaultSettings), "Q SELECT 1"})

	// Inside a transaction block PostgreSQL refuses DISCARD ALL: the server says so.
	c.query("BEGIN")
	got := c.query("DISCARD ALL")
	equal(t, "DISCARD ALL in a transaction block", got, []string{"ErrorResponse ERROR 25001 DISCARD ALL cannot run inside a transaction block", "ReadyForQuery E"})
	c.query("ROLLBACK")
}

func TestResetAllEmulated(t *testing.T) {
	r := newRig(t, nil)
	c := r.connect(info("acme"))
	c.query("SET statement_timeout TO '5s'")
	m := r.fs.Mark()
	equal(t, "RESET ALL", c.query("RESET ALL"), []string{"CommandComplete RESET", "ReadyForQuery I"})
	c.query("SELECT 1")
	equal(t, "server after RESET ALL", r.fs.Since(m), []string{resetSetupOf("acme", defaultSettings), "Q SELECT 1"})
}

func TestDeallocateAllEmulatedInExtendedProtocol(t *testing.T) {
	r := newRig(t, nil)
	c := r.connect(info("acme"))
	c.send(&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, &pgproto3.Sync{})
	c.untilReady()

	m := r.fs.Mark()
	c.send(&pgproto3.Parse{Query: "DEALLOCATE ALL"}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{})
	equal(t, "client", c.untilReady(), []string{"ParseComplete", "BindComplete", "NoData", "CommandComplete DEALLOCATE ALL", "ReadyForQuery I"})
	equal(t, "server", r.fs.Since(m), []string{"S"})

	c.send(&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Sync{})
	equal(t, "Bind after DEALLOCATE ALL", c.untilReady(), []string{`ErrorResponse ERROR 26000 prepared statement "s1" does not exist`, "ReadyForQuery I"})

	// A named statement of DEALLOCATE ALL, described as a statement.
	c.send(&pgproto3.Parse{Name: "d", Query: "DEALLOCATE ALL"}, &pgproto3.Describe{ObjectType: 'S', Name: "d"}, &pgproto3.Bind{PreparedStatement: "d"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	equal(t, "named DEALLOCATE ALL", c.untilReady(), []string{"ParseComplete", "ParameterDescription", "NoData", "BindComplete", "CommandComplete DEALLOCATE ALL", "ReadyForQuery I"})
}

func TestTrackedSettingReplayedOnNextLease(t *testing.T) {
	r := newRig(t, nil)
	acme := r.connect(info("acme"))
	globex := r.connect(info("globex"))
	equal(t, "SET", acme.query("SET application_name TO 'myapp'"), []string{"CommandComplete SET", "ReadyForQuery I"})
	globex.query("SELECT 1")

	m := r.fs.Mark()
	acme.query("SELECT 2")
	equal(t, "server", r.fs.Since(m), []string{"Q RESET ROLE", resetSetupOf("acme", `SET "application_name" TO 'myapp'; `), "Q SELECT 2"})

	// Back on a backend that has its settings: nothing to replay.
	m = r.fs.Mark()
	acme.query("SELECT 3")
	equal(t, "server, same settings", r.fs.Since(m), []string{"Q SELECT 3"})
}

// PostgreSQL undoes a SET when its transaction rolls back; the relay must not replay the undone value.
func TestRolledBackSetNotReplayed(t *testing.T) {
	r := newRig(t, nil)
	acme := r.connect(info("acme"))
	globex := r.connect(info("globex"))
	acme.query("BEGIN")
	acme.query("SET application_name TO 'undone'")
	acme.query("ROLLBACK")
	globex.query("SELECT 1")

	m := r.fs.Mark()
	acme.query("SELECT 2")
	equal(t, "server", r.fs.Since(m), []string{carriedOf("acme", "SELECT 2")})
}

func TestSetInFailedStatementNotTracked(t *testing.T) {
	r := newRig(t, nil)
	acme := r.connect(info("acme"))
	globex := r.connect(info("globex"))
	// The whole Query fails at its first statement: the SET never ran.
	got := acme.query("SELECT 1/0; SET application_name TO 'never'")
	if !strings.HasPrefix(got[0], "ErrorResponse ERROR 22012") {
		t.Fatalf("client got %v", got)
	}
	globex.query("SELECT 1")
	m := r.fs.Mark()
	acme.query("SELECT 2")
	equal(t, "server", r.fs.Since(m), []string{carriedOf("acme", "SELECT 2")})
}

func TestClientLeavesMidTransaction(t *testing.T) {
	tests := []struct {
		name string
		// start leaves the client holding its backend in some state.
		start func(t *testing.T, r *rig, c *client)
		// want is what the server must receive after the client left, before anyone else's statement.
		want []string
	}{
		{
			name:  "open transaction is rolled back",
			start: func(t *testing.T, r *rig, c *client) { c.query("BEGIN"); c.query("SELECT 1") },
			want:  []string{"Q ROLLBACK"},
		},
		{
			name:  "failed transaction is rolled back",
			start: func(t *testing.T, r *rig, c *client) { c.query("BEGIN"); c.query("SELECT 1/0") },
			want:  []string{"Q ROLLBACK"},
		},
		{
			name: "unsynced extended batch is aborted, then synced",
			start: func(t *testing.T, r *rig, c *client) {
				m := r.fs.Mark()
				c.send(&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
				for _, want := range []string{"ParseComplete", "BindComplete", "DataRow 1", "CommandComplete SELECT 1"} {
					if got := describeBackend(c.receive()); got != want {
						t.Fatalf("got %s, want %s", got, want)
					}
				}
				r.fs.WaitForMessage(t, m, "H")
			},
			want: []string{"P tenantproxy_poison " + poisonSQL, "S"},
		},
		{
			name: "unsynced batch inside a transaction is aborted and rolled back",
			start: func(t *testing.T, r *rig, c *client) {
				c.query("BEGIN")
				m := r.fs.Mark()
				c.send(&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Flush{})
				if got := describeBackend(c.receive()); got != "ParseComplete" {
					t.Fatalf("got %s", got)
				}
				r.fs.WaitForMessage(t, m, "H")
			},
			want: []string{"P tenantproxy_poison " + poisonSQL, "S", "Q ROLLBACK"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil)
			c := r.connect(info("acme"))
			next := r.connect(info("globex"))
			tt.start(t, r, c)
			next.send(&pgproto3.Query{String: "SELECT 'next'"})
			r.waitStats("one waiting client", func(s session.Stats) bool { return s.Waiting == 1 })
			m := r.fs.Mark()
			c.close()
			equal(t, "next client", next.untilReady(), selectReply("'next'", 'I'))
			got := r.fs.Since(m)
			i := indexPrefix(got, "Q SET ROLE")
			if i < 0 {
				t.Fatalf("the next client's context never reached the server: %v", got)
			}
			equal(t, "server before the next client's context", got[:i], tt.want)
		})
	}
}

func TestClientLeavesWithQueryInFlight(t *testing.T) {
	r := newRig(t, nil)
	c := r.connect(info("acme"))
	next := r.connect(info("globex"))
	m := r.fs.Mark()
	c.send(&pgproto3.Query{String: sleepSQL})
	r.fs.WaitForMessage(t, m, "Q "+sleepSQL)
	pid := r.fs.PIDs()[0]
	next.send(&pgproto3.Query{String: "SELECT 'next'"})
	r.waitStats("one waiting client", func(s session.Stats) bool { return s.Waiting == 1 })
	c.close()
	equal(t, "next client", next.untilReady(), selectReply("'next'", 'I'))
	calls := r.fs.CancelCalls()
	if len(calls) != 1 || calls[0].PID != pid {
		t.Errorf("cancel requests %v, want one for backend %d", calls, pid)
	}
}

func TestSessionModeDiscardsAtDisconnect(t *testing.T) {
	r := newRig(t, func(c *session.Config) { c.Mode = "session" })
	c := r.connect(info("acme"))
	c.query("SELECT 1")
	if st := r.e.Stats(); st.Leased != 1 {
		t.Errorf("session mode: %d leased after ReadyForQuery I, want 1", st.Leased)
	}
	next := r.connect(info("acme"))
	next.send(&pgproto3.Query{String: "SELECT 'next'"})
	r.waitStats("one waiting client", func(s session.Stats) bool { return s.Waiting == 1 })
	m := r.fs.Mark()
	c.close()
	equal(t, "next client", next.untilReady(), selectReply("'next'", 'I'))
	equal(t, "server", r.fs.Since(m), []string{"Q DISCARD ALL", setupOf("acme", defaultSettings), "Q SELECT 'next'"})
}

func TestPinnedSessionKeepsBackend(t *testing.T) {
	r := newRig(t, nil)
	c := r.connect(info("acme"))
	c.query("CREATE TEMP TABLE t (x int)")
	if st := r.e.Stats(); st.Leased != 1 {
		t.Fatalf("a client with a temporary table: %d leased, want 1 (pinned)", st.Leased)
	}
	next := r.connect(info("globex"))
	next.send(&pgproto3.Query{String: "SELECT 'next'"})
	r.waitStats("one waiting client", func(s session.Stats) bool { return s.Waiting == 1 })
	m := r.fs.Mark()
	c.close()
	next.untilReady()
	got := r.fs.Since(m)
	if len(got) < 2 || got[0] != "Q DISCARD ALL" {
		t.Errorf("server after a pinned client left: %v, want DISCARD ALL first", got)
	}
}

func TestMalformedFramesCloseOnlyThatClient(t *testing.T) {
	tests := []struct {
		name   string
		begin  bool // the client holds a backend in a transaction when it misbehaves
		frame  []byte
		reason string
	}{
		{name: "length below 4", frame: []byte{'Q', 0, 0, 0, 3}, reason: "tenantproxy: invalid message length"},
		{name: "length over max_message_size", frame: []byte{'Q', 0, 0, 0x10, 0}, reason: "tenantproxy: message of 4096 bytes exceeds the limit of 1024"},
		{name: "unknown type", frame: []byte{'z', 0, 0, 0, 4}, reason: `tenantproxy: invalid frontend message type 'z'`},
		{name: "startup packet after startup", frame: []byte{0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f}, reason: "tenantproxy: message of 2052 bytes exceeds"},
		{name: "type zero", frame: []byte{0, 0, 0, 0, 4}, reason: `tenantproxy: invalid frontend message type '\x00'`},
		{name: "query without terminator", frame: []byte{'Q', 0, 0, 0, 6, 'a', 'b'}, reason: "tenantproxy: malformed Query message"},
		{name: "parse without parameter count", frame: []byte{'P', 0, 0, 0, 8, 0, 'x', 0, 0}, reason: "tenantproxy: malformed Parse message"},
		{name: "describe of unknown kind", frame: []byte{'D', 0, 0, 0, 6, 'X', 0}, reason: "tenantproxy: malformed Describe message"},
		{name: "bad length while in a transaction", begin: true, frame: []byte{'Q', 0, 0, 0, 0}, reason: "tenantproxy: invalid message length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, func(c *session.Config) { c.MaxMessageSize = 1024 })
			bystander := r.connect(info("acme"))
			bad := r.connect(info("acme"))
			if tt.begin {
				bad.query("BEGIN")
			}
			m := r.fs.Mark()
			bad.sendRaw(tt.frame)
			got := bad.closedWith()
			if !strings.HasPrefix(got, "ErrorResponse FATAL 08P01 "+tt.reason) {
				t.Errorf("client got %q, want FATAL 08P01 %q", got, tt.reason)
			}
			equal(t, "bystander", bystander.query("SELECT 2"), selectReply("2", 'I'))
			if tt.begin {
				if got := r.fs.Since(m); len(got) == 0 || got[0] != "Q ROLLBACK" {
					t.Errorf("server after the client was closed in a transaction: %v, want ROLLBACK first", got)
				}
			}
			r.waitStats("one client", func(s session.Stats) bool { return s.Clients == 1 })
		})
	}
}

func TestMessageSplitAcrossWrites(t *testing.T) {
	r := newRig(t, nil)
	c := r.connect(info("acme"))
	q := []byte{'Q', 0, 0, 0, 14, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '4', '2', 0}
	for i := range q {
		c.sendRaw(q[i : i+1])
		time.Sleep(time.Millisecond)
	}
	equal(t, "client", c.untilReady(), selectReply("42", 'I'))

	// A message larger than one read.
	big := "SELECT '" + strings.Repeat("x", 300<<10) + "'"
	got := c.query(big)
	if len(got) != 4 || got[1] != "DataRow '"+strings.Repeat("x", 300<<10)+"'" {
		t.Errorf("large query: got %d messages", len(got))
	}
}

func TestUnknownTenantRefusedAtAttach(t *testing.T) {
	r := newRig(t, nil)
	c := attach(t, r.e, info("nosuch"))
	got := c.closedWith()
	if got != `ErrorResponse FATAL 3D000 tenantproxy: tenant "nosuch" does not exist` {
		t.Errorf("client got %q", got)
	}
}

func TestSuspendedTenantClosedAtNextLease(t *testing.T) {
	r := newRig(t, nil)
	c := r.connect(info("globex"))
	c.query("SELECT 1")
	g := testTenant("globex")
	g.Suspended = true
	r.e.SetTenants([]session.Tenant{testTenant("acme"), g})
	r.e.Stats() // the loop has the new catalog
	c.send(&pgproto3.Query{String: "SELECT 2"})
	if got := c.closedWith(); got != `ErrorResponse FATAL 57P01 tenantproxy: tenant "globex" is suspended` {
		t.Errorf("client got %q", got)
	}
}

func TestGreetingReportsClientIdentity(t *testing.T) {
	r := newRig(t, nil)
	ci := info("acme")
	ci.User = "alice@acme"
	c := r.connect(ci)
	want := map[string]string{
		"session_authorization": "alice@acme", "is_superuser": "off", "standard_conforming_strings": "on",
		"application_name": "test", "server_version": serverParams["server_version"],
	}
	for k, v := range want {
		if c.params[k] != v {
			t.Errorf("ParameterStatus %s = %q, want %q", k, c.params[k], v)
		}
	}
	if c.pid == 0 {
		t.Error("no BackendKeyData")
	}
}
