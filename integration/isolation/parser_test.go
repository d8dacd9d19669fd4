package isolation

import (
	"strings"
	"testing"
)

// parityChecks are run after every parser case on the same connection: the server still tokenizes as the
// guard does.
var parityChecks = []step{
	okRows("SHOW standard_conforming_strings", "on"),
	okRows("SHOW client_encoding", "UTF8"),
}

// parserCases attack the guard's reading of statements: they try to make the server tokenize differently
// (standard_conforming_strings off, a client-only encoding whose multibyte characters hide a quote), and
// hide statements in literals, comments, dollar quotes and escapes that a naive tokenizer splits
// differently from PostgreSQL. Text the parser cannot parse is refused with the parser's own 42601.
func parserCases() []escape {
	par := func(name, sql string, words ...string) escape {
		return escape{name: name, steps: []step{refused(sql, words...)}, own: parityChecks}
	}
	harmless := func(name, sql, want string) escape {
		return escape{name: name, steps: []step{okRows(sql, want)}, own: parityChecks}
	}
	// Unparsable text gets the error the server itself raises for it (issue 15): 42601 in the parser's
	// own words, without tenantproxy's prefix.
	syntax := func(name, sql string) escape {
		return escape{name: name, steps: []step{fails("42601", sql)}}
	}
	deep := func(n int, inner string) string {
		return "SELECT " + strings.Repeat("abs(", n) + inner + strings.Repeat(")", n)
	}
	return []escape{
		par("standard_conforming_strings off", "SET standard_conforming_strings = off", "standard_conforming_strings"),
		par("standard_conforming_strings as a string", "SET standard_conforming_strings TO 'off'", "standard_conforming_strings"),
		par("standard_conforming_strings false in upper case", "set STANDARD_CONFORMING_STRINGS = false", "standard_conforming_strings"),
		par("standard_conforming_strings 0", "SET standard_conforming_strings = 0", "standard_conforming_strings"),
		par("SET LOCAL standard_conforming_strings then a literal", `BEGIN; SET LOCAL standard_conforming_strings = off; SELECT 'x\'; RESET ROLE; --'; COMMIT`),
		par("client_encoding SJIS", "SET client_encoding = 'SJIS'", "client_encoding"),
		par("SET NAMES SJIS", "SET NAMES 'SJIS'", "client-only"),
		par("client_encoding shift_jis", "set client_encoding to 'shift_jis'", "client-only"),
		par("client_encoding BIG5", "SET client_encoding = 'BIG5'", "client-only"),
		par("client_encoding gbk unquoted", "SET CLIENT_ENCODING TO gbk", "client-only"),
		par("client_encoding WIN932", "SET client_encoding = 'WIN932'", "client-only"),
		par("client_encoding UHC", "SET client_encoding = 'UHC'", "client-only"),
		par("client_encoding GB18030", "SET client_encoding = 'GB18030'", "client-only"),
		par("client_encoding JOHAB", "SET client_encoding = 'JOHAB'", "client-only"),
		par("client_encoding mskanji", "SET client_encoding = 'mskanji'", "client-only"),
		{name: "SJIS then a literal in the same message", steps: []step{fails("42501|42601", "SET client_encoding = 'SJIS'; SELECT '\x95\\'; RESET ROLE; --'", "tenantproxy")}, own: parityChecks},
		par("backslash_quote", "SET backslash_quote = on", "backslash_quote"),
		{name: "client_encoding LATIN1 is allowed", steps: []step{ok("SET client_encoding = 'LATIN1'"), okRows("SHOW client_encoding", "LATIN1")},
			own: []step{okRows("SHOW client_encoding", "LATIN1"), ok("SET client_encoding = 'UTF8'")}},
		// A LATIN1 client's text is not UTF-8: the guard must read it as the server does.
		{name: "a LATIN1 client sends a non-ASCII literal", steps: []step{ok("SET client_encoding = 'LATIN1'"), okRows("SELECT 'caf\xe9'", "caf\xe9")},
			own: []step{ok("SET client_encoding = 'UTF8'")}},
		par("a backslash does not escape a quote", `SELECT 'x\'; SET ROLE tenant_globex; SELECT '\'`, "role"),
		harmless("E string hiding a statement", `SELECT E'x\'; RESET ROLE; --'`, "x'; RESET ROLE; --"),
		harmless("unicode escape of a quote", `SELECT U&'\0027; RESET ROLE; --'`, "'; RESET ROLE; --"),
		harmless("dollar quote hiding a statement", "SELECT $$; RESET ROLE; $$", "; RESET ROLE; "),
		harmless("tagged dollar quote hiding dollar quotes", "SELECT $a$ $$; RESET ROLE; $$ $a$", " $$; RESET ROLE; $$ "),
		harmless("nested comment hiding a statement", "SELECT 1 /* /* */ ; RESET ROLE; */", "1"),
		harmless("string continuation over a newline", "SELECT 'a'\n'; RESET ROLE; --'", "a; RESET ROLE; --"),
		harmless("line comment ending at a carriage return", "SELECT 1 -- comment\r", "1"),
		par("nested comment closed twice", "SELECT 1 /* /* */ */; RESET ROLE", "role"),
		par("doubled quote then a statement", "SELECT 'it''s'; RESET ROLE", "role"),
		par("dollar quote closed then a statement", "SELECT $$x$$; RESET ROLE", "role"),
		{name: "quoted identifier with a doubled quote", steps: []step{fails("42703", `SELECT "a""; RESET ROLE; --"`)}},
		{name: "invalid UTF-8 hiding a quote", steps: []step{fails("22021|42501|42601", "SELECT '\x95\\'; RESET ROLE; --'")}},
		syntax("misspelled key word", "SELEC 1"),
		syntax("unterminated literal", "SELECT 'unterminated; RESET ROLE"),
		syntax("unterminated dollar quote", "SELECT $$unterminated; RESET ROLE"),
		syntax("unterminated comment", "RESET ROLE /* unterminated"),
		syntax("escape then garbage", "SELECT 1; RESET ROLE; SELEC"),
		syntax("nesting too deep for the parser", deep(20000, "1")),
		{name: "set_config deep in nested calls", steps: []step{fails("42501|42601", deep(1000, "length(set_config('role', 'tenant_globex', false))"))}},
		{name: "set_config deeper in nested calls", steps: []step{fails("42501|42601", deep(4000, "length(set_config('role', 'tenant_globex', false))"))}},
		{name: "empty query", steps: []step{ok("")}},
		{name: "only a comment", steps: []step{ok("-- RESET ROLE")}},
		{name: "only semicolons", steps: []step{ok(" ; ; ")}},
	}
}

// The guard and the server always read a statement alike: standard_conforming_strings stays on, the
// client encoding is never a client-only one, and statements hidden in literals, comments and quotes are
// found exactly where PostgreSQL finds them.
func TestParserParity(t *testing.T) {
	runCategory(t, parserCases(), nil)
}
