package session_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/session"
)

func TestNotificationChannelsScopedToTenant(t *testing.T) {
	r := newRig(t, nil)
	c := r.connect(info("acme"))
	m := r.fs.Mark()
	equal(t, "LISTEN", c.query("LISTEN foo"), []string{"CommandComplete LISTEN", "ReadyForQuery I"})
	equal(t, "server", r.fs.Since(m), []string{setupOf("acme", defaultSettings), `Q LISTEN "acme.foo"`})
	if st := r.e.Stats(); st.Leased != 1 {
		t.Errorf("a listening client is not pinned to its backend: %+v", st)
	}

	r.fs.Conn(r.fs.PIDs()[0]).Inject(
		&pgproto3.NotificationResponse{PID: 99, Channel: "globex.foo", Payload: "another tenant's"},
		&pgproto3.NotificationResponse{PID: 99, Channel: "foo", Payload: "unscoped"},
		&pgproto3.NotificationResponse{PID: 99, Channel: "acmefoo.foo", Payload: "a tenant whose name starts alike"},
		&pgproto3.NotificationResponse{PID: 99, Channel: "acme.foo", Payload: "hi"},
	)
	if got := describeBackend(c.receive()); got != "NotificationResponse foo hi" {
		t.Errorf("client got %q, want its own notification under its channel name", got)
	}
	c.silent(50 * time.Millisecond)

	tests := []struct {
		sql    string
		server string // what reaches the server, "" for nothing
		reply  string // first reply message
	}{
		{"NOTIFY foo, 'x'", `Q NOTIFY "acme.foo", 'x'`, "CommandComplete NOTIFY"},
		{"NOTIFY foo", `Q NOTIFY "acme.foo"`, "CommandComplete NOTIFY"},
		{"UNLISTEN foo", `Q UNLISTEN "acme.foo"`, "CommandComplete UNLISTEN"},
		{"UNLISTEN *", `Q UNLISTEN *`, "CommandComplete UNLISTEN"},
		{"SELECT pg_notify('foo', 'x')", "Q " + poisonSQL, "ErrorResponse ERROR 42501 tenantproxy: pg_notify() is not allowed"},
		{"LISTEN a; SELECT 1", `Q LISTEN "acme.a"; SELECT 1`, "CommandComplete LISTEN"},
		{"LISTEN foo; NOTIFY foo, 'x'", `Q LISTEN "acme.foo"; NOTIFY "acme.foo", 'x'`, "CommandComplete LISTEN"},
		{"SELECT 1;\n  /* c */ NOTIFY bar;UNLISTEN foo", "Q SELECT 1;\n  /* c */ NOTIFY \"acme.bar\";UNLISTEN \"acme.foo\"", "RowDescription"},
		{"NOTIFY foo, 'café'; SELECT 1", "Q " + poisonSQL, "ErrorResponse ERROR 0A000"},
		{"NOTIFY foo; SELECT pg_notify('foo', 'x')", "Q " + poisonSQL, "ErrorResponse ERROR 42501 tenantproxy: pg_notify() is not allowed"},
		{"LISTEN " + strings.Repeat("x", 60), "Q " + poisonSQL, "ErrorResponse ERROR 42622"},
	}
	for _, tt := range tests {
		m := r.fs.Mark()
		got := c.query(tt.sql)
		if !strings.HasPrefix(got[0], tt.reply) {
			t.Errorf("%s: client got %v, want %s first", tt.sql, got, tt.reply)
		}
		r.fs.WaitForMessage(t, m, tt.server)
		if msgs := withoutVerify(r.fs.Since(m)); msgs[0] != tt.server {
			t.Errorf("%s: server got %v, want %s", tt.sql, msgs, tt.server)
		}
	}
}

func TestDeallocateOfProtocolStatementEmulated(t *testing.T) {
	r := newRig(t, nil)
	c := r.connect(info("acme"))
	c.send(&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, &pgproto3.Parse{Name: "s2", Query: "SELECT 2"}, &pgproto3.Sync{})
	c.untilReady()

	m := r.fs.Mark()
	equal(t, "DEALLOCATE s1", c.query("DEALLOCATE s1"), []string{"CommandComplete DEALLOCATE", "ReadyForQuery I"})
	equal(t, "server", r.fs.Since(m), nil)
	c.send(bindExec("s1")...)
	equal(t, "Bind after DEALLOCATE", c.untilReady(), []string{`ErrorResponse ERROR 26000 prepared statement "s1" does not exist`, "ReadyForQuery I"})

	// Through the extended protocol.
	c.send(&pgproto3.Parse{Query: "DEALLOCATE s2"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	equal(t, "extended DEALLOCATE s2", c.untilReady(), []string{"ParseComplete", "BindComplete", "CommandComplete DEALLOCATE", "ReadyForQuery I"})
	c.send(bindExec("s2")...)
	equal(t, "Bind after extended DEALLOCATE", c.untilReady(), []string{`ErrorResponse ERROR 26000 prepared statement "s2" does not exist`, "ReadyForQuery I"})

	// A name the client never prepared does not exist for it, whatever the shared server holds; one it
	// prepared with SQL PREPARE goes to the server.
	m = r.fs.Mark()
	equal(t, "DEALLOCATE other", c.query("DEALLOCATE other"), []string{`ErrorResponse ERROR 26000 prepared statement "other" does not exist`, "ReadyForQuery I"})
	equal(t, "server", withoutVerify(r.fs.Since(m)), []string{"Q tenantproxy_refused_statement"})
	m = r.fs.Mark()
	c.query("PREPARE mine AS SELECT 1")
	c.query("DEALLOCATE mine")
	equal(t, "server", withoutVerify(r.fs.Since(m)), []string{"Q PREPARE mine AS SELECT 1", "Q DEALLOCATE mine"})
	equal(t, "reserved name", c.query("PREPARE tp7 AS SELECT 1"), []string{`ErrorResponse ERROR 42501 tenantproxy: prepared statement names like "tp7" are reserved by the proxy`, "ReadyForQuery I"})
	equal(t, "EXECUTE of another's", c.query("EXECUTE tp1"), []string{`ErrorResponse ERROR 26000 prepared statement "tp1" does not exist`, "ReadyForQuery I"})
}

func TestClientPreparedStatementLimits(t *testing.T) {
	tests := []struct {
		name   string
		stmts  int
		bytes  int
		parses []string
	}{
		{"count", 2, 0, []string{"SELECT 1", "SELECT 2", "SELECT 3"}},
		{"bytes", 0, 20, []string{"SELECT 1", "SELECT 'a long text over the limit'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, func(c *session.Config) {
				c.MaxClientPreparedStatements, c.MaxClientPreparedBytes = tt.stmts, tt.bytes
			})
			c := r.connect(info("acme"))
			for i, q := range tt.parses {
				c.send(&pgproto3.Parse{Name: "s" + string(rune('1'+i)), Query: q}, &pgproto3.Sync{})
				got := c.untilReady()
				last := i == len(tt.parses)-1
				if !last && got[0] != "ParseComplete" {
					t.Fatalf("Parse %d: %v", i+1, got)
				}
				if last && !strings.HasPrefix(got[0], "ErrorResponse ERROR 53400") {
					t.Errorf("Parse beyond the client's limit: %v, want 53400", got)
				}
			}
		})
	}
}
