package session_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/policy"
	"github.com/tenantproxy/tenantproxy/session"
)

// serverName returns the name under which query was parsed on the server, per the log entries msgs.
func serverName(t *testing.T, msgs []string, query string) string {
	t.Helper()
	for _, m := range msgs {
		if strings.HasPrefix(m, "P tp") && strings.HasSuffix(m, " "+query) {
			return strings.Fields(m)[1]
		}
	}
	t.Fatalf("no Parse of %q under a relay name in %v", query, msgs)
	return ""
}

// bindExec is Bind, Execute and Sync of a statement.
func bindExec(stmt string) []pgproto3.FrontendMessage {
	return []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: stmt}, &pgproto3.Execute{}, &pgproto3.Sync{}}
}

// execReply is what a client gets for bindExec of "SELECT <v>".
func execReply(v string) []string {
	return []string{"BindComplete", "DataRow " + v, "CommandComplete SELECT 1", "ReadyForQuery I"}
}

func TestNamedStatementsInternedPerTenant(t *testing.T) {
	r := newRig(t, nil)
	c1 := r.connect(info("acme"))
	c2 := r.connect(info("acme"))
	c3 := r.connect(info("globex"))

	c1.send(&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, &pgproto3.Sync{})
	equal(t, "first Parse", c1.untilReady(), []string{"ParseComplete", "ReadyForQuery I"})
	first := r.fs.Messages()
	id := serverName(t, first, "SELECT 1")
	equal(t, "server after the first Parse", first, []string{setupOf("acme", defaultSettings), "P " + id + " SELECT 1", "S"})

	// Same tenant, same text, same backend: the statement is there already.
	m := r.fs.Mark()
	c2.send(append([]pgproto3.FrontendMessage{&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}}, bindExec("s1")...)...)
	equal(t, "second client", c2.untilReady(), append([]string{"ParseComplete"}, execReply("1")...))
	equal(t, "server for the second client", r.fs.Since(m), []string{"B  " + id, "E ", "S"})

	// Same tenant, another name for the same text: the same server statement.
	m = r.fs.Mark()
	c2.send(append([]pgproto3.FrontendMessage{&pgproto3.Parse{Name: "other", Query: "SELECT 1"}}, bindExec("other")...)...)
	equal(t, "second name", c2.untilReady(), append([]string{"ParseComplete"}, execReply("1")...))
	equal(t, "server for a second name", r.fs.Since(m), []string{"B  " + id, "E ", "S"})

	// Another tenant never shares the statement.
	m = r.fs.Mark()
	c3.send(append([]pgproto3.FrontendMessage{&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}}, bindExec("s1")...)...)
	equal(t, "other tenant", c3.untilReady(), append([]string{"ParseComplete"}, execReply("1")...))
	got := r.fs.Since(m)
	id3 := serverName(t, got, "SELECT 1")
	if id3 == id {
		t.Fatalf("tenants acme and globex share the server statement %s", id)
	}
	equal(t, "server for another tenant", got, []string{"Q RESET ROLE", setupOf("globex", defaultSettings), "P " + id3 + " SELECT 1", "B  " + id3, "E ", "S"})

	// Different parameter types make a different statement.
	m = r.fs.Mark()
	c1.send(&pgproto3.Parse{Name: "typed", Query: "SELECT 1", ParameterOIDs: []uint32{23}}, &pgproto3.Sync{})
	c1.untilReady()
	if id4 := serverName(t, r.fs.Since(m), "SELECT 1"); id4 == id {
		t.Errorf("a statement with parameter types shares %s with the untyped one", id)
	}
}

func TestParseOfExistingNameFails(t *testing.T) {
	r := newRig(t, nil)
	c := r.connect(info("acme"))
	c.send(&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, &pgproto3.Sync{})
	c.untilReady()
	c.send(&pgproto3.Parse{Name: "s1", Query: "SELECT 2"}, &pgproto3.Sync{})
	equal(t, "duplicate Parse", c.untilReady(), []string{`ErrorResponse ERROR 42P05 prepared statement "s1" already exists`, "ReadyForQuery I"})
	c.send(bindExec("s1")...)
	equal(t, "the first statement stays", c.untilReady(), execReply("1"))
}

func TestCloseStatementAnsweredLocally(t *testing.T) {
	r := newRig(t, nil)
	c := r.connect(info("acme"))
	c.send(&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, &pgproto3.Sync{})
	c.untilReady()

	m := r.fs.Mark()
	c.send(&pgproto3.Close{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{})
	equal(t, "Close", c.untilReady(), []string{"CloseComplete", "ReadyForQuery I"})
	equal(t, "server", r.fs.Since(m), []string{"S"})

	c.send(bindExec("s1")...)
	equal(t, "Bind after Close", c.untilReady(), []string{`ErrorResponse ERROR 26000 prepared statement "s1" does not exist`, "ReadyForQuery I"})

	// Close of a name that does not exist succeeds, as in PostgreSQL.
	c.send(&pgproto3.Close{ObjectType: 'S', Name: "nope"}, &pgproto3.Sync{})
	equal(t, "Close of an unknown name", c.untilReady(), []string{"CloseComplete", "ReadyForQuery I"})

	// The name may be parsed again, with another text.
	c.send(append([]pgproto3.FrontendMessage{&pgproto3.Parse{Name: "s1", Query: "SELECT 2"}}, bindExec("s1")...)...)
	equal(t, "Parse after Close", c.untilReady(), append([]string{"ParseComplete"}, execReply("2")...))
	for _, msg := range r.fs.Messages() {
		if strings.HasPrefix(msg, "C S") {
			t.Errorf("Close reached the server: %q", msg)
		}
	}
}

func TestBindUnknownStatement(t *testing.T) {
	tests := []struct {
		name string
		stmt string
		want string
	}{
		{"named", "nope", `ErrorResponse ERROR 26000 prepared statement "nope" does not exist`},
		{"unnamed never parsed", "", "ErrorResponse ERROR 26000 unnamed prepared statement does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil)
			c := r.connect(info("acme"))
			c.send(bindExec(tt.stmt)...)
			equal(t, "client", c.untilReady(), []string{tt.want, "ReadyForQuery I"})
			for _, msg := range r.fs.Messages() {
				if strings.HasPrefix(msg, "B ") {
					t.Errorf("the Bind reached the server: %q", msg)
				}
			}
			c.send(&pgproto3.Describe{ObjectType: 'S', Name: tt.stmt}, &pgproto3.Sync{})
			equal(t, "Describe", c.untilReady(), []string{tt.want, "ReadyForQuery I"})
		})
	}
}

func TestUnnamedStatementNeverShared(t *testing.T) {
	for _, tenant := range []string{"acme", "globex"} {
		t.Run("other client of "+tenant, func(t *testing.T) {
			r := newRig(t, nil)
			owner := r.connect(info("acme"))
			other := r.connect(info(tenant))
			owner.send(&pgproto3.Parse{Query: "SELECT 'secret'"}, &pgproto3.Sync{})
			owner.untilReady()

			m := r.fs.Mark()
			other.send(bindExec("")...)
			equal(t, "other client", other.untilReady(), []string{"ErrorResponse ERROR 26000 unnamed prepared statement does not exist", "ReadyForQuery I"})
			if i := indexPrefix(r.fs.Since(m), "B "); i >= 0 {
				t.Errorf("another client's Bind of the unnamed statement reached the server: %v", r.fs.Since(m))
			}
		})
	}
}

func TestUnnamedStatementReplayedAfterSimpleQuery(t *testing.T) {
	r := newRig(t, nil)
	owner := r.connect(info("acme"))
	other := r.connect(info("acme"))
	owner.send(&pgproto3.Parse{Query: "SELECT 'mine'"}, &pgproto3.Sync{})
	owner.untilReady()
	// A simple Query on the same backend destroys the server's unnamed statement.
	other.query("SELECT 2")

	m := r.fs.Mark()
	owner.send(bindExec("")...)
	equal(t, "owner", owner.untilReady(), execReply("'mine'"))
	equal(t, "server", r.fs.Since(m), []string{"P  SELECT 'mine'", "B  ", "E ", "S"})

	// Untouched since: no replay.
	m = r.fs.Mark()
	owner.send(bindExec("")...)
	equal(t, "owner again", owner.untilReady(), execReply("'mine'"))
	equal(t, "server again", r.fs.Since(m), []string{"B  ", "E ", "S"})
}

func TestNamedStatementReplayedOnBackendThatLacksIt(t *testing.T) {
	r := newRig(t, func(c *session.Config) { c.PoolSize = 2 })
	r.openBackends(2)
	c1 := r.connect(info("acme"))
	c2 := r.connect(info("acme"))

	m := r.fs.Mark()
	c1.send(&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, &pgproto3.Sync{})
	c1.untilReady()
	first := r.fs.SinceWithPID(m)
	withS1, _, _ := strings.Cut(first[0], "|")
	id := serverName(t, r.fs.Since(m), "SELECT 1")

	// c2 takes the backend that carries acme's context (and s1) and keeps it.
	m = r.fs.Mark()
	c2.query("BEGIN")
	if p, _, _ := strings.Cut(r.fs.SinceWithPID(m)[0], "|"); p != withS1 {
		t.Fatalf("c2 got backend %s, want %s which carries acme's context", p, withS1)
	}

	m = r.fs.Mark()
	c1.send(bindExec("s1")...)
	equal(t, "c1 on the other backend (the replayed Parse's reply is swallowed)", c1.untilReady(), execReply("1"))
	got := r.fs.SinceWithPID(m)
	if p, _, _ := strings.Cut(got[0], "|"); p == withS1 {
		t.Fatalf("c1 got backend %s again", p)
	}
	equal(t, "server", r.fs.Since(m), []string{setupOf("acme", defaultSettings), "P " + id + " SELECT 1", "B  " + id, "E ", "S"})
}

func TestPreparedStatementLRUEviction(t *testing.T) {
	r := newRig(t, func(c *session.Config) { c.MaxPreparedStatements = 2 })
	c := r.connect(info("acme"))
	m := r.fs.Mark()
	c.send(
		&pgproto3.Parse{Name: "s1", Query: "SELECT 'q1'"}, &pgproto3.Parse{Name: "s2", Query: "SELECT 'q2'"},
		&pgproto3.Parse{Name: "s3", Query: "SELECT 'q3'"}, &pgproto3.Sync{},
	)
	equal(t, "client", c.untilReady(), []string{"ParseComplete", "ParseComplete", "ParseComplete", "ReadyForQuery I"})
	got := r.fs.Since(m)
	id1, id2, id3 := serverName(t, got, "SELECT 'q1'"), serverName(t, got, "SELECT 'q2'"), serverName(t, got, "SELECT 'q3'")
	equal(t, "server", got, []string{
		setupOf("acme", defaultSettings), "P " + id1 + " SELECT 'q1'", "P " + id2 + " SELECT 'q2'",
		"P " + id3 + " SELECT 'q3'", "C S " + id1, "S",
	})

	// s1 is still the client's: bound again, it is parsed again and evicts the least recently used, s2.
	m = r.fs.Mark()
	c.send(bindExec("s1")...)
	equal(t, "Bind of the evicted statement", c.untilReady(), execReply("'q1'"))
	equal(t, "server", r.fs.Since(m), []string{"P " + id1 + " SELECT 'q1'", "C S " + id2, "B  " + id1, "E ", "S"})

	// s3 was used more recently than s2 and is still there.
	m = r.fs.Mark()
	c.send(bindExec("s3")...)
	equal(t, "Bind of a statement still cached", c.untilReady(), execReply("'q3'"))
	equal(t, "server", r.fs.Since(m), []string{"B  " + id3, "E ", "S"})
}

func TestPipelineErrorLeavesNoPhantomStatement(t *testing.T) {
	tests := []struct {
		name string
		// batch fails somewhere before its Sync.
		batch []pgproto3.FrontendMessage
		err   string
		// gone are statements the failed batch must not have created; kept are statements it did create.
		gone, kept []string
	}{
		{
			name:  "failed Parse, later Parse skipped",
			batch: []pgproto3.FrontendMessage{&pgproto3.Parse{Name: "s1", Query: "SELECT bad_column"}, &pgproto3.Parse{Name: "s2", Query: "SELECT 2"}, &pgproto3.Sync{}},
			err:   `ErrorResponse ERROR 42703 column "bad_column" does not exist`,
			gone:  []string{"s1", "s2"},
		},
		{
			name: "failed Execute, later Parse skipped",
			batch: []pgproto3.FrontendMessage{&pgproto3.Parse{Name: "s1", Query: "SELECT 1/0"}, &pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{},
				&pgproto3.Parse{Name: "s2", Query: "SELECT 2"}, &pgproto3.Sync{}},
			err:  "ErrorResponse ERROR 22012 division by zero",
			gone: []string{"s2"},
			kept: []string{"s1"},
		},
		{
			name:  "second name for the failing text",
			batch: []pgproto3.FrontendMessage{&pgproto3.Parse{Name: "s1", Query: "SELECT bad_column"}, &pgproto3.Parse{Name: "s2", Query: "SELECT bad_column"}, &pgproto3.Sync{}},
			err:   `ErrorResponse ERROR 42703 column "bad_column" does not exist`,
			gone:  []string{"s1", "s2"},
		},
		{
			name: "refused Bind, later Parse skipped",
			batch: []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: "nope"}, &pgproto3.Execute{},
				&pgproto3.Parse{Name: "s2", Query: "SELECT 2"}, &pgproto3.Sync{}},
			err:  `ErrorResponse ERROR 26000 prepared statement "nope" does not exist`,
			gone: []string{"s2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil)
			c := r.connect(info("acme"))
			c.send(tt.batch...)
			got := c.untilReady()
			if len(got) < 2 || got[len(got)-2] != tt.err || got[len(got)-1] != "ReadyForQuery I" {
				t.Fatalf("client got %v, want it to end with %s, ReadyForQuery I", got, tt.err)
			}
			for _, name := range tt.gone {
				m := r.fs.Mark()
				c.send(bindExec(name)...)
				equal(t, "Bind "+name, c.untilReady(), []string{fmt.Sprintf(`ErrorResponse ERROR 26000 prepared statement %q does not exist`, name), "ReadyForQuery I"})
				if i := indexPrefix(r.fs.Since(m), "B "); i >= 0 {
					t.Errorf("Bind %s reached the server: %v", name, r.fs.Since(m))
				}
				// Parsing it now reaches the server: the relay does not believe the backend has it.
				m = r.fs.Mark()
				c.send(&pgproto3.Parse{Name: name, Query: "SELECT 'again " + name + "'"}, &pgproto3.Sync{})
				equal(t, "Parse "+name+" again", c.untilReady(), []string{"ParseComplete", "ReadyForQuery I"})
				if indexPrefix(r.fs.Since(m), "P tp") < 0 {
					t.Errorf("Parse %s again did not reach the server: %v", name, r.fs.Since(m))
				}
			}
			for _, name := range tt.kept {
				c.send(&pgproto3.Describe{ObjectType: 'S', Name: name}, &pgproto3.Sync{})
				if got := c.untilReady(); got[0] != "ParameterDescription" {
					t.Errorf("Describe %s: %v", name, got)
				}
			}
		})
	}
}

func TestSetThroughExtendedProtocolTracked(t *testing.T) {
	r := newRig(t, nil)
	acme := r.connect(info("acme"))
	globex := r.connect(info("globex"))
	acme.send(&pgproto3.Parse{Name: "set", Query: "SET application_name TO 'extended'"}, &pgproto3.Bind{PreparedStatement: "set"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	equal(t, "SET", acme.untilReady(), []string{"ParseComplete", "BindComplete", "CommandComplete SET", "ReadyForQuery I"})
	globex.query("SELECT 1")
	m := r.fs.Mark()
	acme.query("SELECT 2")
	equal(t, "server", r.fs.Since(m), []string{"Q RESET ROLE", resetSetupOf("acme", `SET "application_name" TO 'extended'; `), "Q SELECT 2"})
}

func TestDiscardAllForgetsStatements(t *testing.T) {
	r := newRig(t, nil)
	c := r.connect(info("acme"))
	c.send(&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, &pgproto3.Sync{})
	c.untilReady()
	c.query("DISCARD ALL")
	c.send(bindExec("s1")...)
	equal(t, "Bind after DISCARD ALL", c.untilReady(), []string{`ErrorResponse ERROR 26000 prepared statement "s1" does not exist`, "ReadyForQuery I"})
}

// A replayed Parse can fail where the original succeeded (the schema changed since): the client must get the
// server's error for its Bind, and the backend must stay usable.
func TestReplayedParseErrorReachesClient(t *testing.T) {
	r := newRig(t, func(c *session.Config) { c.PoolSize = 2 })
	r.openBackends(2)
	c1 := r.connect(info("acme"))
	c2 := r.connect(info("acme"))
	c1.send(&pgproto3.Parse{Name: "s1", Query: "SELECT old_column"}, &pgproto3.Sync{})
	equal(t, "Parse", c1.untilReady(), []string{"ParseComplete", "ReadyForQuery I"})
	c2.query("BEGIN") // holds the backend that has s1

	r.fs.DropColumn("old_column")
	m := r.fs.Mark()
	c1.send(bindExec("s1")...)
	equal(t, "Bind on a backend where the replayed Parse fails", c1.untilReady(),
		[]string{`ErrorResponse ERROR 42703 column "old_column" does not exist`, "ReadyForQuery I"})
	if indexPrefix(r.fs.Since(m), "P tp") < 0 {
		t.Fatalf("no replay: %v", r.fs.Since(m))
	}
	// The backend is fine: a refusal (which runs the tripwire's check, a query of the relay's own) and a
	// statement afterwards work.
	code, msg := guardRefusal(t, "SET ROLE x", policy.ProfileApp, false)
	equal(t, "refusal after the failed replay", c1.query("SET ROLE x"), []string{"ErrorResponse ERROR " + code + " " + msg, "ReadyForQuery I"})
	equal(t, "statement after the failed replay", c1.query("SELECT 2"), selectReply("2", 'I'))
}

// Eviction must not leave the lease waiting for replies to messages that were never sent.
func TestPreparedStatementEvictionReleasesLease(t *testing.T) {
	r := newRig(t, func(c *session.Config) { c.MaxPreparedStatements = 2; c.WaitTimeout = time.Second })
	c := r.connect(info("acme"))
	other := r.connect(info("acme"))
	c.send(
		&pgproto3.Parse{Name: "s1", Query: "SELECT 'q1'"}, &pgproto3.Parse{Name: "s2", Query: "SELECT 'q2'"},
		&pgproto3.Parse{Name: "s3", Query: "SELECT 'q3'"}, &pgproto3.Sync{},
	)
	c.untilReady()
	other.send(&pgproto3.Query{String: "SELECT 'other'"})
	if got := describeBackend(other.receive()); got != "RowDescription" {
		t.Fatalf("the only backend was not released after the batch: the other client got %q (stats %+v)", got, r.e.Stats())
	}
	other.untilReady()
	for _, name := range []string{"s1", "s2", "s3"} {
		c.send(bindExec(name)...)
		if got := c.untilReady(); got[0] != "BindComplete" {
			t.Errorf("Bind %s: %v", name, got)
		}
	}
}
