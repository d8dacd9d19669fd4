package policy

import (
	"strings"

	"github.com/tenantproxy/tenantproxy/internal/pgparam"
)

// settingKind says how the guard treats a setting that a client changes with SET, SET LOCAL or RESET, or
// sends as a startup parameter.
type settingKind uint8

const (
	// settingRefused settings are never changed by a client; the rule carries the reason.
	settingRefused settingKind = iota + 1
	// settingTracked settings are harmless: a plain SET is tracked by the session and replayed on every
	// lease, SET LOCAL passes through.
	settingTracked
	// settingList is settingTracked for a setting whose value is a list (PostgreSQL's GUC_LIST_INPUT):
	// SET takes several arguments and joins them with ", ".
	settingList
	// settingSearchPath is search_path: a list of schemas, each of which must be one of the tenant's.
	settingSearchPath
	// settingClientEncoding is client_encoding (also SET NAMES): tracked, unless the encoding is one of the
	// client-only encodings whose multi-byte characters can hide a quote from the guard.
	settingClientEncoding
	// settingStandardConformingStrings may only be set to on, which it always is.
	settingStandardConformingStrings
	// settingTransaction settings (transaction_isolation, transaction_read_only, transaction_deferrable)
	// last only until the end of the transaction: they pass through and are not tracked.
	settingTransaction
)

// settingRule is the guard's rule for one setting.
type settingRule struct {
	kind settingKind
	// reason completes "tenantproxy: SET <name> is not allowed: " for refused settings.
	reason string
	// readOnly marks default_transaction_read_only and transaction_read_only, which a read-only user may
	// turn on but never off.
	readOnly bool
}

// roleReason is why the role and the session authorization can never change.
const roleReason = "the session's role is fixed by its tenant"

// refusedSettings are settings refused with a reason of their own. Any setting not listed here nor in
// trackedSettings is refused too, with a general reason.
var refusedSettings = map[string]string{
	"role":                     roleReason,
	"session_authorization":    roleReason,
	"session_replication_role": "it would disable triggers and foreign keys",
	"allow_system_table_mods":  "it would allow changes to the system catalogs",
	"temp_tablespaces":         "temporary objects of a shared backend stay in the server's default place",
	"exit_on_error":            "it would end a backend that other tenants share",
	"lc_messages":              "server messages stay in the server's language",
	"backslash_quote":          "string quoting must stay the same for tenantproxy and the server",
}

// trackedSettings is the allowlist: every setting a client may change, by its lower-case name. Each of them
// is user-settable (context "user" in pg_settings) and changes nothing but the client's own session. The
// planner settings enable_* are allowed by prefix (see settingRuleFor).
var trackedSettings = map[string]settingKind{
	// Timeouts.
	"statement_timeout":                   settingTracked,
	"lock_timeout":                        settingTracked,
	"idle_in_transaction_session_timeout": settingTracked,
	"idle_session_timeout":                settingTracked,
	"transaction_timeout":                 settingTracked, // PostgreSQL 17
	// Client presentation.
	"application_name":            settingTracked,
	"timezone":                    settingTracked,
	"datestyle":                   settingList,
	"intervalstyle":               settingTracked,
	"extra_float_digits":          settingTracked,
	"bytea_output":                settingTracked,
	"xmlbinary":                   settingTracked,
	"xmloption":                   settingTracked,
	"client_min_messages":         settingTracked,
	"lc_monetary":                 settingTracked,
	"lc_numeric":                  settingTracked,
	"lc_time":                     settingTracked,
	"timezone_abbreviations":      settingTracked,
	"default_text_search_config":  settingTracked,
	"quote_all_identifiers":       settingTracked,
	"array_nulls":                 settingTracked,
	"escape_string_warning":       settingTracked,
	"client_encoding":             settingClientEncoding,
	"standard_conforming_strings": settingStandardConformingStrings,
	// Transactions.
	"default_transaction_isolation":  settingTracked,
	"default_transaction_read_only":  settingTracked,
	"default_transaction_deferrable": settingTracked,
	"transaction_isolation":          settingTransaction,
	"transaction_read_only":          settingTransaction,
	"transaction_deferrable":         settingTransaction,
	"synchronous_commit":             settingTracked,
	// Name resolution.
	"search_path": settingSearchPath,
	// Resources and the planner.
	"work_mem":                          settingTracked,
	"maintenance_work_mem":              settingTracked,
	"hash_mem_multiplier":               settingTracked,
	"temp_buffers":                      settingTracked,
	"jit":                               settingTracked,
	"jit_above_cost":                    settingTracked,
	"jit_inline_above_cost":             settingTracked,
	"jit_optimize_above_cost":           settingTracked,
	"random_page_cost":                  settingTracked,
	"seq_page_cost":                     settingTracked,
	"cpu_tuple_cost":                    settingTracked,
	"cpu_index_tuple_cost":              settingTracked,
	"cpu_operator_cost":                 settingTracked,
	"parallel_setup_cost":               settingTracked,
	"parallel_tuple_cost":               settingTracked,
	"min_parallel_table_scan_size":      settingTracked,
	"min_parallel_index_scan_size":      settingTracked,
	"effective_cache_size":              settingTracked,
	"effective_io_concurrency":          settingTracked,
	"maintenance_io_concurrency":        settingTracked,
	"default_statistics_target":         settingTracked,
	"constraint_exclusion":              settingTracked,
	"cursor_tuple_fraction":             settingTracked,
	"from_collapse_limit":               settingTracked,
	"join_collapse_limit":               settingTracked,
	"geqo":                              settingTracked,
	"geqo_threshold":                    settingTracked,
	"geqo_effort":                       settingTracked,
	"geqo_pool_size":                    settingTracked,
	"geqo_generations":                  settingTracked,
	"geqo_selection_bias":               settingTracked,
	"geqo_seed":                         settingTracked,
	"plan_cache_mode":                   settingTracked,
	"recursive_worktable_factor":        settingTracked,
	"max_parallel_workers_per_gather":   settingTracked,
	"max_parallel_maintenance_workers":  settingTracked,
	"parallel_leader_participation":     settingTracked,
	"gin_fuzzy_search_limit":            settingTracked,
	"gin_pending_list_limit":            settingTracked,
	"vacuum_cost_delay":                 settingTracked,
	"vacuum_cost_limit":                 settingTracked,
	"check_function_bodies":             settingTracked,
	"default_table_access_method":       settingTracked,
	"default_tablespace":                settingTracked,
	"default_toast_compression":         settingTracked,
	"row_security":                      settingTracked,
	"vacuum_freeze_min_age":             settingTracked,
	"vacuum_freeze_table_age":           settingTracked,
	"vacuum_multixact_freeze_min_age":   settingTracked,
	"vacuum_multixact_freeze_table_age": settingTracked,
}

// oldSettingNames maps the obsolete names PostgreSQL still accepts to the settings they stand for.
var oldSettingNames = map[string]string{
	"sort_mem":   "work_mem",
	"vacuum_mem": "maintenance_work_mem",
}

// settingRuleFor returns the rule for a setting name that NormalizeSettingName has already lower-cased,
// and the canonical name (aliases resolved). tenantSetting is the guard's tenant setting.
func settingRuleFor(name, tenantSetting string) (string, settingRule) {
	if canon, ok := oldSettingNames[name]; ok {
		name = canon
	}
	if reason, ok := refusedSettings[name]; ok {
		return name, settingRule{kind: settingRefused, reason: reason}
	}
	if tenantSetting != "" && name == tenantSetting {
		return name, settingRule{kind: settingRefused, reason: "it carries the tenant and only tenantproxy sets it"}
	}
	if strings.Contains(name, ".") {
		return name, settingRule{kind: settingRefused,
			reason: "custom settings (with a dot in the name) are reserved, since a row-level security policy may trust them"}
	}
	if kind, ok := trackedSettings[name]; ok {
		readOnly := name == "default_transaction_read_only" || name == "transaction_read_only"
		return name, settingRule{kind: kind, readOnly: readOnly}
	}
	if strings.HasPrefix(name, "enable_") {
		return name, settingRule{kind: settingTracked}
	}
	return name, settingRule{kind: settingRefused, reason: "it is not on tenantproxy's list of settings a client may change"}
}

// NormalizeSettingName returns the setting name s as PostgreSQL compares it: trimmed of surrounding
// white space and lower-cased (ASCII only, as PostgreSQL folds setting names). It reports false when s
// is not shaped like a setting name: one or more parts separated by single dots, each part a letter or
// '_' followed by letters, digits, '_' or '$', 63 bytes at most in all. The name is not looked up: use the
// guard's StartupSetting to decide whether a client may set it.
func NormalizeSettingName(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 63 {
		return "", false
	}
	start := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case c >= '0' && c <= '9', c == '$':
			if start {
				return "", false
			}
		case c == '.':
			if start || i == len(s)-1 {
				return "", false
			}
			start = true
			continue
		default:
			return "", false
		}
		start = false
	}
	return asciiLower(s), true
}

// asciiLower lower-cases the ASCII letters of s, leaving every other byte alone, and does not allocate
// when s has no upper-case letter.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// encodings maps every encoding name PostgreSQL accepts, cleaned as pgparam.CleanEncodingName does, to whether it
// is a client-only encoding. The table is PostgreSQL's pg_encname_tbl (src/common/encnames.c) plus the
// official names of pg_enc2name_tbl. The client-only encodings (PG_SJIS, PG_BIG5, PG_GBK, PG_UHC,
// PG_GB18030, PG_JOHAB, PG_SHIFT_JIS_2004 in pg_wchar.h) have multi-byte characters whose second byte can
// be an ASCII character such as a backslash, so a parser reading the bytes as another encoding would
// tokenize differently from the server.
var encodings = map[string]bool{
	"abc": false, "alt": false, "big5": true, "euccn": false, "eucjis2004": false, "eucjp": false,
	"euckr": false, "euctw": false, "gb18030": true, "gbk": true, "iso88591": false, "iso885910": false,
	"iso885913": false, "iso885914": false, "iso885915": false, "iso885916": false, "iso88592": false,
	"iso88593": false, "iso88594": false, "iso88595": false, "iso88596": false, "iso88597": false,
	"iso88598": false, "iso88599": false, "johab": true, "koi8": false, "koi8r": false, "koi8u": false,
	"latin1": false, "latin10": false, "latin2": false, "latin3": false, "latin4": false, "latin5": false,
	"latin6": false, "latin7": false, "latin8": false, "latin9": false, "mskanji": true,
	"muleinternal": false, "shiftjis": true, "shiftjis2004": true, "sjis": true, "sqlascii": false,
	"tcvn": false, "tcvn5712": false, "uhc": true, "unicode": false, "utf8": false, "vscii": false,
	"win": false, "win1250": false, "win1251": false, "win1252": false, "win1253": false,
	"win1254": false, "win1255": false, "win1256": false, "win1257": false, "win1258": false,
	"win866": false, "win874": false, "win932": true, "win936": true, "win949": true, "win950": true,
	"windows1250": false, "windows1251": false, "windows1252": false, "windows1253": false,
	"windows1254": false, "windows1255": false, "windows1256": false, "windows1257": false,
	"windows1258": false, "windows866": false, "windows874": false, "windows932": true,
	"windows936": true, "windows949": true, "windows950": true,
}

// IsClientOnlyEncoding reports whether name, in any of the spellings PostgreSQL accepts ("SJIS",
// "Shift_JIS", "shift-jis", "win932", "BIG5", "GBK", "UHC", "GB18030", "JOHAB", "SHIFT_JIS_2004" and their
// aliases), is one of the client-only encodings that tenantproxy never lets a client use.
func IsClientOnlyEncoding(name string) bool {
	return encodings[pgparam.CleanEncodingName(name)]
}

// ClientEncodingAllowed reports whether a client may use name as its client_encoding: PostgreSQL knows
// the encoding, and it is not client-only.
func ClientEncodingAllowed(name string) bool {
	clientOnly, known := encodings[pgparam.CleanEncodingName(name)]
	return known && !clientOnly
}

// parseBool reads a boolean setting value as PostgreSQL's parse_bool does: on, off, true, false, yes, no,
// 1, 0, and unambiguous prefixes of them, in any case. Like PostgreSQL's, it does not trim white space.
func parseBool(s string) (value, ok bool) {
	s = asciiLower(s)
	if s == "" {
		return false, false
	}
	switch {
	case strings.HasPrefix("true", s), strings.HasPrefix("yes", s), s == "1", s == "on":
		return true, true
	case strings.HasPrefix("false", s), strings.HasPrefix("no", s), s == "0", len(s) >= 2 && strings.HasPrefix("off", s):
		return false, true
	}
	return false, false
}
