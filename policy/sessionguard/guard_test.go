package sessionguard

import (
	"reflect"
	"testing"

	"github.com/jackc/pgerrcode"

	"github.com/tenantproxy/tenantproxy/policy"
	"github.com/tenantproxy/tenantproxy/session"
)

func testGuard() *Guard {
	return New(policy.NewGuard(policy.GuardConfig{TenantSetting: "tenantproxy.tenant"}))
}

var acme = &session.Tenant{Name: "acme", AllowedSchemas: []string{"acme", "public", "pg_catalog"}}

// TestVerdicts checks what the relay is told to do with the statements the adapter rewrites, emulates
// or answers as the server would.
func TestVerdicts(t *testing.T) {
	g := testGuard()
	tests := []struct {
		name  string
		sql   string
		parse bool
		want  session.Verdict
	}{
		{name: "syntax error as the server raises it", sql: "SELECT 1 +",
			want: session.Verdict{Refused: true, Code: pgerrcode.SyntaxError, Message: "syntax error at end of input", Position: 11}},
		{name: "two commands in a Parse", sql: "SELECT 1; SELECT 2", parse: true,
			want: session.Verdict{Refused: true, Code: pgerrcode.SyntaxError, Message: "cannot insert multiple commands into a prepared statement"}},
		{name: "RESET search_path restores the tenant's", sql: "RESET search_path",
			want: session.Verdict{Rewrite: `SET search_path TO "acme", "public"`, Sets: []session.Setting{{Name: "search_path", Reset: true}}}},
		{name: "SET search_path TO DEFAULT among others", sql: "SELECT 1; SET search_path TO DEFAULT; SELECT 2",
			want: session.Verdict{Rewrite: `SELECT 1; SET search_path TO "acme", "public"; SELECT 2`, Sets: []session.Setting{{Name: "search_path", Reset: true}}}},
		{name: "SET LOCAL search_path TO DEFAULT", sql: "SET LOCAL search_path TO DEFAULT",
			want: session.Verdict{Rewrite: `SET LOCAL search_path TO "acme", "public"`}},
		{name: "LISTEN and NOTIFY in one query", sql: "LISTEN foo; NOTIFY foo, 'x'",
			want: session.Verdict{Pin: "LISTEN foo", Rewrite: `LISTEN "acme.foo"; NOTIFY "acme.foo", 'x'`}},
		{name: "a non-ASCII query with a channel", sql: "SELECT 'é'; NOTIFY foo",
			want: session.Verdict{Refused: true, Code: pgerrcode.FeatureNotSupported}},
		{name: "own session ended", sql: "SELECT pg_terminate_backend(pg_backend_pid())",
			want: session.Verdict{Terminate: true}},
		{name: "own session ended among others", sql: "SELECT 1; SELECT pg_terminate_backend(pg_backend_pid())",
			want: session.Verdict{Refused: true, Code: pgerrcode.FeatureNotSupported}},
		{name: "another backend", sql: "SELECT pg_terminate_backend(1234)",
			want: session.Verdict{Refused: true, Code: pgerrcode.InsufficientPrivilege}},
		{name: "CREATE EXTENSION IF NOT EXISTS passes to the server", sql: "CREATE EXTENSION IF NOT EXISTS hstore", want: session.Verdict{}},
	}
	for _, tt := range tests {
		got := g.Check(tt.sql, "app", acme, tt.parse)
		if tt.want.Refused && got.Refused && tt.want.Message == "" {
			got.Message = "" // the refusal's own wording is tested in policy
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %q:\n got %+v\nwant %+v", tt.name, tt.sql, got, tt.want)
		}
	}
}
