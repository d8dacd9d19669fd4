package reliability

import (
	"context"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// poolModes are the pool modes the client-side faults run in.
var poolModes = []config.PoolMode{config.ModeTransaction, config.ModeSession}

// A client that goes away at any point of its session leaves nothing behind: its transaction is rolled
// back with its locks, its running query cancelled, its COPY failed, its unsynced batch discarded and its
// session state reset; the proxy's one backend serves the next clients in a clean state, and no goroutine
// is left.
func TestClientVanishes(t *testing.T) {
	tests := []struct {
		name string
		// vanish is the client's part; the test then closes the connection without Terminate.
		vanish func(t *testing.T, r *rawConn)
		// row is the name of an employee the client wrote and never committed ("" for none).
		row string
	}{
		{
			name: "in a transaction holding locks",
			vanish: func(t *testing.T, r *rawConn) {
				r.query(t, "BEGIN")
				r.query(t, "INSERT INTO employees (name) VALUES ('rel-vanish-tx')")
				r.query(t, "SELECT id FROM employees FOR UPDATE")
				if st := r.query(t, "LOCK TABLE employees IN ACCESS EXCLUSIVE MODE"); st != 'T' {
					t.Fatalf("transaction status %c, want T", st)
				}
			},
			row: "rel-vanish-tx",
		},
		{
			name: "in an aborted transaction",
			vanish: func(t *testing.T, r *rawConn) {
				r.query(t, "BEGIN")
				r.query(t, "INSERT INTO employees (name) VALUES ('rel-vanish-aborted')")
				r.send(t, &pgproto3.Query{String: "SELECT 1/0"})
				r.SetReadDeadline(time.Now().Add(10 * time.Second))
				for {
					m, err := r.fe.Receive()
					if err != nil {
						t.Fatal(err)
					}
					if z, ok := m.(*pgproto3.ReadyForQuery); ok {
						if z.TxStatus != 'E' {
							t.Fatalf("transaction status %c, want E", z.TxStatus)
						}
						return
					}
				}
			},
			row: "rel-vanish-aborted",
		},
		{
			name: "while a query runs",
			vanish: func(t *testing.T, r *rawConn) {
				r.query(t, "BEGIN")
				r.query(t, "INSERT INTO employees (name) VALUES ('rel-vanish-query')")
				r.send(t, &pgproto3.Query{String: "SELECT pg_sleep(60)"})
				time.Sleep(300 * time.Millisecond) // the sleep is running on the server
			},
			row: "rel-vanish-query",
		},
		{
			name: "with session state",
			vanish: func(t *testing.T, r *rawConn) {
				r.query(t, "LISTEN rel_channel")
				r.query(t, "PREPARE rel_stmt AS SELECT 1")
				r.query(t, "DECLARE rel_cursor CURSOR WITH HOLD FOR SELECT * FROM employees")
				r.query(t, "SET application_name = 'rel-vanish'")
			},
		},
		{
			name: "in COPY FROM STDIN",
			vanish: func(t *testing.T, r *rawConn) {
				r.send(t, &pgproto3.Query{String: "COPY employees (name, email) FROM STDIN"})
				r.until(t, 10*time.Second, func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.CopyInResponse); return ok })
				for i := 0; i < 3; i++ {
					r.send(t, &pgproto3.CopyData{Data: []byte("rel-vanish-copy\tcopy@example.com\n")})
				}
			},
			row: "rel-vanish-copy",
		},
		{
			// The client is gone before the server's CopyInResponse reaches the proxy: the server still
			// enters COPY and waits for data that will never come unless the proxy ends the COPY.
			name: "right after starting COPY FROM STDIN",
			vanish: func(t *testing.T, r *rawConn) {
				r.send(t, &pgproto3.Query{String: "COPY employees (name, email) FROM STDIN"},
					&pgproto3.CopyData{Data: []byte("rel-vanish-copy-early\tcopy@example.com\n")})
			},
			row: "rel-vanish-copy-early",
		},
		{
			// PostgreSQL runs an extended-protocol batch in an implicit transaction that commits at Sync:
			// a client gone before its Sync has committed nothing, as it would directly on the server.
			name: "in a pipeline without Sync",
			vanish: func(t *testing.T, r *rawConn) {
				r.send(t,
					&pgproto3.Parse{Query: "INSERT INTO employees (name) VALUES ('rel-vanish-pipeline')"},
					&pgproto3.Bind{},
					&pgproto3.Execute{},
					&pgproto3.Flush{})
				r.until(t, 10*time.Second, func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.CommandComplete); return ok })
			},
			row: "rel-vanish-pipeline",
		},
		{
			// After an error in an extended-protocol batch PostgreSQL discards every message up to the
			// next Sync, a simple Query included: the Query gets no reply at all.
			name: "after a Query the server discards",
			vanish: func(t *testing.T, r *rawConn) {
				r.send(t, &pgproto3.Parse{Query: "SELEC 1"}, &pgproto3.Query{String: "SELECT 1"})
				r.SetReadDeadline(time.Now().Add(10 * time.Second))
				m, err := r.fe.Receive()
				if e, ok := m.(*pgproto3.ErrorResponse); err != nil || !ok || e.Code != "42601" {
					t.Fatalf("got %T %v; want the syntax error 42601", m, err)
				}
			},
		},
	}
	for _, mode := range poolModes {
		for _, tt := range tests {
			t.Run(string(mode)+"/"+tt.name, func(t *testing.T) {
				p := startProxy(t, mode, nil)
				leaks := leakCheck(t)
				ctx := testContext(t, 60*time.Second)
				r := session(t, ctx, p, "acme")
				tt.vanish(t, r)
				r.Close()
				checkClean(t, p)
				if tt.row != "" {
					checkNoRow(t, ctx, tt.row)
				}
				leaks()
			})
		}
	}
}

// checkNoRow fails the test when an employee named name exists in any tenant's schema.
func checkNoRow(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	conn, err := fx.Cluster.Connect(ctx, proxytest.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, tenant := range fx.Tenants {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+tenant+".employees WHERE name = $1", name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			superExec(ctx, "DELETE FROM "+tenant+".employees WHERE name = '"+name+"'")
			t.Errorf("%d row(s) %q in %s.employees: a write the client never committed survived its disconnect", n, name, tenant)
		}
	}
}

// A client that stalls or goes away during the startup phase — before, inside or after its startup
// packet, at the SCRAM challenge or in the middle of the exchange — is closed by [listen] startup_timeout
// or as soon as it goes; its goroutine ends and the proxy serves the next client.
func TestClientStallsOrVanishesDuringStartup(t *testing.T) {
	startup := func(t *testing.T, r *rawConn) {
		r.send(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
			Parameters: map[string]string{"user": "alice@acme", "database": proxytest.Database}})
		r.until(t, 5*time.Second, func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.AuthenticationSASL); return ok })
	}
	clientFirst := func(t *testing.T, r *rawConn) {
		startup(t, r)
		r.send(t, &pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=rOprNGfwEbeRWgbNEkqO")})
		r.until(t, 5*time.Second, func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.AuthenticationSASLContinue); return ok })
	}
	tests := []struct {
		name string
		act  func(t *testing.T, r *rawConn)
		// stall: the client stays connected and silent; the proxy must close it at startup_timeout.
		// Otherwise the client closes its end right after act.
		stall bool
	}{
		{"says nothing", func(*testing.T, *rawConn) {}, true},
		{"half a startup packet", func(t *testing.T, r *rawConn) {
			r.write(t, binary.BigEndian.AppendUint32(nil, 100))
			r.write(t, []byte{0, 3, 0, 0, 'u', 's', 'e', 'r', 0})
		}, true},
		{"SSLRequest then nothing", func(t *testing.T, r *rawConn) {
			r.send(t, &pgproto3.SSLRequest{})
			var b [1]byte
			r.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(r, b[:]); err != nil || b[0] != 'N' {
				t.Fatalf("SSLRequest answer %q, %v; want N", b[0], err)
			}
		}, true},
		{"silent at the SCRAM challenge", startup, true},
		{"silent after the SCRAM client-first message", clientFirst, true},
		{"gone at the SCRAM challenge", startup, false},
		{"gone after the SCRAM client-first message", clientFirst, false},
		{"gone inside the startup packet", func(t *testing.T, r *rawConn) {
			r.write(t, []byte{0, 0, 0, 40, 0, 3, 0, 0, 'u', 's'})
		}, false},
	}
	p := startProxy(t, config.ModeTransaction, func(c *config.Config) {
		c.Listen.StartupTimeout.Duration = time.Second
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaks := leakCheck(t)
			r := dialRaw(t, p)
			start := time.Now()
			tt.act(t, r)
			if tt.stall {
				r.closedWith(t, 3*time.Second)
				if d := time.Since(start); d < 800*time.Millisecond {
					t.Errorf("closed after %s, before startup_timeout (1s)", d)
				}
			} else {
				r.Close()
			}
			ctx := testContext(t, 20*time.Second)
			probe(t, ctx, p, "acme")
			leaks()
		})
	}
}
