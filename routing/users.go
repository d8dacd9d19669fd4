package routing

import (
	"context"
	"net/netip"

	"github.com/tenantproxy/tenantproxy/config"
)

// UserSource finds users that are not in the config: with [auth] users = "database", the catalog's.
// Lookup returns the user as it may authenticate for tenant (its Tenants hold tenant when it is bound
// to it), or nil when there is no such user or its VALID UNTIL has passed.
type UserSource interface {
	Lookup(ctx context.Context, user, tenant string) (*config.User, error)
}

// AddrAllowed reports whether a client at addr may connect as u to tenant: addr must be in u's allow
// list and in the tenant's (an empty list allows any address). An unknown user or tenant is allowed
// here; authentication and Authorize refuse them.
func (s *Snapshot) AddrAllowed(u *config.User, tenant string, addr netip.Addr) bool {
	if u != nil && !config.Allowed(u.Allow, addr) {
		return false
	}
	if t, ok := s.tenants[tenant]; ok && !config.Allowed(t.Allow, addr) {
		return false
	}
	return true
}
