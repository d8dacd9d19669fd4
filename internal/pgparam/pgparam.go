// Package pgparam is the one home of what tenantproxy knows about PostgreSQL's parameter and encoding
// names: the startup parameters a client may set (and the spelling the server reports them in), and
// encoding-name normalisation as the server does it. It is a leaf; the front door, the relay and the
// statement guard all ask it rather than keep lists of their own.
package pgparam

import "strings"

// startup maps the startup parameters a client may set, by lower-case name, to the name the server
// reports in ParameterStatus. They are passed on to the relay and replayed on every lease; every other
// startup parameter (options, role, search_path, replication and the rest) is dropped and never reaches a
// backend.
var startup = map[string]string{
	"application_name":   "application_name",
	"client_encoding":    "client_encoding",
	"datestyle":          "DateStyle",
	"timezone":           "TimeZone",
	"intervalstyle":      "IntervalStyle",
	"extra_float_digits": "extra_float_digits",
}

// IsTrackedStartup reports whether a client may set the startup parameter name (any case).
func IsTrackedStartup(name string) bool {
	_, ok := startup[strings.ToLower(name)]
	return ok
}

// StartupServerName returns the spelling the server reports for the tracked startup parameter name (any
// case), for example "DateStyle" for "datestyle"; ok is false when name is not tracked.
func StartupServerName(name string) (string, bool) {
	s, ok := startup[strings.ToLower(name)]
	return s, ok
}

// TrackedStartup returns the tracked startup parameters by lower-case name, mapped to the server's
// spelling. The map is a copy.
func TrackedStartup() map[string]string {
	out := make(map[string]string, len(startup))
	for k, v := range startup {
		out[k] = v
	}
	return out
}

// CleanEncodingName reduces an encoding name as PostgreSQL's clean_encoding_name does: only ASCII letters
// and digits are kept, lower-cased ("UTF-8", "utf_8" and "Utf8" all become "utf8"). Names of 64 bytes or
// more match nothing, as in pg_char_to_encoding, and become "".
func CleanEncodingName(name string) string {
	if len(name) >= 64 {
		return ""
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteByte(c)
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		}
	}
	return b.String()
}

// CanonicalEncoding spells an encoding name as the server reports it for the common names (asyncpg, for
// one, sends 'utf-8'); other names are returned as given and the server judges them.
func CanonicalEncoding(name string) string {
	switch CleanEncodingName(name) {
	case "utf8", "unicode":
		return "UTF8"
	case "sqlascii":
		return "SQL_ASCII"
	case "latin1", "iso88591":
		return "LATIN1"
	}
	return name
}
