package routing

import (
	"net/netip"
	"testing"

	"github.com/tenantproxy/tenantproxy/config"
)

func TestAddrAllowedNeedsBothTheUsersAndTheTenantsList(t *testing.T) {
	cfg := &config.Config{}
	r := NewRouter(cfg, []config.Tenant{{Name: "acme", Allow: []string{"10.0.0.0/8"}}, {Name: "globex"}})
	s := r.Snapshot()
	in, out := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.0.2.1")
	open := &config.User{Name: "alice"}
	narrow := &config.User{Name: "bob", Allow: []string{"10.1.0.0/16"}}
	for _, tc := range []struct {
		u      *config.User
		tenant string
		addr   netip.Addr
		want   bool
	}{
		{open, "acme", in, true},
		{open, "acme", out, false},
		{open, "globex", out, true},
		{narrow, "globex", in, true},
		{narrow, "globex", netip.MustParseAddr("10.2.0.1"), false},
		{narrow, "acme", netip.MustParseAddr("10.2.0.1"), false},
		{nil, "nosuch", out, true}, // refused later, by authentication and Authorize
	} {
		name := "nil"
		if tc.u != nil {
			name = tc.u.Name
		}
		if got := s.AddrAllowed(tc.u, tc.tenant, tc.addr); got != tc.want {
			t.Errorf("AddrAllowed(%s, %s, %s) = %v, want %v", name, tc.tenant, tc.addr, got, tc.want)
		}
	}
}

func TestAuthorizeUserChecksTheBindingOfAUserFromElsewhere(t *testing.T) {
	r := NewRouter(&config.Config{}, []config.Tenant{{Name: "acme"}, {Name: "globex"}, {Name: "off", Suspended: true}})
	s := r.Snapshot()
	dana := &config.User{Name: "dana", Tenants: []string{"acme", "off"}}
	for _, tc := range []struct {
		u      *config.User
		tenant string
		code   string
	}{
		{dana, "acme", ""},
		{dana, "globex", "28000"},
		{dana, "nosuch", "3D000"},
		{dana, "off", "57P03"},
		{nil, "acme", "28P01"},
	} {
		_, err := s.AuthorizeUser(Identity{User: "dana", Tenant: tc.tenant}, tc.u)
		got := ""
		if err != nil {
			got = err.Code
		}
		if got != tc.code {
			t.Errorf("AuthorizeUser(dana, %s): %q, want %q", tc.tenant, got, tc.code)
		}
	}
}
