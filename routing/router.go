// Package routing decides who a connection is: which configured user, which tenant, and whether the user
// is bound to that tenant. There is never a default tenant. (Backend connections are session/dial's.)
package routing

import (
	"strings"
	"sync/atomic"

	"github.com/jackc/pgerrcode"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgerr"
)

// Identity is what a startup packet claims: the user to authenticate and the tenant to serve.
type Identity struct {
	// User is the [[users]] name to authenticate ("alice" for "alice@acme").
	User string
	// Tenant is the tenant's name.
	Tenant string
	// Via is how the tenant was found: "user" or "database".
	Via string
}

// Snapshot is one immutable view of tenants and users.
type Snapshot struct {
	cfg     *config.Config
	tenants map[string]config.Tenant
	users   map[string]*config.User
}

// Router resolves identities against the current snapshot; Update swaps it atomically.
type Router struct {
	snap atomic.Pointer[Snapshot]
}

// NewRouter builds a router over cfg's users and the given tenants.
func NewRouter(cfg *config.Config, tenants []config.Tenant) *Router {
	r := &Router{}
	r.Update(cfg, tenants)
	return r
}

// Update replaces the users (from cfg) and tenants.
func (r *Router) Update(cfg *config.Config, tenants []config.Tenant) {
	s := &Snapshot{cfg: cfg, tenants: make(map[string]config.Tenant, len(tenants)), users: make(map[string]*config.User, len(cfg.Users))}
	for _, t := range tenants {
		if t.Name != config.Analytics {
			s.tenants[t.Name] = t
		}
	}
	s.tenants[config.Analytics] = config.Tenant{Name: config.Analytics, Schema: config.Analytics}
	for i := range cfg.Users {
		s.users[cfg.Users[i].Name] = &cfg.Users[i]
	}
	r.snap.Store(s)
}

// Snapshot returns the current view.
func (r *Router) Snapshot() *Snapshot { return r.snap.Load() }

// Identify reads the user and tenant a startup packet claims, without telling whether either exists:
// that is decided after authentication, so an unauthenticated client learns nothing.
func (s *Snapshot) Identify(user, database string) (Identity, *pgerr.Error) {
	sep := s.cfg.Tenancy.UserSeparator
	for _, how := range s.cfg.Tenancy.Resolve {
		switch how {
		case "user":
			i := strings.LastIndex(user, sep)
			if i <= 0 || i+len(sep) >= len(user) {
				continue
			}
			tenant := user[i+len(sep):]
			if database != "" && database != tenant && database != s.cfg.Backend.Database && database != user {
				return Identity{}, pgerr.Fatalf(pgerrcode.InvalidAuthorizationSpecification, "tenantproxy: user %q may connect only to database %q or %q, not %q", user, tenant, s.cfg.Backend.Database, database)
			}
			return Identity{User: user[:i], Tenant: tenant, Via: "user"}, nil
		case "database":
			if strings.Contains(user, sep) {
				continue
			}
			if database == "" || database == user {
				continue
			}
			return Identity{User: user, Tenant: database, Via: "database"}, nil
		}
	}
	return Identity{}, pgerr.Fatalf(pgerrcode.InvalidAuthorizationSpecification, "tenantproxy: cannot tell the tenant of user %q and database %q: connect as user%stenant or to the tenant's database", user, database, sep)
}

// User returns the configured user, or nil.
func (s *Snapshot) User(name string) *config.User { return s.users[name] }

// Authorize checks, after authentication, that the tenant exists, is active, and that the user is bound
// to it.
func (s *Snapshot) Authorize(id Identity) (config.Tenant, *pgerr.Error) {
	return s.AuthorizeUser(id, s.users[id.User])
}

// AuthorizeUser is Authorize for a user found elsewhere than the config (the database catalog).
func (s *Snapshot) AuthorizeUser(id Identity, u *config.User) (config.Tenant, *pgerr.Error) {
	if u == nil {
		return config.Tenant{}, pgerr.Fatalf(pgerrcode.InvalidPassword, "password authentication failed for user %q", id.User)
	}
	// An analytics user reaches the analytics views and no tenant; no other user reaches them.
	if analytics := u.Profile == config.ProfileAnalytics; analytics || id.Tenant == config.Analytics {
		if analytics && id.Tenant == config.Analytics {
			return s.tenants[config.Analytics], nil
		}
		if analytics {
			return config.Tenant{}, pgerr.Fatalf(pgerrcode.InvalidAuthorizationSpecification, "tenantproxy: user %q has profile analytics: it may connect only to %q", id.User, config.Analytics)
		}
		return config.Tenant{}, pgerr.Fatalf(pgerrcode.InvalidAuthorizationSpecification, "tenantproxy: user %q is not allowed to connect to %q: that needs profile analytics", id.User, config.Analytics)
	}
	t, ok := s.tenants[id.Tenant]
	if !ok {
		return config.Tenant{}, pgerr.Fatalf(pgerrcode.InvalidCatalogName, "tenantproxy: tenant %q does not exist", id.Tenant)
	}
	bound := false
	for _, name := range u.Tenants {
		if name == id.Tenant {
			bound = true
			break
		}
	}
	if !bound {
		return config.Tenant{}, pgerr.Fatalf(pgerrcode.InvalidAuthorizationSpecification, "tenantproxy: user %q is not allowed to connect to tenant %q", id.User, id.Tenant)
	}
	if t.Suspended {
		return config.Tenant{}, pgerr.Fatalf(pgerrcode.CannotConnectNow, "tenantproxy: tenant %q is suspended", id.Tenant)
	}
	return t, nil
}

// Tenants returns the tenants of the snapshot (not the analytics pseudo-tenant).
func (s *Snapshot) Tenants() []config.Tenant {
	out := make([]config.Tenant, 0, len(s.tenants))
	for _, t := range s.tenants {
		if t.Name != config.Analytics {
			out = append(out, t)
		}
	}
	return out
}
