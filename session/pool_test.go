package session_test

import (
	"bytes"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/goleak"

	"github.com/tenantproxy/tenantproxy/session"
)

func TestWaitQueueServesAfterReadyForQueryIdle(t *testing.T) {
	r := newRig(t, nil)
	first := r.connect(info("acme"))
	second := r.connect(info("globex"))
	first.query("BEGIN")

	second.send(&pgproto3.Query{String: "SELECT 2"})
	r.waitStats("one waiting client", func(s session.Stats) bool { return s.Waiting == 1 })
	first.query("SELECT 1")
	second.silent(50 * time.Millisecond)
	first.query("SELECT 1/0") // status E keeps the lease too
	second.silent(50 * time.Millisecond)

	first.query("ROLLBACK")
	equal(t, "second client", second.untilReady(), selectReply("2", 'I'))
	if st := r.e.Stats(); st.Waiting != 0 || st.Leased != 0 {
		t.Errorf("stats after both: %+v", st)
	}
}

func TestWaitTimeoutClosesWaiter(t *testing.T) {
	r := newRig(t, func(c *session.Config) { c.WaitTimeout = 300 * time.Millisecond })
	holder := r.connect(info("acme"))
	waiter := r.connect(info("acme"))
	holder.query("BEGIN")
	start := time.Now()
	waiter.send(&pgproto3.Query{String: "SELECT 2"})
	got := waiter.closedWith()
	want := "ErrorResponse FATAL 53300 tenantproxy: no server connection became free within [pool] wait_timeout (300ms); [backend] pool_size is 1"
	if got != want {
		t.Errorf("waiter got %q, want %q", got, want)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Errorf("waiter closed after %v, want about 300ms", d)
	}
	equal(t, "holder", holder.query("COMMIT"), []string{"CommandComplete COMMIT", "ReadyForQuery I"})
	if st := r.e.Stats(); st.Waiting != 0 || st.Clients != 1 {
		t.Errorf("stats: %+v", st)
	}
}

func TestTenantCapLeavesRoomForOthers(t *testing.T) {
	r := newRig(t, func(c *session.Config) { c.PoolSize = 2; c.TenantMaxBackends = 1 })
	r.openBackends(2)
	a1 := r.connect(info("acme"))
	a2 := r.connect(info("acme"))
	g1 := r.connect(info("globex"))
	a1.query("BEGIN")

	a2.send(&pgproto3.Query{String: "SELECT 'a2'"})
	r.waitStats("acme's second client waiting at its cap", func(s session.Stats) bool { return s.Waiting == 1 && s.Idle == 1 })
	a2.silent(50 * time.Millisecond)

	equal(t, "globex", g1.query("SELECT 'g1'"), selectReply("'g1'", 'I'))
	a1.query("COMMIT")
	equal(t, "acme's second client", a2.untilReady(), selectReply("'a2'", 'I'))
}

func TestWaitersServedRoundRobinAcrossTenants(t *testing.T) {
	r := newRig(t, nil)
	holder := r.connect(info("initech"))
	holder.query("BEGIN")
	var waiters []*client
	for i, w := range []struct{ tenant, tag string }{{"acme", "a1"}, {"acme", "a2"}, {"acme", "a3"}, {"globex", "g1"}, {"globex", "g2"}} {
		c := r.connect(info(w.tenant))
		c.send(&pgproto3.Query{String: "SELECT '" + w.tag + "'"})
		r.waitStats("waiters queued in order", func(s session.Stats) bool { return s.Waiting == i+1 })
		waiters = append(waiters, c)
	}
	m := r.fs.Mark()
	holder.query("COMMIT")
	for _, c := range waiters {
		c.untilReady()
	}
	var order []string
	for _, msg := range r.fs.Since(m) {
		if msg = clientStatement(msg); strings.HasPrefix(msg, "Q SELECT '") {
			order = append(order, strings.Trim(strings.TrimPrefix(msg, "Q SELECT "), "'"))
		}
	}
	equal(t, "order of service", order, []string{"a1", "g1", "a2", "g2", "a3"})
}

func TestCancelForwardsOnlyForQueryInFlight(t *testing.T) {
	r := newRig(t, nil)
	busy := r.connect(info("acme"))
	idle := r.connect(info("acme"))
	idle.query("SELECT 1")

	// An idle client's cancel, and a cancel with the wrong secret, reach nobody.
	r.e.Cancel(idle.pid, idle.secret)
	m := r.fs.Mark()
	busy.send(&pgproto3.Query{String: sleepSQL})
	r.fs.WaitForMessage(t, m, "Q "+sleepSQL)
	r.e.Cancel(busy.pid, busy.secret+1)
	r.e.Cancel(busy.pid+1000, busy.secret)
	r.e.Stats() // the loop has handled the cancels
	time.Sleep(20 * time.Millisecond)
	if calls := r.fs.CancelCalls(); len(calls) != 0 {
		t.Fatalf("cancels reached the server: %v", calls)
	}

	r.e.Cancel(busy.pid, busy.secret)
	equal(t, "cancelled client", busy.untilReady(), []string{"ErrorResponse ERROR 57014 canceling statement due to user request", "ReadyForQuery I"})
	calls := r.fs.CancelCalls()
	pid := r.fs.PIDs()[0]
	if len(calls) != 1 || calls[0].PID != pid || !bytes.Equal(calls[0].Secret, r.fs.Conn(pid).Secret()) {
		t.Errorf("cancel requests %v, want one with backend %d's key", calls, pid)
	}
	equal(t, "after the cancel", busy.query("SELECT 2"), selectReply("2", 'I'))
}

func TestBackendHeldBackWhileCancelInFlight(t *testing.T) {
	r := newRig(t, nil)
	gate := make(chan struct{})
	r.fs.SetCancelGate(gate)
	first := r.connect(info("acme"))
	second := r.connect(info("acme"))

	m := r.fs.Mark()
	first.send(&pgproto3.Query{String: sleepSQL})
	r.fs.WaitForMessage(t, m, "Q "+sleepSQL)
	r.e.Cancel(first.pid, first.secret)
	deadline := time.Now().Add(waitLimit)
	for len(r.fs.CancelCalls()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Dialer.Cancel was never called")
		}
		time.Sleep(time.Millisecond)
	}
	// The query ends on its own before the cancel request reached the server.
	r.fs.Wake()
	equal(t, "first client", first.untilReady(), selectReply("", 'I'))

	second.send(&pgproto3.Query{String: "SELECT 2"})
	r.waitStats("second client waiting", func(s session.Stats) bool { return s.Waiting == 1 })
	second.silent(100 * time.Millisecond)
	close(gate)
	equal(t, "second client", second.untilReady(), selectReply("2", 'I'))
}

func TestDrainClosesIdleClientsFirst(t *testing.T) {
	r := newRig(t, nil)
	idle := r.connect(info("acme"))
	inTx := r.connect(info("acme"))
	inTx.query("BEGIN")

	done := r.e.Drain(10 * time.Second)
	const shutdown = "ErrorResponse FATAL 57P01 tenantproxy: the proxy is shutting down"
	if got := idle.closedWith(); got != shutdown {
		t.Errorf("idle client got %q", got)
	}
	late := attach(t, r.e, info("acme"))
	if got := late.closedWith(); got != shutdown {
		t.Errorf("client attached while draining got %q", got)
	}
	equal(t, "statement in the open transaction", inTx.query("SELECT 1"), selectReply("1", 'T'))
	select {
	case <-done:
		t.Fatal("Drain finished while a transaction was open")
	default:
	}
	equal(t, "COMMIT", inTx.query("COMMIT"), []string{"CommandComplete COMMIT", "ReadyForQuery I"})
	if got := inTx.closedWith(); got != shutdown {
		t.Errorf("client after its transaction got %q", got)
	}
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("Drain never finished")
	}
}

func TestDrainTimeoutEndsOpenTransactions(t *testing.T) {
	r := newRig(t, nil)
	c := r.connect(info("acme"))
	c.query("BEGIN")
	m := r.fs.Mark()
	done := r.e.Drain(300 * time.Millisecond)
	got := c.closedWith()
	if !strings.HasPrefix(got, "ErrorResponse FATAL 57P01 tenantproxy: the proxy is shutting down; shutdown_timeout passed") {
		t.Errorf("client got %q", got)
	}
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("Drain never finished")
	}
	r.fs.WaitForMessage(t, m, "Q ROLLBACK")
}

// A client attached while no backend could ever be opened (the server is down when the proxy starts) must be
// told so, not left waiting without a greeting.
func TestClientToldWhenServerUnreachableAtStart(t *testing.T) {
	fs := newFakeServer()
	fs.SetDialError(errors.New("connection refused"))
	e, err := session.New(session.Config{Mode: "transaction", PoolSize: 1, WaitTimeout: 300 * time.Millisecond, Dialer: fs, Guard: newGuard()})
	if err != nil {
		t.Fatal(err)
	}
	e.SetTenants([]session.Tenant{testTenant("acme")})
	e.Start()
	defer e.Close()
	c := attach(t, e, info("acme"))
	c.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	msg, err := c.fe.Receive()
	if err != nil {
		t.Fatalf("the client heard nothing within 3s (wait_timeout 300ms, every dial fails): %v; stats %+v, dials %d", err, e.Stats(), fs.Dials())
	}
	if got := describeBackend(msg); !strings.HasPrefix(got, "ErrorResponse FATAL 08006") && !strings.HasPrefix(got, "ErrorResponse FATAL 53300") {
		t.Errorf("client got %q, want FATAL 08006 or 53300", got)
	}
}

func TestWaitersToldWhenNoBackendCanBeOpened(t *testing.T) {
	r := newRig(t, func(c *session.Config) { c.PoolSize = 2 })
	r.openBackends(2)
	c := r.connect(info("acme"))
	// The server goes away: every backend ends, and no new one can be opened.
	r.fs.SetDialError(errors.New("connection refused"))
	for _, pid := range r.fs.PIDs() {
		r.fs.Conn(pid).Close()
	}
	r.waitStats("no backend", func(s session.Stats) bool { return s.Backends == 0 && s.Dialing == 0 })
	c.send(&pgproto3.Query{String: "SELECT 1"})
	if got := c.closedWith(); got != "ErrorResponse FATAL 08006 tenantproxy: cannot connect to the database server: connection refused" {
		t.Errorf("client got %q", got)
	}
}

func TestCloseEndsEverything(t *testing.T) {
	r := newRig(t, func(c *session.Config) { c.PoolSize = 2 })
	idle := r.connect(info("acme"))
	inTx := r.connect(info("globex"))
	busy := r.connect(info("acme"))
	waiter := r.connect(info("initech"))
	idle.query("SELECT 1")
	inTx.query("BEGIN")
	m := r.fs.Mark()
	busy.send(&pgproto3.Query{String: sleepSQL})
	r.fs.WaitForMessage(t, m, "Q "+sleepSQL)
	waiter.send(&pgproto3.Query{String: "SELECT 3"})
	r.waitStats("one waiting client", func(s session.Stats) bool { return s.Waiting == 1 })

	closed := make(chan struct{})
	go func() { r.e.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(waitLimit):
		t.Fatal("Close did not return")
	}
	for name, c := range map[string]*client{"idle": idle, "in transaction": inTx, "query in flight": busy, "waiting": waiter} {
		c.conn.SetReadDeadline(time.Now().Add(waitLimit))
		var last string
		for {
			msg, err := c.fe.Receive()
			if err != nil {
				break
			}
			last = describeBackend(msg)
		}
		if !strings.HasPrefix(last, "ErrorResponse FATAL 57P01") {
			t.Errorf("%s client's last message %q, want FATAL 57P01", name, last)
		}
	}
	if err := r.e.Attach(-1, info("acme")); !errors.Is(err, session.ErrClosed) {
		t.Errorf("Attach after Close: %v, want ErrClosed", err)
	}
	closeServer(t, r.fs)
	goleak.VerifyNone(t)
}

func TestCloseEndsPendingDial(t *testing.T) {
	fs := newFakeServer()
	fs.SetDialGate(make(chan struct{})) // never opens: the dial ends only with its context
	e, err := session.New(session.Config{Mode: "transaction", PoolSize: 1, Dialer: fs, Guard: newGuard()})
	if err != nil {
		t.Fatal(err)
	}
	e.SetTenants([]session.Tenant{testTenant("acme")})
	e.Start()
	c := attach(t, e, info("acme"))
	deadline := time.Now().Add(waitLimit)
	for fs.Dials() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no dial")
		}
		time.Sleep(time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { e.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(waitLimit):
		t.Fatal("Close did not return while a dial was pending")
	}
	if got := c.closedWith(); !strings.HasPrefix(got, "ErrorResponse FATAL 57P01") {
		t.Errorf("client got %q", got)
	}
	goleak.VerifyNone(t)
}

// Close without Start must not block forever: a caller that fails between New and Start cleans up with Close.
func TestCloseWithoutStart(t *testing.T) {
	e, err := session.New(session.Config{Mode: "transaction", PoolSize: 1, Dialer: newFakeServer(), Guard: newGuard()})
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { e.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(time.Second):
		t.Error("Close without Start blocks")
		e.Start() // lets the blocked Close finish
		<-closed
	}
}

// A second Close must not close file descriptors that the process opened since the first.
func TestCloseTwiceLeavesOtherDescriptorsAlone(t *testing.T) {
	r := newRig(t, nil)
	c := r.connect(info("acme"))
	c.query("BEGIN") // its backend is still resetting when the loop stops
	r.e.Close()
	var pipes [][2]int
	for i := 0; i < 16; i++ {
		var p [2]int
		if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		pipes = append(pipes, p)
	}
	r.e.Close()
	for _, p := range pipes {
		for _, fd := range p {
			if _, err := fcntlGetfd(fd); err != nil {
				t.Errorf("fd %d, opened after the first Close, was closed by the second: %v", fd, err)
				continue
			}
			syscall.Close(fd)
		}
	}
}

func fcntlGetfd(fd int) (uintptr, error) {
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
	if e != 0 {
		return 0, e
	}
	return r, nil
}

func TestPoolFillsOnlyOnDemand(t *testing.T) {
	r := newRig(t, func(c *session.Config) { c.PoolSize = 4 })
	c := r.connect(info("acme"))
	c.query("SELECT 1")
	time.Sleep(100 * time.Millisecond)
	if st := r.e.Stats(); st.Backends != 1 {
		t.Errorf("one client, one transaction at a time: %d backends open, want 1 (stats %+v)", st.Backends, st)
	}
}

// Backends closed by idle_timeout are reopened only when a client needs one.
func TestIdleTimeoutDoesNotChurn(t *testing.T) {
	r := newRig(t, func(c *session.Config) { c.PoolSize = 2; c.IdleTimeout = 200 * time.Millisecond })
	c := r.connect(info("acme"))
	c.query("SELECT 1")
	time.Sleep(1500 * time.Millisecond)
	if n := r.fs.Dials(); n > 2 {
		t.Errorf("no client active for 1.5s with idle_timeout 200ms: %d dials, want at most 2 (stats %+v)", n, r.e.Stats())
	}
	equal(t, "after idle", c.query("SELECT 2"), selectReply("2", 'I'))
}
