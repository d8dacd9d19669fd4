package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/integration/pgtest"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tenantproxy-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "tenantproxy")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		panic(fmt.Sprintf("go build: %v\n%s", err, out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestEveryCommandHasHelp(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"serve", "--help"}, {"demo", "--help"}, {"version"},
		{"tenant", "create", "--help"}, {"migrate", "up", "--help"}, {"doctor", "--help"}, {"analytics", "refresh", "--help"},
		{"tenant", "set", "--help"}, {"user", "create", "--help"}, {"user", "passwd", "--help"},
	} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err != nil {
			t.Errorf("tenantproxy %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if len(out) == 0 {
			t.Errorf("tenantproxy %s printed nothing", strings.Join(args, " "))
		}
	}
	out, err := exec.Command(binary, "frobnicate").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !bytes.Contains(out, []byte("unknown command")) {
		t.Errorf("unknown command: %v\n%s", err, out)
	}
}

func TestServeRefusesABrokenConfigNamingTheKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(path, []byte("[pool]\nmode = \"statement\"\n"), 0o644)
	out, err := exec.Command(binary, "serve", "--config", path).CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("[pool] mode")) {
		t.Fatalf("want an error naming [pool] mode, got %v\n%s", err, out)
	}
}

// writeConfig writes the fixture's configuration for a proxy on port, with extra users appended.
func writeConfig(t *testing.T, f *proxytest.Fixture, path string, port int, extraUsers string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "[listen]\naddr = \"127.0.0.1:%d\"\n", port)
	fmt.Fprintf(&b, "[backend]\nhost = %q\nport = %d\ndatabase = %q\nuser = \"tenantproxy_pool\"\npassword = \"pool-secret\"\npool_size = 2\n",
		f.Cluster.Host, f.Cluster.Port, proxytest.Database)
	fmt.Fprintf(&b, "[pool]\nshutdown_timeout = \"3s\"\n[auth]\nmethod = \"scram-sha-256\"\n[log]\nlevel = \"info\"\nformat = \"json\"\n")
	fmt.Fprintf(&b, "[admin]\nuser = %q\npassword = %q\n", f.Cluster.User, f.Cluster.Password)
	for _, tn := range f.Tenants {
		fmt.Fprintf(&b, "[[tenants]]\nname = %q\n", tn)
	}
	fmt.Fprintf(&b, "[[users]]\nname = \"alice\"\npassword = %q\ntenants = [\"acme\"]\n%s", proxytest.Password, extraUsers)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func waitPort(t *testing.T, port int) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %d", port)
}

// SIGHUP adds a user without dropping a connection; a broken file keeps the running configuration;
// SIGTERM lets an open transaction commit, then closes the client with 57P01.
func TestServeReloadsOnSIGHUPAndDrainsOnSIGTERM(t *testing.T) {
	f := proxytest.NewFixture(t)
	port, _ := pgtest.FreePort()
	path := filepath.Join(t.TempDir(), "tp.toml")
	writeConfig(t, f, path, port, "")
	var logs bytes.Buffer
	cmd := exec.Command(binary, "serve", "--config", path)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitPort(t, port)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := func(user, tenant string) string {
		return fmt.Sprintf("postgresql://%s%%40%s:%s@127.0.0.1:%d/%s?sslmode=disable", user, tenant, proxytest.Password, port, proxytest.Database)
	}
	alice, err := pgx.Connect(ctx, url("alice", "acme"))
	if err != nil {
		t.Fatalf("alice: %v\n%s", err, logs.String())
	}
	if _, err := pgx.Connect(ctx, url("bob", "globex")); err == nil {
		t.Fatal("bob connected before he was configured")
	}
	writeConfig(t, f, path, port, fmt.Sprintf("[[users]]\nname = \"bob\"\npassword = %q\ntenants = [\"globex\"]\n", proxytest.Password))
	cmd.Process.Signal(syscall.SIGHUP)
	var bob *pgx.Conn
	for i := 0; i < 50; i++ {
		if bob, err = pgx.Connect(ctx, url("bob", "globex")); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("bob after reload: %v\n%s", err, logs.String())
	}
	bob.Close(ctx)
	var n int
	if err := alice.QueryRow(ctx, "select count(*) from employees").Scan(&n); err != nil {
		t.Fatalf("alice's connection after reload: %v", err)
	}
	os.WriteFile(path, []byte("[pool]\nmode = \"nonsense\"\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if bob, err = pgx.Connect(ctx, url("bob", "globex")); err != nil {
		t.Fatalf("a broken file must keep the running config: %v", err)
	}
	bob.Close(ctx)
	if !strings.Contains(logs.String(), "reload failed") {
		t.Errorf("no log line for the failed reload:\n%s", logs.String())
	}

	tx, err := alice.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "update employees set email = email where id = 1"); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("an open transaction must be able to commit during the drain: %v", err)
	}
	_, err = alice.Exec(ctx, "select 1")
	if err == nil || !strings.Contains(err.Error(), "57P01") {
		t.Fatalf("after its transaction the client must be closed with 57P01, got %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve exited with %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("serve did not exit after SIGTERM\n%s", logs.String())
	}
}

func TestDemoStartsAndServesTheTenants(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	port, _ := pgtest.FreePort()
	root, _ := filepath.Abs("../..")
	cmd := exec.Command(binary, "demo", "--config", filepath.Join(root, "config.toml"), "--port", fmt.Sprint(port), "--exit")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{"tenant create acme\n", "role tenant_t", "analytics: 3 views over 3 tenants", "alice%40acme:secret@127.0.0.1", "insights:secret@127.0.0.1", "serving the AgenticHR tenants"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	checkPrintedDSNs(t, out) // each works when pasted (dsn_test.go)
}
