package policy

import (
	"strings"
	"testing"
)

// TestNormalizeSettingName checks the shape and case folding of setting names.
func TestNormalizeSettingName(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"statement_timeout", "statement_timeout", true},
		{"  DateStyle ", "datestyle", true},
		{"TimeZone", "timezone", true},
		{"tenantproxy.tenant", "tenantproxy.tenant", true},
		{"App.Tenant_ID", "app.tenant_id", true},
		{"a$b", "a$b", true},
		{"_x1", "_x1", true},
		{"", "", false},
		{"   ", "", false},
		{"1abc", "", false},
		{"$a", "", false},
		{"a..b", "", false},
		{".a", "", false},
		{"a.", "", false},
		{"a.1b", "", false},
		{"a-b", "", false},
		{"a b", "", false},
		{"rôle", "", false},
		{"role\x00", "", false},
		{strings.Repeat("a", 63), strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), "", false},
	}
	for _, tc := range cases {
		got, ok := NormalizeSettingName(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("NormalizeSettingName(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestClientEncodings checks the client-only encodings in the spellings PostgreSQL accepts.
func TestClientEncodings(t *testing.T) {
	clientOnly := []string{"SJIS", "sjis", "Shift_JIS", "SHIFTJIS", "shift-jis", "MS_Kanji", "win932", "Windows-932",
		"BIG5", "big5", "WIN950", "GBK", "win936", "windows936", "UHC", "win949", "GB18030", "gb-18030",
		"JOHAB", "SHIFT_JIS_2004", "shiftjis2004"}
	for _, name := range clientOnly {
		if !IsClientOnlyEncoding(name) || ClientEncodingAllowed(name) {
			t.Errorf("%q: client-only %v, allowed %v", name, IsClientOnlyEncoding(name), ClientEncodingAllowed(name))
		}
	}
	allowed := []string{"UTF8", "utf-8", "Unicode", "SQL_ASCII", "sql-ascii", "LATIN1", "ISO-8859-1", "iso_8859_15",
		"EUC_JP", "euc-jis-2004", "EUC_KR", "EUC_CN", "EUC_TW", "MULE_INTERNAL", "WIN1252", "windows-1251", "KOI8R",
		"KOI8-U", "WIN866", "alt", "TCVN"}
	for _, name := range allowed {
		if IsClientOnlyEncoding(name) || !ClientEncodingAllowed(name) {
			t.Errorf("%q: client-only %v, allowed %v", name, IsClientOnlyEncoding(name), ClientEncodingAllowed(name))
		}
	}
	for _, name := range []string{"", "klingon", "utf16", "auto", strings.Repeat("utf8", 16)} {
		if IsClientOnlyEncoding(name) || ClientEncodingAllowed(name) {
			t.Errorf("%q: client-only %v, allowed %v", name, IsClientOnlyEncoding(name), ClientEncodingAllowed(name))
		}
	}
}

// TestParseBool checks boolean setting values as PostgreSQL reads them.
func TestParseBool(t *testing.T) {
	cases := []struct {
		in        string
		value, ok bool
	}{
		{"on", true, true}, {"ON", true, true}, {"true", true, true}, {"t", true, true}, {"TR", true, true},
		{"yes", true, true}, {"y", true, true}, {"1", true, true},
		{"off", false, true}, {"of", false, true}, {"false", false, true}, {"f", false, true}, {"no", false, true},
		{"n", false, true}, {"0", false, true},
		{"o", false, false}, {"", false, false}, {" on", false, false}, {"onn", false, false}, {"2", false, false},
		{"truee", false, false},
	}
	for _, tc := range cases {
		value, ok := parseBool(tc.in)
		if value != tc.value || ok != tc.ok {
			t.Errorf("parseBool(%q) = %v, %v; want %v, %v", tc.in, value, ok, tc.value, tc.ok)
		}
	}
}

// TestSettingRules checks the verdicts on settings that have rules of their own.
func TestSettingRules(t *testing.T) {
	cases := []struct {
		name string
		kind settingKind
	}{
		{"role", settingRefused},
		{"session_authorization", settingRefused},
		{"tenantproxy.tenant", settingRefused},
		{"tenant", settingRefused}, // the configured tenant setting, even without a dot
		{"x.y", settingRefused},
		{"search_path", settingSearchPath},
		{"client_encoding", settingClientEncoding},
		{"standard_conforming_strings", settingStandardConformingStrings},
		{"transaction_read_only", settingTransaction},
		{"datestyle", settingList},
		{"statement_timeout", settingTracked},
		{"sort_mem", settingTracked},
		{"enable_hashjoin", settingTracked},
		{"log_min_duration_statement", settingRefused},
	}
	for _, tc := range cases {
		if _, r := settingRuleFor(tc.name, "tenant"); r.kind != tc.kind {
			t.Errorf("settingRuleFor(%q) = %v, want %v", tc.name, r.kind, tc.kind)
		}
	}
	if name, _ := settingRuleFor("vacuum_mem", ""); name != "maintenance_work_mem" {
		t.Errorf("vacuum_mem is %q, want maintenance_work_mem", name)
	}
}
