package policy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/integration/pgtest"
)

// newerSettings are allowlisted settings that the test server (PostgreSQL 15) does not have yet.
var newerSettings = map[string]bool{"transaction_timeout": true}

// TestSettingsAgainstPostgreSQL checks the guard's tables against a real server: every allowlisted setting
// is one a plain user may set, every encoding name resolves as the guard thinks, and replaying a tracked
// setting gives the value the client's own statement gave.
func TestSettingsAgainstPostgreSQL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	c := pgtest.New(t, pgtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	t.Run("allowlisted settings are user settings", func(t *testing.T) {
		names := []string{}
		for name := range trackedSettings {
			names = append(names, name)
		}
		rows, err := conn.Query(ctx, "SELECT lower(name) FROM pg_settings WHERE name LIKE 'enable\\_%'")
		if err != nil {
			t.Fatal(err)
		}
		enables, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, enables...)
		for _, name := range names {
			var context string
			err := conn.QueryRow(ctx, "SELECT context FROM pg_settings WHERE lower(name) = $1", name).Scan(&context)
			switch {
			case err == pgx.ErrNoRows && newerSettings[name]:
			case err != nil:
				t.Errorf("%s: %v", name, err)
			case context != "user":
				t.Errorf("%s is allowlisted but its context is %q, not user", name, context)
			}
		}
		for name := range refusedSettings {
			var value string
			if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&value); err != nil {
				t.Errorf("refused setting %s is not a setting: %v", name, err)
			}
		}
	})

	t.Run("encoding names resolve as PostgreSQL resolves them", func(t *testing.T) {
		clientOnly := map[string]bool{"SJIS": true, "BIG5": true, "GBK": true, "UHC": true, "GB18030": true,
			"JOHAB": true, "SHIFT_JIS_2004": true}
		for name, only := range encodings {
			var canonical string
			if err := conn.QueryRow(ctx, "SELECT pg_encoding_to_char(pg_char_to_encoding($1))", name).Scan(&canonical); err != nil {
				t.Fatal(err)
			}
			if canonical == "" {
				t.Errorf("PostgreSQL does not know the encoding %q", name)
			}
			if clientOnly[canonical] != only {
				t.Errorf("%q is %s: client-only is %v, want %v", name, canonical, only, clientOnly[canonical])
			}
		}
		for _, name := range []string{"Shift-JIS", "iso_8859_5", "Windows-1252", "klingon"} {
			var canonical string
			if err := conn.QueryRow(ctx, "SELECT pg_encoding_to_char(pg_char_to_encoding($1))", name).Scan(&canonical); err != nil {
				t.Fatal(err)
			}
			if known := canonical != ""; known != (IsClientOnlyEncoding(name) || ClientEncodingAllowed(name)) {
				t.Errorf("%q: PostgreSQL says %q, the guard says known=%v", name, canonical, !known)
			}
		}
	})

	t.Run("replayed settings equal the client's", func(t *testing.T) {
		g := newTestGuard()
		schemas := []string{"acme", "public", "Mixed Case"}
		statements := []string{
			"SET extra_float_digits = 3",
			"SET application_name = 'O''Brien'",
			`SET application_name = E'back\\slash'`,
			"SET TIME ZONE 'America/New_York'",
			"SET TIME ZONE -7",
			"SET datestyle = ISO, DMY",
			"SET DateStyle = 'SQL, MDY'",
			"SET intervalstyle = iso_8601",
			"SET search_path TO acme, public",
			`SET search_path = "Mixed Case", ACME`,
			"SET SCHEMA 'acme'",
			"SET statement_timeout = '1min'",
			"SET statement_timeout = 1500",
			"SET work_mem = 1024",
			"SET random_page_cost = 1.5",
			"SET enable_seqscan = off",
			"SET NAMES 'LATIN1'",
			"SET XML OPTION DOCUMENT",
			"SET bytea_output TO escape",
			"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE",
		}
		for _, sql := range statements {
			a := g.Check(sql, ProfileApp, schemas)
			if a.Refused || len(a.Effects) == 0 {
				t.Errorf("%q: refused=%v %s, effects %+v", sql, a.Refused, a.Reason, a.Effects)
				continue
			}
			for _, e := range a.Effects {
				want := settingAfter(ctx, t, conn, sql, e.Name)
				got := settingAfter(ctx, t, conn, e.ReplaySQL(), e.Name)
				if got != want {
					t.Errorf("%q: replaying %q gives %s = %q, want %q", sql, e.ReplaySQL(), e.Name, got, want)
				}
			}
		}
	})
}

// settingAfter runs sql on a reset session and returns the setting's value.
func settingAfter(ctx context.Context, t *testing.T, conn *pgx.Conn, sql, name string) string {
	t.Helper()
	for _, s := range []string{"RESET ALL", "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED, READ WRITE, NOT DEFERRABLE", sql} {
		if _, err := conn.Exec(ctx, s, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
	}
	var value string
	if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&value); err != nil {
		t.Fatalf("current_setting(%q): %v", name, err)
	}
	if _, err := conn.Exec(ctx, "RESET ALL", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(value)
}
