package admin

import (
	"strings"
	"testing"
)

func TestSplitStatementsRespectsQuotes(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"SHOW POOLS", []string{"SHOW POOLS"}},
		{"SHOW POOLS; SHOW STATS;", []string{"SHOW POOLS", "SHOW STATS"}},
		{" ; ;; ", nil},
		{`SET x = 'a;b'; RELOAD`, []string{`SET x = 'a;b'`, "RELOAD"}},
		{`PAUSE "we;ird"; RESUME`, []string{`PAUSE "we;ird"`, "RESUME"}},
		{`SET x = 'unterminated; RELOAD`, []string{`SET x = 'unterminated; RELOAD`}},
	}
	for _, tc := range cases {
		got := splitStatements(tc.in)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("splitStatements(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseStatement(t *testing.T) {
	cases := []struct {
		in                 string
		cmd, arg, key, val string
		set, invalid, bad  bool
	}{
		{in: "show pools", cmd: "show", arg: "pools"},
		{in: `PAUSE "acme"`, cmd: "pause", arg: "acme"},
		{in: `PAUSE "a""b"`, cmd: "pause", arg: `a"b`},
		{in: "SET a = b", set: true, cmd: "set", key: "a", val: "b"},
		{in: "set a to 'it''s'", set: true, cmd: "set", key: "a", val: "it's"},
		{in: "SET acme.max_clients = 5", set: true, cmd: "set", key: "acme.max_clients", val: "5"},
		{in: "SET a b", invalid: true},
		{in: "SET", cmd: "set"},
		{in: "= x", invalid: true},
		{in: "'quoted' cmd", invalid: true},
		{in: "PAUSE a b", invalid: true},
		{in: "PAUSE (", invalid: true},
		{in: "SHOW 'x", invalid: true},
		{in: strings.Repeat("k", 16), cmd: strings.Repeat("k", 16), bad: true},
		{in: "PAUSE " + strings.Repeat("t", 64), cmd: "pause", arg: strings.Repeat("t", 64), bad: true},
	}
	for _, tc := range cases {
		st := parseStatement(tc.in)
		if st.invalid != tc.invalid {
			t.Errorf("%q: invalid = %v", tc.in, st.invalid)
			continue
		}
		if tc.invalid {
			continue
		}
		if st.cmd != tc.cmd || st.arg != tc.arg || st.set != tc.set || st.key != tc.key || st.value != tc.val || st.bad != tc.bad {
			t.Errorf("%q: got %+v", tc.in, st)
		}
	}
}

// Bad input never crashes the parser.
func FuzzParseStatement(f *testing.F) {
	for _, s := range []string{"SHOW POOLS", `SET "a" = 'b'`, "PAUSE \"", "';;'\"", "\x00", "SET x TO y; KILL_CLIENT 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		for _, st := range splitStatements(q) {
			parseStatement(st)
		}
	})
}
