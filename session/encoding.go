package session

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"

	"github.com/tenantproxy/tenantproxy/internal/pgparam"
)

// The guard parses UTF-8, while a client may send text in any encoding the server converts from. So that
// the guard reads exactly what the server reads, text of a client whose client_encoding is not UTF8 is
// converted to UTF-8 for the check, as the server converts it; the bytes sent on stay the client's. (The
// client-only encodings, whose bytes could hide a quote from a parser, are refused outright.)

// decoders maps PostgreSQL's encoding names, cleaned as PostgreSQL does (pgparam.CleanEncodingName),
// to their decoders. Encodings not listed are ASCII-compatible only for checking purposes: text with bytes
// above 0x7f that is not valid UTF-8 is then refused, as the server itself refuses invalid input.
var decoders = map[string]encoding.Encoding{
	"latin1": charmap.ISO8859_1, "iso88591": charmap.ISO8859_1,
	"latin2": charmap.ISO8859_2, "iso88592": charmap.ISO8859_2,
	"latin3": charmap.ISO8859_3, "iso88593": charmap.ISO8859_3,
	"latin4": charmap.ISO8859_4, "iso88594": charmap.ISO8859_4,
	"latin5": charmap.ISO8859_9, "iso88599": charmap.ISO8859_9,
	"latin6": charmap.ISO8859_10, "iso885910": charmap.ISO8859_10,
	"latin7": charmap.ISO8859_13, "iso885913": charmap.ISO8859_13,
	"latin8": charmap.ISO8859_14, "iso885914": charmap.ISO8859_14,
	"latin9": charmap.ISO8859_15, "iso885915": charmap.ISO8859_15,
	"latin10": charmap.ISO8859_16, "iso885916": charmap.ISO8859_16,
	"iso88595": charmap.ISO8859_5, "iso88596": charmap.ISO8859_6, "iso88597": charmap.ISO8859_7, "iso88598": charmap.ISO8859_8,
	"win1250": charmap.Windows1250, "win1251": charmap.Windows1251, "win1252": charmap.Windows1252,
	"win1253": charmap.Windows1253, "win1254": charmap.Windows1254, "win1255": charmap.Windows1255,
	"win1256": charmap.Windows1256, "win1257": charmap.Windows1257, "win1258": charmap.Windows1258,
	"win866": charmap.CodePage866, "win874": charmap.Windows874, "koi8r": charmap.KOI8R, "koi8u": charmap.KOI8U,
	"eucjp": japanese.EUCJP, "euckr": korean.EUCKR,
}

// textForGuard returns sql as the server will read it, in UTF-8.
func (s *Session) textForGuard(sql string) string {
	if s.decoder == nil || isASCII(sql) {
		return sql
	}
	out, err := s.decoder.NewDecoder().String(sql)
	if err != nil || !utf8.ValidString(out) {
		return sql
	}
	return out
}

// setEncoding records the client's encoding (from its startup parameters or a tracked SET).
func (s *Session) setEncoding(name string) {
	s.decoder = decoders[pgparam.CleanEncodingName(name)]
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// followEncoding points the guard's decoder at the client_encoding in force on the server now. The server
// switches client_encoding as soon as SET succeeds, also inside a transaction block, and ROLLBACK (or
// ROLLBACK TO a savepoint before it) switches back: so the encoding in force is that of the last SET of
// client_encoding among the open transaction's pending settings, else the session's tracked one.
// The relay calls it after addPending adds a completed statement's settings and after the pending
// settings of a transaction are dropped; applySets at COMMIT sets it too.
func (s *Session) followEncoding() {
	for i := len(s.pendingSets) - 1; i >= 0; i-- {
		st := s.pendingSets[i]
		if st.Savepoint != NoSavepoint || !strings.EqualFold(st.Name, "client_encoding") {
			continue
		}
		switch {
		case !st.Reset && len(st.Values) > 0:
			s.setEncoding(st.Values[0])
		case len(s.startup["client_encoding"]) > 0:
			s.setEncoding(s.startup["client_encoding"][0])
		default:
			s.decoder = nil
		}
		return
	}
	if v := s.settings["client_encoding"]; len(v) > 0 {
		s.setEncoding(v[0])
	} else {
		s.decoder = nil
	}
}
