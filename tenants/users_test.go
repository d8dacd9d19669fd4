package tenants

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// setPassword makes the next `user passwd` read pw.
func setPassword(t *testing.T, pw string) {
	t.Helper()
	PasswordInput = strings.NewReader(pw)
	t.Cleanup(func() { PasswordInput = strings.NewReader("") })
}

func TestUserCommandsRefuseBadInputAndNeverPrintAVerifier(t *testing.T) {
	e := newEnv(t, nil)
	e.must("init")
	e.must("tenant", "create", "acme")
	for _, tc := range []struct {
		args  []string
		stdin string
		code  int
		says  string
	}{
		{[]string{"user", "create", "bad name!"}, "", ExitUsage, "invalid user name"},
		{[]string{"user", "create", "dana", "--profile", "root"}, "", ExitUsage, "--profile"},
		{[]string{"user", "create", "dana", "--valid-until", "soon"}, "", ExitUsage, "--valid-until"},
		{[]string{"user", "create", "dana", "--allow", "10.0.0.0/99"}, "", ExitUsage, "--allow"},
		{[]string{"user", "create", "dana", "--tenant", "nosuch"}, "", ExitFailure, `tenant "nosuch" does not exist`},
		{[]string{"user", "passwd", "nosuch"}, "pw\n", ExitFailure, `user "nosuch" does not exist`},
		{[]string{"user", "passwd", "nosuch"}, "", ExitUsage, "no password"},
		{[]string{"user", "bind", "nosuch", "acme"}, "", ExitFailure, "does not exist"},
		{[]string{"user", "drop", "nosuch"}, "", ExitFailure, "does not exist"},
		{[]string{"user", "bind", "dana"}, "", ExitUsage, "expected"},
	} {
		setPassword(t, tc.stdin)
		r := e.run(tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.says) {
			t.Errorf("%v: %v\nwant exit %d saying %q", tc.args, r, tc.code, tc.says)
		}
	}
	if n := e.queryInt("SELECT count(*) FROM tenantproxy.users"); n != 0 {
		t.Fatalf("refused commands left %d users", n)
	}

	e.must("user", "create", "dana", "--tenant", "acme", "--profile", "readonly", "--allow", "10.0.0.0/8,192.0.2.7")
	if r := e.run("user", "create", "dana"); r.code != ExitFailure || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("second create: %v", r)
	}
	setPassword(t, "correct horse\n")
	e.must("user", "passwd", "dana")
	if n := e.queryInt("SELECT count(*) FROM tenantproxy.users WHERE verifier LIKE 'SCRAM-SHA-256$4096:%' AND strpos(verifier, 'horse') = 0"); n != 1 {
		t.Fatal("the password is not stored as a SCRAM-SHA-256 verifier only")
	}
	for _, args := range [][]string{{"user", "list"}, {"user", "list", "--json"}} {
		out := e.must(args...).stdout
		if !strings.Contains(out, "dana") || !strings.Contains(out, "acme") || !strings.Contains(out, "10.0.0.0/8") || !strings.Contains(out, "192.0.2.7/32") || strings.Contains(out, "SCRAM") {
			t.Errorf("%v:\n%s", args, out)
		}
	}
	// Dropping a tenant drops its bindings.
	e.must("tenant", "drop", "acme", "--yes")
	if n := e.queryInt("SELECT count(*) FROM tenantproxy.user_tenants"); n != 0 {
		t.Fatalf("%d bindings outlived their tenant", n)
	}
}

// fakeClock is a settable now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// The proxy's user cache keeps an answer for the TTL when nothing is announced, drops it at once on a
// change notification, and survives the server killing its connections.
func TestCatalogUsersCacheHonoursTTLAndNotifications(t *testing.T) {
	e := newEnv(t, nil)
	e.must("init")
	e.must("tenant", "create", "acme")
	e.must("user", "create", "dana", "--tenant", "acme")
	setPassword(t, "pw\n")
	e.must("user", "passwd", "dana")

	ctx, cancel := context.WithCancel(context.Background())
	clock := &fakeClock{t: time.Now()}
	listening := make(chan struct{}, 1)
	u := newCatalogUsers(ctx, e.cfg, zap.NewNop(), clock.now, listening)
	defer u.Wait()
	defer cancel()
	select {
	case <-listening:
	case <-time.After(10 * time.Second):
		t.Fatal("the user listener did not start listening")
	}
	lookup := func() (profile string, bound bool, found bool) {
		t.Helper()
		lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
		defer lcancel()
		x, err := u.Lookup(lctx, "dana", "acme")
		if err != nil {
			t.Fatal(err)
		}
		if x == nil {
			return "", false, false
		}
		return string(x.Profile), len(x.Tenants) == 1 && x.Tenants[0] == "acme", true
	}
	within := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within a second", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if p, b, f := lookup(); !f || !b || p != "app" {
		t.Fatalf("first lookup: profile %q bound %v found %v", p, b, f)
	}

	e.exec("UPDATE tenantproxy.users SET profile = 'readonly' WHERE name = 'dana'") // no notification
	if p, _, _ := lookup(); p != "app" {
		t.Fatalf("an unannounced change was seen before the TTL: profile %q", p)
	}
	clock.add(e.cfg.Auth.UserCacheTTL.Duration)
	if p, _, _ := lookup(); p != "readonly" {
		t.Fatalf("after the TTL: profile %q, want readonly", p)
	}

	e.must("user", "unbind", "dana", "acme")
	within("unbind announced", func() bool { _, b, f := lookup(); return f && !b })

	killed := e.queryInt("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'tenantproxy-users' AND datname = $1", e.db)
	if killed != 1 {
		t.Fatalf("killed %d lookup connections, want 1", killed)
	}
	clock.add(e.cfg.Auth.UserCacheTTL.Duration)
	if _, _, f := lookup(); !f {
		t.Fatal("lookup after its connection was killed")
	}

	e.must("user", "drop", "dana")
	within("drop announced", func() bool { _, _, f := lookup(); return !f })
}
