package auth

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tenantproxy/tenantproxy/integration/pgtest"
)

// TestPostgreSQLSecrets checks compatibility with a real PostgreSQL server both ways: verifiers and md5
// hashes that PostgreSQL made authenticate here, and verifiers that NewSCRAMVerifier made authenticate
// at PostgreSQL.
func TestPostgreSQLSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{Auth: "scram-sha-256"})
	ours, err := NewSCRAMVerifier("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	oursUnicode, err := NewSCRAMVerifier("\u2168") // SASLprep: "IX"
	if err != nil {
		t.Fatal(err)
	}
	c.MustExec(t, "postgres", `
		CREATE ROLE alice LOGIN PASSWORD 'pw';
		CREATE ROLE roman LOGIN PASSWORD '`+"\u2168"+`';
		CREATE ROLE carol LOGIN PASSWORD '`+ours+`';
		CREATE ROLE dave LOGIN PASSWORD '`+oursUnicode+`';
		SET password_encryption = 'md5';
		CREATE ROLE bob LOGIN PASSWORD 'pw';`)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]string{}
	for _, name := range []string{"alice", "roman", "bob", "carol"} {
		var text string
		if err := conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", name).Scan(&text); err != nil {
			t.Fatal(err)
		}
		users[name] = text
	}
	conn.Close(ctx)
	if users["carol"] != ours {
		t.Errorf("PostgreSQL stored our verifier as %q, want %q", users["carol"], ours)
	}
	for name, want := range map[string]SecretKind{"alice": SecretSCRAM, "roman": SecretSCRAM, "bob": SecretMD5} {
		s, err := ParseSecret(users[name])
		if err != nil {
			t.Fatalf("ParseSecret(%q) of PostgreSQL's %s: %v", users[name], name, err)
		}
		if s.Kind() != want || s.encode() != users[name] {
			t.Errorf("PostgreSQL's secret %q of %s parsed as %v, encoded %q", users[name], name, s.Kind(), s.encode())
		}
	}

	t.Run("PostgreSQL's secrets here", func(t *testing.T) {
		tests := []struct {
			method, user, pw, extra string
			ok                      bool
		}{
			{MethodSCRAM, "alice", "pw", "sslmode=disable", true},
			{MethodSCRAM, "alice", "pw", "sslmode=require channel_binding=require", true},
			{MethodSCRAM, "alice", "px", "sslmode=disable", false},
			{MethodMD5, "alice", "pw", "sslmode=disable require_auth=scram-sha-256", true},
			{MethodMD5, "bob", "pw", "sslmode=disable require_auth=md5", true},
			{MethodMD5, "bob", "px", "sslmode=disable", false},
			{MethodPassword, "alice", "pw", "sslmode=require", true},
			{MethodPassword, "bob", "pw", "sslmode=require", true},
			{MethodPassword, "roman", "IX", "sslmode=require", true},
			{MethodPassword, "roman", "\u2168", "sslmode=require", true},
			{MethodPassword, "roman", "XI", "sslmode=require", false},
		}
		for _, tt := range tests {
			t.Run(strings.Join([]string{tt.method, tt.user, tt.pw, tt.extra}, " "), func(t *testing.T) {
				srv := startServer(t, serverOptions{method: tt.method, users: users, tls: true})
				err := pgconnLogin(t, srv.dsn(tt.user, tt.pw, tt.extra))
				serverErr := srv.result()
				if tt.ok != (err == nil) || tt.ok != (serverErr == nil) {
					t.Fatalf("login: %v, Authenticate: %v; want success %v", err, serverErr, tt.ok)
				}
			})
		}
		srv := startServer(t, serverOptions{method: MethodSCRAM, users: users})
		if err := pqLogin(t, srv.dsn("alice", "pw", "sslmode=disable")); err != nil {
			t.Errorf("lib/pq login: %v", err)
		}
		if err := srv.result(); err != nil {
			t.Errorf("Authenticate: %v", err)
		}
	})

	t.Run("our verifiers at PostgreSQL", func(t *testing.T) {
		tests := []struct {
			user, pw string
			ok       bool
		}{
			{"carol", "correct horse", true},
			{"carol", "correct horse!", false},
			{"dave", "IX", true},
		}
		for _, tt := range tests {
			err := pgconnLogin(t, c.DSN("postgres", tt.user)+" password='"+tt.pw+"'")
			if tt.ok != (err == nil) {
				t.Errorf("%s with %q at PostgreSQL: %v, want success %v", tt.user, tt.pw, err, tt.ok)
			}
			if err != nil && !tt.ok {
				if ce := asClientError(t, err); ce.code != "28P01" {
					t.Errorf("%s with %q at PostgreSQL: %+v", tt.user, tt.pw, ce)
				}
			}
		}
	})
}
