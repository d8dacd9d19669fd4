package tenants

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/tenantproxy/tenantproxy/config"
)

// Exit statuses of Main.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// command is one subcommand of Main.
type command struct {
	path    string // "tenant create"
	args    string // "NAME [--schema S]"
	summary string
	// setup defines the command's flags and returns the function that runs it with the positional args.
	setup            func(fs *flag.FlagSet, e *env) func(args []string) error
	minArgs, maxArgs int
}

// env is what a running command gets.
type env struct {
	ctx            context.Context
	cfg            *config.Config
	stdout, stderr io.Writer
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{msg: fmt.Sprintf(format, a...)} }

var commands = []command{
	{path: "init", summary: "create the owner and pool roles and the catalog, and harden the server (idempotent)",
		setup: func(fs *flag.FlagSet, e *env) func([]string) error {
			return func([]string) error { return runInit(e.ctx, e.cfg, e.stdout) }
		}},
	{path: "doctor", args: "[--json] [--drift]", summary: "check the hardening, the pool role and every tenant; exit status 1 on a failed check",
		setup: func(fs *flag.FlagSet, e *env) func([]string) error {
			asJSON := fs.Bool("json", false, "print the report as JSON")
			drift := fs.Bool("drift", false, "only compare every tenant schema with what its migrations produce (see docs/migrations.md)")
			return func([]string) error {
				if *drift {
					return runDrift(e.ctx, e.cfg, *asJSON, e.stdout)
				}
				return runDoctor(e, *asJSON)
			}
		}},
	{path: "tenant create", args: "NAME [--schema S]", minArgs: 1, maxArgs: 1,
		summary: "create a tenant: schema, NOLOGIN role, grants, default privileges, all migrations, catalog row (idempotent)",
		setup: func(fs *flag.FlagSet, e *env) func([]string) error {
			schema := fs.String("schema", "", "schema `S` of the tenant (default: the catalog's or [[tenants]] one, else a new random id)")
			return func(a []string) error {
				err := runTenantCreate(e.ctx, e.cfg, a[0], *schema, e.stdout)
				if err == nil {
					err = applyOwnFiles(e.ctx, e.cfg, a[0], *schema, e.stdout)
				}
				return afterChange(e, err)
			}
		}},
	{path: "tenant list", args: "[--json]", summary: "list tenants with status, migration version and size",
		setup: func(fs *flag.FlagSet, e *env) func([]string) error {
			asJSON := fs.Bool("json", false, "print JSON")
			return func([]string) error { return listTenants(e.ctx, e.cfg, *asJSON, e.stdout) }
		}},
	{path: "tenant suspend", args: "NAME", minArgs: 1, maxArgs: 1, summary: "suspend a tenant: the proxy refuses its new sessions",
		setup: func(fs *flag.FlagSet, e *env) func([]string) error {
			return func(a []string) error {
				return afterChange(e, setStatus(e.ctx, e.cfg, a[0], StatusSuspended, e.stdout))
			}
		}},
	{path: "tenant resume", args: "NAME", minArgs: 1, maxArgs: 1, summary: "resume a suspended tenant",
		setup: func(fs *flag.FlagSet, e *env) func([]string) error {
			return func(a []string) error { return afterChange(e, setStatus(e.ctx, e.cfg, a[0], StatusActive, e.stdout)) }
		}},
	{path: "tenant drop", args: "NAME --yes", minArgs: 1, maxArgs: 1,
		summary: "drop a tenant's schema with all its data, its role and its catalog rows",
		setup: func(fs *flag.FlagSet, e *env) func([]string) error {
			yes := fs.Bool("yes", false, "confirm that the tenant's data is to be destroyed")
			return func(a []string) error {
				if !*yes {
					return usagef("refusing to drop tenant %q without --yes: it destroys its schema with all its data, its role and its catalog rows", a[0])
				}
				return afterChange(e, runTenantDrop(e.ctx, e.cfg, a[0], e.stdout))
			}
		}},
	{path: "tenant backup", args: "NAME --out FILE", minArgs: 1, maxArgs: 1,
		summary: "write a tenant's schema (pg_dump custom format), catalog row and migration records to a tar FILE",
		setup: func(fs *flag.FlagSet, e *env) func([]string) error {
			out := fs.String("out", "", "backup `FILE` to write (required)")
			return func(a []string) error {
				if *out == "" {
					return usagef("--out FILE is required")
				}
				return backupTenant(e.ctx, e.cfg, a[0], *out, e.stdout)
			}
		}},
	{path: "tenant restore", args: "FILE [--as NEWNAME] [--schema S]", minArgs: 1, maxArgs: 1,
		summary: "restore a tenant backup, under its own name or as a new tenant; other tenants are not touched",
		setup: func(fs *flag.FlagSet, e *env) func([]string) error {
			var o restoreOptions
			fs.StringVar(&o.as, "as", "", "restore as tenant `NEWNAME` (a new opaque schema unless --schema)")
			fs.StringVar(&o.schema, "schema", "", "schema `S` to restore into")
			return func(a []string) error { return afterChange(e, restoreTenant(e.ctx, e.cfg, a[0], o, e.stdout)) }
		}},
	{path: "migrate up", args: "[--to V] [--tenant NAME | --tenants A,B] [--exclude A,B] [--canary N] [--wave P [--max-failures F]] [--parallel N] [--dry-run]",
		summary: "apply pending migrations: shared ones once, then each tenant lock-safely, in rollout order and optional waves",
		setup: func(fs *flag.FlagSet, e *env) func([]string) error {
			var o migrateOptions
			var only, exclude string
			fs.IntVar(&o.to, "to", 0, "apply versions up to `V` only, of tenant and shared migrations (default: all)")
			fs.StringVar(&o.tenant, "tenant", "", "migrate tenant `NAME` only (shared migrations are skipped)")
			fs.StringVar(&only, "tenants", "", "migrate the tenants of the comma-separated `LIST` only (shared migrations are skipped)")
			fs.StringVar(&exclude, "exclude", "", "leave the tenants of the comma-separated `LIST` out (shared migrations are skipped)")
			fs.IntVar(&o.canary, "canary", 0, "migrate the first `N` tenants of the rollout order, then stop and report (with --wave: then go on in waves)")
			fs.Float64Var(&o.wave, "wave", 0, "migrate `P` percent of the tenants at a time, stopping after a wave when the failure rate exceeds --max-failures")
			fs.Float64Var(&o.maxFailures, "max-failures", 0, "failure rate in `PERCENT` of the tenants attempted above which --canary/--wave stop")
			fs.IntVar(&o.parallel, "parallel", 1, "migrate `N` tenants at a time, over N connections")
			fs.BoolVar(&o.dryRun, "dry-run", false, "print what would be applied and change nothing")
			return func([]string) error {
				o.tenants, o.exclude = splitList(only), splitList(exclude)
				switch {
				case o.parallel < 1:
					return usagef("--parallel must be at least 1, got %d", o.parallel)
				case o.to < 0:
					return usagef("--to must be a positive version, got %d", o.to)
				case o.canary < 0:
					return usagef("--canary must be at least 1, got %d", o.canary)
				case o.wave < 0 || o.wave > 100:
					return usagef("--wave must be a percentage between 0 and 100, got %g", o.wave)
				case o.maxFailures < 0 || o.maxFailures > 100:
					return usagef("--max-failures must be a percentage between 0 and 100, got %g", o.maxFailures)
				case o.tenant != "" && len(o.tenants) > 0:
					return usagef("--tenant and --tenants are exclusive")
				}
				if o.dryRun {
					return migrateUp(e.ctx, e.cfg, o, e.stdout, e.stderr)
				}
				// A migration may drop or retype a column that an analytics view reads.
				if err := DropAnalyticsViews(e.ctx, e.cfg); err != nil {
					return err
				}
				return afterChange(e, migrateUp(e.ctx, e.cfg, o, e.stdout, e.stderr))
			}
		}},
	{path: "migrate status", args: "[--json] [--drift]", summary: "print each tenant's migration version and pending count, tenants per version, tenant-specific files",
		setup: func(fs *flag.FlagSet, e *env) func([]string) error {
			var o statusOptions
			fs.BoolVar(&o.asJSON, "json", false, "print JSON")
			fs.BoolVar(&o.drift, "drift", false, "also compare every tenant schema with what its migrations produce")
			return func([]string) error { return migrateStatus(e.ctx, e.cfg, o, e.stdout) }
		}},
	{path: "migrate down", args: "--to V [--tenant NAME] [--parallel N]",
		summary: "undo tenant migrations above version V with their .down.sql files, newest first, lock-safely",
		setup: func(fs *flag.FlagSet, e *env) func([]string) error {
			var o downOptions
			o.to = -1
			fs.IntVar(&o.to, "to", -1, "undo every common migration above version `V` (0: all) (required)")
			fs.StringVar(&o.tenant, "tenant", "", "undo on tenant `NAME` only")
			fs.IntVar(&o.parallel, "parallel", 1, "work on `N` tenants at a time")
			return func([]string) error {
				if o.to < 0 {
					return usagef("--to V is required (0 undoes every migration)")
				}
				if o.parallel < 1 {
					return usagef("--parallel must be at least 1, got %d", o.parallel)
				}
				// Undoing a migration may drop a column that an analytics view reads, as migrating may.
				if err := DropAnalyticsViews(e.ctx, e.cfg); err != nil {
					return err
				}
				return afterChange(e, migrateDown(e.ctx, e.cfg, o, e.stdout, e.stderr))
			}
		}},
	{path: "migrate repair", args: "--tenant NAME [--dry-run]",
		summary: "re-sync a hand-fixed tenant's migration records with the version its schema matches; checksums still checked",
		setup: func(fs *flag.FlagSet, e *env) func([]string) error {
			var tenant string
			var dry bool
			fs.StringVar(&tenant, "tenant", "", "tenant `NAME` to repair (required)")
			fs.BoolVar(&dry, "dry-run", false, "print what would change and change nothing")
			return func([]string) error {
				if tenant == "" {
					return usagef("--tenant NAME is required")
				}
				if dry {
					return migrateRepair(e.ctx, e.cfg, tenant, dry, e.stdout)
				}
				return afterChange(e, migrateRepair(e.ctx, e.cfg, tenant, dry, e.stdout))
			}
		}},
	{path: "analytics refresh",
		summary: "rebuild the schema analytics: per tenant table, a view of it across every active tenant with a leading tenant column",
		setup: func(fs *flag.FlagSet, e *env) func([]string) error {
			return func([]string) error { return runAnalyticsRefresh(e.ctx, e.cfg, e.stdout) }
		}},
	{path: "rls status", args: "[TABLE] [--json]", maxArgs: 1,
		summary: "print the row level security state of shared tables (or of TABLE)",
		setup: func(fs *flag.FlagSet, e *env) func([]string) error {
			asJSON := fs.Bool("json", false, "print JSON")
			return func(a []string) error {
				table := ""
				if len(a) == 1 {
					table = a[0]
				}
				return rlsStatus(e.ctx, e.cfg, table, *asJSON, e.stdout)
			}
		}},
	{path: "rls enable", args: "TABLE", minArgs: 1, maxArgs: 1,
		summary: "key a shared table's rows on the tenant setting: policy, ENABLE and FORCE row level security, grants",
		setup: func(fs *flag.FlagSet, e *env) func([]string) error {
			return func(a []string) error { return rlsEnable(e.ctx, e.cfg, a[0], e.stdout) }
		}},
	{path: "rls disable", args: "TABLE", minArgs: 1, maxArgs: 1,
		summary: "drop a shared table's policy, disable row level security and revoke the tenant roles' access",
		setup: func(fs *flag.FlagSet, e *env) func([]string) error {
			return func(a []string) error { return rlsDisable(e.ctx, e.cfg, a[0], e.stdout) }
		}},
}

// Main runs a lifecycle subcommand of tenantproxy: init, doctor, tenant create|list|suspend|resume|drop|
// backup|restore, migrate up|status|down|repair, analytics refresh, rls status|enable|disable. args excludes the program name, for
// example ["tenant", "create", "acme"]; flags may come before or after positional arguments. Every
// command accepts --help. Main returns the exit status: 0 success, 1 failure, 2 usage error.
func Main(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, cfg: cfg, stdout: stdout, stderr: stderr}
	cmd, rest, err := findCommand(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printOverview(stdout, strings.Join(args[:len(args)-1], " "))
			return ExitOK
		}
		fmt.Fprintf(stderr, "tenantproxy: %v\n\n", err)
		printOverview(stderr, err.(*groupError).group)
		return ExitUsage
	}
	fs := flag.NewFlagSet("tenantproxy "+cmd.path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	run := cmd.setup(fs, e)
	pos, err := parseInterspersed(fs, rest)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stdout, cmd, fs)
		return ExitOK
	case err != nil:
		return usageFailure(stderr, cmd, fs, err.Error())
	case len(pos) < cmd.minArgs || len(pos) > cmd.maxArgs:
		return usageFailure(stderr, cmd, fs, fmt.Sprintf("expected %s", argsWord(cmd)))
	}
	err = run(pos)
	auditLifecycle(cfg, cmd.path, pos, err)
	var ue *usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		return usageFailure(stderr, cmd, fs, ue.msg)
	default:
		fmt.Fprintf(stderr, "tenantproxy %s: %v\n", cmd.path, err)
	}
	return ExitFailure
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func argsWord(cmd command) string {
	switch {
	case cmd.maxArgs == 0:
		return "no arguments"
	case cmd.minArgs == 0:
		return "at most one argument"
	}
	return "one argument"
}

func usageFailure(w io.Writer, cmd command, fs *flag.FlagSet, msg string) int {
	fmt.Fprintf(w, "tenantproxy %s: %s\n\n", cmd.path, msg)
	printUsage(w, cmd, fs)
	return ExitUsage
}

// groupError is an unknown or missing subcommand; group is the words that were recognised.
type groupError struct {
	group, msg string
}

func (e *groupError) Error() string { return e.msg }

// findCommand matches the leading words of args against the command table. It returns flag.ErrHelp for
// a help request made before a full command is named.
func findCommand(args []string) (command, []string, error) {
	for _, c := range commands {
		words := strings.Fields(c.path)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			return c, args[len(words):], nil
		}
	}
	var group string
	var known bool
	if len(args) > 0 {
		for _, c := range commands {
			if strings.HasPrefix(c.path, args[0]+" ") {
				group, known = args[0], true
			}
		}
	}
	last := ""
	if len(args) > 0 {
		last = args[len(args)-1]
	}
	if isHelp(last) && (len(args) == 1 || (known && len(args) == 2)) {
		return command{}, nil, flag.ErrHelp
	}
	switch {
	case len(args) == 0:
		return command{}, nil, &groupError{msg: "missing command"}
	case known && len(args) == 1:
		return command{}, nil, &groupError{group: group, msg: "missing subcommand of " + group}
	case known:
		return command{}, nil, &groupError{group: group, msg: fmt.Sprintf("unknown command %q", group+" "+args[1])}
	}
	return command{}, nil, &groupError{msg: fmt.Sprintf("unknown command %q", args[0])}
}

func isHelp(s string) bool {
	return s == "-h" || s == "--help" || s == "-help" || s == "help"
}

// parseInterspersed parses flags that may come before, between or after positional arguments; "--"
// ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func printUsage(w io.Writer, cmd command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: tenantproxy %s %s\n\n%s.\n", cmd.path, cmd.args, upperFirst(cmd.summary))
	has := false
	fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// printOverview lists the commands (of group, or all).
func printOverview(w io.Writer, group string) {
	fmt.Fprintln(w, "Usage: tenantproxy <command> [arguments]  (lifecycle commands connect as the [admin] role)")
	fmt.Fprintln(w)
	t := newTable(w, "COMMAND", "WHAT IT DOES")
	for _, c := range commands {
		if group != "" && !strings.HasPrefix(c.path, group+" ") {
			continue
		}
		t.row(strings.TrimSpace(c.path+" "+c.args), c.summary)
	}
	t.flush()
	fmt.Fprintln(w, "\nRun `tenantproxy <command> --help` for a command's flags.")
}

func runDoctor(e *env, asJSON bool) error {
	rep, err := Doctor(e.ctx, e.cfg)
	if err != nil {
		return err
	}
	failed := rep.Failed()
	if asJSON {
		if err := writeJSON(e.stdout, map[string]any{"checks": rep.Checks, "failed": len(failed)}); err != nil {
			return err
		}
	} else {
		if err := rep.Print(e.stdout); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "\n%d checks, %d failed\n", len(rep.Checks), len(failed))
	}
	if len(failed) > 0 {
		names := make([]string, len(failed))
		for i, c := range failed {
			names[i] = c.Name
		}
		return fmt.Errorf("%d checks failed: %s", len(failed), listed(names, "; "))
	}
	return nil
}
