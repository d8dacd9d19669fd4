package session_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/session"
	"github.com/tenantproxy/tenantproxy/session/pgmock"
)

// FuzzRelay drives a real Engine against the scripted server at unit level. An input decodes into a
// configuration (pool mode, pool size, a second client, the tripwire on every switch, a slow server on
// which a cancel can hit any statement) and a sequence of client actions: simple
// queries from a small dictionary (transactions, savepoints, SET, errors, a guard refusal, a held query,
// a pin, emulated statements, the empty query, tenant checks), extended-protocol messages one by one
// (Parse, Bind, Describe, Execute, Close, Sync, Flush, with or without a Sync ever), cancel requests with
// the right key and a wrong one, waits for the replies so far, a client vanishing, a Terminate, raw
// garbage frames, and the server killing a backend. Two clients of two tenants interleave on one pool.
// Nothing is read synchronously: each client has a reader, and the actions pipeline.
//
// After each input it checks that nothing panicked or hung; that every client either got one
// ReadyForQuery for each of its sync points (a Query or Sync) or was closed by the relay with a FATAL
// ErrorResponse and nothing after it, which only a lost backend or garbage may cause; that no client saw
// a row meant for another (every row carries the marker of the client that asked for it, or its tenant
// read from the backend's tenant setting); that the Engine's Stats return to no client, no lease, no
// waiter, every backend idle; that fresh clients of both tenants are served in their own context
// afterwards; and that no goroutine outlives the Engine.
func FuzzRelay(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	guard := newGuard()
	f.Fuzz(func(t *testing.T, data []byte) {
		runRelayFuzz(t, guard, data)
	})
}

// Actions of the fuzz input: one byte of kind (the high bit picks the client) and one of argument.
const (
	fzQuery byte = iota
	fzParse
	fzBind
	fzDescribe
	fzExecute
	fzClose
	fzSync
	fzFlush
	fzCancel
	fzWait
	fzVanish
	fzTerminate
	fzGarbage // the argument picks the kind; kinds 2 and 3 take a length byte and that many bytes more
	fzKill
	fzKinds
)

// Configuration bits of the input's first byte.
const (
	fzSessionMode = 1 << iota
	fzPoolTwo
	fzSecondEarly
	fzTripwire
	fzSlowServer // every simple query takes a little time on the server, and a cancel can hit it
)

const (
	// fuzzMaxActions bounds an input's actions, so that a run stays well under a second.
	fuzzMaxActions = 64
	// fuzzLimit bounds every wait of a run: a run that needs it has hung.
	fuzzLimit = 5 * time.Second
)

// fuzzSlept is the row of a held query that completed.
const fuzzSlept = "slept"

// fuzzTenants are the tenants of the two clients.
var fuzzTenants = [2]string{"acme", "globex"}

// The statements of a Query action; "%m" is replaced by a fresh marker of the client.
var fuzzQueries = []string{
	"SELECT '%m'",
	"BEGIN",
	"COMMIT",
	"ROLLBACK",
	"SET application_name TO 'fz'",
	"SELECT 1/0",
	"SELECT bad_column",
	"SET ROLE postgres",
	sleepSQL,
	"SELECT current_setting('tenantproxy.tenant')",
	"DISCARD ALL",
	"RESET ALL",
	"",
	"SELECT '%m'; SELECT '%m'",
	"SAVEPOINT a",
	"ROLLBACK TO a",
	"LISTEN fz",
	"SHOW tenantproxy.tenant",
}

// The statements of a Parse action.
var fuzzParsed = []string{
	"SELECT '%m'",
	"SELECT current_setting('tenantproxy.tenant')",
	"BEGIN",
	"COMMIT",
	"SELECT 1/0",
	"SELECT bad_column",
	"SET ROLE postgres",
	"SET application_name TO 'fz'",
	"DISCARD ALL",
	"",
	"SELECT 'a'; SELECT 'b'",
}

var fuzzStmtNames = []string{"", "s1", "s2"}
var fuzzPortals = []string{"", "p1"}

// fuzzSeeds cover each action, alone and in the situations that matter: inside a transaction, in an
// extended batch without Sync, while another client waits, and mid-query.
func fuzzSeeds() [][]byte {
	const c1 = 0x80
	q := func(i int) []byte { return []byte{fzQuery, byte(i)} }
	q1 := func(i int) []byte { return []byte{c1 | fzQuery, byte(i)} }
	seq := func(cfg byte, parts ...[]byte) []byte {
		out := []byte{cfg}
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	a := func(kind, arg byte) []byte { return []byte{kind, arg} }
	var seeds [][]byte
	for i := range fuzzQueries {
		seeds = append(seeds, seq(0, q(i), q(0)))
	}
	seeds = append(seeds,
		// Extended protocol: a full batch, one with an error, one never synced, Describe and Close.
		seq(0, a(fzParse, 3), a(fzBind, 2), a(fzDescribe, 1), a(fzExecute, 0), a(fzSync, 0)),
		seq(0, a(fzParse, 0), a(fzBind, 0), a(fzDescribe, 0), a(fzExecute, 0), a(fzClose, 0), a(fzClose, 1), a(fzSync, 0)),
		seq(0, a(fzParse, 15), a(fzBind, 0), a(fzExecute, 0), q(0), a(fzSync, 0), q(0)),
		seq(0, a(fzParse, 6), a(fzBind, 6), a(fzExecute, 0), a(fzFlush, 0), a(fzWait, 0)),
		seq(0, a(fzParse, 1), a(fzParse, 1), a(fzSync, 0), a(fzParse, 27), a(fzSync, 0)),
		// Two tenants on one backend: a transaction makes the other wait; a pin; session mode.
		seq(fzSecondEarly|fzTripwire, q(1), q(0), q1(0), q1(9), a(fzWait, 0), q(2), a(c1|fzWait, 0), q1(9)),
		seq(fzSecondEarly, q(16), q1(0), q(0), a(fzTerminate, 0), a(c1|fzWait, 0)),
		seq(fzSessionMode|fzSecondEarly, q(0), q1(9), q(9), a(fzTerminate, 0)),
		seq(fzPoolTwo, q(1), q1(1), q(9), q1(9), q(2), q1(3)),
		// Cancels: of a held query, with a wrong key, of a waiting client, of an idle one.
		seq(0, q(8), a(fzCancel, 0), q(0)),
		seq(0, q(8), a(fzCancel, 1), q(0)),
		seq(fzSecondEarly, q(1), q1(0), a(c1|fzCancel, 0), q(2)),
		seq(0, a(fzCancel, 0), q(0)),
		// Clients leaving: mid-query, in a transaction, in an unsynced batch, by Terminate.
		seq(fzSecondEarly, q(8), a(fzVanish, 0), q1(9)),
		seq(fzSecondEarly, q(1), q(0), a(fzVanish, 0), q1(9)),
		seq(fzSecondEarly, a(fzParse, 3), a(fzBind, 0), a(fzExecute, 0), a(fzVanish, 0), q1(9)),
		seq(fzSecondEarly, q(1), a(fzTerminate, 0), q1(9)),
		// Garbage: a bad length, an oversized length, an unknown type, raw bytes.
		seq(0, q(0), a(fzGarbage, 0)),
		seq(0, q(1), a(fzGarbage, 1)),
		seq(0, a(fzGarbage, 2), []byte{3, 'a', 'b', 'c'}),
		seq(fzSecondEarly, a(fzGarbage, 3), []byte{6, 'Q', 0, 0, 0, 9, 'x'}, q1(9)),
		// The server kills a backend: idle, and under a client in a transaction.
		seq(0, q(0), a(fzKill, 0), q(0)),
		seq(fzSecondEarly, q(1), a(fzKill, 0), q1(9)),
	)
	return append(seeds, slowServerSeeds()...)
}

// slowServerSeeds are cancels on a slow server: of the relay's setup (a Sync leases a backend and sets
// it up), of a client's statement, in a transaction and across a tenant switch.
func slowServerSeeds() [][]byte {
	return [][]byte{
		{fzSlowServer, fzSync, 0, fzCancel, 0},
		{fzSlowServer, fzQuery, 0, fzCancel, 0, fzQuery, 0},
		{fzSlowServer | fzSecondEarly, fzQuery, 1, fzQuery, 0, fzCancel, 0, fzQuery, 2, 0x80 | fzQuery, 9, 0x80 | fzCancel, 0, fzQuery, 9, fzCancel, 0, 0x80 | fzQuery, 9},
	}
}

// fuzzClient is one client of a run. The reader goroutine owns the fields under mu; the driver the rest.
type fuzzClient struct {
	id     int
	tenant string
	conn   net.Conn
	notify chan struct{} // a message arrived (capacity 1)
	done   chan struct{} // the reader returned
	greet  chan struct{} // the greeting ended

	mu         sync.Mutex
	pid        uint32
	secret     uint32
	greeted    bool
	rfq        int    // ReadyForQuery messages after the greeting
	fatal      string // the FATAL ErrorResponse's code
	afterEnd   bool   // the end marker's row arrived
	tenantRows int    // rows carrying the client's tenant
	finished   bool   // the ReadyForQuery after the end marker arrived
	// markerRetries counts end markers sent again because a cancel reached one (finish).
	markerRetries int
	readErr       error
	bad           []string // invariant violations the reader saw
	last          []string // the latest messages, for reports

	// Driver state.
	minSync, maxSync int  // the ReadyForQuery messages due: certain, and at most
	unsynced         bool // extended messages sent since the last Sync: a Query may be skipped
	seq              int
	gone             string // "vanished", "terminated", "garbage"
	expectFatal      bool   // garbage the relay must refuse with FATAL
	closedByUs       bool
}

func (c *fuzzClient) marker() string {
	c.seq++
	return fmt.Sprintf("c%d-%d", c.id, c.seq)
}

func (c *fuzzClient) endMarker() string { return fmt.Sprintf("c%d-end", c.id) }

func (c *fuzzClient) snapshot() (rfq int, fatal string, finished bool, eof bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		eof = true
	default:
	}
	return c.rfq, c.fatal, c.finished, eof
}

// frameSource hands pgproto3 one frame at a time, so that the reader tells a stream that ends between
// messages from one cut in the middle of one (pgproto3 reports both as an unexpected EOF).
type frameSource struct{ b []byte }

func (f *frameSource) Read(p []byte) (int, error) {
	if len(f.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, f.b)
	f.b = f.b[n:]
	return n, nil
}

// readFrame reads one message's bytes: io.EOF when the stream ends between messages.
func readFrame(r io.Reader) ([]byte, error) {
	var head [5]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(head[1:])
	if n < 4 || n > 1<<20 {
		return nil, fmt.Errorf("a %q message of length %d", head[0], n)
	}
	frame := make([]byte, 1+n)
	copy(frame, head[:])
	if _, err := io.ReadFull(r, frame[5:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return frame, nil
}

// read is the client's reader: it checks every message as it arrives.
func (c *fuzzClient) read() {
	defer close(c.done)
	src := &frameSource{}
	fe := pgproto3.NewFrontend(src, io.Discard)
	own := "'" + fmt.Sprintf("c%d-", c.id)
	end := "'" + c.endMarker() + "'"
	for {
		frame, err := readFrame(c.conn)
		var msg pgproto3.BackendMessage
		if err == nil {
			src.b = frame
			msg, err = fe.Receive()
		}
		c.mu.Lock()
		if err != nil {
			c.readErr = err
			greeted := c.greeted
			c.mu.Unlock()
			if !greeted {
				close(c.greet)
			}
			return
		}
		d := describeBackend(msg)
		c.last = append(c.last, d)
		if len(c.last) > 12 {
			c.last = c.last[1:]
		}
		if c.fatal != "" {
			c.bad = append(c.bad, fmt.Sprintf("%s after the FATAL error", d))
		}
		switch m := msg.(type) {
		case *pgproto3.BackendKeyData:
			c.pid, c.secret = m.ProcessID, binary.BigEndian.Uint32(m.SecretKey)
		case *pgproto3.ReadyForQuery:
			if !c.greeted {
				c.greeted = true
				close(c.greet)
				break
			}
			c.rfq++
			if c.afterEnd {
				c.finished = true
			}
		case *pgproto3.ErrorResponse:
			if len(m.Code) != 5 {
				c.bad = append(c.bad, fmt.Sprintf("an ErrorResponse without a SQLSTATE: %s", d))
			}
			if m.Severity == "FATAL" {
				c.fatal = m.Code
			}
		case *pgproto3.DataRow:
			v := ""
			if len(m.Values) == 1 {
				v = string(m.Values[0])
			}
			switch {
			case v == end:
				c.afterEnd = true
			case v == fuzzSlept || strings.HasPrefix(v, own):
				// the held query's row, or one of this client's markers
			case v == c.tenant:
				c.tenantRows++ // its tenant, read from the backend's tenant setting
			default:
				c.bad = append(c.bad, fmt.Sprintf("a row meant for someone else, or run outside its tenant's context: %q", v))
			}
		}
		c.mu.Unlock()
		select {
		case c.notify <- struct{}{}:
		default:
		}
	}
}

// fuzzRun is the state of one input's run.
type fuzzRun struct {
	t       *testing.T
	e       *session.Engine
	srv     *pgmock.Server
	clients [2]*fuzzClient
	trace   []string // the actions, for reports
	killed  bool     // the server killed a backend: a client may lose its connection without a word
	cfgDesc string
}

func (r *fuzzRun) fatalf(format string, args ...any) {
	r.t.Helper()
	var sb strings.Builder
	fmt.Fprintf(&sb, format, args...)
	fmt.Fprintf(&sb, "\nconfig: %s\nactions:\n  %s", r.cfgDesc, strings.Join(r.trace, "\n  "))
	for _, c := range r.clients {
		if c != nil {
			c.mu.Lock()
			fmt.Fprintf(&sb, "\nclient %d (%s): ReadyForQuery %d of [%d,%d], fatal %q, gone %q, read error %v, last:\n    %s",
				c.id, c.tenant, c.rfq, c.minSync, c.maxSync, c.fatal, c.gone, c.readErr, strings.Join(c.last, "\n    "))
			c.mu.Unlock()
		}
	}
	fmt.Fprintf(&sb, "\nstats: %+v\nserver got (last 40):\n  %s", r.e.Stats(), strings.Join(tail(r.srv.SinceWithPID(0), 40), "\n  "))
	r.t.Fatal(sb.String())
}

func tail(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// connect attaches a client of tenant and waits for its greeting.
func (r *fuzzRun) connect(id int, tenant string) *fuzzClient {
	r.t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		r.t.Fatal(err)
	}
	conn, err := fileConn(fds[1])
	if err != nil {
		r.t.Fatal(err)
	}
	c := &fuzzClient{id: id, tenant: tenant, conn: conn, notify: make(chan struct{}, 1), done: make(chan struct{}), greet: make(chan struct{})}
	go c.read()
	if err := r.e.Attach(fds[0], info(tenant)); err != nil {
		r.t.Fatalf("Attach: %v", err)
	}
	select {
	case <-c.greet:
	case <-time.After(fuzzLimit):
		r.fatalf("client %d got no greeting", id)
	}
	return c
}

// send writes raw bytes; a client the relay closed may refuse them, which is no failure.
func (c *fuzzClient) send(b []byte) {
	c.conn.SetWriteDeadline(time.Now().Add(fuzzLimit))
	c.conn.Write(b)
}

// fileConn wraps the test's end of a socketpair.
func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "fuzz-client")
	defer f.Close()
	return net.FileConn(f)
}

func encodeMsgs(msgs ...pgproto3.FrontendMessage) []byte {
	var out []byte
	for _, m := range msgs {
		var err error
		if out, err = m.Encode(out); err != nil {
			panic(err) // the dictionary's messages always encode
		}
	}
	return out
}

// waitReplies waits until c has every ReadyForQuery surely due, is closed, or waits for a backend that
// another client holds (which only that client's actions can free).
func (r *fuzzRun) waitReplies(c *fuzzClient) {
	deadline := time.Now().Add(fuzzLimit)
	poll := time.NewTicker(time.Millisecond)
	defer poll.Stop()
	for {
		rfq, _, _, eof := c.snapshot()
		if eof || rfq >= c.minSync {
			return
		}
		if s := r.e.Stats(); s.Waiting > 0 {
			return
		}
		if time.Now().After(deadline) {
			r.fatalf("client %d: its replies never came", c.id)
		}
		select {
		case <-c.notify:
		case <-poll.C:
		}
	}
}

func runRelayFuzz(t *testing.T, guard session.Guard, data []byte) {
	ignore := goleak.IgnoreCurrent()
	if len(data) == 0 {
		return
	}
	cfgByte := data[0]
	data = data[1:]
	mode, pool := "transaction", 1
	if cfgByte&fzSessionMode != 0 {
		mode = "session"
	}
	if cfgByte&fzPoolTwo != 0 {
		pool = 2
	}
	srvCfg := pgmock.Config{Role: poolRole, SleepFor: 2 * time.Millisecond, SleepResult: fuzzSlept, HoldLimit: fuzzLimit, WaitLimit: fuzzLimit}
	if cfgByte&fzSlowServer != 0 {
		srvCfg.QueryTime = 300 * time.Microsecond
	}
	srv := pgmock.New(srvCfg)
	cfg := session.Config{
		Mode: mode, PoolSize: pool, WaitTimeout: 30 * time.Second, MaxPreparedStatements: 100, MaxMessageSize: 64 << 10,
		PoolRole: poolRole, Dialer: srv, Guard: guard, Logger: zap.NewNop(),
	}
	if cfgByte&fzTripwire != 0 {
		cfg.TripwireSampleRate = 1
	}
	e, err := session.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.SetTenants([]session.Tenant{testTenant("acme"), testTenant("globex")})
	e.Start()
	r := &fuzzRun{t: t, e: e, srv: srv, cfgDesc: fmt.Sprintf("mode %s, pool_size %d, second client early %v, tripwire %v, slow server %v", mode, pool,
		cfgByte&fzSecondEarly != 0, cfg.TripwireSampleRate > 0, srvCfg.QueryTime > 0)}
	defer func() {
		e.Close()
		for _, c := range r.clients {
			if c != nil {
				c.conn.Close()
				<-c.done
			}
		}
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
		if !t.Failed() {
			if err := goleak.Find(ignore); err != nil {
				t.Errorf("a goroutine outlived the run: %v", err)
			}
		}
	}()

	r.clients[0] = r.connect(0, fuzzTenants[0])
	if cfgByte&fzSecondEarly != 0 {
		r.clients[1] = r.connect(1, fuzzTenants[1])
	}
	for n := 0; n < fuzzMaxActions && len(data) >= 2; n++ {
		op, arg := data[0], data[1]
		data = data[2:]
		id := int(op >> 7)
		kind := (op & 0x7f) % fzKinds
		if r.clients[id] == nil {
			r.clients[id] = r.connect(id, fuzzTenants[id])
		}
		c := r.clients[id]
		var extra []byte
		if kind == fzGarbage && arg%4 >= 2 && len(data) > 0 {
			n := int(data[0]) % 32
			data = data[1:]
			n = min(n, len(data))
			extra, data = data[:n], data[n:]
		}
		if c.gone != "" {
			continue // a client that left, or sent garbage, does nothing more
		}
		r.act(c, kind, arg, extra)
	}
	r.finish()
}

// act performs one action of client c.
func (r *fuzzRun) act(c *fuzzClient, kind, arg byte, extra []byte) {
	ext := func(what string, m pgproto3.FrontendMessage) {
		r.trace = append(r.trace, fmt.Sprintf("client %d: %s", c.id, what))
		c.send(encodeMsgs(m))
		c.unsynced = true
	}
	switch kind {
	case fzQuery:
		sql := fuzzQueries[int(arg)%len(fuzzQueries)]
		for strings.Contains(sql, "%m") {
			sql = strings.Replace(sql, "%m", c.marker(), 1)
		}
		r.trace = append(r.trace, fmt.Sprintf("client %d: Query %q", c.id, sql))
		c.send(encodeMsgs(&pgproto3.Query{String: sql}))
		c.maxSync++
		if !c.unsynced {
			c.minSync++ // in an extended batch the server may be skipping to Sync, and the Query with it
		}
	case fzParse:
		name := fuzzStmtNames[int(arg)%len(fuzzStmtNames)]
		sql := fuzzParsed[int(arg)/len(fuzzStmtNames)%len(fuzzParsed)]
		sql = strings.ReplaceAll(sql, "%m", c.marker())
		ext(fmt.Sprintf("Parse %q %q", name, sql), &pgproto3.Parse{Name: name, Query: sql})
	case fzBind:
		portal := fuzzPortals[int(arg)%len(fuzzPortals)]
		name := fuzzStmtNames[int(arg)/len(fuzzPortals)%len(fuzzStmtNames)]
		ext(fmt.Sprintf("Bind %q %q", portal, name), &pgproto3.Bind{DestinationPortal: portal, PreparedStatement: name})
	case fzDescribe:
		if arg&1 == 0 {
			name := fuzzStmtNames[int(arg>>1)%len(fuzzStmtNames)]
			ext(fmt.Sprintf("Describe S %q", name), &pgproto3.Describe{ObjectType: 'S', Name: name})
		} else {
			portal := fuzzPortals[int(arg>>1)%len(fuzzPortals)]
			ext(fmt.Sprintf("Describe P %q", portal), &pgproto3.Describe{ObjectType: 'P', Name: portal})
		}
	case fzExecute:
		portal := fuzzPortals[int(arg)%len(fuzzPortals)]
		ext(fmt.Sprintf("Execute %q", portal), &pgproto3.Execute{Portal: portal})
	case fzClose:
		if arg&1 == 0 {
			name := fuzzStmtNames[int(arg>>1)%len(fuzzStmtNames)]
			ext(fmt.Sprintf("Close S %q", name), &pgproto3.Close{ObjectType: 'S', Name: name})
		} else {
			portal := fuzzPortals[int(arg>>1)%len(fuzzPortals)]
			ext(fmt.Sprintf("Close P %q", portal), &pgproto3.Close{ObjectType: 'P', Name: portal})
		}
	case fzSync:
		r.trace = append(r.trace, fmt.Sprintf("client %d: Sync", c.id))
		c.send(encodeMsgs(&pgproto3.Sync{}))
		c.minSync++
		c.maxSync++
		c.unsynced = false
	case fzFlush:
		r.trace = append(r.trace, fmt.Sprintf("client %d: Flush", c.id))
		c.send(encodeMsgs(&pgproto3.Flush{}))
	case fzCancel:
		c.mu.Lock()
		pid, secret := c.pid, c.secret
		c.mu.Unlock()
		if arg&1 != 0 {
			secret++
		}
		r.trace = append(r.trace, fmt.Sprintf("client %d: cancel (right key %v)", c.id, arg&1 == 0))
		r.e.Cancel(pid, secret)
		// Stats runs on the loop after the cancel: it has reached the relay before the client's next bytes,
		// as a client's cancel request on its own connection usually does. Otherwise it could cancel the
		// messages the run ends with, which are not the ones it was sent for.
		r.e.Stats()
	case fzWait:
		r.trace = append(r.trace, fmt.Sprintf("client %d: wait", c.id))
		r.waitReplies(c)
	case fzVanish:
		r.trace = append(r.trace, fmt.Sprintf("client %d: vanishes", c.id))
		c.conn.Close()
		c.closedByUs = true
		c.gone = "vanished"
	case fzTerminate:
		r.trace = append(r.trace, fmt.Sprintf("client %d: Terminate", c.id))
		c.send(encodeMsgs(&pgproto3.Terminate{}))
		c.gone = "terminated"
	case fzGarbage:
		var b []byte
		switch arg % 4 {
		case 0: // a length below the minimum
			b = []byte{'Q', 0, 0, 0, 2}
			c.expectFatal = true
		case 1: // a length above max_message_size
			b = []byte{'Q', 0x01, 0, 0, 0}
			c.expectFatal = true
		case 2: // a type no frontend message has, well framed
			b = []byte{"!az\x00~"[int(arg>>2)%5], 0, 0, 0, 0}
			binary.BigEndian.PutUint32(b[1:], uint32(4+len(extra)))
			b = append(b, extra...)
		default: // raw bytes
			b = extra
		}
		r.trace = append(r.trace, fmt.Sprintf("client %d: garbage %q", c.id, b))
		c.send(b)
		c.gone = "garbage"
	case fzKill:
		pids := r.srv.PIDs()
		if len(pids) == 0 {
			return
		}
		pid := pids[int(arg)%len(pids)]
		r.trace = append(r.trace, fmt.Sprintf("server kills backend %d", pid))
		r.srv.Conn(pid).Close()
		r.killed = true
	}
}

// finish ends every client still there, checks what each one got, and checks the Engine is back at rest.
func (r *fuzzRun) finish() {
	for _, c := range r.clients {
		if c == nil {
			continue
		}
		switch c.gone {
		case "":
			// End any batch, any transaction, then a marker whose row says everything before it is in.
			c.send(encodeMsgs(&pgproto3.Sync{}, &pgproto3.Query{String: "ROLLBACK"}, &pgproto3.Query{String: "SELECT '" + c.endMarker() + "'"}))
			c.minSync += 3
			c.maxSync += 3
		case "garbage":
			if !c.expectFatal {
				c.conn.Close() // the relay may wait for the rest of a frame, or skip it: nothing is due
				c.closedByUs = true
			}
		}
	}
	// Clients finish in any order: one may wait for a backend that another holds until it leaves.
	deadline := time.Now().Add(fuzzLimit)
	poll := time.NewTicker(time.Millisecond)
	defer poll.Stop()
	for {
		pending := 0
		for _, c := range r.clients {
			if c == nil {
				continue
			}
			rfq, _, finished, eof := c.snapshot()
			if eof {
				continue
			}
			if finished && c.gone == "" {
				c.send(encodeMsgs(&pgproto3.Terminate{}))
				c.gone = "terminated at the end"
			}
			if !finished && c.gone == "" && rfq >= c.maxSync && c.markerRetries < 3 {
				// Every reply came but the marker's row: a cancel of the run reached the marker, as a late
				// cancel may on PostgreSQL itself (the server signals the backend after the request's
				// connection is done with). Ask again.
				c.markerRetries++
				c.send(encodeMsgs(&pgproto3.Query{String: "SELECT '" + c.endMarker() + "'"}))
				c.minSync++
				c.maxSync++
			}
			pending++
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			r.fatalf("a client was neither served nor closed")
		}
		<-poll.C
	}
	for _, c := range r.clients {
		if c != nil {
			r.check(c)
		}
	}
	r.waitIdle()
	for id, tenant := range fuzzTenants {
		r.checkServed(id+2, tenant)
	}
}

// check judges what one client got.
func (r *fuzzRun) check(c *fuzzClient) {
	c.mu.Lock()
	rfq, fatal, finished, readErr, bad := c.rfq, c.fatal, c.finished, c.readErr, c.bad
	c.mu.Unlock()
	if len(bad) > 0 {
		r.fatalf("client %d: %s", c.id, strings.Join(bad, "; "))
	}
	if c.closedByUs {
		return // what it would have got is unknown
	}
	if readErr != nil && !errors.Is(readErr, io.EOF) && !errors.Is(readErr, syscall.ECONNRESET) && !(r.killed && errors.Is(readErr, io.ErrUnexpectedEOF)) {
		r.fatalf("client %d: the relay's stream ended badly: %v", c.id, readErr)
	}
	if rfq > c.maxSync {
		r.fatalf("client %d: %d ReadyForQuery for at most %d sync points", c.id, rfq, c.maxSync)
	}
	switch {
	case c.expectFatal:
		if fatal == "" && !r.killed {
			r.fatalf("client %d: garbage the relay must refuse, and it closed the client without a FATAL error", c.id)
		}
	case c.gone == "terminated":
		// Terminate may cut replies short; any FATAL before it is fine.
	case fatal != "" && !r.killed && c.gone != "garbage":
		// Nothing in a run makes the relay close a well-behaved client while its server is up: waits and
		// limits are far away, the tripwire's check always passes, no tenant is suspended.
		r.fatalf("client %d: closed by the relay with FATAL %s", c.id, fatal)
	case fatal != "":
		// Closed by the relay with an error after a backend was lost: fine, whatever it answered before.
	case finished:
		if rfq < c.minSync {
			r.fatalf("client %d: %d ReadyForQuery for at least %d sync points", c.id, rfq, c.minSync)
		}
	case r.killed:
		// A backend lost in the middle of a message closes the client without a word.
	default:
		r.fatalf("client %d: the relay closed it without a FATAL error before its replies were in", c.id)
	}
}

// waitIdle waits until the Engine holds no client, no lease and no waiter, and every backend is idle.
func (r *fuzzRun) waitIdle() {
	deadline := time.Now().Add(fuzzLimit)
	for {
		s := r.e.Stats()
		if s.Clients == 0 && s.Leased == 0 && s.Waiting == 0 && s.Idle == s.Backends && s.Dialing == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.fatalf("the Engine never came back to rest")
		}
		time.Sleep(time.Millisecond)
	}
}

// checkServed connects a fresh client of tenant and checks it is served in its own context.
func (r *fuzzRun) checkServed(id int, tenant string) {
	c := r.connect(id, tenant)
	defer func() {
		c.conn.Close()
		<-c.done
	}()
	c.send(encodeMsgs(&pgproto3.Query{String: "SELECT current_setting('tenantproxy.tenant')"}, &pgproto3.Query{String: "SELECT '" + c.endMarker() + "'"}))
	deadline := time.Now().Add(fuzzLimit)
	for {
		rfq, fatal, finished, eof := c.snapshot()
		c.mu.Lock()
		bad, tenantRows := c.bad, c.tenantRows
		c.mu.Unlock()
		switch {
		case len(bad) > 0:
			r.fatalf("a fresh client of %s after the run: %s", tenant, strings.Join(bad, "; "))
		case finished && rfq == 2 && tenantRows == 1:
			return
		case fatal != "" || eof || finished:
			r.fatalf("a fresh client of %s after the run was not served: %d ReadyForQuery, fatal %q", tenant, rfq, fatal)
		case time.Now().After(deadline):
			r.fatalf("a fresh client of %s after the run got no reply", tenant)
		}
		select {
		case <-c.notify:
		case <-time.After(time.Millisecond):
		}
	}
}
