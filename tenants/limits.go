package tenants

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// Per-tenant limits in the database catalog ([tenancy] catalog = "database"): the columns below live on
// tenantproxy.tenants, 0 meaning "the [pool] default" as in [[tenants]]. `init` adds them idempotently, and
// so does the first `tenant set` on a catalog that an older init created. `tenant set` changes them and
// announces the change on NotifyChannel ("set <tenant>") in the same transaction; the running proxy reloads
// the catalog and applies the new limits on the tenant's next lease, dropping nobody.

// limitKeys are the keys `tenant set` accepts, in the order they are printed.
var limitKeys = []string{"max_clients", "max_backends", "weight", "statement_timeout", "allow"}

// limitColumnStatements add the limit columns to the catalog table; each is a no-op when the column exists.
func limitColumnStatements() []string {
	t := q(CatalogSchema) + ".tenants"
	return []string{
		"ALTER TABLE " + t + " ADD COLUMN IF NOT EXISTS max_clients integer NOT NULL DEFAULT 0 CHECK (max_clients >= 0)",
		"ALTER TABLE " + t + " ADD COLUMN IF NOT EXISTS max_backends integer NOT NULL DEFAULT 0 CHECK (max_backends >= 0)",
		"ALTER TABLE " + t + " ADD COLUMN IF NOT EXISTS weight integer NOT NULL DEFAULT 0 CHECK (weight >= 0)",
		"ALTER TABLE " + t + " ADD COLUMN IF NOT EXISTS statement_timeout interval NOT NULL DEFAULT '0' CHECK (statement_timeout >= '0')",
		"ALTER TABLE " + t + " ADD COLUMN IF NOT EXISTS allow cidr[] NOT NULL DEFAULT '{}'",
	}
}

// tenantLimits is a parsed `tenant set` argument list; nil fields are left as they are.
type tenantLimits struct {
	maxClients, maxBackends, weight *int
	statementTimeout                *time.Duration
	allow                           *[]string
}

// parseLimitArgs parses KEY=VALUE arguments of `tenant set`.
func parseLimitArgs(args []string) (tenantLimits, error) {
	var l tenantLimits
	seen := map[string]bool{}
	for _, a := range args {
		key, val, ok := strings.Cut(a, "=")
		if !ok || key == "" {
			return l, usagef("%q is not KEY=VALUE (keys: %s)", a, strings.Join(limitKeys, ", "))
		}
		if seen[key] {
			return l, usagef("%s given twice", key)
		}
		seen[key] = true
		switch key {
		case "max_clients", "max_backends", "weight":
			n, err := strconv.Atoi(strings.TrimSpace(val))
			if err != nil || n < 0 || n > 1<<30 {
				return l, usagef("%s must be a whole number from 0 (the [pool] default) up, got %q", key, val)
			}
			switch key {
			case "max_clients":
				l.maxClients = &n
			case "max_backends":
				l.maxBackends = &n
			default:
				l.weight = &n
			}
		case "statement_timeout":
			d, err := time.ParseDuration(strings.TrimSpace(val))
			if v := strings.TrimSpace(val); v == "0" {
				d, err = 0, nil
			}
			if err != nil || d < 0 || d > 24*time.Hour {
				return l, usagef("statement_timeout must be a duration such as \"5s\" or \"250ms\" (0: none), at most 24h, got %q", val)
			}
			d = d.Round(time.Millisecond)
			l.statementTimeout = &d
		case "allow":
			list := splitList(val)
			if _, err := config.ParseAllow(list); err != nil {
				return l, usagef("allow must be comma-separated address ranges such as 10.0.0.0/8 (empty: any address): %v", err)
			}
			if list == nil {
				list = []string{}
			}
			l.allow = &list
		default:
			return l, usagef("unknown key %q (keys: %s)", key, strings.Join(limitKeys, ", "))
		}
	}
	return l, nil
}

// setTenantLimits is `tenant set NAME KEY=VALUE...`.
func setTenantLimits(ctx context.Context, cfg *config.Config, name string, args []string, stdout io.Writer) error {
	l, err := parseLimitArgs(args)
	if err != nil {
		return err
	}
	if cfg.Tenancy.Catalog != config.CatalogDatabase {
		return fmt.Errorf("tenant set changes the database catalog; with [tenancy] catalog = %q edit the [[tenants]] entry of %q in the config file and reload (SIGHUP), or SET it in the admin console", cfg.Tenancy.Catalog, name)
	}
	conn, err := connectAdmin(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := ensureLimitColumns(ctx, conn); err != nil {
		return err
	}
	var sets []string
	if l.maxClients != nil {
		sets = append(sets, fmt.Sprintf("max_clients = %d", *l.maxClients))
	}
	if l.maxBackends != nil {
		sets = append(sets, fmt.Sprintf("max_backends = %d", *l.maxBackends))
	}
	if l.weight != nil {
		sets = append(sets, fmt.Sprintf("weight = %d", *l.weight))
	}
	if l.statementTimeout != nil {
		sets = append(sets, fmt.Sprintf("statement_timeout = interval '%d milliseconds'", l.statementTimeout.Milliseconds()))
	}
	params := []any{name}
	if l.allow != nil {
		params = append(params, *l.allow)
		sets = append(sets, "allow = $2::cidr[]")
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	var mc, mb, w int
	var ms int64
	var allow []string
	err = tx.QueryRow(ctx, "UPDATE tenantproxy.tenants SET "+strings.Join(sets, ", ")+
		" WHERE name = $1 RETURNING max_clients, max_backends, weight, (extract(epoch FROM statement_timeout) * 1000)::bigint, allow::text[]", params...).
		Scan(&mc, &mb, &w, &ms, &allow)
	if err == pgx.ErrNoRows {
		return fmt.Errorf("tenant %q does not exist", name)
	}
	if err != nil {
		return fmt.Errorf("tenant %q: %w", name, catalogError(err))
	}
	if _, err := tx.Exec(ctx, notifyStatement("set", name)); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("tenant %q: commit: %w", name, err)
	}
	fmt.Fprintf(stdout, "tenant %s: max_clients=%d max_backends=%d weight=%d statement_timeout=%v allow=%s (0: the [pool] default)\n",
		name, mc, mb, w, time.Duration(ms)*time.Millisecond, strings.Join(allow, ","))
	return nil
}

// ensureLimitColumns adds the limit columns when the catalog lacks one (a catalog made by an older init).
// It asks first, so that the usual case takes no lock on the catalog table.
func ensureLimitColumns(ctx context.Context, conn *pgx.Conn) error {
	var n int
	err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_attribute
WHERE attrelid = 'tenantproxy.tenants'::regclass AND attname = ANY ($1) AND NOT attisdropped`, limitKeys).Scan(&n)
	if err != nil {
		return catalogError(err)
	}
	if n == len(limitKeys) {
		return nil
	}
	if err := execScript(ctx, conn, limitColumnStatements()); err != nil {
		return fmt.Errorf("add the limit columns to the tenant catalog: %w", err)
	}
	return nil
}

func init() {
	commands = append(commands, command{path: "tenant set", args: "NAME KEY=VALUE [KEY=VALUE...]", minArgs: 2, maxArgs: 1 + len(limitKeys),
		summary: "change a tenant's limits in the database catalog (max_clients, max_backends, weight, statement_timeout; 0: the [pool] default; allow: address ranges); a running proxy applies them at once",
		setup: func(fs *flag.FlagSet, e *env) func([]string) error {
			return func(a []string) error { return setTenantLimits(e.ctx, e.cfg, a[0], a[1:], e.stdout) }
		}})
}
