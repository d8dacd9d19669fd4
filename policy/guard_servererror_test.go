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
