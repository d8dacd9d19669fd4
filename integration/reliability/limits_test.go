package reliability

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// Fifty clients on one backend with a 2 s wait_timeout: every client either runs its transaction or is
// told 53300 by the timeout; none hangs and none gets another error. The pool is clean afterwards.
func TestPoolExhaustedByManyWaiters(t *testing.T) {
	const clients = 50
	p := startProxy(t, config.ModeTransaction, func(c *config.Config) {
		c.Pool.WaitTimeout.Duration = 2 * time.Second
	})
	leaks := leakCheck(t)
	ctx := testContext(t, 60*time.Second)
	conns := make([]*pgconn.PgConn, clients)
	for i := range conns {
		c, err := pgconn.Connect(ctx, p.TenantURL(fx.Tenants[i%len(fx.Tenants)]))
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		defer c.Close(context.Background())
	}
	var mu sync.Mutex
	outcome := map[string]int{}
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			_, err := c.Exec(qctx, "SELECT pg_sleep(0.1)").ReadAll()
			key := "ok"
			switch {
			case qctx.Err() != nil:
				key = "hung"
			case err != nil && sqlstate(err) != "":
				key = sqlstate(err)
			case err != nil:
				key = "error without SQLSTATE: " + err.Error()
			}
			mu.Lock()
			outcome[key]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%d clients on one backend, wait_timeout 2s: %v in %s", clients, outcome, elapsed.Round(time.Millisecond))
	if outcome["ok"]+outcome["53300"] != clients {
		t.Errorf("outcomes %v: want only successes and 53300", outcome)
	}
	if outcome["ok"] == 0 || outcome["53300"] == 0 {
		t.Errorf("outcomes %v: want both successes and wait timeouts", outcome)
	}
	if elapsed > 10*time.Second {
		t.Errorf("took %s: waiters were not timed out at wait_timeout", elapsed)
	}
	for _, c := range conns {
		c.Close(ctx)
	}
	checkClean(t, p)
	leaks()
}

// With max_client_conn 5 the sixth client is refused with 53300 at once, and a client is admitted again
// as soon as one leaves.
func TestTooManyClients(t *testing.T) {
	p := startProxy(t, config.ModeTransaction, func(c *config.Config) { c.Pool.MaxClientConn = 5 })
	leaks := leakCheck(t)
	ctx := testContext(t, 30*time.Second)
	var conns []*pgconn.PgConn
	for i := 0; i < 5; i++ {
		c, err := pgconn.Connect(ctx, p.TenantURL("acme"))
		if err != nil {
			t.Fatalf("client %d: %v", i+1, err)
		}
		conns = append(conns, c)
	}
	start := time.Now()
	_, err := pgconn.Connect(ctx, p.TenantURL("globex"))
	if sqlstate(err) != "53300" {
		t.Fatalf("sixth client: %v; want 53300", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("sixth client refused after %s; want at once", d)
	}
	conns[0].Close(ctx)
	waitFor(t, 5*time.Second, "a slot freed", func() (bool, string) {
		return p.Engine().Clients() < 5, fmt.Sprint(p.Engine().Clients())
	})
	c, err := pgconn.Connect(ctx, p.TenantURL("globex"))
	if err != nil {
		t.Fatalf("client after one left: %v", err)
	}
	conns[0] = c
	for _, c := range conns {
		c.Close(ctx)
	}
	checkClean(t, p)
	leaks()
}

// Password guessing from one address: each failure is answered 28P01 after [auth] failure_delay; after
// 20 failures within a minute the address is refused without a password check (no SCRAM exchange), even
// with the right password, while another address still gets in.
func TestRepeatedWrongPasswordsFromOneAddress(t *testing.T) {
	const delay = 100 * time.Millisecond
	p := startProxy(t, config.ModeTransaction, func(c *config.Config) { c.Auth.FailureDelay.Duration = delay })
	leaks := leakCheck(t)
	ctx := testContext(t, 40*time.Second)
	wrong := strings.Replace(p.TenantURL("acme"), ":"+proxytest.Password+"@", ":guess@", 1)
	for i := 1; i <= 20; i++ {
		start := time.Now()
		_, err := pgconn.Connect(ctx, wrong)
		if sqlstate(err) != "28P01" {
			t.Fatalf("attempt %d: %v; want 28P01", i, err)
		}
		if d := time.Since(start); d < delay {
			t.Fatalf("attempt %d answered after %s, before failure_delay %s", i, d, delay)
		}
	}
	// Blocked now: refused before any SCRAM exchange, whatever the password.
	r := dialRaw(t, p)
	start := time.Now()
	r.send(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "alice@acme", "database": proxytest.Database}})
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := r.fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := m.(*pgproto3.ErrorResponse); !ok || e.Code != "28P01" {
		t.Fatalf("blocked address got %T %+v; want ErrorResponse 28P01 before any authentication request", m, m)
	}
	if d := time.Since(start); d > delay+time.Second {
		t.Errorf("blocked address refused after %s; want about failure_delay", d)
	}
	if _, err := pgconn.Connect(ctx, p.TenantURL("acme")); sqlstate(err) != "28P01" {
		t.Fatalf("right password from the blocked address: %v; want 28P01 until the window passes", err)
	}
	// Another address is not blocked.
	cfg, err := pgconn.ParseConfig(p.TenantURL("acme"))
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	cfg.DialFunc = d.DialContext
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("another address: %v", err)
	}
	c.Close(ctx)
	leaks()
}

// A client sending 200 MB of results to a client that does not read keeps the proxy's memory bounded:
// the relay stops reading from the backend while the client's socket is full (backpressure). A client
// that then reads slowly, and finally goes away mid-result, leaves the backend clean for the next one.
func TestSlowReaderKeepsMemoryBounded(t *testing.T) {
	p := startProxy(t, config.ModeTransaction, nil)
	leaks := leakCheck(t)
	ctx := testContext(t, 60*time.Second)
	r := session(t, ctx, p, "acme")
	if tc, ok := r.Conn.(*net.TCPConn); ok {
		tc.SetReadBuffer(64 << 10) // keep the kernel from absorbing the result for us
	}
	base := rssBytes(t)
	r.send(t, &pgproto3.Query{String: "SELECT repeat('x', 1000) FROM generate_series(1, 200000)"})
	peak := base
	sample := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			peak = max(peak, rssBytes(t))
		}
	}
	sample(3 * time.Second) // not reading at all
	// Reading slowly: 64 KiB every 50 ms for 3 s (about 4 MB of the 200).
	buf := make([]byte, 64<<10)
	var read int
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		r.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := r.Conn.Read(buf)
		if err != nil {
			t.Fatalf("read after %d bytes: %v", read, err)
		}
		read += n
		peak = max(peak, rssBytes(t))
		time.Sleep(50 * time.Millisecond)
	}
	growth := peak - base
	t.Logf("RSS %d MiB before, peak %d MiB (+%d MiB) while the client held 200 MB of results; client read %d KiB",
		base>>20, peak>>20, growth>>20, read>>10)
	if growth > 50<<20 {
		t.Errorf("RSS grew by %d MiB while a client did not read: the relay buffers without limit", growth>>20)
	}
	r.Close()
	checkClean(t, p)
	leaks()
}

// Messages that break the protocol's rules are refused with FATAL 08P01 and the connection closed: above
// [listen] max_message_size, a length below 4 or absurdly large, an unknown type, a malformed Query,
// bytes that are not the protocol at all. At startup, bytes that are not a startup packet (above
// PostgreSQL's 10000-byte cap, shorter than 8 bytes, a non-protocol greeting) are logged and the connection
// closed without a word, as PostgreSQL does; an old protocol version gets FATAL 0A000. Each leaves the proxy and its one backend clean, also when the
// client was inside a transaction.
func TestMalformedMessagesAreRefused(t *testing.T) {
	const maxMsg = 1 << 20
	header := func(typ byte, length uint32) []byte {
		return []byte{typ, byte(length >> 24), byte(length >> 16), byte(length >> 8), byte(length)}
	}
	tests := []struct {
		name string
		// inTx runs the bytes inside an open transaction that wrote a row named rel-malformed.
		inTx bool
		// startup sends bytes instead of a startup packet, on a connection that did not authenticate.
		startup bool
		bytes   []byte
		code    string // "" for a close without any message
	}{
		{name: "message above max_message_size", bytes: header('Q', maxMsg+1), code: "08P01"},
		{name: "message above max_message_size in a transaction", inTx: true, bytes: header('P', 64<<20), code: "08P01"},
		{name: "length below 4", bytes: header('Q', 3), code: "08P01"},
		{name: "length 0", bytes: header('S', 0), code: "08P01"},
		{name: "huge length", bytes: header('Q', 0x7fffffff), code: "08P01"},
		{name: "length with the top bit set", bytes: header('B', 0xffffffff), code: "08P01"},
		{name: "unknown message type", bytes: header('z', 4), code: "08P01"},
		{name: "unknown message type in a transaction", inTx: true, bytes: header('!', 4), code: "08P01"},
		{name: "Query without its terminator", bytes: append(header('Q', 8), "abcd"...), code: "08P01"},
		{name: "HTTP request after authentication", bytes: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), code: "08P01"},
		{name: "text garbage after authentication", bytes: []byte("hello, is this the database?\n"), code: "08P01"},
		{name: "startup packet above 10000 bytes", startup: true, bytes: []byte{0, 0, 0x27, 0x11, 0, 3, 0, 0}, code: ""},
		{name: "HTTP request instead of a startup packet", startup: true, bytes: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), code: ""},
		{name: "startup length below 8", startup: true, bytes: []byte{0, 0, 0, 7, 0, 3, 0}, code: ""},
		{name: "protocol 2.0", startup: true, bytes: []byte{0, 0, 0, 9, 0, 2, 0, 0, 0}, code: "0A000"},
	}
	p := startProxy(t, config.ModeTransaction, func(c *config.Config) { c.Listen.MaxMessageSize = maxMsg })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaks := leakCheck(t)
			ctx := testContext(t, 30*time.Second)
			var r *rawConn
			if tt.startup {
				r = dialRaw(t, p)
			} else {
				r = session(t, ctx, p, "acme")
			}
			if tt.inTx {
				r.query(t, "BEGIN")
				r.query(t, "INSERT INTO employees (name) VALUES ('rel-malformed')")
			}
			r.write(t, tt.bytes)
			if tt.code == "" {
				if e := r.closedWith(t, 5*time.Second); e != nil {
					t.Fatalf("got %s %s (%s); want the connection closed without a word", e.Severity, e.Code, e.Message)
				}
			} else {
				r.expectFatal(t, tt.code)
			}
			checkClean(t, p)
			checkNoRow(t, ctx, "rel-malformed")
			leaks()
		})
	}
	// A whole oversized Query, as a driver would send it: the client gets an error (08P01, or a reset
	// connection when the proxy closes while the rest is still in flight) and the proxy is unharmed.
	t.Run("whole 2 MiB Query", func(t *testing.T) {
		ctx := testContext(t, 30*time.Second)
		conn, err := pgx.Connect(ctx, p.TenantURL("acme"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "SELECT '"+strings.Repeat("x", 2<<20)+"'", pgx.QueryExecModeSimpleProtocol)
		if err == nil {
			t.Fatal("a 2 MiB Query passed a 1 MiB max_message_size")
		}
		if code := sqlstate(err); code != "" && code != "08P01" {
			t.Fatalf("got %v; want 08P01 or a closed connection", err)
		}
		checkClean(t, p)
	})
}
