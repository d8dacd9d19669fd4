package session_test

import (
	"context"
	"encoding/binary"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/session"
)

// The benchmarks relay transactions between a client and a backend that both live on socketpairs and speak
// with pre-encoded bytes through raw system calls, so that what they measure, time and allocations, is the
// relay's: the loop's reads, the framing, the lease, the decisions and the writes.

// encode returns the wire bytes of messages.
func encode(tb testing.TB, msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
	var out []byte
	for _, m := range msgs {
		var err error
		if out, err = m.Encode(out); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

// rawReplies are the fake backend's answers, by frontend message type.
type rawReplies map[byte][]byte

func newRawReplies(tb testing.TB) rawReplies {
	row := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("?column?"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1}}}
	return rawReplies{
		'Q': encode(tb, row, &pgproto3.DataRow{Values: [][]byte{[]byte("1")}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'}),
		'P': encode(tb, &pgproto3.ParseComplete{}),
		'B': encode(tb, &pgproto3.BindComplete{}),
		'D': encode(tb, &pgproto3.ParameterDescription{}, row),
		'E': encode(tb, &pgproto3.DataRow{Values: [][]byte{[]byte("1")}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}),
		'C': encode(tb, &pgproto3.CloseComplete{}),
		'S': encode(tb, &pgproto3.ReadyForQuery{TxStatus: 'I'}),
	}
}

// rawServer is a session.Dialer whose backends answer every message with its pre-encoded reply.
type rawServer struct {
	replies rawReplies
	wg      sync.WaitGroup
}

func (rs *rawServer) Dial(ctx context.Context) (*session.BackendConn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return nil, err
	}
	rs.wg.Add(1)
	go rs.serve(fds[1])
	params := make(map[string]string, len(serverParams))
	for k, v := range serverParams {
		params[k] = v
	}
	return &session.BackendConn{Fd: fds[0], PID: 4242, Secret: []byte{1, 2, 3, 4}, Params: params}, nil
}

func (rs *rawServer) Cancel(context.Context, uint32, []byte) error { return nil }

func (rs *rawServer) serve(fd int) {
	defer rs.wg.Done()
	defer syscall.Close(fd)
	c := rawConn{fd: fd, buf: make([]byte, 64<<10)}
	out := make([]byte, 0, 64<<10)
	for {
		if !c.fill() {
			return
		}
		for {
			t, ok := c.next()
			if !ok {
				break
			}
			if t == 'X' {
				return
			}
			out = append(out, rs.replies[t]...)
		}
		if len(out) > 0 && !writeAll(fd, out) {
			return
		}
		out = out[:0]
	}
}

// rawConn frames the messages read from a blocking fd.
type rawConn struct {
	fd   int
	buf  []byte
	r, w int
}

// fill reads more bytes; false at the end of the stream.
func (c *rawConn) fill() bool {
	if c.r == c.w {
		c.r, c.w = 0, 0
	} else if c.r > 0 {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	for {
		n, err := syscall.Read(c.fd, c.buf[c.w:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return false
		}
		c.w += n
		return true
	}
}

// next returns the type of the next complete message and consumes it.
func (c *rawConn) next() (byte, bool) {
	if c.w-c.r < 5 {
		return 0, false
	}
	n := int(binary.BigEndian.Uint32(c.buf[c.r+1:]))
	if c.w-c.r < 1+n {
		return 0, false
	}
	t := c.buf[c.r]
	c.r += 1 + n
	return t, true
}

// untilReady consumes messages up to ReadyForQuery; false if the stream ended first.
func (c *rawConn) untilReady() bool {
	for {
		for {
			t, ok := c.next()
			if !ok {
				break
			}
			if t == 'Z' {
				return true
			}
			if t == 'E' {
				return false
			}
		}
		if !c.fill() {
			return false
		}
	}
}

func writeAll(fd int, b []byte) bool {
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return false
		}
		b = b[n:]
	}
	return true
}

// allowAll is a Guard that allows everything; it isolates the relay's own cost from the guard's.
type allowAll struct{}

func (allowAll) Check(string, string, *session.Tenant, bool) session.Verdict {
	return session.Verdict{}
}

// benchRelay starts an Engine over a rawServer and attaches one client, greeted and ready.
func benchRelay(b *testing.B, guard session.Guard) *rawConn {
	b.Helper()
	rs := &rawServer{replies: newRawReplies(b)}
	e, err := session.New(session.Config{Mode: "transaction", PoolSize: 1, Dialer: rs, Guard: guard, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	e.SetTenants([]session.Tenant{testTenant("acme")})
	e.Start()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	syscall.SetNonblock(fds[0], true)
	if err := e.Attach(fds[0], info("acme")); err != nil {
		b.Fatal(err)
	}
	c := &rawConn{fd: fds[1], buf: make([]byte, 64<<10)}
	b.Cleanup(func() {
		syscall.Close(c.fd)
		e.Close()
		rs.wg.Wait()
	})
	if !c.untilReady() {
		b.Fatal("no greeting")
	}
	return c
}

// transact writes req and waits for ReadyForQuery, n times.
func transact(b *testing.B, c *rawConn, req []byte, n int) {
	for i := 0; i < n; i++ {
		if !writeAll(c.fd, req) || !c.untilReady() {
			b.Fatal("transaction failed")
		}
	}
}

// BenchmarkRelaySimpleQuery relays one simple-protocol transaction (Query, then RowDescription, DataRow,
// CommandComplete, ReadyForQuery) per operation: lease, relay and release.
func BenchmarkRelaySimpleQuery(b *testing.B) {
	for _, g := range []struct {
		name  string
		guard func() session.Guard
	}{
		{"guard=policy", func() session.Guard { return newGuard() }},
		{"guard=allow", func() session.Guard { return allowAll{} }},
	} {
		b.Run(g.name, func(b *testing.B) {
			c := benchRelay(b, g.guard())
			req := encode(b, &pgproto3.Query{String: "SELECT 1"})
			transact(b, c, req, 1000) // warm: buffers grown, context applied, guard caches filled
			b.ReportAllocs()
			b.ResetTimer()
			transact(b, c, req, b.N)
		})
	}
}

// BenchmarkRelayExtendedPrepared relays one Bind, Execute, Sync of a prepared statement per operation.
func BenchmarkRelayExtendedPrepared(b *testing.B) {
	for _, g := range []struct {
		name  string
		guard func() session.Guard
	}{
		{"guard=policy", func() session.Guard { return newGuard() }},
		{"guard=allow", func() session.Guard { return allowAll{} }},
	} {
		b.Run(g.name, func(b *testing.B) {
			c := benchRelay(b, g.guard())
			transact(b, c, encode(b, &pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, &pgproto3.Sync{}), 1)
			req := encode(b, &pgproto3.Bind{PreparedStatement: "s1", ResultFormatCodes: []int16{1}}, &pgproto3.Execute{}, &pgproto3.Sync{})
			transact(b, c, req, 1000)
			b.ReportAllocs()
			b.ResetTimer()
			transact(b, c, req, b.N)
		})
	}
}

// BenchmarkIdleClientHeap reports the relay's heap per idle attached client (bytes/client): what
// idle.sh measures from outside as resident memory, without the runtime's and the kernel's share.
func BenchmarkIdleClientHeap(b *testing.B) {
	fs := newFakeServer()
	cfg := session.Config{Mode: "transaction", PoolSize: 1, WaitTimeout: 10 * time.Second, MaxPreparedStatements: 100,
		PoolRole: poolRole, Dialer: fs, Guard: newGuard(), Logger: zap.NewNop()}
	e, err := session.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	e.SetTenants([]session.Tenant{testTenant("acme")})
	e.Start()
	defer func() { e.Close(); closeServer(b, fs) }()
	const n = 1000
	var peers []int
	defer func() {
		for _, fd := range peers {
			syscall.Close(fd)
		}
	}()
	attachN := func() {
		for i := 0; i < n; i++ {
			pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			syscall.SetNonblock(pair[0], true)
			if err := e.Attach(pair[0], info("acme")); err != nil {
				b.Fatal(err)
			}
			peers = append(peers, pair[1])
		}
		deadline := time.Now().Add(waitLimit)
		for e.Stats().Clients < len(peers) {
			if time.Now().After(deadline) {
				b.Fatal("clients never attached")
			}
			time.Sleep(time.Millisecond)
		}
	}
	attachN() // warm: the first backend, the guard, the maps
	var total float64
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		attachN()
		runtime.GC()
		runtime.ReadMemStats(&after)
		total += float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
	}
	b.ReportMetric(total/float64(b.N), "bytes/client")
}
