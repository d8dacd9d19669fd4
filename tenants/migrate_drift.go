package tenants

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// Drift is a tenant schema whose objects differ from what its applied migrations produce. The reference
// is built from the migration files in a scratch schema (tenantproxy_ref_PID_N), one per distinct set of
// applied files, inside a transaction that is rolled back; both are then read through the catalogs as
// one line per object: relations (tables, partitioned tables, views, sequences), columns (type, NOT NULL,
// default), indexes (their definition, and whether INVALID), constraints, and enum, domain and range
// types. Names qualified with the schema's own name are compared unqualified. Privileges, comments,
// statistics and function bodies are not compared.

// tenantDrift is one tenant whose schema differs from its reference.
type tenantDrift struct {
	Tenant string `json:"tenant"`
	Schema string `json:"schema"`
	// Missing are objects its migrations create that the schema lacks; Extra objects the schema has that
	// its migrations do not create. A changed object shows in both.
	Missing []string `json:"missing,omitempty"`
	Extra   []string `json:"extra,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// schemaObjectsSQL lists the objects of the schemas $1, one (schema, kind, description) per object.
const schemaObjectsSQL = `
SELECT s.nspname, o.kind,
       regexp_replace(o.descr, '(^|[^a-z0-9_$"])' || s.nspname || '\.', '\1', 'g')
FROM pg_namespace s CROSS JOIN LATERAL (
  SELECT 'relation' AS kind, c.relname || ' ' || CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table'
         WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table'
         ELSE 'composite type' END AS descr
    FROM pg_class c WHERE c.relnamespace = s.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
  UNION ALL
  SELECT 'column', c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
         || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
    WHERE c.relnamespace = s.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
  UNION ALL
  SELECT 'index', pg_get_indexdef(x.indexrelid) || CASE WHEN x.indisvalid THEN '' ELSE ' (INVALID)' END
    FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE i.relnamespace = s.oid
  UNION ALL
  SELECT 'constraint', c.relname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
    FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid WHERE k.connamespace = s.oid
  UNION ALL
  SELECT 'type', t.typname || CASE t.typtype
           WHEN 'e' THEN ' enum (' || coalesce((SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                               FROM pg_enum e WHERE e.enumtypid = t.oid), '') || ')'
           WHEN 'd' THEN ' domain ' || format_type(t.typbasetype, t.typtypmod)
           ELSE ' range' END
    FROM pg_type t WHERE t.typnamespace = s.oid AND t.typtype IN ('e', 'd', 'r')
) o
WHERE s.nspname = ANY($1)`

// schemaObjects reads the objects of schemas, by schema.
func schemaObjects(ctx context.Context, db querier, schemas []string) (map[string]map[string]bool, error) {
	rows, err := db.Query(ctx, schemaObjectsSQL, schemas)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]map[string]bool{}
	for _, s := range schemas {
		out[s] = map[string]bool{}
	}
	for rows.Next() {
		var s, kind, descr string
		if err := rows.Scan(&s, &kind, &descr); err != nil {
			return nil, err
		}
		out[s][kind+" "+descr] = true
	}
	return out, rows.Err()
}

// appliedFiles are the files a tenant's records say were applied, common line first.
func appliedFiles(files []migration, applied []appliedMigration) ([]migration, error) {
	if _, err := plan(files, applied, 0); err != nil {
		return nil, err
	}
	done := map[int]bool{}
	for _, a := range applied {
		done[a.Version] = true
	}
	var out []migration
	for _, f := range files {
		if done[f.Version] {
			out = append(out, f)
		}
	}
	return out, nil
}

// buildReferences creates one scratch schema per file list inside tx and returns their names.
func buildReferences(ctx context.Context, tx pgx.Tx, cfg *config.Config, lists [][]migration) ([]string, error) {
	if err := execScript(ctx, tx, timeoutSetup(cfg, true)); err != nil {
		return nil, err
	}
	pid := tx.Conn().PgConn().PID()
	names := make([]string, len(lists))
	for i, files := range lists {
		names[i] = fmt.Sprintf("tenantproxy_ref_%d_%d", pid, i)
		stmts := append([]string{"RESET ROLE", "CREATE SCHEMA " + q(names[i]) + " AUTHORIZATION " + q(cfg.Admin.OwnerRole)},
			migrationSetup(cfg, names[i])...)
		if err := execScript(ctx, tx, stmts); err != nil {
			return nil, fmt.Errorf("create the reference schema: %w", err)
		}
		for _, f := range files {
			if err := execFile(ctx, tx, f); err != nil {
				return nil, fmt.Errorf("build the reference schema: %w", err)
			}
		}
	}
	return names, execScript(ctx, tx, []string{"RESET ROLE", "RESET search_path"})
}

// findDrift compares every tenant schema with the reference of its applied migrations.
func findDrift(ctx context.Context, conn *pgx.Conn, cfg *config.Config, ms migrationSet, tenants []tenantRef,
	applied, special map[string][]appliedMigration) ([]tenantDrift, error) {
	var out []tenantDrift
	keyOf := map[string]int{}
	var lists [][]migration
	refOf := map[string]int{}
	var schemas []string
	for _, t := range tenants {
		files, err := appliedFiles(ms.tenant, applied[t.Name])
		var spec []migration
		if err == nil {
			if spec, err = specificFor(cfg, ms, t.Name); err == nil {
				spec, err = appliedFiles(spec, special[t.Name])
			}
		}
		if err != nil {
			out = append(out, tenantDrift{Tenant: t.Name, Schema: t.Schema, Error: "no reference: " + err.Error()})
			continue
		}
		files = append(files, spec...)
		var key strings.Builder
		for _, f := range files {
			fmt.Fprintf(&key, "%s:%s;", f.File, f.Checksum)
		}
		k, ok := keyOf[key.String()]
		if !ok {
			k = len(lists)
			keyOf[key.String()] = k
			lists = append(lists, files)
		}
		refOf[t.Name] = k
		schemas = append(schemas, t.Schema)
	}
	if len(schemas) == 0 {
		return out, nil
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.Background())
	refs, err := buildReferences(ctx, tx, cfg, lists)
	if err != nil {
		return nil, err
	}
	objs, err := schemaObjects(ctx, tx, append(schemas, refs...))
	if err != nil {
		return nil, err
	}
	for _, t := range tenants {
		k, ok := refOf[t.Name]
		if !ok {
			continue
		}
		d := tenantDrift{Tenant: t.Name, Schema: t.Schema}
		ref, have := objs[refs[k]], objs[t.Schema]
		for o := range ref {
			if !have[o] {
				d.Missing = append(d.Missing, o)
			}
		}
		for o := range have {
			if !ref[o] {
				d.Extra = append(d.Extra, o)
			}
		}
		if len(d.Missing)+len(d.Extra) > 0 {
			sort.Strings(d.Missing)
			sort.Strings(d.Extra)
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tenant < out[j].Tenant })
	return out, nil
}

// printDrift prints each drifted tenant and how it differs.
func printDrift(w io.Writer, drift []tenantDrift, tenants int) {
	fmt.Fprintf(w, "\ndrift: %d of %d tenants differ from what their migrations produce\n", len(drift), tenants)
	for _, d := range drift {
		if d.Error != "" {
			fmt.Fprintf(w, "%s: %s\n", d.Tenant, d.Error)
			continue
		}
		fmt.Fprintf(w, "%s (schema %s):\n", d.Tenant, d.Schema)
		for _, o := range d.Missing {
			fmt.Fprintf(w, "  missing  %s\n", o)
		}
		for _, o := range d.Extra {
			fmt.Fprintf(w, "  extra    %s\n", o)
		}
	}
}

// runDrift is `doctor --drift`: the drift of every catalog tenant.
func runDrift(ctx context.Context, cfg *config.Config, asJSON bool, stdout io.Writer) error {
	ms, err := loadMigrationSet(cfg)
	if err != nil {
		return err
	}
	conn, err := connectAdmin(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	tenants, err := catalogTenants(ctx, conn, cfg)
	if err != nil {
		return err
	}
	applied, err := readAllApplied(ctx, conn)
	if err != nil {
		return err
	}
	special, err := readSpecificIfAny(ctx, conn)
	if err != nil {
		return err
	}
	drift, err := findDrift(ctx, conn, cfg, ms, tenants, applied, special)
	if err != nil {
		return err
	}
	if asJSON {
		if err := writeJSON(stdout, map[string]any{"drift": drift}); err != nil {
			return err
		}
	} else {
		printDrift(stdout, drift, len(tenants))
	}
	if len(drift) > 0 {
		return fmt.Errorf("%d tenants have drifted from their migrations", len(drift))
	}
	return nil
}
