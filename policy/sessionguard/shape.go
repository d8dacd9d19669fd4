package sessionguard

// shapeKey appends to dst the text of sql with every numeric and string constant replaced by a marker
// ("?n", "?s"), and reports whether it could. It serves the guard's cache of plain statements: texts
// with the same shape differ only in their constants. It is deliberately narrow: it gives up (false) on
// anything whose tokenization is subtle — non-ASCII bytes, backslashes, dollar signs (dollar quotes,
// parameters), comments, prefixed strings (E'x', U&'x', B'1', X'f', N'x'), a semicolon before the end,
// a number running into a letter — so that where it answers, PostgreSQL's lexer splits the text exactly
// as it does (standard_conforming_strings is always on through the proxy). Anything it refuses goes the
// slow way, through PostgreSQL's own normalization.
func shapeKey(dst []byte, sql string) ([]byte, bool) {
	n := len(sql)
	for i := 0; i < n; {
		c := sql[i]
		switch {
		case c >= 0x80 || c == '\\' || c == '$' || c == 0:
			return dst, false
		case c == '-' && i+1 < n && sql[i+1] == '-', c == '/' && i+1 < n && sql[i+1] == '*':
			return dst, false
		case c == '&' && i+1 < n && (sql[i+1] == '"' || sql[i+1] == '\''):
			return dst, false // U&'...' and U&"..." (with UESCAPE) spell text through escapes
		case c == ';':
			for j := i + 1; j < n; j++ {
				if !isSpace(sql[j]) {
					return dst, false
				}
			}
			return append(dst, sql[i:]...), true
		case c == '\'':
			if i > 0 && isIdentChar(sql[i-1]) {
				return dst, false // a prefixed string: E'...', B'...', X'...', U&'...' or N'...'
			}
			j := i + 1
			for {
				if j >= n {
					return dst, false
				}
				if sql[j] == '\'' {
					if j+1 < n && sql[j+1] == '\'' {
						j += 2
						continue
					}
					break
				}
				if sql[j] >= 0x80 || sql[j] == 0 {
					return dst, false
				}
				j++
			}
			// Adjacent string constants separated by a newline are one constant in SQL: give up.
			if k := j + 1; k < n && isSpace(sql[k]) {
				for k < n && isSpace(sql[k]) {
					k++
				}
				if k < n && sql[k] == '\'' {
					return dst, false
				}
			}
			dst = append(dst, '?', 's')
			i = j + 1
		case c == '"':
			j := i + 1
			for {
				if j >= n {
					return dst, false
				}
				if sql[j] == '"' {
					if j+1 < n && sql[j+1] == '"' {
						j += 2
						continue
					}
					break
				}
				j++
			}
			dst = append(dst, sql[i:j+1]...)
			i = j + 1
		case c >= '0' && c <= '9' || (c == '.' && i+1 < n && sql[i+1] >= '0' && sql[i+1] <= '9'):
			if i > 0 && isIdentChar(sql[i-1]) {
				dst = append(dst, c) // a digit inside an identifier
				i++
				continue
			}
			j, dots := i, 0
			for j < n && (sql[j] >= '0' && sql[j] <= '9' || sql[j] == '.') {
				if sql[j] == '.' {
					dots++
				}
				j++
			}
			if dots > 1 {
				return dst, false
			}
			if j < n && (sql[j] == 'e' || sql[j] == 'E') {
				j++
				if j < n && (sql[j] == '+' || sql[j] == '-') {
					j++
				}
				if j >= n || sql[j] < '0' || sql[j] > '9' {
					return dst, false
				}
				for j < n && sql[j] >= '0' && sql[j] <= '9' {
					j++
				}
			}
			if j < n && (isIdentChar(sql[j]) || sql[j] == '.') {
				return dst, false // 0x1f, 1_000, 123abc, 1.2.3: let the real lexer judge
			}
			dst = append(dst, '?', 'n')
			i = j
		default:
			dst = append(dst, c)
			i++
		}
	}
	return dst, true
}

func isIdentChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}
