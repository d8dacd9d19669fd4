package pgmock_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/session/pgmock"
)

const limit = 5 * time.Second

// frontend dials a backend of s and speaks to it as the relay would, through the fd Dial hands over.
func frontend(t *testing.T, s *pgmock.Server) (*pgproto3.Frontend, net.Conn, uint32, []byte) {
	t.Helper()
	bc, err := s.Dial(context.Background())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	f := os.NewFile(uintptr(bc.Fd), "relay-end")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pgproto3.NewFrontend(conn, conn), conn, bc.PID, bc.Secret
}

func newServer(t *testing.T, cfg pgmock.Config) *pgmock.Server {
	t.Helper()
	s := pgmock.New(cfg)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// exchange sends msgs and reads the replies up to the n-th ReadyForQuery.
func exchange(t *testing.T, fe *pgproto3.Frontend, conn net.Conn, n int, msgs ...pgproto3.FrontendMessage) []string {
	t.Helper()
	for _, m := range msgs {
		fe.Send(m)
	}
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var out []string
	for n > 0 {
		conn.SetReadDeadline(time.Now().Add(limit))
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("read: %v after %v", err, out)
		}
		out = append(out, describe(msg))
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			n--
		}
	}
	return out
}

func describe(msg pgproto3.BackendMessage) string {
	switch m := msg.(type) {
	case *pgproto3.ReadyForQuery:
		return fmt.Sprintf("Z %c", m.TxStatus)
	case *pgproto3.CommandComplete:
		return "C " + string(m.CommandTag)
	case *pgproto3.ErrorResponse:
		return "E " + m.Code
	case *pgproto3.DataRow:
		return "D " + string(m.Values[0])
	case *pgproto3.RowDescription:
		return "T"
	case *pgproto3.EmptyQueryResponse:
		return "I"
	case *pgproto3.ParseComplete:
		return "1"
	case *pgproto3.BindComplete:
		return "2"
	case *pgproto3.NoData:
		return "n"
	}
	return fmt.Sprintf("%T", msg)
}

func q(sql string) *pgproto3.Query { return &pgproto3.Query{String: sql} }

func TestBackendAnswersLikePostgreSQL(t *testing.T) {
	tests := []struct {
		name    string
		sent    []pgproto3.FrontendMessage
		want    string
		skipped int // queries discarded in skip mode, which get no ReadyForQuery
	}{
		{"select echoes its expression", []pgproto3.FrontendMessage{q("SELECT 'x'")}, "T|D 'x'|C SELECT 1|Z I", 0},
		{"empty query", []pgproto3.FrontendMessage{q(" ; ")}, "I|Z I", 0},
		{"transaction status", []pgproto3.FrontendMessage{q("BEGIN; SELECT 1")}, "C BEGIN|T|D 1|C SELECT 1|Z T", 0},
		{"an error aborts the transaction", []pgproto3.FrontendMessage{q("BEGIN; SELECT 1/0")}, "C BEGIN|E 22012|Z E", 0},
		{"savepoint outside a transaction", []pgproto3.FrontendMessage{q("SAVEPOINT a")}, "E 25P01|Z I", 0},
		{"rollback to a savepoint keeps the transaction", []pgproto3.FrontendMessage{q("BEGIN; SAVEPOINT a; SELECT 1/0"), q("ROLLBACK TO a; SELECT 2")},
			"C BEGIN|C SAVEPOINT|E 22012|Z E|C ROLLBACK|T|D 2|C SELECT 1|Z T", 0},
		{"settings read back", []pgproto3.FrontendMessage{q(`SET "tenantproxy.tenant" TO 'acme'; SELECT current_setting('tenantproxy.tenant')`)}, "C SET|T|D acme|C SELECT 1|Z I", 0},
		{"reset all forgets settings", []pgproto3.FrontendMessage{q("SET a.b = 'x'; RESET ALL; SHOW a.b")}, "C SET|C RESET|T|D |C SELECT 1|Z I", 0},
		{"poison statement fails to parse", []pgproto3.FrontendMessage{q(pgmock.PoisonSQL)}, "E 42601|Z I", 0},
		{"skip to Sync after an extended error, simple queries included", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "SELECT bad_column"}, &pgproto3.Bind{}, q("SELECT 1"), &pgproto3.Sync{},
		}, "E 42703|Z I", 1},
		{"extended round trip", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Name: "s", Query: "SELECT 'e'"}, &pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{}, &pgproto3.Sync{},
		}, "1|2|T|D 'e'|C SELECT 1|Z I", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, pgmock.Config{})
			fe, conn, _, _ := frontend(t, s)
			syncs := 0
			for _, m := range tt.sent {
				switch m.(type) {
				case *pgproto3.Query, *pgproto3.Sync:
					syncs++
				}
			}
			syncs -= tt.skipped
			if got := strings.Join(exchange(t, fe, conn, syncs, tt.sent...), "|"); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestHeldQueryEndsByWakeCancelOrSleepFor(t *testing.T) {
	tests := []struct {
		name    string
		cfg     pgmock.Config
		release func(s *pgmock.Server, pid uint32, secret []byte) error
		want    string
	}{
		{"wake", pgmock.Config{}, func(s *pgmock.Server, _ uint32, _ []byte) error { s.Wake(); return nil }, "T|D |C SELECT 1|Z I"},
		{"cancel", pgmock.Config{}, func(s *pgmock.Server, pid uint32, secret []byte) error {
			return s.Cancel(context.Background(), pid, secret)
		}, "E 57014|Z I"},
		{"sleep_for", pgmock.Config{SleepFor: time.Millisecond}, func(*pgmock.Server, uint32, []byte) error { return nil }, "T|D |C SELECT 1|Z I"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, tt.cfg)
			fe, conn, pid, secret := frontend(t, s)
			fe.Send(q(s.SleepSQL()))
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
			s.WaitForMessage(t, 0, "Q "+s.SleepSQL())
			// A cancel with the wrong key reaches nothing.
			if err := s.Cancel(context.Background(), pid, []byte{0}); err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() { errc <- tt.release(s, pid, secret) }()
			if got := strings.Join(exchange(t, fe, conn, 1), "|"); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			if err := <-errc; err != nil {
				t.Error(err)
			}
			if n := len(s.CancelCalls()); n < 1 {
				t.Errorf("%d cancel calls recorded", n)
			}
		})
	}
}

func TestScriptedFailures(t *testing.T) {
	s := newServer(t, pgmock.Config{})
	fe, conn, pid, _ := frontend(t, s)
	s.DropColumn("old")
	if got := strings.Join(exchange(t, fe, conn, 1, q("SELECT old")), "|"); got != "E 42703|Z I" {
		t.Errorf("dropped column: got %s", got)
	}
	if got := s.Messages(pid); len(got) != 1 || got[0] != "Q SELECT old" {
		t.Errorf("recorded %v", got)
	}
	refused := errors.New("connection refused")
	s.SetDialError(refused)
	if _, err := s.Dial(context.Background()); !errors.Is(err, refused) {
		t.Errorf("Dial: %v, want the scripted error", err)
	}
	if s.Dials() != 2 {
		t.Errorf("%d dials recorded, want 2", s.Dials())
	}
	s.Conn(pid).Close()
	conn.SetReadDeadline(time.Now().Add(limit))
	if _, err := fe.Receive(); err == nil {
		t.Error("the connection stayed open after Conn.Close")
	}
}

func TestQueryTimeLetsACancelHitAnyQuery(t *testing.T) {
	s := newServer(t, pgmock.Config{QueryTime: time.Minute})
	fe, conn, pid, secret := frontend(t, s)
	fe.Send(q("SET ROLE x"))
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	s.WaitForMessage(t, 0, "Q SET ROLE x")
	errc := make(chan error, 1)
	go func() { errc <- s.Cancel(context.Background(), pid, secret) }()
	if got := strings.Join(exchange(t, fe, conn, 1), "|"); got != "E 57014|Z I" {
		t.Errorf("got %s, want the statement cancelled", got)
	}
	if err := <-errc; err != nil {
		t.Error(err)
	}
}

func TestLateCancelIsDropped(t *testing.T) {
	s := newServer(t, pgmock.Config{SleepFor: time.Millisecond})
	fe, conn, pid, secret := frontend(t, s)
	if got := strings.Join(exchange(t, fe, conn, 1, q(s.SleepSQL())), "|"); got != "T|D |C SELECT 1|Z I" {
		t.Fatalf("held query: got %s", got)
	}
	// The backend is idle: a cancel now reaches nothing, and the next held query is not cut short by it.
	if err := s.Cancel(context.Background(), pid, secret); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(exchange(t, fe, conn, 1, q(s.SleepSQL())), "|"); got != "T|D |C SELECT 1|Z I" {
		t.Errorf("the next held query: got %s", got)
	}
}
