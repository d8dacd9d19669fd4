package tenants

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// provisionState is what create and restore need to know before they provision a tenant.
type provisionState struct {
	catalogSchema   *string // schema of the tenant's catalog row, nil when there is none
	schemaTenant    *string // tenant whose catalog row uses the schema, nil when none
	roleNeedsAlter  *bool   // nil when the role does not exist; true when it can log in or inherits
	schemaExists    bool
	poolOK, ownerOK bool
	rls             []rlsTable
}

// queueProvisionState queues the reads of provisionState into st.
func queueProvisionState(b *pgx.Batch, cfg *config.Config, t tenantRef, st *provisionState) {
	b.Queue(`
SELECT (SELECT schema FROM tenantproxy.tenants WHERE name = $1),
       (SELECT name FROM tenantproxy.tenants WHERE schema = $2),
       (SELECT rolcanlogin OR rolinherit OR rolsuper OR rolbypassrls OR rolcreatedb OR rolcreaterole FROM pg_roles WHERE rolname = $3),
       EXISTS (SELECT FROM pg_namespace WHERE nspname = $2),
       EXISTS (SELECT FROM pg_roles WHERE rolname = $4),
       EXISTS (SELECT FROM pg_roles WHERE rolname = $5)`,
		t.Name, t.Schema, t.Role, cfg.Backend.User, cfg.Admin.OwnerRole).QueryRow(func(r pgx.Row) error {
		return r.Scan(&st.catalogSchema, &st.schemaTenant, &st.roleNeedsAlter, &st.schemaExists, &st.poolOK, &st.ownerOK)
	})
	queueRLSTables(b, &st.rls)
}

// check refuses to provision before init.
func (st provisionState) check(cfg *config.Config) error {
	if !st.poolOK || !st.ownerOK {
		return fmt.Errorf("the pool role %s or the owner role %s does not exist; run `tenantproxy init` first",
			q(cfg.Backend.User), q(cfg.Admin.OwnerRole))
	}
	return nil
}

// readProvisionState reads provisionState in one round trip.
func readProvisionState(ctx context.Context, tx pgx.Tx, cfg *config.Config, t tenantRef) (provisionState, error) {
	var st provisionState
	b := &pgx.Batch{}
	queueProvisionState(b, cfg, t, &st)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return st, catalogError(err)
	}
	return st, st.check(cfg)
}

// roleStatements create the tenant's role, or bring an existing one to NOLOGIN NOINHERIT, and let the
// pool role SET ROLE to it.
func roleStatements(cfg *config.Config, t tenantRef, st provisionState) []string {
	var out []string
	switch {
	case st.roleNeedsAlter == nil:
		out = append(out, "CREATE ROLE "+q(t.Role)+" NOLOGIN NOINHERIT")
	case *st.roleNeedsAlter:
		out = append(out, "ALTER ROLE "+q(t.Role)+" NOLOGIN NOINHERIT NOCREATEDB NOCREATEROLE")
	}
	return append(out, "GRANT "+q(t.Role)+" TO "+q(cfg.Backend.User))
}

// grantStatements give the tenant role USAGE on its schema and DML on its tables, now and (through
// default privileges of the owner role) for every table migrations create later, plus the shared RLS
// tables.
func grantStatements(cfg *config.Config, t tenantRef, st provisionState) []string {
	s, r, owner := q(t.Schema), q(t.Role), q(cfg.Admin.OwnerRole)
	out := []string{
		"ALTER SCHEMA " + s + " OWNER TO " + owner,
		"REVOKE ALL ON SCHEMA " + s + " FROM PUBLIC",
		"GRANT USAGE ON SCHEMA " + s + " TO " + r,
		"ALTER DEFAULT PRIVILEGES FOR ROLE " + owner + " IN SCHEMA " + s + " GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO " + r,
		"ALTER DEFAULT PRIVILEGES FOR ROLE " + owner + " IN SCHEMA " + s + " GRANT USAGE, SELECT ON SEQUENCES TO " + r,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA " + s + " TO " + r,
		"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA " + s + " TO " + r,
	}
	return append(out, rlsGrantStatements(st.rls, []string{t.Role})...)
}

func notifyStatement(op, tenant string) string {
	return "SELECT pg_notify(" + lit(NotifyChannel) + ", " + lit(op+" "+tenant) + ")"
}

// createResult says what tenant create did.
type createResult struct {
	created bool
	applied []migration
}

// createTenant provisions a tenant (idempotently) and applies its pending migrations, all in one
// transaction; pending shared migrations are applied first, in their own. name and schema are validated.
func createTenant(ctx context.Context, conn *pgx.Conn, cfg *config.Config, ms migrationSet, name, schema string) (createResult, error) {
	var res createResult
	t := newTenantRef(cfg, name, schema, StatusActive)
	if len(ms.shared) > 0 {
		if _, err := migrateTarget(ctx, conn, cfg, "", SharedSchema, ms.shared, 0); err != nil {
			return res, fmt.Errorf("tenant %q: shared migrations: %w", name, catalogError(err))
		}
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return res, err
	}
	defer tx.Rollback(context.Background())
	var st provisionState
	var applied []appliedMigration
	b := &pgx.Batch{}
	queueLock(b, name)
	queueProvisionState(b, cfg, t, &st)
	queueApplied(b, name, &applied)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return res, fmt.Errorf("tenant %q: %w", name, catalogError(err))
	}
	if err := st.check(cfg); err != nil {
		return res, fmt.Errorf("tenant %q: %w", name, err)
	}
	switch {
	case st.catalogSchema != nil && *st.catalogSchema != schema:
		return res, fmt.Errorf("tenant %q already exists with schema %q, not %q", name, *st.catalogSchema, schema)
	case st.schemaTenant != nil && *st.schemaTenant != name:
		return res, fmt.Errorf("tenant %q: schema %q belongs to tenant %q", name, schema, *st.schemaTenant)
	}
	pending, err := plan(ms.tenant, applied, 0)
	if err != nil {
		return res, fmt.Errorf("tenant %q: %w", name, err)
	}
	res.created = st.catalogSchema == nil
	stmts := roleStatements(cfg, t, st)
	stmts = append(stmts, "CREATE SCHEMA IF NOT EXISTS "+q(schema)+" AUTHORIZATION "+q(cfg.Admin.OwnerRole))
	stmts = append(stmts, grantStatements(cfg, t, st)...)
	if res.created {
		stmts = append(stmts,
			"INSERT INTO tenantproxy.tenants (name, schema) VALUES ("+lit(name)+", "+lit(schema)+")",
			notifyStatement("create", name))
	}
	if len(pending) > 0 {
		stmts = append(stmts, migrationSetup(cfg, schema)...)
	}
	if err := execScript(ctx, tx, stmts); err != nil {
		return res, fmt.Errorf("tenant %q: provision: %w", name, err)
	}
	if err := runFiles(ctx, tx, name, pending); err != nil {
		return res, fmt.Errorf("tenant %q: migration %w", name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("tenant %q: commit: %w", name, err)
	}
	res.applied = pending
	return res, nil
}

func runTenantCreate(ctx context.Context, cfg *config.Config, name, schema string, out io.Writer) error {
	if err := validateTenant(cfg, name, cmp.Or(schema, NewOpaqueSchema())); err != nil {
		return &usageError{msg: err.Error()}
	}
	ms, err := loadMigrationSet(cfg)
	if err != nil {
		return err
	}
	conn, err := connectAdmin(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if schema == "" {
		if schema, err = chooseSchema(ctx, conn, cfg, name); err != nil {
			return fmt.Errorf("tenant %q: %w", name, err)
		}
		if err := validateTenant(cfg, name, schema); err != nil {
			return &usageError{msg: err.Error()}
		}
	}
	res, err := createTenant(ctx, conn, cfg, ms, name, schema)
	if err != nil {
		return err
	}
	what := "created"
	if !res.created {
		what = "already exists; role, schema and grants verified"
	}
	migrated := "no migrations pending"
	if len(res.applied) > 0 {
		migrated = "applied " + fileList(res.applied)
	}
	fmt.Fprintf(out, "tenant %s: %s (schema %s, role %s); %s\n", name, what, schema, cfg.TenantRole(name, schema), migrated)
	return nil
}

// tenantInfo is one line of `tenant list`.
type tenantInfo struct {
	Name      string    `json:"name"`
	Schema    string    `json:"schema"`
	Role      string    `json:"role"`
	Status    string    `json:"status"`
	Version   int       `json:"version"`
	Pending   int       `json:"pending"`
	SizeBytes int64     `json:"size_bytes"`
	Size      string    `json:"size"`
	CreatedAt time.Time `json:"created_at"`
}

func listTenants(ctx context.Context, cfg *config.Config, asJSON bool, out io.Writer) error {
	ms, err := loadMigrationSet(cfg)
	if err != nil {
		return err
	}
	conn, err := connectAdmin(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `
WITH sizes AS (
  SELECT c.relnamespace, sum(pg_total_relation_size(c.oid)) AS bytes
  FROM pg_class c WHERE c.relkind IN ('r', 'm') GROUP BY c.relnamespace)
SELECT t.name, t.schema, t.status, t.created_at,
       coalesce((SELECT max(m.version) FROM tenantproxy.migrations m WHERE m.tenant = t.name), 0),
       coalesce(s.bytes, 0)::bigint, pg_size_pretty(coalesce(s.bytes, 0)::bigint)
FROM tenantproxy.tenants t
LEFT JOIN pg_namespace n ON n.nspname = t.schema
LEFT JOIN sizes s ON s.relnamespace = n.oid
ORDER BY t.name`)
	if err != nil {
		return catalogError(err)
	}
	infos, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenantInfo, error) {
		var ti tenantInfo
		err := r.Scan(&ti.Name, &ti.Schema, &ti.Status, &ti.CreatedAt, &ti.Version, &ti.SizeBytes, &ti.Size)
		ti.Role = cfg.TenantRole(ti.Name, ti.Schema)
		for _, m := range ms.tenant {
			if m.Version > ti.Version {
				ti.Pending++
			}
		}
		return ti, err
	})
	if err != nil {
		return catalogError(err)
	}
	if asJSON {
		return writeJSON(out, infos)
	}
	tw := newTable(out, "NAME", "SCHEMA", "STATUS", "VERSION", "PENDING", "SIZE")
	for _, ti := range infos {
		tw.row(ti.Name, ti.Schema, ti.Status, fmt.Sprintf("%04d", ti.Version), fmt.Sprint(ti.Pending), ti.Size)
	}
	if err := tw.flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d tenants\n", len(infos))
	return nil
}

// setStatus suspends or resumes a tenant and announces it.
func setStatus(ctx context.Context, cfg *config.Config, name, status string, out io.Writer) error {
	already := false
	err := withAdminTx(ctx, cfg, func(tx pgx.Tx) error {
		var old string
		err := tx.QueryRow(ctx, "SELECT status FROM tenantproxy.tenants WHERE name = $1 FOR UPDATE", name).Scan(&old)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("tenant %q does not exist", name)
		}
		if err != nil {
			return catalogError(err)
		}
		if already = old == status; already {
			return nil
		}
		op := map[string]string{StatusActive: "resume", StatusSuspended: "suspend"}[status]
		if err := execScript(ctx, tx, []string{
			"UPDATE tenantproxy.tenants SET status = " + lit(status) + " WHERE name = " + lit(name),
			notifyStatement(op, name),
		}); err != nil {
			return fmt.Errorf("tenant %q: %s: %w", name, op, err)
		}
		return nil
	})
	switch {
	case err != nil:
		return err
	case already:
		fmt.Fprintf(out, "tenant %s: already %s\n", name, status)
	default:
		fmt.Fprintf(out, "tenant %s: %s\n", name, status)
	}
	return nil
}

// outsideDependents lists objects outside schema that depend on objects inside it: DROP SCHEMA CASCADE
// would drop them too.
func outsideDependents(ctx context.Context, db querier, schema string) ([]string, error) {
	rows, err := db.Query(ctx, `
WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = $1),
inside AS (
  SELECT 'pg_class'::regclass::oid AS cls, c.oid FROM pg_class c, ns WHERE c.relnamespace = ns.oid
  UNION ALL SELECT 'pg_type'::regclass::oid, t.oid FROM pg_type t, ns WHERE t.typnamespace = ns.oid
  UNION ALL SELECT 'pg_proc'::regclass::oid, p.oid FROM pg_proc p, ns WHERE p.pronamespace = ns.oid
),
deps AS (
  SELECT DISTINCT d.classid, d.objid, d.objsubid
  FROM pg_depend d JOIN inside i ON d.refclassid = i.cls AND d.refobjid = i.oid
  WHERE d.deptype = 'n'
)
SELECT pg_describe_object(x.classid, x.objid, x.objsubid)
FROM deps x
WHERE coalesce(CASE x.classid
  WHEN 'pg_class'::regclass THEN (SELECT relnamespace FROM pg_class WHERE oid = x.objid)
  WHEN 'pg_type'::regclass THEN (SELECT typnamespace FROM pg_type WHERE oid = x.objid)
  WHEN 'pg_proc'::regclass THEN (SELECT pronamespace FROM pg_proc WHERE oid = x.objid)
  WHEN 'pg_constraint'::regclass THEN (SELECT connamespace FROM pg_constraint WHERE oid = x.objid)
  WHEN 'pg_rewrite'::regclass THEN (SELECT c.relnamespace FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class WHERE r.oid = x.objid)
  WHEN 'pg_attrdef'::regclass THEN (SELECT c.relnamespace FROM pg_attrdef a JOIN pg_class c ON c.oid = a.adrelid WHERE a.oid = x.objid)
  WHEN 'pg_trigger'::regclass THEN (SELECT c.relnamespace FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid WHERE g.oid = x.objid)
  WHEN 'pg_policy'::regclass THEN (SELECT c.relnamespace FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE p.oid = x.objid)
  WHEN 'pg_statistic_ext'::regclass THEN (SELECT stxnamespace FROM pg_statistic_ext WHERE oid = x.objid)
  WHEN 'pg_operator'::regclass THEN (SELECT oprnamespace FROM pg_operator WHERE oid = x.objid)
  END, 0) <> (SELECT oid FROM ns)
ORDER BY 1`, schema)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// dropTenant drops a tenant's schema (CASCADE), role and catalog rows in one transaction. It refuses when
// an object outside the schema depends on it, so nothing of any other tenant is touched.
func dropTenant(ctx context.Context, conn *pgx.Conn, cfg *config.Config, name string) (tenantRef, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return tenantRef{}, err
	}
	defer tx.Rollback(context.Background())
	if err := lockTarget(ctx, tx, name); err != nil {
		return tenantRef{}, err
	}
	var schema string
	err = tx.QueryRow(ctx, "SELECT schema FROM tenantproxy.tenants WHERE name = $1 FOR UPDATE", name).Scan(&schema)
	if errors.Is(err, pgx.ErrNoRows) {
		return tenantRef{}, fmt.Errorf("tenant %q does not exist", name)
	}
	if err != nil {
		return tenantRef{}, catalogError(err)
	}
	t := newTenantRef(cfg, name, schema, "")
	if err := dropTenantViews(ctx, tx, name); err != nil {
		return t, fmt.Errorf("tenant %q: %w", name, err)
	}
	deps, err := outsideDependents(ctx, tx, schema)
	if err != nil {
		return t, fmt.Errorf("tenant %q: find dependents: %w", name, err)
	}
	if len(deps) > 0 {
		return t, fmt.Errorf("tenant %q: refusing to drop schema %s: objects outside it depend on it and would be dropped too: %s",
			name, q(schema), listed(deps, "; "))
	}
	var roleExists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", t.Role).Scan(&roleExists); err != nil {
		return t, err
	}
	stmts := []string{"DROP SCHEMA IF EXISTS " + q(schema) + " CASCADE"}
	if roleExists {
		stmts = append(stmts,
			"REASSIGN OWNED BY "+q(t.Role)+" TO "+q(cfg.Admin.OwnerRole),
			"DROP OWNED BY "+q(t.Role),
			"DROP ROLE "+q(t.Role))
	}
	stmts = append(stmts,
		"DELETE FROM tenantproxy.migrations WHERE tenant = "+lit(name),
		dropMigrationRecordsSQL(name),
		"DELETE FROM tenantproxy.tenants WHERE name = "+lit(name),
		notifyStatement("drop", name))
	if err := execScript(ctx, tx, stmts); err != nil {
		return t, fmt.Errorf("tenant %q: drop: %w", name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return t, fmt.Errorf("tenant %q: commit: %w", name, err)
	}
	return t, nil
}

func runTenantDrop(ctx context.Context, cfg *config.Config, name string, out io.Writer) error {
	conn, err := connectAdmin(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	t, err := dropTenant(ctx, conn, cfg, name)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "tenant %s: dropped schema %s, role %s and its catalog rows\n", name, t.Schema, t.Role)
	return nil
}
