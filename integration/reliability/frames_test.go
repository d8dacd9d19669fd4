package reliability

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// framesConfig configures the proxies the frame tests drive: one backend, so whatever a client leaves
// behind meets the next one; trust authentication, so a session costs no SCRAM exchange; a short
// wait_timeout, so a backend that is never given back shows as 53300 at once; and a small
// max_message_size.
func framesConfig(c *config.Config) {
	c.Pool.Mode = config.ModeTransaction
	c.Backend.PoolSize = 1
	c.Auth.Method = config.AuthTrust
	c.Tenancy.RequireHardening = new(bool) // checked once by the package's other proxies; it costs a round of queries
	c.Pool.WaitTimeout.Duration = 3 * time.Second
	c.Listen.MaxMessageSize = 64 << 10
}

// cleanFramesRows removes the rows the frame tests' COPY statements may have added.
func cleanFramesRows(tb testing.TB) {
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		superExec(ctx, "DELETE FROM acme.employees WHERE name = 'rel-frames'")
	})
}

// runFrames opens an authenticated session as acme's user, writes data as the client's bytes followed
// by a Terminate, closes its sending side, and reads until the proxy closes the connection. The proxy
// must close it within 10 s, and what it sent must be well framed: every message with a valid length
// and every error with a SQLSTATE. Then a new client of the other tenant must run a query on the pool's
// one backend in its own context.
func runFrames(t testing.TB, p *proxytest.Proxy, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := pgconn.Connect(ctx, p.TenantURL("acme"))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	conn := hc.Conn
	defer conn.Close()
	// The proxy may close the connection before it has read everything (after a FATAL): write errors
	// are expected then.
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(append(append([]byte(nil), data...), 'X', 0, 0, 0, 4)); err == nil {
		conn.(*net.TCPConn).CloseWrite()
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	stream, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the proxy did not close the session within 10 s of the client's Terminate and end of input (input %s)", printable(data))
	}
	checkFraming(t, stream, data)
	var user, tenant string
	conn2, err := pgx.Connect(ctx, p.TenantURL("globex"))
	if err != nil {
		t.Fatalf("next client: connect: %v (input %q)", err, printable(data))
	}
	defer conn2.Close(context.Background())
	err = conn2.QueryRow(ctx, "SELECT current_user, current_setting('tenantproxy.tenant')", pgx.QueryExecModeSimpleProtocol).Scan(&user, &tenant)
	if err != nil || user != "tenant_globex" || tenant != "globex" {
		t.Fatalf("next client: %q %q %v; want tenant_globex in tenant globex (input %s)", user, tenant, err, printable(data))
	}
}

// checkFraming walks the proxy's bytes: each message has a length of at least 4, and each error or
// notice carries a five-character SQLSTATE. A truncated last message is allowed: the proxy closes a
// connection without flushing what the client did not read.
func checkFraming(t testing.TB, stream, input []byte) {
	t.Helper()
	for off := 0; off+5 <= len(stream); {
		typ := stream[off]
		length := int(binary.BigEndian.Uint32(stream[off+1:]))
		if length < 4 {
			t.Fatalf("message %q at byte %d has length %d: the stream lost its framing (input %s)", typ, off, length, printable(input))
		}
		end := off + 1 + length
		if end > len(stream) {
			return
		}
		if typ == 'E' || typ == 'N' {
			code := ""
			for f := stream[off+5 : end]; len(f) > 1 && f[0] != 0; {
				i := 1
				for i < len(f) && f[i] != 0 {
					i++
				}
				if f[0] == 'C' {
					code = string(f[1:i])
				}
				if i >= len(f) {
					break
				}
				f = f[i+1:]
			}
			if len(code) != 5 {
				t.Fatalf("error at byte %d without a SQLSTATE: %s (input %s)", off, printable(stream[off:end]), printable(input))
			}
		}
		off = end
	}
}

// frameSeeds are client message sequences of real sessions — simple and extended protocol, errors,
// COPY, pipelines — and a few broken ones.
func frameSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	enc := func(msgs ...pgproto3.FrontendMessage) []byte {
		var b []byte
		for _, m := range msgs {
			var err error
			if b, err = m.Encode(b); err != nil {
				tb.Fatal(err)
			}
		}
		return b
	}
	q := func(sql string) *pgproto3.Query { return &pgproto3.Query{String: sql} }
	return [][]byte{
		enc(q("SELECT 1")),
		enc(q("BEGIN"), q("SELECT tenant FROM employees"), q("SELECT 1/0"), q("ROLLBACK")),
		enc(q("BEGIN"), q("SELECT count(*) FROM employees")),
		enc(q("SELECT 1; SELECT 2"), q("")),
		enc(&pgproto3.Parse{Query: "SELECT $1::int + 1"}, &pgproto3.Bind{Parameters: [][]byte{[]byte("41")}},
			&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}),
		enc(&pgproto3.Parse{Name: "s1", Query: "SELECT name FROM employees WHERE id > $1"}, &pgproto3.Sync{},
			&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("0")}}, &pgproto3.Execute{MaxRows: 2},
			&pgproto3.Execute{}, &pgproto3.Sync{}, &pgproto3.Close{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{}),
		enc(&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{}),
		enc(&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "nope"}, &pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{}),
		enc(&pgproto3.Describe{ObjectType: 'S', Name: "missing"}, &pgproto3.Sync{}, q("SELECT 2")),
		enc(q("COPY (SELECT tenant FROM employees) TO STDOUT")),
		enc(q("COPY employees (name) FROM STDIN"), &pgproto3.CopyData{Data: []byte("rel-frames\n")}, &pgproto3.CopyFail{Message: "changed my mind"}),
		enc(&pgproto3.CopyData{Data: []byte("stray")}, &pgproto3.CopyDone{}, q("SELECT 3")),
		enc(&pgproto3.FunctionCall{Function: 1598, ResultFormatCode: 0}, &pgproto3.Sync{}),
		enc(q("DISCARD ALL"), q("RESET ALL"), q("DEALLOCATE ALL"), q("SET application_name = 'frames'"), q("SHOW application_name")),
		enc(q("LISTEN frames"), q("NOTIFY frames, 'x'")),
		enc(q("SET ROLE tenant_globex"), q("SET search_path = globex"), q("SELECT set_config('tenantproxy.tenant', 'globex', false)")),
		enc(&pgproto3.Sync{}, &pgproto3.Flush{}, &pgproto3.Sync{}),
		{'Q', 0, 0, 0, 3},
		{'z', 0, 0, 0, 4},
		append(enc(q("SELECT 1")), 'Q', 0, 1, 0, 0, 'S'),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	}
}

// FuzzClientFrames sends arbitrary bytes as an authenticated client's messages, through the whole relay to
// a real server; the proxy must answer with well-framed messages, close the session, and hand the next
// client a clean backend. Run it long with
// go test -run '^$' -fuzz '^FuzzClientFrames$' -fuzztime 10m ./integration/reliability/
//
// Each input gets a proxy of its own, so that a backend one input broke does not fail the inputs after it
// and a crasher minimizes to what breaks the proxy.
func FuzzClientFrames(f *testing.F) {
	cleanFramesRows(f)
	for _, s := range frameSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		runFrames(t, fx.Start(t, framesConfig), data)
	})
}

// TestRandomClientFrames sends 300 random, mostly well-formed message sequences built from the protocol's
// messages (a fixed seed, so a failure reproduces), each followed by a Terminate or, one time in three,
// by the client simply going away, all through one proxy, so that what one sequence leaves behind meets
// the next.
func TestRandomClientFrames(t *testing.T) {
	cleanFramesRows(t)
	p := startProxy(t, config.ModeTransaction, framesConfig)
	leaks := leakCheck(t)
	rng := rand.New(rand.NewPCG(6, 2026))
	for range 300 {
		runFrames(t, p, randomFrames(rng))
	}
	checkClean(t, p)
	leaks()
}

// randomFrames builds one random client message sequence.
func randomFrames(rng *rand.Rand) []byte {
	sqls := []string{"SELECT 1", "SELECT tenant FROM employees", "BEGIN", "COMMIT", "ROLLBACK", "SELECT 1/0",
		"SAVEPOINT s", "ROLLBACK TO s", "SELECT $1::text", "SELECT pg_sleep(0.01)", "SHOW search_path",
		"SET statement_timeout = '5s'", "COPY (SELECT 1) TO STDOUT", "COPY employees (name) FROM STDIN",
		"DISCARD ALL", "LISTEN frames", "DECLARE c CURSOR FOR SELECT 1", "FETCH 1 FROM c", ""}
	names := []string{"", "", "a", "b"}
	pick := func(l []string) string { return l[rng.IntN(len(l))] }
	var b []byte
	var err error
	for n := 1 + rng.IntN(8); n > 0; n-- {
		var m pgproto3.FrontendMessage
		switch k := rng.IntN(20); {
		case k < 5:
			m = &pgproto3.Query{String: pick(sqls)}
		case k < 8:
			m = &pgproto3.Parse{Name: pick(names), Query: pick(sqls)}
		case k < 10:
			var params [][]byte
			if rng.IntN(2) == 0 {
				params = [][]byte{[]byte("x")}
			}
			m = &pgproto3.Bind{DestinationPortal: pick(names), PreparedStatement: pick(names), Parameters: params}
		case k < 12:
			m = &pgproto3.Execute{Portal: pick(names), MaxRows: uint32(rng.IntN(2))}
		case k < 14:
			m = &pgproto3.Sync{}
		case k == 14:
			m = &pgproto3.Describe{ObjectType: "SP"[rng.IntN(2)], Name: pick(names)}
		case k == 15:
			m = &pgproto3.Close{ObjectType: "SP"[rng.IntN(2)], Name: pick(names)}
		case k == 16:
			m = &pgproto3.Flush{}
		case k == 17:
			m = &pgproto3.CopyData{Data: []byte("rel-frames\n")}
		case k == 18:
			m = []pgproto3.FrontendMessage{&pgproto3.CopyDone{}, &pgproto3.CopyFail{Message: "no"}}[rng.IntN(2)]
		default:
			// A broken frame: an unknown type, a bad length, or a truncated message.
			switch rng.IntN(3) {
			case 0:
				return append(b, byte('a'+rng.IntN(26)), 0, 0, 0, 4)
			case 1:
				return append(b, 'Q', 0xff, 0, 0, byte(rng.IntN(256)))
			default:
				return append(b, 'Q', 0, 0, 0, 20, 'S', 'E')
			}
		}
		if b, err = m.Encode(b); err != nil {
			panic(err)
		}
	}
	if rng.IntN(3) == 0 {
		// Half a message: the client goes away in the middle of it (the Terminate runFrames appends
		// becomes part of it).
		b = append(b, 'Q', 0, 0, 0, 200, 'S')
	}
	return b
}
