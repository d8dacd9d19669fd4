package config

import (
	"strings"
	"testing"
)

func TestPoolModeAndProfileAreClosedSets(t *testing.T) {
	modes := []struct {
		m    PoolMode
		want bool
	}{{ModeTransaction, true}, {ModeSession, true}, {"statement", false}, {"", false}, {"Transaction", false}}
	for _, tt := range modes {
		if got := tt.m.Valid(); got != tt.want {
			t.Errorf("PoolMode(%q).Valid() = %v, want %v", tt.m, got, tt.want)
		}
	}
	profiles := []struct {
		p    Profile
		want bool
	}{{ProfileApp, true}, {ProfileReadonly, true}, {ProfileOwner, true}, {"admin", false}, {"", false}}
	for _, tt := range profiles {
		if got := tt.p.Valid(); got != tt.want {
			t.Errorf("Profile(%q).Valid() = %v, want %v", tt.p, got, tt.want)
		}
	}
	// Validate's message lists exactly the sets.
	_, err := Parse(strings.Replace(minimal, "[auth]", "[pool]\nmode = \"statement\"\n[auth]", 1))
	if err == nil || !strings.Contains(err.Error(), `"transaction", "session"`) {
		t.Errorf("bad mode: %v, want the list of pool modes", err)
	}
	_, err = Parse(strings.Replace(minimal, `tenants = ["acme"]`, "tenants = [\"acme\"]\nprofile = \"admin\"", 1))
	if err == nil || !strings.Contains(err.Error(), `"app", "readonly", "owner"`) {
		t.Errorf("bad profile: %v, want the list of profiles", err)
	}
}

func TestParseFillsTheDefaultsTheRelayShares(t *testing.T) {
	c, err := Parse(minimal)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want int
	}{
		{"max_message_size", c.Listen.MaxMessageSize, DefaultMaxMessageSize},
		{"max_client_conn", c.Pool.MaxClientConn, DefaultMaxClientConn},
		{"max_prepared_statements", c.Pool.MaxPreparedStatements, DefaultMaxPreparedStatements},
		{"max_client_prepared_statements", c.Pool.MaxClientPreparedStatements, DefaultMaxClientPreparedStatements},
		{"max_client_prepared_bytes", c.Pool.MaxClientPreparedBytes, DefaultMaxClientPreparedBytes},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %d, want %d", ck.name, ck.got, ck.want)
		}
	}
	if c.Listen.MaxMessageSize != 64<<20 || c.Pool.MaxPreparedStatements != 500 {
		t.Errorf("documented defaults changed: max_message_size %d, max_prepared_statements %d", c.Listen.MaxMessageSize, c.Pool.MaxPreparedStatements)
	}
}
