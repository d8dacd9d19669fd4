package sessionguard

import (
	"strings"
	"testing"

	"github.com/tenantproxy/tenantproxy/policy"
)

func TestShapeKeyReplacesOnlyConstantsAndDeclinesSubtleText(t *testing.T) {
	cases := []struct {
		sql, want string
		ok        bool
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 48213;", "SELECT abalance FROM pgbench_accounts WHERE aid = ?n;", true},
		{"select * from t where a = 'it''s' and b = 1.5e-3", "select * from t where a = ?s and b = ?n", true},
		{`select "we""ird", t1.c2 from t1 where x = .5`, `select "we""ird", t1.c2 from t1 where x = ?n`, true},
		{"SELECT 1; SELECT 2", "", false},
		{"SELECT E'\\''", "", false},
		{"SELECT $1", "", false},
		{"SELECT $$x$$", "", false},
		{"SELECT 1 -- comment", "", false},
		{"SELECT /* c */ 1", "", false},
		{"SELECT U&'d\\0061t'", "", false},
		{`SELECT U&"d!0061" UESCAPE '!'`, "", false},
		{"SELECT x'0f', b'1', n'x'", "", false},
		{"SELECT 0x1f", "", false},
		{"SELECT 1_000", "", false},
		{"SELECT 1..2", "", false},
		{"SELECT 'a'\n'b'", "", false},
		{"SELECT 'café'", "", false},
		{"SELECT 'unterminated", "", false},
	}
	for _, c := range cases {
		got, ok := shapeKey(nil, c.sql)
		if ok != c.ok || (ok && string(got) != c.want) {
			t.Errorf("shapeKey(%q) = %q, %v; want %q, %v", c.sql, got, ok, c.want, c.ok)
		}
	}
}

// FuzzShapeKey checks shapeKey against PostgreSQL's own lexer: wherever it answers, replacing each
// constant it found by another constant of the same kind must give the same normalized text, so its idea
// of where constants begin and end is PostgreSQL's.
func FuzzShapeKey(f *testing.F) {
	for _, s := range []string{"SELECT 1", "select * from t where a = 'x''y' and b = 2.5", `select "a""b" from t1 where c = .5e3`, "UPDATE t SET a = a + 1 WHERE id = 7", "SELECT 'a' || 'b'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		key, ok := shapeKey(nil, sql)
		if !ok {
			return
		}
		want, err := policy.Normalize(sql)
		if err != nil {
			return
		}
		other := strings.NewReplacer("?n", "7", "?s", "'z'").Replace(string(key))
		if strings.Contains(sql, "?n") || strings.Contains(sql, "?s") {
			return // the marker itself appears in the text; nothing to compare
		}
		got, err := policy.Normalize(other)
		if err != nil {
			t.Fatalf("%q parses but its shape with other constants %q does not: %v", sql, other, err)
		}
		if got != want {
			t.Fatalf("shapeKey disagrees with PostgreSQL on %q:\n normalized %q\n with other constants %q", sql, want, got)
		}
	})
}
