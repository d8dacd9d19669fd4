package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/config"
)

// configText is a proxy with the database catalog and nu users; the server it names is never dialled.
func configText(users int) string {
	s := `
[listen]
addr = "127.0.0.1:0"
[backend]
host = "127.0.0.1"
port = 1
pool_size = 2
[auth]
method = "trust"
[tenancy]
catalog = "database"
require_hardening = false
`
	for i := range users {
		s += fmt.Sprintf("[[users]]\nname = \"u%d\"\ntenants = [\"acme\", \"globex\"]\n", i)
	}
	return s
}

// A SIGHUP reload and a catalog change may come at once: Reload swaps the configuration while the
// catalog watch's goroutine reads it to build the router and the relay's tenants. Under -race this test
// fails if the two touch the configuration without synchronisation; without -race it still checks that
// both the reloads and the catalog changes take effect.
func TestReloadWhileTheCatalogChangesIsSafe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(configText(1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	delivered := make(chan int, 1)
	watchCatalog = func(ctx context.Context, _ *config.Config, onChange func([]config.Tenant), _ func(string)) error {
		lists := [][]config.Tenant{
			{{Name: "acme", Schema: "acme"}},
			{{Name: "acme", Schema: "acme"}, {Name: "globex", Schema: "globex"}},
		}
		for i := 0; ctx.Err() == nil; i++ {
			onChange(lists[i%2])
			if i == 201 { // the last list delivered holds both tenants
				delivered <- 2
				<-ctx.Done()
			}
		}
		return nil
	}
	t.Cleanup(func() { watchCatalog = nil })
	a, err := Start(cfg, zap.NewNop(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(time.Second)

	for i := range 50 {
		if err := os.WriteFile(path, []byte(configText(2+i%3)), 0o600); err != nil {
			t.Fatal(err)
		}
		a.Reload(path)
	}
	var want int
	select {
	case want = <-delivered:
	case <-time.After(30 * time.Second):
		t.Fatal("the catalog watch did not deliver its lists within 30s")
	}
	a.Reload(path)
	if got := len(a.router.Snapshot().Tenants()); got != want {
		t.Errorf("after the last reload the router has %d tenants, want the catalog's %d", got, want)
	}
	a.mu.Lock()
	users := len(a.cfg.Users)
	a.mu.Unlock()
	if want := 2 + 49%3; users != want {
		t.Errorf("after the last reload the proxy has %d users, want %d", users, want)
	}
}

func TestMigrationVersionsFollowTheMigrateNotifications(t *testing.T) {
	m := newMigrationVersions()
	for _, tc := range []struct {
		payload, tenant, want string
		ok                    bool
	}{
		{"migrate acme 3", "acme", "3", true},
		{"migrate acme 4 2", "acme", "4+2", true},
		{"migrate globex 5 0", "globex", "5", true},
		{"create initech", "initech", "", false},
		{"migrate", "", "", false},
	} {
		tenant, ok := m.notified(tc.payload)
		if ok != tc.ok || (ok && tenant != tc.tenant) || m.get(tc.tenant) != tc.want {
			t.Errorf("%q: tenant %q ok %v version %q; want %q %v %q", tc.payload, tenant, ok, m.get(tc.tenant), tc.tenant, tc.ok, tc.want)
		}
	}
}
