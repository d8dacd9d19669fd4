package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/integration/pgtest"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// syncBuffer is a bytes.Buffer safe for the process's output goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// notifySocket is a stand-in for systemd's notify socket: it collects what a process sends.
type notifySocket struct {
	path string
	conn *net.UnixConn
	msgs chan string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{path: path, conn: c, msgs: make(chan string, 16)}
	go func() {
		b := make([]byte, 4096)
		for {
			k, err := c.Read(b)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- string(b[:k])
		}
	}()
	t.Cleanup(func() { c.Close() })
	return n
}

// wait returns once msg arrives, or fails the test after d.
func (n *notifySocket) wait(t *testing.T, msg string, d time.Duration, logs *syncBuffer) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatalf("notify socket closed before %s", msg)
			}
			if m == msg {
				return
			}
		case <-timeout:
			t.Fatalf("no %s on NOTIFY_SOCKET within %v\n%s", msg, d, logs.String())
		}
	}
}

type proc struct {
	cmd    *exec.Cmd
	logs   *syncBuffer
	notify *notifySocket
	done   chan error
}

func startServe(t *testing.T, path string) *proc {
	t.Helper()
	p := &proc{logs: &syncBuffer{}, notify: newNotifySocket(t), done: make(chan error, 1)}
	p.cmd = exec.Command(binary, "serve", "--config", path)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+p.notify.path)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *proc) waitExit(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("serve exited with %v\n%s", err, p.logs.String())
		}
	case <-time.After(d):
		t.Fatalf("serve did not exit within %v\n%s", d, p.logs.String())
	}
}

// writeRollingConfig writes the config of peer id on the shared port, with both peers' addresses.
func writeRollingConfig(t *testing.T, f *proxytest.Fixture, path string, port, id int, peerPorts [2]int) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "[listen]\naddr = \"127.0.0.1:%d\"\nreuse_port = true\n", port)
	fmt.Fprintf(&b, "[backend]\nhost = %q\nport = %d\ndatabase = %q\nuser = \"tenantproxy_pool\"\npassword = \"pool-secret\"\npool_size = 4\n",
		f.Cluster.Host, f.Cluster.Port, proxytest.Database)
	fmt.Fprintf(&b, "[pool]\nshutdown_timeout = \"30s\"\n[auth]\nmethod = \"scram-sha-256\"\n[log]\nlevel = \"info\"\nformat = \"json\"\n")
	fmt.Fprintf(&b, "[admin]\nuser = %q\npassword = %q\n", f.Cluster.User, f.Cluster.Password)
	fmt.Fprintf(&b, "[peers]\nid = %d\n[peers.addrs]\n1 = \"127.0.0.1:%d\"\n2 = \"127.0.0.1:%d\"\n", id, peerPorts[0], peerPorts[1])
	for _, tn := range f.Tenants {
		fmt.Fprintf(&b, "[[tenants]]\nname = %q\n", tn)
	}
	fmt.Fprintf(&b, "[[users]]\nname = \"alice\"\npassword = %q\ntenants = [\"acme\"]\n", proxytest.Password)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRollingRestartRefusesNothing replaces process A by process B on one address (SO_REUSEPORT) while
// clients run transactions, each on a connection of its own: no connection is refused and no
// transaction fails. A query of a client of A is cancelled through B once A has stopped listening: B
// forwards the cancel request to A, its peer, which the cancel key names. Both processes report READY=1
// and STOPPING=1 on NOTIFY_SOCKET.
func TestRollingRestartRefusesNothing(t *testing.T) {
	f := proxytest.NewFixture(t)
	port, _ := pgtest.FreePort()
	pa, _ := pgtest.FreePort()
	pb, _ := pgtest.FreePort()
	dir := t.TempDir()
	cfgA, cfgB := filepath.Join(dir, "a.toml"), filepath.Join(dir, "b.toml")
	writeRollingConfig(t, f, cfgA, port, 1, [2]int{pa, pb})
	writeRollingConfig(t, f, cfgB, port, 2, [2]int{pa, pb})
	url := fmt.Sprintf("postgresql://alice%%40acme:%s@127.0.0.1:%d/%s?sslmode=disable", proxytest.Password, port, proxytest.Database)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	a := startServe(t, cfgA)
	a.notify.wait(t, "READY=1", 30*time.Second, a.logs)

	// X is a client of A (the only process yet); its cancel key names peer 1.
	x, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to A: %v\n%s", err, a.logs.String())
	}
	defer x.Close(context.Background())
	if peer := x.PgConn().PID() >> 24; peer != 1 {
		t.Fatalf("X's cancel key names peer %d, want 1", peer)
	}

	// The client loop: transactions, each on a new connection, counted by the process that served them.
	var served [3]atomic.Int64
	var failures atomic.Int64
	var failMu sync.Mutex
	var failed []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := oneTransaction(ctx, url, &served)
				if err != nil {
					failures.Add(1)
					failMu.Lock()
					failed = append(failed, err.Error())
					failMu.Unlock()
				}
			}
		}()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (failures %d)\nA:\n%s", what, failures.Load(), a.logs.String())
			}
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
		}
	}
	waitFor("transactions on A", func() bool { return served[1].Load() >= 10 })

	b := startServe(t, cfgB)
	b.notify.wait(t, "READY=1", 30*time.Second, b.logs)
	waitFor("transactions on B", func() bool { return served[2].Load() >= 10 })

	// X's long query runs on A.
	sleep := make(chan error, 1)
	go func() {
		_, err := x.Exec(ctx, "SELECT pg_sleep(120)")
		sleep <- err
	}()
	su, err := f.Cluster.Connect(ctx, proxytest.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(context.Background())
	waitFor("X's query on the server", func() bool {
		var n int
		su.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(120)' AND state = 'active'").Scan(&n)
		return n == 1
	})

	// A stops listening and waits for its clients; from now on every connection reaches B.
	a.cmd.Process.Signal(syscall.SIGTERM)
	a.notify.wait(t, "STOPPING=1", 30*time.Second, a.logs)
	onB := served[2].Load()
	waitFor("more transactions on B after A stopped listening", func() bool { return served[2].Load() >= onB+20 })

	// The cancel request reaches B (A no longer listens); B forwards it to A, which cancels X's query.
	if err := x.PgConn().CancelRequest(ctx); err != nil {
		t.Fatalf("cancel request: %v", err)
	}
	select {
	case err := <-sleep:
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57014" {
			t.Fatalf("X's query after the cancel through B: %v\nA:\n%s\nB:\n%s", err, a.logs.String(), b.logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the cancel sent to B did not reach X's query on A\nA:\n%s\nB:\n%s", a.logs.String(), b.logs.String())
	}
	x.Close(ctx)
	// A exits once its last client has left.
	a.waitExit(t, 40*time.Second)
	onB = served[2].Load()
	waitFor("transactions on B after A exited", func() bool { return served[2].Load() >= onB+10 })
	close(stop)
	wg.Wait()

	if n := failures.Load(); n != 0 {
		t.Errorf("%d failed connections or transactions during the restart, e.g. %v", n, failed[:min(len(failed), 5)])
	}
	t.Logf("transactions served: A %d, B %d", served[1].Load(), served[2].Load())
	b.cmd.Process.Signal(syscall.SIGTERM)
	b.notify.wait(t, "STOPPING=1", 30*time.Second, b.logs)
	b.waitExit(t, 40*time.Second)
}

// oneTransaction connects, runs a transaction and disconnects; it counts the transaction under the
// peer id in the cancel key of the process that served it.
func oneTransaction(ctx context.Context, url string, served *[3]atomic.Int64) error {
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close(context.Background())
	tx, err := c.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	var n int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM employees").Scan(&n); err != nil {
		return fmt.Errorf("select: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if peer := c.PgConn().PID() >> 24; peer <= 2 {
		served[peer].Add(1)
	}
	return nil
}
