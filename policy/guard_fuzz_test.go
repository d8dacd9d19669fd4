package policy

import (
	"reflect"
	"strings"
	"testing"

	"github.com/tenantproxy/tenantproxy/internal/pgident"
)

// FuzzGuard checks that the guard never panics, refuses whatever PostgreSQL's parser cannot parse, and
// gives the same verdict from its cache as from a fresh classification.
func FuzzGuard(f *testing.F) {
	for _, e := range escapes {
		f.Add(e.sql)
	}
	for _, sql := range driverStatements {
		f.Add(sql)
	}
	for _, sql := range benchStatements {
		f.Add(sql.sql)
	}
	g := newTestGuard()
	f.Fuzz(func(t *testing.T, sql string) {
		for _, p := range allProfiles {
			a := g.Check(sql, p, tenantSchemas)
			fresh := g.classify(sql).Decide(p, tenantSchemas)
			if !reflect.DeepEqual(a, fresh) {
				t.Fatalf("%s: %q: cached %+v, fresh %+v", p, sql, a, fresh)
			}
			if strings.Contains(a.Reason, "could not be checked") {
				t.Fatalf("%q: the guard panicked: %s", sql, a.Reason)
			}
			// A refusal of the proxy's own says so; the server's own error (a syntax error) is passed on as
			// the server words it (issue 15).
			if a.Refused && (a.SQLState == "" || (!a.ServerError && !strings.HasPrefix(a.Reason, "tenantproxy: ")) || a.Effects != nil) {
				t.Fatalf("%q: malformed refusal %+v", sql, a)
			}
			for _, e := range a.Effects {
				if e.Kind == EffectNone || e.Stmt < 0 || e.Stmt >= a.Statements {
					t.Fatalf("%q: malformed effect %+v of %d statements", sql, e, a.Statements)
				}
			}
		}
		if _, err := parseSQL(sql); err != nil || strings.IndexByte(sql, 0) >= 0 {
			if a := g.Check(sql, ProfileOwner, tenantSchemas); !a.Refused || a.SQLState != SQLStateSyntax {
				t.Fatalf("%q cannot be parsed (%v) but the verdict is %+v", sql, err, a)
			}
		}
	})
}

// FuzzNormalizeSettingName checks that the setting-name parser never panics and that what it accepts is
// lower-case, well shaped and stable.
func FuzzNormalizeSettingName(f *testing.F) {
	for _, s := range []string{"statement_timeout", " DateStyle ", "tenantproxy.tenant", "a..b", "1x", "a$b", "_pq_.x", "ROLE"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, ok := NormalizeSettingName(s)
		if !ok {
			if name != "" {
				t.Fatalf("%q: rejected but returned %q", s, name)
			}
			return
		}
		if name == "" || len(name) > 63 || name != strings.ToLower(name) || strings.ContainsAny(name, " \t\n\"'-;") {
			t.Fatalf("%q: accepted as %q", s, name)
		}
		if again, ok := NormalizeSettingName(name); !ok || again != name {
			t.Fatalf("%q: %q normalizes again to %q, %v", s, name, again, ok)
		}
	})
}

// FuzzStartupSetting checks that any startup parameter yields a refusal or exactly one tracked setting.
func FuzzStartupSetting(f *testing.F) {
	f.Add("search_path", `acme, "public"`)
	f.Add("application_name", "psql")
	f.Add("role", "x")
	f.Add("client_encoding", "sjis")
	g := newTestGuard()
	f.Fuzz(func(t *testing.T, name, value string) {
		a := g.StartupSetting(name, value, ProfileApp, tenantSchemas)
		if a.Refused {
			if a.Effects != nil || !strings.HasPrefix(a.Reason, "tenantproxy: ") {
				t.Fatalf("%q=%q: malformed refusal %+v", name, value, a)
			}
			return
		}
		if len(a.Effects) > 1 {
			t.Fatalf("%q=%q: effects %+v", name, value, a.Effects)
		}
	})
}

// FuzzPlpgsqlBody checks PL/pgSQL bodies, whose parser is libpg_query's C code: no input may crash it, and
// a body whose checking failed is refused.
func FuzzPlpgsqlBody(f *testing.F) {
	for _, body := range []string{
		"BEGIN NULL; END",
		"BEGIN RESET ROLE; END",
		"DECLARE v text := 'x'; r record; BEGIN v := upper(v); FOR r IN SELECT 1 LOOP END LOOP; RETURN; END",
		"BEGIN EXECUTE 'select 1'; END",
		"<<l>> DECLARE c CURSOR (k int) FOR SELECT k; BEGIN OPEN c(1); CLOSE c; EXCEPTION WHEN others THEN RAISE; END",
		"BEGIN NEW.a := 1; NEW.b[1] := 2; RETURN NEW; END",
		"BEGIN FOREACH x SLICE 1 IN ARRAY y LOOP EXIT WHEN x > 1; END LOOP; GET DIAGNOSTICS n = ROW_COUNT; END",
	} {
		f.Add(body, "trigger")
		f.Add(body, "void")
	}
	g := newTestGuard()
	f.Fuzz(func(t *testing.T, body, returns string) {
		if strings.IndexByte(body, 0) >= 0 || strings.IndexByte(returns, 0) >= 0 {
			return
		}
		sql := "CREATE FUNCTION acme.f(a int, INOUT b text) RETURNS " + returns + " LANGUAGE plpgsql AS " + pgident.QuoteLiteral(body)
		a := g.Check(sql, ProfileOwner, tenantSchemas)
		if strings.Contains(a.Reason, "could not be checked") {
			t.Fatalf("%q: the guard panicked: %s", sql, a.Reason)
		}
	})
}
