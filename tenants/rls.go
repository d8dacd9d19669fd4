package tenants

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// Row-level security readiness: a shared table (in the shared schema unless qualified) with a text column
// "tenant" gets the policy tenant_isolation, USING and WITH CHECK (tenant = current_setting(<[tenancy]
// setting>, true)), ENABLE and FORCE ROW LEVEL SECURITY, and DML for every tenant role; tenants created
// later get the same grants. `rls disable` drops the policy, disables RLS and REVOKES the tenant roles'
// privileges on the table, because without the policy every tenant would see every row. FORCE applies the
// policy to the table's owner too; superusers (the admin role in tests) bypass it.

// rlsTable is a table carrying the tenant_isolation policy, or asked about by `rls status`.
type rlsTable struct {
	schema, table   string
	qualifiedQuoted string
	relkind         string
	enabled, forced bool
	policy          bool
	using, check    string   // the policy's expressions
	tenantColumn    string   // type of the "tenant" column, "" when missing
	sequences       []string // qualified, quoted names of the sequences the table owns
	grantedRoles    []string // roles holding SELECT on the table
}

const rlsTableColumns = `
SELECT n.nspname::text, c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
       p.oid IS NOT NULL, coalesce(pg_get_expr(p.polqual, p.polrelid), ''), coalesce(pg_get_expr(p.polwithcheck, p.polrelid), ''),
       coalesce((SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attname = 'tenant' AND NOT a.attisdropped), ''),
       ARRAY(SELECT quote_ident(sn.nspname) || '.' || quote_ident(s.relname)
             FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
             JOIN pg_namespace sn ON sn.oid = s.relnamespace
             WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
               AND d.refobjid = c.oid AND d.deptype IN ('a', 'i') ORDER BY 1),
       ARRAY(SELECT DISTINCT pg_get_userbyid(a.grantee)::text FROM aclexplode(c.relacl) a
             WHERE a.privilege_type = 'SELECT' AND a.grantee NOT IN (0, c.relowner) ORDER BY 1),
       c.relkind::text
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_policy p ON p.polrelid = c.oid AND p.polname = 'tenant_isolation'`

func scanRLSTables(ctx context.Context, db querier, where string, args ...any) ([]rlsTable, error) {
	rows, err := db.Query(ctx, rlsTableColumns+"\n"+where+"\nORDER BY 1, 2", args...)
	if err != nil {
		return nil, err
	}
	return collectRLSTables(rows)
}

// queueRLSTables queues the read of every table carrying the tenant_isolation policy.
func queueRLSTables(b *pgx.Batch, out *[]rlsTable) {
	b.Queue(rlsTableColumns + "\nWHERE p.oid IS NOT NULL\nORDER BY 1, 2").Query(func(rows pgx.Rows) error {
		var err error
		*out, err = collectRLSTables(rows)
		return err
	})
}

func collectRLSTables(rows pgx.Rows) ([]rlsTable, error) {
	defer rows.Close()
	var out []rlsTable
	for rows.Next() {
		var t rlsTable
		if err := rows.Scan(&t.schema, &t.table, &t.enabled, &t.forced, &t.policy, &t.using, &t.check,
			&t.tenantColumn, &t.sequences, &t.grantedRoles, &t.relkind); err != nil {
			return nil, err
		}
		t.qualifiedQuoted = q(t.schema) + "." + q(t.table)
		out = append(out, t)
	}
	return out, rows.Err()
}

// rlsTables is every table carrying the tenant_isolation policy.
func rlsTables(ctx context.Context, db querier) ([]rlsTable, error) {
	return scanRLSTables(ctx, db, "WHERE p.oid IS NOT NULL")
}

// rlsGrantStatements gives roles what they need on RLS tables: USAGE on the schema, DML on the table,
// USAGE and SELECT on its sequences.
func rlsGrantStatements(tables []rlsTable, roles []string) []string {
	if len(roles) == 0 {
		return nil
	}
	to := quoteList(roles)
	var out []string
	for _, t := range tables {
		out = append(out,
			"GRANT USAGE ON SCHEMA "+q(t.schema)+" TO "+to,
			"GRANT SELECT, INSERT, UPDATE, DELETE ON "+t.qualifiedQuoted+" TO "+to)
		if len(t.sequences) > 0 {
			out = append(out, "GRANT USAGE, SELECT ON SEQUENCE "+strings.Join(t.sequences, ", ")+" TO "+to)
		}
	}
	return out
}

// splitTable resolves TABLE or SCHEMA.TABLE; an unqualified name is in the shared schema.
func splitTable(arg string) (schema, table string, err error) {
	schema, table = SharedSchema, arg
	if i := strings.IndexByte(arg, '.'); i >= 0 {
		schema, table = arg[:i], arg[i+1:]
	}
	if schema == "" || table == "" || strings.ContainsRune(table, '.') {
		return "", "", fmt.Errorf("table %q: write TABLE or SCHEMA.TABLE", arg)
	}
	return schema, table, nil
}

// findRLSTable looks up a table for `rls enable|disable` and checks it can carry the policy.
func findRLSTable(ctx context.Context, db querier, arg string, tenants []tenantRef) (rlsTable, error) {
	schema, table, err := splitTable(arg)
	if err != nil {
		return rlsTable{}, err
	}
	if schema == CatalogSchema {
		return rlsTable{}, fmt.Errorf("table %q: the catalog schema %s is not for shared tables", arg, CatalogSchema)
	}
	for _, t := range tenants {
		if t.Schema == schema {
			return rlsTable{}, fmt.Errorf("table %q: schema %s belongs to tenant %s; rls is for shared tables", arg, schema, t.Name)
		}
	}
	ts, err := scanRLSTables(ctx, db, "WHERE n.nspname = $1 AND c.relname = $2", schema, table)
	if err != nil {
		return rlsTable{}, err
	}
	if len(ts) == 0 {
		return rlsTable{}, fmt.Errorf("table %s.%s does not exist", q(schema), q(table))
	}
	t := ts[0]
	if t.relkind != "r" && t.relkind != "p" {
		return rlsTable{}, fmt.Errorf("%s is not a table", t.qualifiedQuoted)
	}
	return t, nil
}

func roleNames(ts []tenantRef) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Role
	}
	return out
}

// rlsEnable puts the tenant_isolation policy on a shared table and grants it to every tenant role.
func rlsEnable(ctx context.Context, cfg *config.Config, arg string, out io.Writer) error {
	return rlsChange(ctx, cfg, arg, out, true)
}

// rlsDisable removes the policy and the tenant roles' privileges from a shared table.
func rlsDisable(ctx context.Context, cfg *config.Config, arg string, out io.Writer) error {
	return rlsChange(ctx, cfg, arg, out, false)
}

func rlsChange(ctx context.Context, cfg *config.Config, arg string, out io.Writer, enable bool) error {
	var tenants []tenantRef
	var t rlsTable
	err := withAdminTx(ctx, cfg, func(tx pgx.Tx) error {
		var err error
		tenants, err = catalogTenants(ctx, tx, cfg)
		if err != nil {
			return err
		}
		t, err = findRLSTable(ctx, tx, arg, tenants)
		if err != nil {
			return err
		}
		var existing []string
		if err := tx.QueryRow(ctx, "SELECT ARRAY(SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1) ORDER BY 1)", roleNames(tenants)).Scan(&existing); err != nil {
			return err
		}
		var stmts []string
		if enable {
			if t.tenantColumn != "text" && !strings.HasPrefix(t.tenantColumn, "character varying") {
				return fmt.Errorf("%s needs a column \"tenant\" of type text holding the tenant's name (found %q)", t.qualifiedQuoted, t.tenantColumn)
			}
			cond := "(tenant = current_setting(" + lit(cfg.Tenancy.Setting) + ", true))"
			stmts = append(stmts,
				"DROP POLICY IF EXISTS "+q(PolicyName)+" ON "+t.qualifiedQuoted,
				"CREATE POLICY "+q(PolicyName)+" ON "+t.qualifiedQuoted+" FOR ALL TO PUBLIC USING "+cond+" WITH CHECK "+cond,
				"ALTER TABLE "+t.qualifiedQuoted+" ENABLE ROW LEVEL SECURITY",
				"ALTER TABLE "+t.qualifiedQuoted+" FORCE ROW LEVEL SECURITY")
			// Grants to a thousand roles go in chunks to keep statements small.
			for len(existing) > 0 {
				n := min(len(existing), 500)
				stmts = append(stmts, rlsGrantStatements([]rlsTable{t}, existing[:n])...)
				existing = existing[n:]
			}
		} else {
			stmts = append(stmts,
				"DROP POLICY IF EXISTS "+q(PolicyName)+" ON "+t.qualifiedQuoted,
				"ALTER TABLE "+t.qualifiedQuoted+" NO FORCE ROW LEVEL SECURITY",
				"ALTER TABLE "+t.qualifiedQuoted+" DISABLE ROW LEVEL SECURITY")
			for len(existing) > 0 {
				n := min(len(existing), 500)
				to := quoteList(existing[:n])
				stmts = append(stmts, "REVOKE ALL ON "+t.qualifiedQuoted+" FROM "+to)
				if len(t.sequences) > 0 {
					stmts = append(stmts, "REVOKE ALL ON SEQUENCE "+strings.Join(t.sequences, ", ")+" FROM "+to)
				}
				existing = existing[n:]
			}
		}
		if err := execScript(ctx, tx, stmts); err != nil {
			verb := "disable"
			if enable {
				verb = "enable"
			}
			return fmt.Errorf("rls %s %s: %w", verb, t.qualifiedQuoted, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if enable {
		fmt.Fprintf(out, "rls: %s: policy %s on %s, row level security enabled and forced, DML granted to %d tenant roles\n",
			t.qualifiedQuoted, PolicyName, cfg.Tenancy.Setting, len(tenants))
	} else {
		fmt.Fprintf(out, "rls: %s: policy dropped, row level security disabled, tenant roles' privileges revoked\n", t.qualifiedQuoted)
	}
	return nil
}

// rlsStatus prints the tables of the shared schema and every table with the policy, or only arg.
func rlsStatus(ctx context.Context, cfg *config.Config, arg string, asJSON bool, out io.Writer) error {
	conn, err := connectAdmin(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	tenants, err := catalogTenants(ctx, conn, cfg)
	if err != nil {
		return err
	}
	var ts []rlsTable
	if arg != "" {
		schema, table, err := splitTable(arg)
		if err != nil {
			return err
		}
		ts, err = scanRLSTables(ctx, conn, "WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')", schema, table)
		if err != nil {
			return err
		}
		if len(ts) == 0 {
			return fmt.Errorf("table %s.%s does not exist", q(schema), q(table))
		}
	} else if ts, err = scanRLSTables(ctx, conn, "WHERE (n.nspname = $1 AND c.relkind IN ('r', 'p')) OR p.oid IS NOT NULL", SharedSchema); err != nil {
		return err
	}
	roles := map[string]bool{}
	for _, r := range roleNames(tenants) {
		roles[r] = true
	}
	type row struct {
		Table        string `json:"table"`
		Enabled      bool   `json:"enabled"`
		Forced       bool   `json:"forced"`
		Policy       bool   `json:"policy"`
		TenantColumn string `json:"tenant_column"`
		Granted      int    `json:"tenant_roles_granted"`
		Tenants      int    `json:"tenants"`
	}
	rows := make([]row, 0, len(ts))
	for _, t := range ts {
		granted := 0
		for _, g := range t.grantedRoles {
			if roles[g] {
				granted++
			}
		}
		rows = append(rows, row{Table: t.schema + "." + t.table, Enabled: t.enabled, Forced: t.forced, Policy: t.policy,
			TenantColumn: t.tenantColumn, Granted: granted, Tenants: len(tenants)})
	}
	if asJSON {
		return writeJSON(out, rows)
	}
	tw := newTable(out, "TABLE", "RLS", "FORCED", "POLICY", "TENANT COLUMN", "TENANT ROLES GRANTED")
	onOff := map[bool]string{true: "on", false: "off"}
	for _, r := range rows {
		col := r.TenantColumn
		if col == "" {
			col = "missing"
		}
		tw.row(r.Table, onOff[r.Enabled], onOff[r.Forced], onOff[r.Policy], col, fmt.Sprintf("%d/%d", r.Granted, r.Tenants))
	}
	return tw.flush()
}
