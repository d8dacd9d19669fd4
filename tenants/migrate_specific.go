package tenants

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgident"
)

// Tenant-specific migrations are a second line of versions per tenant, apart from the common line that
// every tenant gets, so that the common line stays identical everywhere. A tenant's line is made of
//
//	[migrations] dir/tenants/NAME/NNNN_x.sql               files of tenant NAME
//	[migrations] dir/NNNN_x.sql or dir/tenants/NNNN_x.sql  with the header "-- tenantproxy: tenants a,b",
//	                                                       naming tenants or [[tenants]] migration_group s
//
// Their records live in tenantproxy.tenant_migrations, with the same checksum and ordering checks as the
// common line. A run applies a tenant's pending common files first, then its pending specific ones.

// specificTable records the tenant-specific line; progressTable the statements of a no-transaction
// file done so far.
const (
	specificTable = CatalogSchema + ".tenant_migrations"
	progressTable = CatalogSchema + ".migration_progress"
)

// lineCommon and lineTenant name the two lines of versions of a tenant.
const (
	lineCommon = ""
	lineTenant = "tenant"
)

// loadSpecific adds the files of dir/tenants/ to the header files found in dir.
func loadSpecific(dir string, headerFiles []migration) ([]migration, error) {
	out := headerFiles
	if dir == "" {
		return out, nil
	}
	sub := filepath.Join(dir, "tenants")
	entries, err := os.ReadDir(sub)
	if os.IsNotExist(err) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	loose, err := loadMigrations(sub)
	if err != nil {
		return nil, err
	}
	for _, m := range loose {
		if len(m.Targets) == 0 {
			return nil, fmt.Errorf("migrations: %s: a file in tenants/ needs the header \"-- tenantproxy: tenants NAME,...\" (or belongs in tenants/NAME/)", filepath.Join(sub, m.File))
		}
		m.File = "tenants/" + m.File
		out = append(out, m)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if err := pgident.ValidateName(e.Name()); err != nil {
			return nil, fmt.Errorf("migrations: %s: not a tenant name: %w", filepath.Join(sub, e.Name()), err)
		}
		files, err := loadMigrations(filepath.Join(sub, e.Name()))
		if err != nil {
			return nil, err
		}
		for _, m := range files {
			m.File = "tenants/" + e.Name() + "/" + m.File
			m.Targets = []string{e.Name()}
			out = append(out, m)
		}
	}
	return out, nil
}

// migrationGroup is the [[tenants]] migration_group of a tenant ("" when none).
func migrationGroup(cfg *config.Config, name string) string {
	for _, t := range cfg.Tenants {
		if t.Name == name {
			return t.MigrationGroup
		}
	}
	return ""
}

// specificFor is the tenant-specific line of one tenant, in version order.
func specificFor(cfg *config.Config, ms migrationSet, tenant string) ([]migration, error) {
	group := migrationGroup(cfg, tenant)
	var out []migration
	seen := map[int]string{}
	for _, m := range ms.specific {
		hit := false
		for _, t := range m.Targets {
			if t == tenant || (group != "" && t == group) {
				hit = true
			}
		}
		if !hit {
			continue
		}
		if prev, dup := seen[m.Version]; dup {
			return nil, fmt.Errorf("tenant-specific migrations %s and %s both have version %d for this tenant", prev, m.File, m.Version)
		}
		seen[m.Version] = m.File
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// ensureMigrationCatalog creates the tables of the tenant-specific line and of no-transaction progress
// when they are missing (installs from before them need no new `init`).
func ensureMigrationCatalog(ctx context.Context, conn *pgx.Conn, cfg *config.Config) error {
	var have bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL", specificTable, progressTable).Scan(&have); err != nil {
		return catalogError(err)
	}
	if have {
		return nil
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	owner := q(cfg.Admin.OwnerRole)
	stmts := []string{
		fmt.Sprintf("SELECT pg_advisory_xact_lock(%d, 0)", lockClassInit),
		`CREATE TABLE IF NOT EXISTS ` + specificTable + ` (
	tenant     text NOT NULL,
	version    integer NOT NULL,
	name       text NOT NULL,
	checksum   text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant, version))`,
		`CREATE TABLE IF NOT EXISTS ` + progressTable + ` (
	tenant     text NOT NULL,
	line       text NOT NULL,
	version    integer NOT NULL,
	checksum   text NOT NULL,
	statements integer NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant, line, version))`,
		"ALTER TABLE " + specificTable + " OWNER TO " + owner,
		"ALTER TABLE " + progressTable + " OWNER TO " + owner,
		"REVOKE ALL ON " + specificTable + ", " + progressTable + " FROM PUBLIC",
	}
	if err := execScript(ctx, tx, stmts); err != nil {
		return fmt.Errorf("create the tenant-specific migration catalog: %w", catalogError(err))
	}
	return tx.Commit(ctx)
}

// dropMigrationRecordsSQL deletes a dropped tenant's tenant-specific and progress records (a no-op
// before those tables exist), so a new tenant of the same name starts with an empty line.
func dropMigrationRecordsSQL(name string) string {
	return fmt.Sprintf(`DO $tp$BEGIN
IF to_regclass(%s) IS NOT NULL THEN DELETE FROM %s WHERE tenant = %s; END IF;
IF to_regclass(%s) IS NOT NULL THEN DELETE FROM %s WHERE tenant = %s; END IF;
END$tp$`, lit(specificTable), specificTable, lit(name), lit(progressTable), progressTable, lit(name))
}

// readAllSpecific reads every tenant-specific record, by tenant.
func readAllSpecific(ctx context.Context, db querier) (map[string][]appliedMigration, error) {
	rows, err := db.Query(ctx, "SELECT tenant, version, name, checksum FROM "+specificTable+" ORDER BY tenant, version")
	if err != nil {
		return nil, catalogError(err)
	}
	defer rows.Close()
	out := map[string][]appliedMigration{}
	for rows.Next() {
		var t string
		var a appliedMigration
		if err := rows.Scan(&t, &a.Version, &a.File, &a.Checksum); err != nil {
			return nil, err
		}
		out[t] = append(out[t], a)
	}
	return out, catalogError(rows.Err())
}

// applyOwnFiles applies the pending tenant-specific files of a tenant just created (`tenant create`
// applies the common line in its own transaction); it prints nothing when the tenant has none.
func applyOwnFiles(ctx context.Context, cfg *config.Config, name, schema string, out io.Writer) error {
	ms, err := loadMigrationSet(cfg)
	if err != nil {
		return err
	}
	own, err := specificFor(cfg, ms, name)
	if err != nil || len(own) == 0 {
		return err
	}
	conn, err := connectAdmin(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := ensureMigrationCatalog(ctx, conn, cfg); err != nil {
		return err
	}
	if schema == "" {
		// The schema tenant create chose: the catalog's (an opaque id unless --schema named one).
		if schema, err = chooseSchema(ctx, conn, cfg, name); err != nil {
			return err
		}
	}
	res, err := runTarget(ctx, conn, cfg, target{tenant: name, schema: schema, common: ms.tenant, specific: own})
	if err != nil {
		return fmt.Errorf("tenant %q: tenant-specific migrations: %w", name, err)
	}
	if len(res.applied) > 0 {
		fmt.Fprintf(out, "tenant %s: applied %s\n", name, fileList(res.applied))
	}
	return nil
}
