package tenants

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tenantproxy/tenantproxy/config"
)

func TestMainUsageErrorsExitTwoWithoutTouchingTheServer(t *testing.T) {
	// The port is closed: a command that got past usage checking would fail with exit status 1.
	cfg, err := config.Parse("[backend]\nport = 1\n")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{nil, "missing command"},
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"tenant"}, "missing subcommand of tenant"},
		{[]string{"tenant", "rename", "a"}, `unknown command "tenant rename"`},
		{[]string{"tenant", "create"}, "expected one argument"},
		{[]string{"tenant", "create", "a", "b"}, "expected one argument"},
		{[]string{"tenant", "create", "acme", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"tenant", "create", "Acme"}, `invalid tenant name: name "Acme"`},
		{[]string{"tenant", "create", "acme", "--schema", "shared"}, "is the schema of shared tables"},
		{[]string{"tenant", "drop", "acme"}, `refusing to drop tenant "acme" without --yes`},
		{[]string{"tenant", "backup", "acme"}, "--out FILE is required"},
		{[]string{"migrate", "up", "--parallel", "0"}, "--parallel must be at least 1"},
		{[]string{"migrate", "up", "--to", "-3"}, "--to must be a positive version"},
		{[]string{"migrate", "up", "--wave", "150"}, "--wave must be a percentage between 0 and 100"},
		{[]string{"migrate", "up", "--max-failures", "-1"}, "--max-failures must be a percentage"},
		{[]string{"migrate", "up", "--canary", "-2"}, "--canary must be at least 1"},
		{[]string{"migrate", "up", "--tenant", "a", "--tenants", "b,c"}, "--tenant and --tenants are exclusive"},
		{[]string{"migrate", "down", "--tenant", "a"}, "--to V is required"},
		{[]string{"migrate", "repair"}, "--tenant NAME is required"},
		{[]string{"rls", "enable"}, "expected one argument"},
		{[]string{"rls", "status", "a", "b"}, "expected at most one argument"},
		{[]string{"init", "extra"}, "expected no arguments"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(context.Background(), cfg, c.args, &out, &errb)
			if code != ExitUsage || !strings.Contains(errb.String(), c.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 and %q", code, errb.String(), c.want)
			}
			if !strings.Contains(errb.String(), "Usage: tenantproxy") {
				t.Fatalf("stderr has no usage: %q", errb.String())
			}
		})
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	cfg, err := config.Parse("")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range commands {
		for _, h := range []string{"--help", "-h"} {
			args := append(strings.Fields(c.path), h)
			var out, errb bytes.Buffer
			if code := Main(context.Background(), cfg, args, &out, &errb); code != ExitOK {
				t.Fatalf("%v: exit %d, stderr %q", args, code, errb.String())
			}
			if want := "Usage: tenantproxy " + c.path; !strings.HasPrefix(out.String(), want) {
				t.Fatalf("%v: stdout %q does not start with %q", args, out.String(), want)
			}
		}
	}
	for _, args := range [][]string{{"--help"}, {"help"}, {"tenant", "--help"}, {"migrate", "-h"}} {
		var out, errb bytes.Buffer
		if code := Main(context.Background(), cfg, args, &out, &errb); code != ExitOK || !strings.Contains(out.String(), "COMMAND") {
			t.Fatalf("%v: exit %d, stdout %q", args, code, out.String())
		}
	}
	var out bytes.Buffer
	Main(context.Background(), cfg, []string{"tenant", "--help"}, &out, &out)
	if strings.Contains(out.String(), "migrate up") || !strings.Contains(out.String(), "tenant drop NAME --yes") {
		t.Fatalf("tenant --help lists other groups or misses its own: %q", out.String())
	}
}

func TestParseInterspersedAcceptsFlagsAnywhere(t *testing.T) {
	cases := []struct {
		args       []string
		wantPos    []string
		wantSchema string
		wantYes    bool
	}{
		{[]string{"acme"}, []string{"acme"}, "", false},
		{[]string{"acme", "--schema", "s1"}, []string{"acme"}, "s1", false},
		{[]string{"--schema=s1", "acme"}, []string{"acme"}, "s1", false},
		{[]string{"acme", "--yes", "beta"}, []string{"acme", "beta"}, "", true},
		{[]string{"-yes", "acme", "-schema", "s2"}, []string{"acme"}, "s2", true},
		{[]string{"acme", "--", "--yes"}, []string{"acme", "--yes"}, "", false},
	}
	for _, c := range cases {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		schema := fs.String("schema", "", "")
		yes := fs.Bool("yes", false, "")
		pos, err := parseInterspersed(fs, c.args)
		if err != nil || !slices.Equal(pos, c.wantPos) || *schema != c.wantSchema || *yes != c.wantYes {
			t.Errorf("%v: pos %v schema %q yes %v err %v; want %v %q %v", c.args, pos, *schema, *yes, err, c.wantPos, c.wantSchema, c.wantYes)
		}
	}
}

func TestProgressRendersBarCountsFailuresAndETA(t *testing.T) {
	cases := []struct {
		done, failed, total int
		elapsed             time.Duration
		want                string
	}{
		{0, 0, 1000, 0, "[>                             ] 0/1000 failures=0 ETA ?"},
		{412, 1, 1000, 412 * 20 * time.Millisecond, "[============>                 ] 412/1000 failures=1 ETA 12s"},
		{1000, 3, 1000, 20 * time.Second, "[==============================] 1000/1000 failures=3 ETA 0s"},
	}
	for _, c := range cases {
		p := &progress{total: c.total, done: c.done, failed: c.failed}
		if got := p.render(c.elapsed); got != c.want {
			t.Errorf("render(%d/%d) = %q, want %q", c.done, c.total, got, c.want)
		}
	}
	var buf bytes.Buffer
	p := newProgress(&buf, 2)
	p.step(false)
	p.printf(&buf, "line\n")
	p.finish()
	if buf.String() != "line\n" {
		t.Fatalf("progress on a non-terminal wrote %q; want only the plain line", buf.String())
	}
}

func TestLoadMigrationsOrdersByVersionIgnoresOtherFilesRefusesDuplicates(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"0010_ten.sql": "select 10", "0002_two.sql": "select 2", "README.md": "x", "notes.sql": "x", "0003_three.sql.bak": "x",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := loadMigrations(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Version != 2 || ms[1].Version != 10 || ms[1].File != "0010_ten.sql" || len(ms[0].Checksum) != 64 {
		t.Fatalf("loaded %+v", ms)
	}
	if err := os.WriteFile(filepath.Join(dir, "02_again.sql"), []byte("select 2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadMigrations(dir); err == nil || !strings.Contains(err.Error(), "both have version 2") {
		t.Fatalf("duplicate versions: err %v", err)
	}
}

func TestPlanRefusesChangedMissingAndOutOfOrderFiles(t *testing.T) {
	m := func(v int, sum string) migration {
		return migration{Version: v, File: "f" + string(rune('0'+v)) + ".sql", Checksum: sum}
	}
	a := func(v int, sum string) appliedMigration {
		return appliedMigration{Version: v, File: "f" + string(rune('0'+v)) + ".sql", Checksum: sum}
	}
	files := []migration{m(1, "a"), m(2, "b"), m(3, "c")}
	cases := []struct {
		name    string
		files   []migration
		applied []appliedMigration
		to      int
		want    []int
		err     string
	}{
		{"all pending", files, nil, 0, []int{1, 2, 3}, ""},
		{"resumes after applied", files, []appliedMigration{a(1, "a")}, 0, []int{2, 3}, ""},
		{"up to --to", files, []appliedMigration{a(1, "a")}, 2, []int{2}, ""},
		{"nothing pending", files, []appliedMigration{a(1, "a"), a(2, "b"), a(3, "c")}, 0, nil, ""},
		{"changed checksum", files, []appliedMigration{a(1, "x")}, 0, nil, "was changed after it was applied"},
		{"file gone", files[1:], []appliedMigration{a(1, "a")}, 0, nil, "its file is gone"},
		{"out of order", files, []appliedMigration{a(1, "a"), a(3, "c")}, 0, nil, "renumber it above 0003"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := plan(c.files, c.applied, c.to)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			var versions []int
			for _, g := range got {
				versions = append(versions, g.Version)
			}
			if err != nil || !slices.Equal(versions, c.want) {
				t.Fatalf("plan = %v, %v; want %v", versions, err, c.want)
			}
		})
	}
}
