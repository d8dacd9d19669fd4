package reliability

import (
	"bytes"
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/config"
)

// loadClients is how many clients work through the proxy while the server is hurt.
const loadClients = 6

// loadPool is the pool_size under load: fewer backends than clients in transaction mode, so backends
// change hands all the time; one per client in session mode, where a client keeps its backend.
func loadPool(mode config.PoolMode) int {
	if mode == config.ModeSession {
		return loadClients
	}
	return loadClients - 2
}

// ensureServerRunning makes sure the fixture's server runs when the test ends, whatever happened.
func ensureServerRunning(t *testing.T) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := superExec(ctx, "SELECT 1"); err != nil {
			if err := fx.Cluster.StartServer(); err != nil {
				t.Errorf("restart the server after the test: %v", err)
			}
		}
	})
}

// waitServerUp waits until the server accepts the superuser again.
func waitServerUp(t *testing.T) {
	t.Helper()
	ctx := testContext(t, 60*time.Second)
	waitFor(t, 40*time.Second, "server accepting connections", func() (bool, string) {
		err := superExec(ctx, "SELECT 1")
		return err == nil, errString(err)
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// A pool backend that dies under load — terminated by an administrator, or killed with SIGKILL so that
// PostgreSQL restarts every backend (crash recovery) — costs the clients using it an error with a
// SQLSTATE, never a hang; then every client works again, no acknowledged insert is lost, no tenant sees
// another's rows, and the pool is clean.
func TestBackendKilledUnderLoad(t *testing.T) {
	tests := []struct {
		name    string
		kill    func(t *testing.T, pids []int)
		allowed []string
	}{
		{
			name: "pg_terminate_backend",
			kill: func(t *testing.T, pids []int) {
				ctx := testContext(t, 10*time.Second)
				for _, pid := range pids {
					if err := superExec(ctx, "SELECT pg_terminate_backend("+strconv.Itoa(pid)+")"); err != nil {
						t.Fatal(err)
					}
				}
			},
			// 57P01 from the server to the client whose query it ended; 08006 from the proxy when the
			// backend's connection drops under a client.
			allowed: []string{"57P01", "08006"},
		},
		{
			name: "SIGKILL, then crash recovery",
			kill: func(t *testing.T, pids []int) {
				if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			},
			// 57P02 from backends the postmaster ends after a crash; 57P03 while it recovers; 08006
			// from the proxy when a backend drops or cannot be opened; the end of the connection
			// without a word when the backend died in the middle of a message.
			allowed: []string{"57P02", "57P03", "08006", eofMidMessage},
		},
	}
	for _, mode := range poolModes {
		for _, tt := range tests {
			t.Run(string(mode)+"/"+tt.name, func(t *testing.T) {
				ensureServerRunning(t)
				p := startProxy(t, mode, func(c *config.Config) {
					c.Backend.PoolSize = loadPool(mode)
					c.Pool.WaitTimeout.Duration = 5 * time.Second
				})
				leaks := leakCheck(t)
				l := startLoad(t, p, "kill", loadClients)
				time.Sleep(time.Second)
				ctx := testContext(t, 10*time.Second)
				bs, err := poolBackends(ctx)
				if err != nil || len(bs) == 0 {
					t.Fatalf("pool backends: %v %v", bs, err)
				}
				pids := make([]int, len(bs))
				for i, b := range bs {
					pids[i] = b.PID
				}
				tt.kill(t, pids)
				waitServerUp(t)
				l.waitAllOK(t, 30*time.Second, time.Now())
				l.finish(t, tt.allowed...)
				checkClean(t, p)
				leaks()
			})
		}
	}
}

// The server stopped under load ("fast": backends told 57P01; "immediate": backends killed without a
// word) and started again: while it is down every client gets an error at once, not a hang; once it is
// back every client works again, no acknowledged insert is lost and the pool is clean.
func TestServerStoppedUnderLoadAndStarted(t *testing.T) {
	for _, mode := range poolModes {
		for _, stop := range []string{"fast", "immediate"} {
			t.Run(string(mode)+"/"+stop, func(t *testing.T) {
				ensureServerRunning(t)
				p := startProxy(t, mode, func(c *config.Config) {
					c.Backend.PoolSize = loadPool(mode)
					c.Pool.WaitTimeout.Duration = 5 * time.Second
				})
				leaks := leakCheck(t)
				l := startLoad(t, p, "stop", loadClients)
				time.Sleep(time.Second)
				if err := fx.Cluster.StopServer(stop); err != nil {
					t.Fatal(err)
				}
				errs := l.errorCount()
				time.Sleep(2 * time.Second)
				if more := l.errorCount() - errs; more < loadClients {
					t.Errorf("%d errors in 2 s with the server down: clients are stuck instead of being told", more)
				}
				if err := fx.Cluster.StartServer(); err != nil {
					t.Fatal(err)
				}
				l.waitAllOK(t, 30*time.Second, time.Now())
				// 57P01 (fast) and 57P02 (immediate, from pg_ctl's SIGQUIT) from the server; 57P03
				// while it shuts down or starts; 08006 from the proxy when a backend drops or cannot
				// be opened.
				allowed := []string{"57P01", "57P02", "57P03", "08006"}
				if stop == "immediate" {
					// Backends ended by SIGQUIT may stop in the middle of a message.
					allowed = append(allowed, eofMidMessage)
				}
				l.finish(t, allowed...)
				checkClean(t, p)
				leaks()
			})
		}
	}
}

// errorCount is how many errors the load's clients have had.
func (l *load) errorCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.errs {
		n += c
	}
	return n
}

// A proxy started while the server is down (hardening check off, since it needs the server) tells a
// client at once that it cannot reach the server (08006) instead of leaving it hanging, and serves the
// next client once the server is up.
func TestServerDownWhenProxyStarts(t *testing.T) {
	waitNoPoolBackends(t)
	ensureServerRunning(t)
	if err := fx.Cluster.StopServer("fast"); err != nil {
		t.Fatal(err)
	}
	p := fx.Start(t, func(c *config.Config) {
		c.Tenancy.RequireHardening = new(bool)
		c.Backend.PoolSize = 1
	})
	leaks := leakCheck(t)
	ctx := testContext(t, 60*time.Second)
	for i := 0; i < 2; i++ {
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := pgconn.Connect(cctx, p.TenantURL("acme"))
		if err == nil {
			_, err = conn.Exec(cctx, "SELECT 1").ReadAll()
			conn.Close(ctx)
		}
		hung := cctx.Err() != nil
		cancel()
		elapsed := time.Since(start)
		if hung {
			t.Errorf("client %d: no answer within 10 s while the server is down (%v); want 08006 at once", i+1, err)
			break
		}
		if sqlstate(err) != "08006" {
			t.Errorf("client %d with the server down: %v; want 08006", i+1, err)
			break
		}
		if elapsed > 3*time.Second {
			t.Errorf("client %d told after %s; want at once", i+1, elapsed)
		}
	}
	if err := fx.Cluster.StartServer(); err != nil {
		t.Fatal(err)
	}
	probe(t, ctx, p, "acme")
	checkClean(t, p)
	leaks()
}

// A backend that stops answering (SIGSTOP) is closed after [backend] query_timeout: its client gets 08006
// within the timeout plus a tick instead of hanging, other clients are served meanwhile, and the pool
// replaces the backend. Both a backend frozen in a client's transaction and one frozen while idle in the
// pool are tried.
func TestSilentBackendTimesOut(t *testing.T) {
	const timeout = 2 * time.Second
	tests := []struct {
		name string
		// freeze returns the pid of the backend to stop, after a running with it.
		freeze func(t *testing.T, a *rawConn) int
	}{
		{"in a transaction", func(t *testing.T, a *rawConn) int {
			a.query(t, "BEGIN")
			pid, err := strconv.Atoi(a.scalar(t, "SELECT pg_backend_pid()"))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}},
		{"idle in the pool", func(t *testing.T, a *rawConn) int {
			a.query(t, "SELECT 1")
			return waitPoolBackend(t)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, config.ModeTransaction, func(c *config.Config) {
				c.Backend.PoolSize = 2
				c.Backend.QueryTimeout.Duration = timeout
			})
			leaks := leakCheck(t)
			ctx := testContext(t, 60*time.Second)
			a := session(t, ctx, p, "acme")
			pid := tt.freeze(t, a)
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			defer syscall.Kill(pid, syscall.SIGCONT)
			start := time.Now()
			a.send(t, &pgproto3.Query{String: "SELECT 1"})
			// Meanwhile another tenant's client is served at once on the pool's other backend.
			bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			b, err := pgconn.Connect(bctx, p.TenantURL("globex"))
			if err == nil {
				_, err = b.Exec(bctx, "SELECT count(*) FROM employees").ReadAll()
				b.Close(ctx)
			}
			cancel()
			if err != nil {
				t.Errorf("another client while a backend is frozen: %v", err)
			} else if d := time.Since(start); d > time.Second {
				t.Errorf("another client served after %s while a backend is frozen; want at once", d)
			}
			a.expectFatal(t, "08006")
			if d := time.Since(start); d < timeout || d > timeout+1500*time.Millisecond {
				t.Errorf("client told after %s; want query_timeout (%s) plus at most 1.5 s", d, timeout)
			}
			syscall.Kill(pid, syscall.SIGCONT)
			probe(t, ctx, p, "globex")
			checkClean(t, p)
			leaks()
		})
	}
}

// scalar runs a simple query returning one value and returns it as text.
func (r *rawConn) scalar(t testing.TB, sql string) string {
	t.Helper()
	r.send(t, &pgproto3.Query{String: sql})
	var v string
	r.until(t, 10*time.Second, func(m pgproto3.BackendMessage) bool {
		if d, ok := m.(*pgproto3.DataRow); ok && len(d.Values) > 0 {
			v = string(d.Values[0])
		}
		_, ok := m.(*pgproto3.ReadyForQuery)
		return ok
	})
	return v
}

// A backend killed in the middle of sending a message leaves its client with a truncated message. The
// proxy must then close the client as PostgreSQL itself would, and never write its own error after the
// truncated bytes: the client would read the error as the rest of the message and lose the protocol's
// framing (drivers report "invalid body length" or parse garbage as rows). The server is made to stop
// mid-row: rows of 5000 bytes, one a second, leave the second row half-flushed in the server's 8 KiB
// send buffer while the third is computed; the backend is killed then.
func TestBackendKilledMidMessageLeavesNoCorruptStream(t *testing.T) {
	ensureServerRunning(t)
	p := startProxy(t, config.ModeTransaction, nil)
	leaks := leakCheck(t)
	ctx := testContext(t, 60*time.Second)
	r := session(t, ctx, p, "acme")
	pid := waitPoolBackend(t)
	r.send(t, &pgproto3.Query{String: "SELECT repeat('x', 5000), pg_sleep(1) FROM generate_series(1, 10)"})
	var stream []byte
	buf := make([]byte, 64<<10)
	r.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(stream) < 8192 {
		n, err := r.Conn.Read(buf)
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(stream), err)
		}
		stream = append(stream, buf[:n]...)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		n, err := r.Conn.Read(buf)
		stream = append(stream, buf[:n]...)
		if err != nil {
			break
		}
	}
	// Walk the frames: complete messages, then at most one truncated message at the very end, which
	// must hold only what the server sent (rows of 'x'), nothing of the proxy's.
	var types []string
	for off := 0; off < len(stream); {
		if len(stream)-off < 5 {
			types = append(types, "truncated header")
			break
		}
		typ, length := stream[off], int(uint32(stream[off+1])<<24|uint32(stream[off+2])<<16|uint32(stream[off+3])<<8|uint32(stream[off+4]))
		if length < 4 {
			t.Fatalf("frame %d (%q) at byte %d has length %d: the stream lost its framing; frames so far %v", len(types), typ, off, length, types)
		}
		end := off + 1 + length
		if end > len(stream) {
			types = append(types, string(typ)+" (truncated)")
			if bytes.Contains(stream[off:], []byte("tenantproxy")) {
				// The row is 'x's: what follows the last of them is not the server's.
				k := off + 5
				for k < len(stream) && (stream[k] == 'x' || k < off+11) {
					k++
				}
				t.Errorf("the proxy wrote its own message after a truncated %q message (%d of its %d bytes came from the server): the client reads it as the rest of the message and loses the framing; frames %v; the proxy's bytes: %s",
					typ, k-off, 1+length, types, printable(stream[k:]))
			}
			break
		}
		types = append(types, string(typ))
		off = end
	}
	t.Logf("frames received: %v", types)
	waitServerUp(t)
	checkClean(t, p)
	leaks()
}

// printable shows bytes with control characters escaped, shortened to 200 bytes.
func printable(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	return strconv.QuoteToASCII(string(b))
}
