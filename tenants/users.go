package tenants

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgident"
	"github.com/tenantproxy/tenantproxy/proxy/auth"
)

// Users in the database catalog ([auth] users = "database"; docs/users.md):
//
//	tenantproxy.users(name, verifier, profile, valid_until, allow, created_at)   verifier: SCRAM-SHA-256 only
//	tenantproxy.user_tenants("user", tenant)                                    the user's bindings
//	tenantproxy.lookup_user(user, tenant)                                       the proxy's only way in
//
// The pool role can read neither table. It may only EXECUTE lookup_user, a SECURITY DEFINER function
// owned by the owner role, with SET search_path = '' and every name schema-qualified (operators too), so
// no object the caller creates or puts on its search_path takes part; it returns one user's verifier,
// profile, VALID UNTIL, allow list and whether the user is bound to the one tenant asked about, and no
// row for an unknown or expired user. Every change is announced on NotifyChannel as "user <name>".

// UserLookupFunction is the function the proxy calls to find a catalog user.
const UserLookupFunction = CatalogSchema + ".lookup_user"

// PasswordInput is where `user passwd` reads the password (its first line). Tests replace it.
var PasswordInput io.Reader = os.Stdin

// userCatalogStatements create the user tables and the lookup function (idempotent).
func userCatalogStatements(cfg *config.Config) []string {
	cs, owner, pool := q(CatalogSchema), q(cfg.Admin.OwnerRole), q(cfg.Backend.User)
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + cs + `.users (
	name        text PRIMARY KEY,
	verifier    text CHECK (verifier LIKE 'SCRAM-SHA-256$%'),
	profile     text NOT NULL DEFAULT 'app' CHECK (profile IN ('app', 'readonly', 'owner')),
	valid_until timestamptz,
	allow       cidr[] NOT NULL DEFAULT '{}',
	created_at  timestamptz NOT NULL DEFAULT now())`,
		`CREATE TABLE IF NOT EXISTS ` + cs + `.user_tenants (
	"user" text NOT NULL REFERENCES ` + cs + `.users (name) ON DELETE CASCADE,
	tenant text NOT NULL REFERENCES ` + cs + `.tenants (name) ON DELETE CASCADE,
	PRIMARY KEY ("user", tenant))`,
		"ALTER TABLE " + cs + ".users OWNER TO " + owner,
		"ALTER TABLE " + cs + ".user_tenants OWNER TO " + owner,
		"REVOKE ALL ON " + cs + ".users, " + cs + ".user_tenants FROM PUBLIC, " + pool,
		`CREATE OR REPLACE FUNCTION ` + cs + `.lookup_user(p_user text, p_tenant text)
RETURNS TABLE (verifier text, profile text, valid_until timestamptz, allow text[], bound boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $fn$
	SELECT u.verifier, u.profile, u.valid_until, u.allow::pg_catalog.text[],
	       EXISTS (SELECT FROM ` + cs + `.user_tenants b
	               WHERE b."user" OPERATOR(pg_catalog.=) u.name AND b.tenant OPERATOR(pg_catalog.=) p_tenant)
	FROM ` + cs + `.users u
	WHERE u.name OPERATOR(pg_catalog.=) p_user
	  AND u.verifier IS NOT NULL
	  AND (u.valid_until IS NULL OR u.valid_until OPERATOR(pg_catalog.>) pg_catalog.now())
$fn$`,
		"ALTER FUNCTION " + cs + ".lookup_user(text, text) OWNER TO " + owner,
		"REVOKE ALL ON FUNCTION " + cs + ".lookup_user(text, text) FROM PUBLIC",
		"GRANT EXECUTE ON FUNCTION " + cs + ".lookup_user(text, text) TO " + pool,
	}
}

// withUsers runs fn in a transaction on an admin connection after making sure the user catalog exists
// (a catalog made by an older init gets it on first use). fn's changes are announced for user name.
func withUsers(ctx context.Context, cfg *config.Config, name string, fn func(tx pgx.Tx) error) error {
	if cfg.Tenancy.Catalog != config.CatalogDatabase {
		return fmt.Errorf("users live in the database catalog only with [tenancy] catalog = \"database\" and [auth] users = \"database\"; with the config catalog edit [[users]]")
	}
	conn, err := connectAdmin(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := ensureUserCatalog(ctx, cfg, conn); err != nil {
		return err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if err := fn(tx); err != nil {
		return err
	}
	if name != "" {
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", NotifyChannel, "user "+name); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// ensureUserCatalog creates the user catalog when the lookup function is missing.
func ensureUserCatalog(ctx context.Context, cfg *config.Config, conn *pgx.Conn) error {
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT to_regprocedure('tenantproxy.lookup_user(text,text)') IS NOT NULL").Scan(&ok); err != nil {
		return catalogError(err)
	}
	if ok {
		return nil
	}
	if err := execScript(ctx, conn, userCatalogStatements(cfg)); err != nil {
		return fmt.Errorf("create the user catalog: %w", catalogError(err))
	}
	return nil
}

// userOptions are the flags of user create and passwd.
type userOptions struct {
	tenants    []string
	profile    string
	validUntil string
	allow      []string
}

// parseValidUntil reads --valid-until: an RFC 3339 time, a date, or "infinity" (no limit).
func parseValidUntil(s string) (*time.Time, error) {
	if s == "" || s == "infinity" {
		return nil, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05Z07:00", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return &t, nil
		}
	}
	return nil, usagef("--valid-until must be a time like 2027-01-31T00:00:00Z or 2027-01-31, or infinity; got %q", s)
}

func validateUserName(name string) error {
	if err := pgident.ValidateName(name); err != nil {
		return usagef("invalid user name: %v", err)
	}
	return nil
}

func userCreate(ctx context.Context, cfg *config.Config, name string, o userOptions, stdout io.Writer) error {
	if err := validateUserName(name); err != nil {
		return err
	}
	if o.profile == "" {
		o.profile = string(config.ProfileApp)
	}
	switch config.Profile(o.profile) {
	case config.ProfileApp, config.ProfileReadonly, config.ProfileOwner:
	default:
		return usagef("--profile must be app, readonly or owner, got %q", o.profile)
	}
	until, err := parseValidUntil(o.validUntil)
	if err != nil {
		return err
	}
	if _, err := config.ParseAllow(o.allow); err != nil {
		return usagef("--allow: %v", err)
	}
	allow := append([]string{}, o.allow...)
	err = withUsers(ctx, cfg, name, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO tenantproxy.users (name, profile, valid_until, allow) VALUES ($1, $2, $3, $4::cidr[])", name, o.profile, until, allow)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" {
			return fmt.Errorf("user %q already exists", name)
		}
		if err != nil {
			return err
		}
		return bindTenants(ctx, tx, name, o.tenants)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "user %s created (profile %s, tenants %s); set its password with `tenantproxy user passwd %s`\n", name, o.profile, strings.Join(o.tenants, ","), name)
	return nil
}

// bindTenants binds name to every tenant of list; an unknown tenant is an error.
func bindTenants(ctx context.Context, tx pgx.Tx, name string, list []string) error {
	for _, t := range list {
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM tenantproxy.tenants WHERE name = $1)", t).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("tenant %q does not exist", t)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO tenantproxy.user_tenants ("user", tenant) VALUES ($1, $2) ON CONFLICT DO NOTHING`, name, t); err != nil {
			return err
		}
	}
	return nil
}

// mustExist fails unless user name exists (locking its row for the transaction).
func mustExist(ctx context.Context, tx pgx.Tx, name string) error {
	var n int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM (SELECT FROM tenantproxy.users WHERE name = $1 FOR UPDATE) x", name).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("user %q does not exist", name)
	}
	return nil
}

// readPassword reads the first line of r (without its line ending).
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", usagef("no password on standard input (its first line is the password)")
	}
	return line, nil
}

func userPasswd(ctx context.Context, cfg *config.Config, name string, validUntil string, stdout io.Writer) error {
	if err := validateUserName(name); err != nil {
		return err
	}
	until, err := parseValidUntil(validUntil)
	if err != nil {
		return err
	}
	pw, err := readPassword(PasswordInput)
	if err != nil {
		return err
	}
	verifier, err := auth.NewSCRAMVerifier(pw)
	if err != nil {
		return err
	}
	err = withUsers(ctx, cfg, name, func(tx pgx.Tx) error {
		if err := mustExist(ctx, tx, name); err != nil {
			return err
		}
		if validUntil == "" {
			_, err := tx.Exec(ctx, "UPDATE tenantproxy.users SET verifier = $2 WHERE name = $1", name, verifier)
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE tenantproxy.users SET verifier = $2, valid_until = $3 WHERE name = $1", name, verifier, until)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "user %s: password set (stored as a SCRAM-SHA-256 verifier)\n", name)
	return nil
}

func userBind(ctx context.Context, cfg *config.Config, name string, tenants []string, bind bool, stdout io.Writer) error {
	if err := validateUserName(name); err != nil {
		return err
	}
	err := withUsers(ctx, cfg, name, func(tx pgx.Tx) error {
		if err := mustExist(ctx, tx, name); err != nil {
			return err
		}
		if bind {
			return bindTenants(ctx, tx, name, tenants)
		}
		_, err := tx.Exec(ctx, `DELETE FROM tenantproxy.user_tenants WHERE "user" = $1 AND tenant = ANY ($2)`, name, tenants)
		return err
	})
	if err != nil {
		return err
	}
	verb := "bound to"
	if !bind {
		verb = "unbound from"
	}
	fmt.Fprintf(stdout, "user %s %s %s\n", name, verb, strings.Join(tenants, ", "))
	return nil
}

func userDrop(ctx context.Context, cfg *config.Config, name string, stdout io.Writer) error {
	if err := validateUserName(name); err != nil {
		return err
	}
	err := withUsers(ctx, cfg, name, func(tx pgx.Tx) error {
		if err := mustExist(ctx, tx, name); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM tenantproxy.users WHERE name = $1", name)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "user %s dropped\n", name)
	return nil
}

// userRow is one line of user list.
type userRow struct {
	Name       string     `json:"name"`
	Profile    string     `json:"profile"`
	Tenants    []string   `json:"tenants"`
	Password   bool       `json:"password_set"`
	ValidUntil *time.Time `json:"valid_until"`
	Allow      []string   `json:"allow"`
}

func userList(ctx context.Context, cfg *config.Config, asJSON bool, stdout io.Writer) error {
	var list []userRow
	err := withUsers(ctx, cfg, "", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT u.name, u.profile,
	ARRAY(SELECT b.tenant FROM tenantproxy.user_tenants b WHERE b."user" = u.name ORDER BY 1),
	u.verifier IS NOT NULL, u.valid_until, u.allow::text[]
FROM tenantproxy.users u ORDER BY u.name`)
		if err != nil {
			return err
		}
		list, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (userRow, error) {
			var u userRow
			err := r.Scan(&u.Name, &u.Profile, &u.Tenants, &u.Password, &u.ValidUntil, &u.Allow)
			return u, err
		})
		return err
	})
	if err != nil {
		return err
	}
	if asJSON {
		if list == nil {
			list = []userRow{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	t := newTable(stdout, "USER", "PROFILE", "TENANTS", "PASSWORD", "VALID UNTIL", "ALLOW")
	for _, u := range list {
		until := "infinity"
		if u.ValidUntil != nil {
			until = u.ValidUntil.UTC().Format(time.RFC3339)
		}
		pw := "set"
		if !u.Password {
			pw = "none"
		}
		t.row(u.Name, u.Profile, strings.Join(u.Tenants, ","), pw, until, strings.Join(u.Allow, ","))
	}
	t.flush()
	return nil
}

// listFlag is a repeatable flag whose values may also be comma-separated.
type listFlag struct{ v *[]string }

func (l listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l listFlag) Set(s string) error {
	*l.v = append(*l.v, splitList(s)...)
	return nil
}

func init() {
	commands = append(commands,
		command{path: "user create", args: "NAME --tenant T [--tenant T...] [--profile P] [--valid-until TS] [--allow CIDR...]", minArgs: 1, maxArgs: 1,
			summary: "create a user in the database catalog ([auth] users = \"database\"), bound to tenants; then set its password with user passwd",
			setup: func(fs *flag.FlagSet, e *env) func([]string) error {
				var o userOptions
				fs.Var(listFlag{&o.tenants}, "tenant", "bind the user to tenant `T` (repeatable, or comma-separated)")
				fs.StringVar(&o.profile, "profile", string(config.ProfileApp), "profile `P`: app, readonly or owner")
				fs.StringVar(&o.validUntil, "valid-until", "", "the user cannot log in after `TS` (RFC 3339 or a date; default infinity)")
				fs.Var(listFlag{&o.allow}, "allow", "accept the user's clients only from address range `CIDR` (repeatable)")
				return func(a []string) error { return userCreate(e.ctx, e.cfg, a[0], o, e.stdout) }
			}},
		command{path: "user passwd", args: "NAME [--valid-until TS] < password", minArgs: 1, maxArgs: 1,
			summary: "set a catalog user's password from the first line of standard input, stored as a SCRAM-SHA-256 verifier only",
			setup: func(fs *flag.FlagSet, e *env) func([]string) error {
				until := fs.String("valid-until", "", "also set VALID UNTIL to `TS` (infinity: no limit)")
				return func(a []string) error { return userPasswd(e.ctx, e.cfg, a[0], *until, e.stdout) }
			}},
		command{path: "user bind", args: "NAME TENANT...", minArgs: 2, maxArgs: 1 << 16,
			summary: "bind a catalog user to more tenants",
			setup: func(fs *flag.FlagSet, e *env) func([]string) error {
				return func(a []string) error { return userBind(e.ctx, e.cfg, a[0], a[1:], true, e.stdout) }
			}},
		command{path: "user unbind", args: "NAME TENANT...", minArgs: 2, maxArgs: 1 << 16,
			summary: "unbind a catalog user from tenants",
			setup: func(fs *flag.FlagSet, e *env) func([]string) error {
				return func(a []string) error { return userBind(e.ctx, e.cfg, a[0], a[1:], false, e.stdout) }
			}},
		command{path: "user drop", args: "NAME", minArgs: 1, maxArgs: 1,
			summary: "drop a catalog user and its bindings",
			setup: func(fs *flag.FlagSet, e *env) func([]string) error {
				return func(a []string) error { return userDrop(e.ctx, e.cfg, a[0], e.stdout) }
			}},
		command{path: "user list", args: "[--json]",
			summary: "list the catalog's users with profile, tenants, VALID UNTIL and allow list (never a verifier)",
			setup: func(fs *flag.FlagSet, e *env) func([]string) error {
				asJSON := fs.Bool("json", false, "print JSON")
				return func([]string) error { return userList(e.ctx, e.cfg, *asJSON, e.stdout) }
			}},
	)
}
