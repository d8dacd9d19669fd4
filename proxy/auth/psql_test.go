package auth

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenantproxy/tenantproxy/integration/pgtest"
)

// TestAuthenticateWithPsql logs in with psql, whose libpq is PostgreSQL's reference client: SASLprep,
// SCRAM-SHA-256-PLUS and md5 exactly as the server expects them.
func TestAuthenticateWithPsql(t *testing.T) {
	if testing.Short() {
		t.Skip("runs psql")
	}
	psql := findPsql(t)
	users := testUsers(t)
	users["roman"] = "\u2168" // SASLprep (NFKC): "IX"
	users["ix"] = "IX"
	tests := []struct {
		name, method, user, pw, extra string
		wantErr                       string // in psql's output; empty for success
	}{
		{"scram-plus", MethodSCRAM, "scram", "pw", "sslmode=require channel_binding=require", ""},
		{"scram-plus with plain text", MethodSCRAM, "plain", "pw", "sslmode=require channel_binding=require", ""},
		{"scram without TLS", MethodSCRAM, "scram", "pw", "sslmode=disable", ""},
		{"scram, server normalizes the secret", MethodSCRAM, "roman", "IX", "sslmode=disable", ""},
		{"scram, client normalizes the password", MethodSCRAM, "ix", "\u2168", "sslmode=disable", ""},
		{"scram wrong", MethodSCRAM, "scram", "px", "sslmode=require",
			`password authentication failed for user "scram"`},
		{"scram unknown user", MethodSCRAM, "nobody", "pw", "sslmode=require",
			`password authentication failed for user "nobody"`},
		{"md5", MethodMD5, "md5user", "pw", "sslmode=disable", ""},
		{"md5 wrong", MethodMD5, "md5user", "px", "sslmode=disable",
			`password authentication failed for user "md5user"`},
		{"password over TLS", MethodPassword, "scram", "pw", "sslmode=require", ""},
		{"password without TLS", MethodPassword, "plain", "pw", "sslmode=disable",
			"cleartext password authentication requires a TLS connection"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, serverOptions{method: tt.method, users: users, tls: true})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, psql, "-X", "-w", "-c", "select 1", srv.dsn(tt.user, "", tt.extra))
			cmd.Env = append(os.Environ(), "PGPASSWORD="+tt.pw, "PGGSSENCMODE=disable")
			out, err := cmd.CombinedOutput()
			serverErr := srv.result()
			if tt.wantErr == "" {
				if err != nil || serverErr != nil {
					t.Fatalf("psql: %v\n%s\nAuthenticate: %v", err, out, serverErr)
				}
				return
			}
			if err == nil || !strings.Contains(string(out), tt.wantErr) {
				t.Fatalf("psql: %v\n%s\nwant an error with %q", err, out, tt.wantErr)
			}
		})
	}
}

// findPsql returns the psql next to the server binaries pgtest uses (pg_ctl may be a symbolic link into
// the installation's bin directory).
func findPsql(t *testing.T) string {
	bin, err := pgtest.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	pgCtl, err := filepath.EvalSymlinks(filepath.Join(bin, "pg_ctl"))
	if err != nil {
		t.Fatal(err)
	}
	psql := filepath.Join(filepath.Dir(pgCtl), "psql")
	if _, err := os.Stat(psql); err != nil {
		t.Fatal(err)
	}
	return psql
}
