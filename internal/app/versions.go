package app

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/catalog"
	"github.com/tenantproxy/tenantproxy/config"
)

// migrationVersions is each tenant's migration version for SHOW TENANTS: read once at start through the
// [admin] role (the pool role cannot read the migration records), then kept current by the catalog's
// "migrate <tenant> <version> [<specific>]" notifications, which every migration sends as it commits.
type migrationVersions struct {
	mu sync.Mutex
	v  map[string]string
}

func newMigrationVersions() *migrationVersions { return &migrationVersions{v: map[string]string{}} }

// get returns a tenant's version, "" when not known.
func (m *migrationVersions) get(tenant string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.v[tenant]
}

// notified takes a catalog notification's payload; it reports the tenant whose migration committed.
func (m *migrationVersions) notified(payload string) (tenant string, ok bool) {
	f := strings.Fields(payload)
	if len(f) < 3 || f[0] != "migrate" {
		return "", false
	}
	v := f[2]
	if len(f) >= 4 && f[3] != "0" {
		v += "+" + f[3] // the tenant-specific line's version
	}
	m.mu.Lock()
	m.v[f[1]] = v
	m.mu.Unlock()
	return f[1], true
}

// load reads every tenant's version once; without [admin] credentials, or on failure (logged), versions
// are known only once a migration announces them.
func (m *migrationVersions) load(ctx context.Context, cfg *config.Config, log *zap.Logger) {
	if cfg.Admin.User == "" {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	vs, err := catalog.MigrationVersions(lctx, cfg)
	if err != nil {
		log.Info("tenants' migration versions not read; SHOW TENANTS shows them after their next migration", zap.Error(err))
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for t, v := range vs {
		if _, newer := m.v[t]; !newer {
			m.v[t] = v
		}
	}
}
