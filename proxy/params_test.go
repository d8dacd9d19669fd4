package proxy

import (
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgerrcode"

	"github.com/tenantproxy/tenantproxy/internal/pgparam"
	"github.com/tenantproxy/tenantproxy/policy"
)

func TestParseOptionsReadsSwitchesAsPostgreSQLDoes(t *testing.T) {
	tests := []struct {
		opts string
		want [][2]string
		code string
	}{
		{"-c statement_timeout=5s", [][2]string{{"statement_timeout", "5s"}}, ""},
		{"-cstatement_timeout=5s  --lock-timeout=1s", [][2]string{{"statement_timeout", "5s"}, {"lock_timeout", "1s"}}, ""},
		{`-c search_path=acme,\ public`, [][2]string{{"search_path", "acme, public"}}, ""},
		{"-c default_transaction_isolation=serializable", [][2]string{{"default_transaction_isolation", "serializable"}}, ""},
		{"", nil, ""},
		{"-c statement_timeout", nil, pgerrcode.SyntaxError},
		{"--statement_timeout", nil, pgerrcode.SyntaxError},
		{"-c", nil, pgerrcode.SyntaxError},
		{"statement_timeout=5s", nil, pgerrcode.SyntaxError},
		{"-x", nil, pgerrcode.SyntaxError},
		{"-D /tmp", nil, pgerrcode.InsufficientPrivilege},
		{"-e", nil, pgerrcode.InsufficientPrivilege},
	}
	for _, tt := range tests {
		got, perr := parseOptions(tt.opts)
		switch {
		case tt.code != "":
			if perr == nil || perr.Code != tt.code {
				t.Errorf("%q: got %v, %v; want error %s", tt.opts, got, perr, tt.code)
			}
		case perr != nil:
			t.Errorf("%q: %s %s", tt.opts, perr.Code, perr.Message)
		case !reflect.DeepEqual(got, tt.want):
			t.Errorf("%q: got %q, want %q", tt.opts, got, tt.want)
		}
	}
}

func TestClientSettingsAppliesWhatSETAllowsAndRefusesTheRestAsPostgreSQL(t *testing.T) {
	g := policy.NewGuard(policy.GuardConfig{TenantSetting: "tenantproxy.tenant"})
	allowed := []string{"acme", "public", "pg_catalog"}
	tests := []struct {
		name    string
		params  []string // name, value pairs in order
		profile policy.Profile
		want    map[string]string
		code    string
		msg     string
	}{
		{name: "no parameters", want: map[string]string{}},
		{name: "tracked and generic settings", params: []string{"application_name", "app", "statement_timeout", "5s", "IdLe_In_Transaction_Session_Timeout", "3s", "DateStyle", "ISO, DMY"},
			want: map[string]string{"application_name": "app", "statement_timeout": "5s", "idle_in_transaction_session_timeout": "3s", "datestyle": "ISO, DMY"}},
		{name: "options", params: []string{"options", "-c default_transaction_isolation=serializable --work-mem=8MB"},
			want: map[string]string{"default_transaction_isolation": "serializable", "work_mem": "8MB"}},
		{name: "a parameter overrides options", params: []string{"options", "-c statement_timeout=1s", "statement_timeout", "2s"},
			want: map[string]string{"statement_timeout": "2s"}},
		{name: "fallback_application_name", params: []string{"fallback_application_name", "fb"}, want: map[string]string{"application_name": "fb"}},
		{name: "application_name wins over the fallback", params: []string{"fallback_application_name", "fb", "application_name", "app"}, want: map[string]string{"application_name": "app"}},
		{name: "client_encoding as the server spells it", params: []string{"client_encoding", "eucjp"}, want: map[string]string{"client_encoding": "EUC_JP"}},
		{name: "the tenant's context is ignored", params: []string{"search_path", "globex", "options", "-c role=postgres --session-authorization=x", "tenantproxy.Tenant", "globex", "standard_conforming_strings", "off"},
			want: map[string]string{}},
		{name: "unknown parameter", params: []string{"foo", "1"}, code: pgerrcode.UndefinedObject, msg: `unrecognized configuration parameter "foo"`},
		{name: "unknown in options", params: []string{"options", "-c no_such_thing=1"}, code: pgerrcode.UndefinedObject, msg: `unrecognized configuration parameter "no_such_thing"`},
		{name: "a custom setting", params: []string{"app.user_id", "7"}, code: pgerrcode.InsufficientPrivilege, msg: "tenantproxy: startup parameter app.user_id is not allowed: custom settings (with a dot in the name) are reserved, since a row-level security policy may trust them"},
		{name: "a setting the tenant may not change", params: []string{"session_replication_role", "replica"}, code: pgerrcode.InsufficientPrivilege},
		{name: "a read-only user turning read-only off", params: []string{"default_transaction_read_only", "off"}, profile: policy.ProfileReadonly, code: pgerrcode.ReadOnlySQLTransaction},
		{name: "a client-only encoding", params: []string{"client_encoding", "SJIS"}, code: pgerrcode.InvalidParameterValue},
	}
	for _, tt := range tests {
		pkt := &startupPacket{code: codeProtocol3, params: map[string]string{"user": "alice@acme", "database": "acme"}, order: []string{"user", "database"}}
		for i := 0; i < len(tt.params); i += 2 {
			pkt.params[tt.params[i]] = tt.params[i+1]
			pkt.order = append(pkt.order, tt.params[i])
		}
		var ignored []string
		got, perr := clientSettings(pkt, g, tt.profile, allowed, &ignored)
		if tt.code != "" {
			if perr == nil || perr.Code != tt.code || (tt.msg != "" && perr.Message != tt.msg) {
				t.Errorf("%s: got %v, %+v; want %s %q", tt.name, got, perr, tt.code, tt.msg)
			}
			continue
		}
		if perr != nil {
			t.Errorf("%s: %s %s", tt.name, perr.Code, perr.Message)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestCanonicalEncodingSpellsAsTheServerReports(t *testing.T) {
	for in, want := range map[string]string{"eucjp": "EUC_JP", "utf-8": "UTF8", "unicode": "UTF8", "ISO-8859-1": "LATIN1", "latin9": "LATIN9",
		"win1252": "WIN1252", "koi8": "KOI8R", "EUC_JIS_2004": "EUC_JIS_2004", "iso_8859_5": "ISO_8859_5", "no-such": "no-such"} {
		if got := pgparam.CanonicalEncoding(in); got != want {
			t.Errorf("CanonicalEncoding(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParseOptions feeds arbitrary options parameters to the reader: it never panics, and what it accepts
// is name=value pairs whose names hold no dash (ParseLongOption's underscores).
func FuzzParseOptions(f *testing.F) {
	for _, s := range []string{"-c a=b", `--x-y=1 -cz=\ 2`, "-c", "--", "- c", `-c a=\`, "-c=1", "\t-c\ta=b\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, opts string) {
		kvs, perr := parseOptions(opts)
		if perr != nil {
			if perr.Code == "" || perr.Message == "" {
				t.Fatalf("%q: refusal without code or message: %+v", opts, perr)
			}
			return
		}
		for _, kv := range kvs {
			if strings.Contains(kv[0], "-") {
				t.Fatalf("%q: name %q", opts, kv[0])
			}
		}
	})
}
