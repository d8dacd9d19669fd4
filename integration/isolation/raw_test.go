package isolation

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// rawConn is an authenticated client connection driven message by message with pgproto3: Parse, Bind,
// Execute, Sync, FunctionCall and malformed messages as a hostile client would send them.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	fe   *pgproto3.Frontend
}

// rawConnect authenticates to url with pgconn and takes over the connection.
func rawConnect(t *testing.T, ctx context.Context, url string) *rawConn {
	t.Helper()
	c, err := pgconn.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", redact(url), err)
	}
	hc, err := c.Hijack()
	if err != nil {
		t.Fatalf("hijack: %v", err)
	}
	r := &rawConn{t: t, conn: hc.Conn, fe: hc.Frontend}
	t.Cleanup(func() { r.conn.Close() })
	return r
}

// send writes msgs in one flush.
func (r *rawConn) send(msgs ...pgproto3.FrontendMessage) {
	r.t.Helper()
	for _, m := range msgs {
		r.fe.Send(m)
	}
	if err := r.fe.Flush(); err != nil {
		r.t.Fatalf("send: %v", err)
	}
}

// replies is what a raw client received: one entry per message ("ParseComplete", "Error 42501",
// "Row", "Complete SELECT 1", "Ready I", ...), the rows, and the errors' codes and messages.
type replies struct {
	seq    []string
	rows   [][]string
	codes  []string
	errors []string
	// closed is set when the connection ended (after a FATAL error, or a close by the proxy).
	closed bool
}

func (rs replies) String() string {
	return fmt.Sprintf("%s rows %v errors %v", strings.Join(rs.seq, ", "), rs.rows, rs.errors)
}

// text returns every row value of rs, one row a line.
func (rs replies) text() string {
	var b strings.Builder
	for _, r := range rs.rows {
		b.WriteString(strings.Join(r, "|") + "\n")
	}
	return b.String()
}

// until reads replies until the ready-th ReadyForQuery, the end of the connection, or a timeout.
func (r *rawConn) until(ready int) replies {
	r.t.Helper()
	var rs replies
	r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer r.conn.SetReadDeadline(time.Time{})
	for ready > 0 {
		msg, err := r.fe.Receive()
		if err != nil {
			rs.closed = true
			return rs
		}
		switch m := msg.(type) {
		case *pgproto3.ReadyForQuery:
			rs.seq = append(rs.seq, "Ready "+string(m.TxStatus))
			ready--
		case *pgproto3.ErrorResponse:
			rs.seq = append(rs.seq, "Error "+m.Code)
			rs.codes = append(rs.codes, m.Code)
			rs.errors = append(rs.errors, m.Severity+" "+m.Code+" "+m.Message)
		case *pgproto3.DataRow:
			rs.seq = append(rs.seq, "Row")
			rs.rows = append(rs.rows, textRow(m.Values))
		case *pgproto3.CommandComplete:
			rs.seq = append(rs.seq, "Complete "+string(m.CommandTag))
		case *pgproto3.ParseComplete:
			rs.seq = append(rs.seq, "ParseComplete")
		case *pgproto3.BindComplete:
			rs.seq = append(rs.seq, "BindComplete")
		case *pgproto3.CloseComplete:
			rs.seq = append(rs.seq, "CloseComplete")
		case *pgproto3.NoData:
			rs.seq = append(rs.seq, "NoData")
		case *pgproto3.EmptyQueryResponse:
			rs.seq = append(rs.seq, "Empty")
		case *pgproto3.FunctionCallResponse:
			rs.seq = append(rs.seq, "FunctionCallResponse")
			rs.rows = append(rs.rows, textRow([][]byte{m.Result}))
		case *pgproto3.NotificationResponse:
			rs.seq = append(rs.seq, "Notification "+m.Channel+" "+m.Payload)
		case *pgproto3.RowDescription, *pgproto3.ParameterDescription, *pgproto3.ParameterStatus, *pgproto3.NoticeResponse:
		default:
			rs.seq = append(rs.seq, fmt.Sprintf("%T", m))
		}
	}
	return rs
}

// exchange sends msgs and reads the replies up to the ready-th ReadyForQuery.
func (r *rawConn) exchange(ready int, msgs ...pgproto3.FrontendMessage) replies {
	r.t.Helper()
	r.send(msgs...)
	return r.until(ready)
}

// currentUser asks, with a simple Query, who the connection runs as.
func (r *rawConn) currentUser() string {
	r.t.Helper()
	rs := r.exchange(1, &pgproto3.Query{String: "SELECT current_user::text || '|' || current_setting('tenantproxy.tenant') || '|' || (current_schemas(false))[1]"})
	if len(rs.rows) != 1 {
		return "no answer: " + rs.String()
	}
	return rs.rows[0][0]
}

// extended returns the messages that run sql as the unnamed statement with text args: Parse, Bind,
// Describe, Execute (no Sync).
func extended(sql string, args ...string) []pgproto3.FrontendMessage {
	vals := make([][]byte, len(args))
	for i, a := range args {
		vals[i] = []byte(a)
	}
	return []pgproto3.FrontendMessage{
		&pgproto3.Parse{Query: sql},
		&pgproto3.Bind{Parameters: vals},
		&pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{},
	}
}

// join concatenates message lists.
func join(lists ...[]pgproto3.FrontendMessage) []pgproto3.FrontendMessage {
	var out []pgproto3.FrontendMessage
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}
