package policy

import (
	"testing"

	"github.com/jackc/pgerrcode"
)

// TestCheckGivesTheServersParseErrors checks that text the parser rejects is refused with the error
// PostgreSQL itself raises for it — message, SQLSTATE and cursor position, no tenantproxy prefix — so a
// driver shows the column it shows on a direct connection. The messages and positions are PostgreSQL 15's
// (psql -c against the server gives the same).
func TestCheckGivesTheServersParseErrors(t *testing.T) {
	g := newTestGuard()
	tests := []struct {
		sql      string
		message  string
		position int
	}{
		{"SELECT 1 +", "syntax error at end of input", 11},
		{"SELEKT 1", `syntax error at or near "SELEKT"`, 1},
		{"SELECT 1; RESET ROLE; SELEKT", `syntax error at or near "SELEKT"`, 23},
		{"SELECT 'unterminated", "unterminated quoted string at or near \"'unterminated\"", 8},
		{"SELECT 'é', FROM t", `syntax error at or near "FROM"`, 13},
	}
	for _, tt := range tests {
		for _, p := range allProfiles {
			a := g.Check(tt.sql, p, tenantSchemas)
			if !a.Refused || !a.ServerError {
				t.Fatalf("%s: %q: verdict %+v, want the server's own error", p, tt.sql, a)
			}
			if a.SQLState != pgerrcode.SyntaxError || a.Reason != tt.message || a.Position != tt.position {
				t.Errorf("%s: %q: got %s %q at %d, want %s %q at %d", p, tt.sql, a.SQLState, a.Reason, a.Position,
					pgerrcode.SyntaxError, tt.message, tt.position)
			}
		}
	}
}

// TestCheckParseGivesTheServersMultipleCommandsError checks the error of a Parse with two statements:
// PostgreSQL's own words, without tenantproxy's prefix, and an own refusal keeps its prefix.
func TestCheckParseGivesTheServersMultipleCommandsError(t *testing.T) {
	g := newTestGuard()
	a := g.CheckParse("SELECT 1; SELECT 2", ProfileApp, tenantSchemas)
	if !a.Refused || !a.ServerError || a.SQLState != pgerrcode.SyntaxError || a.Reason != "cannot insert multiple commands into a prepared statement" {
		t.Errorf("got %+v, want the server's 42601 cannot insert multiple commands into a prepared statement", a)
	}
	own := g.CheckParse("SET ROLE x", ProfileApp, tenantSchemas)
	if !own.Refused || own.ServerError || own.Position != 0 || own.Reason[:len("tenantproxy: ")] != "tenantproxy: " {
		t.Errorf("an own refusal: got %+v, want tenantproxy's prefix and no ServerError", own)
	}
}

// TestCheckAllowsHarmlessFormsOnly checks the statements that are refused in general but harmless in one
// exact form: that form is allowed with its effect, and every variation of it stays refused.
func TestCheckAllowsHarmlessFormsOnly(t *testing.T) {
	g := newTestGuard()
	tests := []struct {
		sql     string
		allowed bool
		effect  EffectKind
	}{
		{"SELECT pg_terminate_backend(pg_backend_pid())", true, EffectTerminateSelf},
		{"select PG_CATALOG.pg_terminate_backend( pg_catalog.pg_backend_pid() ) AS bye", true, EffectTerminateSelf},
		{"SELECT /* c */ pg_terminate_backend(pg_backend_pid());", true, EffectTerminateSelf},
		{"SELECT pg_terminate_backend(42)", false, 0},
		{"SELECT pg_terminate_backend(pg_backend_pid() + 1)", false, 0},
		{"SELECT pg_terminate_backend(pg_backend_pid(), 1000)", false, 0},
		{"SELECT pg_terminate_backend(pg_backend_pid()) FROM employees", false, 0},
		{"SELECT pg_terminate_backend(pg_backend_pid()), 1", false, 0},
		{"SELECT pg_terminate_backend(pg_backend_pid()) WHERE true", false, 0},
		{"SELECT evil.pg_terminate_backend(pg_backend_pid())", false, 0},
		{"SELECT pg_terminate_backend(evil.pg_backend_pid())", false, 0},
		{"SELECT pg_cancel_backend(pg_backend_pid())", false, 0},
		{"CREATE EXTENSION IF NOT EXISTS hstore", true, EffectNone},
		{`create extension if not exists "uuid-ossp"`, true, EffectNone},
		{"CREATE EXTENSION hstore", false, 0},
		{"CREATE EXTENSION IF NOT EXISTS hstore SCHEMA acme", false, 0},
		{"CREATE EXTENSION IF NOT EXISTS hstore CASCADE", false, 0},
		{"CREATE EXTENSION IF NOT EXISTS hstore VERSION '1.0'", false, 0},
		{"RESET search_path", true, EffectSetTracked},
		{"SET search_path TO DEFAULT", true, EffectSetTracked},
		{"SET LOCAL search_path TO DEFAULT", true, EffectSetLocal},
		{"SELECT set_config('statement_timeout', '1s', true)", false, 0},
	}
	for _, tt := range tests {
		a := g.Check(tt.sql, ProfileApp, tenantSchemas)
		if a.Refused == tt.allowed {
			t.Errorf("%q: refused=%v (%s), want allowed=%v", tt.sql, a.Refused, a.Reason, tt.allowed)
			continue
		}
		if !tt.allowed {
			continue
		}
		var kinds []EffectKind
		for _, e := range a.Effects {
			kinds = append(kinds, e.Kind)
		}
		if (tt.effect == EffectNone && len(kinds) != 0) || (tt.effect != EffectNone && (len(kinds) != 1 || kinds[0] != tt.effect)) {
			t.Errorf("%q: effects %v, want %v", tt.sql, kinds, tt.effect)
		}
	}
}
