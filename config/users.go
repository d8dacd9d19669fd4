package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Where users live ([auth] users).
const (
	UsersConfig   = "config"
	UsersDatabase = "database"
)

// DefaultUserCacheTTL is how long the proxy keeps a user looked up in the database catalog when no
// change is announced ([auth] user_cache_ttl).
const DefaultUserCacheTTL = 30 * time.Second

// ParseAllow parses an allow list: CIDR ranges ("10.0.0.0/8") or single addresses ("192.0.2.7"). An
// empty list allows every address.
func ParseAllow(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address range like \"10.0.0.0/8\" nor an address", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// Allowed reports whether addr is in one of the ranges of list (always, for an empty list). An IPv4
// address mapped into IPv6 matches IPv4 ranges. A malformed list allows nothing.
func Allowed(list []string, addr netip.Addr) bool {
	if len(list) == 0 {
		return true
	}
	ps, err := ParseAllow(list)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, p := range ps {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// validateUsers checks [auth] users, user_cache_ttl and the allow lists.
func (c *Config) validateUsers(bad func(key, format string, a ...any)) {
	if c.Auth.Users == "" {
		c.Auth.Users = UsersConfig
	}
	if c.Auth.UserCacheTTL.Duration == 0 {
		c.Auth.UserCacheTTL.Duration = DefaultUserCacheTTL
	}
	switch c.Auth.Users {
	case UsersConfig:
	case UsersDatabase:
		if c.Tenancy.Catalog != CatalogDatabase {
			bad("[auth] users", "\"database\" needs [tenancy] catalog = \"database\" (users are bound to the catalog's tenants)")
		}
	default:
		bad("[auth] users", "must be %q or %q, got %q", UsersConfig, UsersDatabase, c.Auth.Users)
	}
	if c.Auth.UserCacheTTL.Duration < 0 {
		bad("[auth] user_cache_ttl", "must not be negative")
	}
	for _, u := range c.Users {
		if _, err := ParseAllow(u.Allow); err != nil {
			bad(fmt.Sprintf("[[users]] %s allow", u.Name), "%v", err)
		}
	}
	for _, t := range c.Tenants {
		if _, err := ParseAllow(t.Allow); err != nil {
			bad(fmt.Sprintf("[[tenants]] %s allow", t.Name), "%v", err)
		}
	}
}
