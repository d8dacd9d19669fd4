package pgparam

import (
	"strings"
	"testing"
)

func TestTrackedStartupParameters(t *testing.T) {
	tests := []struct {
		name    string
		tracked bool
		server  string
	}{
		{"application_name", true, "application_name"},
		{"DateStyle", true, "DateStyle"},
		{"datestyle", true, "DateStyle"},
		{"TIMEZONE", true, "TimeZone"},
		{"IntervalStyle", true, "IntervalStyle"},
		{"extra_float_digits", true, "extra_float_digits"},
		{"client_encoding", true, "client_encoding"},
		{"search_path", false, ""},
		{"role", false, ""},
		{"options", false, ""},
		{"replication", false, ""},
		{"session_authorization", false, ""},
		{"", false, ""},
	}
	for _, tt := range tests {
		if got := IsTrackedStartup(tt.name); got != tt.tracked {
			t.Errorf("IsTrackedStartup(%q) = %v, want %v", tt.name, got, tt.tracked)
		}
		if got, ok := StartupServerName(tt.name); got != tt.server || ok != tt.tracked {
			t.Errorf("StartupServerName(%q) = %q, %v, want %q, %v", tt.name, got, ok, tt.server, tt.tracked)
		}
	}
	m := TrackedStartup()
	if len(m) != 6 {
		t.Errorf("TrackedStartup has %d parameters, want 6", len(m))
	}
	m["search_path"] = "search_path"
	if IsTrackedStartup("search_path") {
		t.Error("changing TrackedStartup's copy changed the tracked set")
	}
}

func TestEncodingNamesNormaliseAsPostgreSQLDoes(t *testing.T) {
	tests := []struct{ in, clean, canonical string }{
		{"UTF8", "utf8", "UTF8"},
		{"utf-8", "utf8", "UTF8"},
		{"Utf_8", "utf8", "UTF8"},
		{"unicode", "unicode", "UTF8"},
		{"SQL_ASCII", "sqlascii", "SQL_ASCII"},
		{"latin1", "latin1", "LATIN1"},
		{"ISO-8859-1", "iso88591", "LATIN1"},
		{"WIN1252", "win1252", "WIN1252"},
		{"EUC_JP", "eucjp", "EUC_JP"},
		{"\u0130utf8", "utf8", "UTF8"}, // non-ASCII letters are dropped, as by clean_encoding_name
		{strings.Repeat("u", 64), "", strings.Repeat("u", 64)},
		{"", "", ""},
	}
	for _, tt := range tests {
		if got := CleanEncodingName(tt.in); got != tt.clean {
			t.Errorf("CleanEncodingName(%q) = %q, want %q", tt.in, got, tt.clean)
		}
		if got := CanonicalEncoding(tt.in); got != tt.canonical {
			t.Errorf("CanonicalEncoding(%q) = %q, want %q", tt.in, got, tt.canonical)
		}
	}
}
