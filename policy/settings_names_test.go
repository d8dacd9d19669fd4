package policy

import "testing"

// TestEverySettingTheGuardNamesIsAServerSetting keeps the list of the server's settings complete for the
// guard's own lists: a setting the guard allows or refuses by name is never called unknown.
func TestEverySettingTheGuardNamesIsAServerSetting(t *testing.T) {
	for name := range trackedSettings {
		if !IsServerSetting(name) {
			t.Errorf("tracked setting %q is not on the server's list", name)
		}
	}
	for name := range refusedSettings {
		if !IsServerSetting(name) {
			t.Errorf("refused setting %q is not on the server's list", name)
		}
	}
	for _, tt := range []struct {
		name string
		want bool
	}{{"Statement_Timeout", true}, {"sort_mem", true}, {"app.user_id", true}, {"foo", false}, {"", false}, {"a b", false}} {
		if got := IsServerSetting(tt.name); got != tt.want {
			t.Errorf("IsServerSetting(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
