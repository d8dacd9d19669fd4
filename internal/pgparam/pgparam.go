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

// CanonicalEncoding spells an encoding name as PostgreSQL reports it in client_encoding, its official
// name ("EUC_JP" for "eucjp", "UTF8" for asyncpg's "utf-8", "LATIN1" for "ISO-8859-1"); a name PostgreSQL
// does not know is returned as given, and the server judges it. The aliases are PostgreSQL's
// pg_encname_tbl (src/common/encnames.c).
func CanonicalEncoding(name string) string {
	clean := CleanEncodingName(name)
	if official, ok := encodingAliases[clean]; ok {
		return official
	}
	for _, official := range encodingAliases {
		if CleanEncodingName(official) == clean {
			return official
		}
	}
	return name
}

// encodingAliases maps the cleaned names of pg_encname_tbl to the official names of pg_enc2name_tbl.
var encodingAliases = func() map[string]string {
	m := map[string]string{}
	for _, pair := range strings.Fields(encodingAliasList) {
		alias, official, _ := strings.Cut(pair, "=")
		m[alias] = official
	}
	return m
}()

const encodingAliasList = `
abc=WIN1258 alt=WIN866 big5=BIG5 euccn=EUC_CN eucjis2004=EUC_JIS_2004 eucjp=EUC_JP euckr=EUC_KR euctw=EUC_TW
gb18030=GB18030 gbk=GBK iso88591=LATIN1 iso885910=LATIN6 iso885913=LATIN7 iso885914=LATIN8 iso885915=LATIN9
iso885916=LATIN10 iso88592=LATIN2 iso88593=LATIN3 iso88594=LATIN4 iso88595=ISO_8859_5 iso88596=ISO_8859_6
iso88597=ISO_8859_7 iso88598=ISO_8859_8 iso88599=LATIN5 johab=JOHAB koi8=KOI8R koi8r=KOI8R koi8u=KOI8U
latin1=LATIN1 latin10=LATIN10 latin2=LATIN2 latin3=LATIN3 latin4=LATIN4 latin5=LATIN5 latin6=LATIN6
latin7=LATIN7 latin8=LATIN8 latin9=LATIN9 mskanji=SJIS muleinternal=MULE_INTERNAL shiftjis=SJIS
shiftjis2004=SHIFT_JIS_2004 sjis=SJIS sqlascii=SQL_ASCII tcvn=WIN1258 tcvn5712=WIN1258 uhc=UHC unicode=UTF8
utf8=UTF8 vscii=WIN1258 win=WIN1251 win1250=WIN1250 win1251=WIN1251 win1252=WIN1252 win1253=WIN1253
win1254=WIN1254 win1255=WIN1255 win1256=WIN1256 win1257=WIN1257 win1258=WIN1258 win866=WIN866 win874=WIN874
win932=SJIS win936=GBK win949=UHC win950=BIG5 windows1250=WIN1250 windows1251=WIN1251 windows1252=WIN1252
windows1253=WIN1253 windows1254=WIN1254 windows1255=WIN1255 windows1256=WIN1256 windows1257=WIN1257
windows1258=WIN1258 windows866=WIN866 windows874=WIN874 windows932=SJIS windows936=GBK windows949=UHC
windows950=BIG5
`
