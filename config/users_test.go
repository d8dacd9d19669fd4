package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestAllowedMatchesRangesAndAddresses(t *testing.T) {
	for _, tc := range []struct {
		allow []string
		addr  string
		want  bool
	}{
		{nil, "203.0.113.9", true},
		{[]string{"10.0.0.0/8"}, "10.1.2.3", true},
		{[]string{"10.0.0.0/8"}, "11.0.0.1", false},
		{[]string{"10.0.0.1/8"}, "10.200.0.1", true}, // host bits are ignored
		{[]string{"192.0.2.7"}, "192.0.2.7", true},
		{[]string{"192.0.2.7"}, "192.0.2.8", false},
		{[]string{"10.0.0.0/8"}, "::ffff:10.0.0.5", true},
		{[]string{"2001:db8::/32"}, "2001:db8::1", true},
		{[]string{"2001:db8::/32"}, "10.0.0.1", false},
		{[]string{"nonsense"}, "10.0.0.1", false},
	} {
		if got := Allowed(tc.allow, netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("Allowed(%q, %s) = %v, want %v", tc.allow, tc.addr, got, tc.want)
		}
	}
	if Allowed([]string{"0.0.0.0/0"}, netip.Addr{}) {
		t.Error("the zero address (no IP) is allowed by a list")
	}
}

func TestAllowListsAndUsersSettingAreValidated(t *testing.T) {
	base := `
[backend]
user = "pool"
[[tenants]]
name = "acme"
`
	for _, tc := range []struct {
		extra, says string
	}{
		{"allow = [\"10.0.0.0/33\"]\n", "[[tenants]] acme allow"},
		{"allow = [\"example.com\"]\n", "[[tenants]] acme allow"},
		{"[[users]]\nname = \"a\"\npassword = \"x\"\nallow = [\"nonsense\"]\n", "[[users]] a allow"},
		{"[auth]\nusers = \"ldap\"\n", "[auth] users"},
		{"[auth]\nusers = \"database\"\n", "needs [tenancy] catalog"},
		{"[auth]\nuser_cache_ttl = \"-1s\"\n", "[auth] user_cache_ttl"},
	} {
		extra := tc.extra
		if strings.HasPrefix(extra, "[auth]") {
			extra = "\n" + extra
		}
		_, err := Parse(strings.Replace(base, "[[tenants]]", extra+"[[tenants]]", 1))
		if strings.HasPrefix(tc.extra, "allow") {
			_, err = Parse(base + tc.extra)
		}
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%q: %v, want an error naming %s", tc.extra, err, tc.says)
		}
	}
	c, err := Parse(base)
	if err != nil || c.Auth.Users != UsersConfig || c.Auth.UserCacheTTL.Duration != DefaultUserCacheTTL {
		t.Fatalf("defaults: users %q, user_cache_ttl %v, %v", c.Auth.Users, c.Auth.UserCacheTTL, err)
	}
}
