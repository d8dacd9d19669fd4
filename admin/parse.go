package admin

import (
	"strings"
)

// Limits of one command's parts, as pgbouncer's (a longer part is "bad arguments").
const (
	maxCmdLen   = 15
	maxArgLen   = 63
	maxValueLen = 255
	// maxStatements bounds the commands of one Query message.
	maxStatements = 64
)

// statement is one parsed console command.
type statement struct {
	text string // the statement as written, for error messages
	// cmd is the command word, lower-cased; arg its optional argument (unquoted).
	cmd, arg string
	// set: a SET key = value statement; key and value unquoted.
	set        bool
	key, value string
	// bad is set when a part is too long ("bad arguments").
	bad bool
	// invalid is set when the statement is not a console command (syntax error).
	invalid bool
}

type tokKind int

const (
	tWord   tokKind = iota // bare word: letters, digits, _ and .
	tIdent                 // "quoted identifier"
	tString                // 'string'
	tEquals                // =
	tOther                 // anything else
)

type token struct {
	kind tokKind
	text string // unquoted text
}

// splitStatements cuts a Query's text at semicolons outside quotes. Empty statements are dropped.
func splitStatements(q string) []string {
	var out []string
	start := 0
	var quote byte
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == ';':
			if s := strings.TrimSpace(q[start:i]); s != "" {
				out = append(out, s)
			}
			start = i + 1
		}
	}
	if s := strings.TrimSpace(q[start:]); s != "" {
		out = append(out, s)
	}
	return out
}

// tokenize splits one statement into tokens; ok is false on an unterminated quote.
func tokenize(s string) ([]token, bool) {
	var toks []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '=':
			toks = append(toks, token{kind: tEquals, text: "="})
			i++
		case c == '"' || c == '\'':
			var b strings.Builder
			j := i + 1
			closed := false
			for j < len(s) {
				if s[j] == c {
					if j+1 < len(s) && s[j+1] == c {
						b.WriteByte(c)
						j += 2
						continue
					}
					closed = true
					j++
					break
				}
				b.WriteByte(s[j])
				j++
			}
			if !closed {
				return nil, false
			}
			kind := tIdent
			if c == '\'' {
				kind = tString
			}
			toks = append(toks, token{kind: kind, text: b.String()})
			i = j
		case isWordByte(c):
			j := i
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			toks = append(toks, token{kind: tWord, text: s[i:j]})
			i = j
		default:
			toks = append(toks, token{kind: tOther, text: string(c)})
			i++
		}
	}
	return toks, true
}

func isWordByte(c byte) bool {
	return c == '_' || c == '.' || c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// parseStatement reads one statement: `CMD [ARG]` or `SET key {=|TO} value`.
func parseStatement(s string) statement {
	st := statement{text: s}
	toks, ok := tokenize(s)
	if !ok || len(toks) == 0 || toks[0].kind != tWord {
		st.invalid = true
		return st
	}
	name := func(t token) bool { return t.kind == tWord || t.kind == tIdent }
	if strings.EqualFold(toks[0].text, "set") && len(toks) == 4 && name(toks[1]) &&
		(toks[2].kind == tEquals || (toks[2].kind == tWord && strings.EqualFold(toks[2].text, "to"))) &&
		(toks[3].kind == tWord || toks[3].kind == tIdent || toks[3].kind == tString) {
		st.set = true
		st.cmd = "set"
		st.key, st.value = toks[1].text, toks[3].text
		if st.key == "" || len(st.key) > maxArgLen || len(st.value) > maxValueLen {
			st.bad = true
		}
		return st
	}
	if len(toks) > 2 || (len(toks) == 2 && !name(toks[1])) {
		st.invalid = true
		return st
	}
	st.cmd = strings.ToLower(toks[0].text)
	if len(st.cmd) > maxCmdLen {
		st.bad = true
	}
	if len(toks) == 2 {
		st.arg = toks[1].text
		if len(st.arg) > maxArgLen {
			st.bad = true
		}
	}
	return st
}
