package catalog

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tenantproxy/tenantproxy/config"
)

// serve's gate: it must fail closed when nothing is registered, pass only when every check passes, and
// name the first failed check.
func TestCheckHardeningFailsClosedAndNamesTheFirstFailure(t *testing.T) {
	broken := errors.New("connection refused")
	tests := []struct {
		name    string
		check   HardeningCheck // nil: none registered
		wantErr []string       // substrings; none: nil error
	}{
		{"nothing registered", nil, []string{"no hardening checks are linked", "require_hardening = false"}},
		{"every check passes", func(context.Context, *config.Config) ([]Failure, error) { return nil, nil }, nil},
		{"a check fails", func(context.Context, *config.Config) ([]Failure, error) {
			return []Failure{{Name: "EXECUTE on set_config revoked", Detail: "PUBLIC has EXECUTE"}, {Name: "second", Detail: "x"}}, nil
		}, []string{"hardening check failed: EXECUTE on set_config revoked: PUBLIC has EXECUTE", "tenantproxy doctor"}},
		{"the checks cannot run", func(context.Context, *config.Config) ([]Failure, error) { return nil, broken },
			[]string{"hardening check: connection refused"}},
	}
	saved := hardening
	t.Cleanup(func() { RegisterHardening(saved) })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			RegisterHardening(tt.check)
			err := CheckHardening(context.Background(), &config.Config{})
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("CheckHardening = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("CheckHardening = nil, want an error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("CheckHardening = %q, want it to contain %q", err, w)
				}
			}
			if tt.check == nil && !errors.Is(err, ErrNoHardeningCheck) {
				t.Errorf("CheckHardening = %v, want ErrNoHardeningCheck", err)
			}
		})
	}
}

func TestConnStringQuotesEveryValue(t *testing.T) {
	t.Setenv("PGSSLMODE", "")
	c := &config.Config{Backend: config.Backend{Host: "db.example", Port: 5433}}
	got := ConnString(c, "app", `o'brien`, `pa\ss word`, "tenantproxy-catalog")
	want := `host='db.example' port='5433' dbname='app' user='o\'brien' application_name='tenantproxy-catalog' password='pa\\ss word' sslmode='disable' `
	if got != want {
		t.Errorf("ConnString =\n%s\nwant\n%s", got, want)
	}
	t.Setenv("PGSSLMODE", "require")
	if got := ConnString(c, "app", "u", "", "x"); strings.Contains(got, "sslmode") || strings.Contains(got, "password") {
		t.Errorf("ConnString with PGSSLMODE set and no password = %q", got)
	}
}
