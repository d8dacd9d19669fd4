// Package tenants is tenantproxy's tenant lifecycle: it provisions and hardens the shared PostgreSQL
// server (init), verifies it (doctor), creates, suspends, resumes, drops, backs up and restores tenants
// (under opaque schema names unless told otherwise), rolls versioned migrations across every tenant schema,
// manages row-level security on shared tables, maintains the cross-tenant views of the schema analytics,
// and feeds the proxy the tenant catalog when [tenancy] catalog = "database".
//
// Every command connects as the [admin] role to [backend] host and port and the [admin] database, which
// must be the database the proxy serves ([backend] database). Client traffic never uses that role.
//
// The catalog lives in the schema "tenantproxy", owned by the owner role:
//
//	tenantproxy.tenants(name, schema, status, created_at)      one row per tenant; status is active or suspended
//	tenantproxy.migrations(tenant, version, name, checksum, applied_at)
//
// Migration rows of the shared schema carry an empty tenant name. Every change of a tenant's row is announced
// with pg_notify on NotifyChannel in the same transaction.
package tenants

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/catalog"
	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgident"
)

// CatalogSchema is the schema holding the tenant catalog and the applied migrations.
const CatalogSchema = catalog.Schema

// SharedSchema is the schema of tables shared by all tenants: [migrations] shared_dir is applied to it
// once, and `rls` commands resolve unqualified table names in it.
const SharedSchema = "shared"

// NotifyChannel is the LISTEN/NOTIFY channel on which tenant create, suspend, resume, drop and restore
// announce a change of the catalog (catalog.NotifyChannel). The payload is "<op> <tenant>", for example
// "create acme"; after a tenant's migration commits it is "migrate <tenant> <version> [<tenant-specific
// version>]" (see docs/migrations.md).
const NotifyChannel = catalog.NotifyChannel

// PolicyName is the row-level security policy that `rls enable` puts on a shared table.
const PolicyName = "tenant_isolation"

// Status values of a tenant in the catalog.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
)

// Advisory lock keys. migrateLockKey is held (session level) by one `migrate up` at a time; the others are
// transaction-level keys (class, id) that serialize work on one tenant or on the whole setup.
const (
	migrateLockKey  int64 = 0x74705f6d69677261 // "tp_migra"
	lockClassTenant int32 = 0x74705f74         // "tp_t", paired with hashtext(tenant name)
	lockClassInit   int32 = 0x74705f69         // "tp_i", paired with 0
)

// querier is what both *pgx.Conn and pgx.Tx offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// tenantRef is one tenant as the lifecycle sees it.
type tenantRef struct {
	Name   string
	Schema string
	Role   string
	Status string
}

func newTenantRef(cfg *config.Config, name, schema, status string) tenantRef {
	return tenantRef{Name: name, Schema: schema, Role: cfg.TenantRole(name, schema), Status: status}
}

// connString is catalog.ConnString.
func connString(cfg *config.Config, database, user, password, appName string) string {
	return catalog.ConnString(cfg, database, user, password, appName)
}

// connectAdmin opens a connection to database (the [admin] database when empty) as the admin role.
func connectAdmin(ctx context.Context, cfg *config.Config, database string) (*pgx.Conn, error) {
	return catalog.ConnectAdmin(ctx, cfg, database)
}

// withAdminTx runs f in one transaction on an [admin] connection of its own, committed when f returns
// nil and rolled back otherwise: the preamble of every lifecycle change to the catalog.
func withAdminTx(ctx context.Context, cfg *config.Config, f func(pgx.Tx) error) error {
	conn, err := connectAdmin(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return pgx.BeginFunc(ctx, conn, f)
}

// execScript runs statements as one simple-protocol query: one round trip, no statement cache entries.
func execScript(ctx context.Context, q querier, stmts []string) error {
	if len(stmts) == 0 {
		return nil
	}
	_, err := q.Exec(ctx, strings.Join(stmts, ";\n"), pgx.QueryExecModeSimpleProtocol)
	return err
}

// catalogError turns "relation tenantproxy.x does not exist" into advice to run init (catalog.Error).
func catalogError(err error) error { return catalog.Error(err) }

// q is shorthand for pgident.Quote.
func q(name string) string { return pgident.Quote(name) }

// lit is shorthand for pgident.QuoteLiteral.
func lit(s string) string { return pgident.QuoteLiteral(s) }

// quoteList quotes every name and joins them with ", ".
func quoteList(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = q(n)
	}
	return strings.Join(out, ", ")
}

// validateTenant checks a tenant's name, schema and expanded role name.
func validateTenant(cfg *config.Config, name, schema string) error {
	if err := pgident.ValidateName(name); err != nil {
		return fmt.Errorf("invalid tenant name: %w", err)
	}
	if err := pgident.ValidateName(schema); err != nil {
		return fmt.Errorf("invalid schema name for tenant %q: %w", name, err)
	}
	if name == config.Analytics {
		return fmt.Errorf("invalid tenant name: %q is reserved for the analytics user", name)
	}
	switch schema {
	case SharedSchema:
		return fmt.Errorf("invalid schema name for tenant %q: %q is the schema of shared tables", name, schema)
	case config.Analytics, analyticsPartsSchema, CatalogSchema, StatsSchema:
		return fmt.Errorf("invalid schema name for tenant %q: %q is a schema of tenantproxy", name, schema)
	}
	role := cfg.TenantRole(name, schema)
	if err := pgident.ValidateName(role); err != nil {
		return fmt.Errorf("tenant %q: its role name from [tenancy] role is invalid: %w", name, err)
	}
	for _, r := range []string{cfg.Admin.OwnerRole, cfg.Backend.User, cfg.Admin.User, config.AnalyticsRole} {
		if role == r {
			return fmt.Errorf("tenant %q: its role %q would be the %s role", name, role, roleKind(cfg, r))
		}
	}
	return nil
}

func roleKind(cfg *config.Config, r string) string {
	switch r {
	case cfg.Admin.OwnerRole:
		return "owner"
	case cfg.Backend.User:
		return "pool"
	case config.AnalyticsRole:
		return "analytics"
	}
	return "admin"
}
