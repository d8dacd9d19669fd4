package tenants

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tenantproxy/tenantproxy/catalog"
	"github.com/tenantproxy/tenantproxy/config"
)

// watch runs WatchCatalog until the test ends and returns the lists it delivers.
func watch(t *testing.T, e *testEnv) <-chan []config.Tenant {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	lists := make(chan []config.Tenant, 100)
	done := make(chan error, 1)
	go func() { done <- catalog.WatchCatalog(ctx, e.cfg, func(ts []config.Tenant) { lists <- ts }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("WatchCatalog returned %v after cancel, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("WatchCatalog did not return after cancel")
		}
	})
	return lists
}

func describe(ts []config.Tenant) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.Name + "/" + t.Schema
		if t.Suspended {
			parts[i] += "(suspended)"
		}
	}
	return strings.Join(parts, ",")
}

// expectList waits up to within for a delivered list equal to want.
func expectList(t *testing.T, lists <-chan []config.Tenant, want string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	var last string
	for {
		select {
		case ts := <-lists:
			if last = describe(ts); last == want {
				return
			}
		case <-deadline:
			t.Fatalf("WatchCatalog did not deliver %q within %v; last delivered %q", want, within, last)
		}
	}
}

func TestWatchCatalogSeesCreateSuspendDropWithinASecond(t *testing.T) {
	e := newEnv(t, nil)
	e.must("init")
	e.must("tenant", "create", "acme", "--schema", "acme")
	lists := watch(t, e)
	expectList(t, lists, "acme/acme", 5*time.Second)

	steps := []struct {
		args []string
		want string
	}{
		{[]string{"tenant", "create", "globex", "--schema", "globex_s"}, "acme/acme,globex/globex_s"},
		{[]string{"tenant", "suspend", "acme"}, "acme/acme(suspended),globex/globex_s"},
		{[]string{"tenant", "resume", "acme"}, "acme/acme,globex/globex_s"},
		{[]string{"tenant", "drop", "acme", "--yes"}, "globex/globex_s"},
	}
	for _, s := range steps {
		e.must(s.args...)
		start := time.Now()
		expectList(t, lists, s.want, time.Second)
		t.Logf("%s: seen after %v", strings.Join(s.args, " "), time.Since(start).Round(time.Millisecond))
	}
}

func TestWatchCatalogReconnectsWhenItsConnectionIsKilled(t *testing.T) {
	e := newEnv(t, nil)
	e.must("init")
	lists := watch(t, e)
	expectList(t, lists, "", 5*time.Second)
	killed := e.queryInt(fmt.Sprintf(
		"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'tenantproxy-catalog' AND datname = %s", lit(e.db)))
	if killed != 1 {
		t.Fatalf("terminated %d catalog connections, want 1", killed)
	}
	e.must("tenant", "create", "acme", "--schema", "acme")
	expectList(t, lists, "acme/acme", 3*time.Second)
	// The new connection gets notifications again.
	e.must("tenant", "suspend", "acme")
	expectList(t, lists, "acme/acme(suspended)", time.Second)
}

func TestWatchCatalogFailsFastWithoutTheCatalog(t *testing.T) {
	e := newEnv(t, nil)
	e.exec("CREATE ROLE " + q(e.pool()) + " LOGIN")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := catalog.WatchCatalog(ctx, e.cfg, func([]config.Tenant) { t.Error("onChange called without a catalog") })
	if err == nil || !strings.Contains(err.Error(), "tenant catalog") {
		t.Fatalf("WatchCatalog without init: %v", err)
	}
}
