package tenants

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// Incremental refresh. A view of 1,000 branches costs a few hundred milliseconds to create, and tenant
// create refreshes after every tenant, so each analytics view is built in two levels: the tenants are
// hashed into analyticsBuckets parts, views of the schema analytics_parts (owned by the owner role, granted
// to no one) that UNION ALL the tenants of one bucket, and the view in analytics UNION ALLs the parts. A
// refresh compares the SQL of every part and top view with the hash kept in its comment and rebuilds only
// what differs: adding, suspending or dropping a tenant rewrites one part per table (CREATE OR REPLACE:
// same columns) and leaves the top views alone, unless a bucket became empty or non-empty or the columns
// changed. The planner flattens the nested UNION ALLs into one append, so a filter on tenant still reads one
// table.

// Tenant names stay out of the view definitions: pg_get_viewdef, pg_views and pg_rewrite show every view's
// SQL to every role, so a branch written as 'acme'::text would hand each tenant the list of customers and
// their schemas. A branch's tenant column is tenantNameFunc(<schema>) instead: an IMMUTABLE SECURITY
// DEFINER function of the owner role that reads the name from the catalog and that only the analytics
// role may execute. The planner evaluates an immutable function of a constant while it plans, so the
// column is still a constant per branch and a filter on tenant still drops the other branches.

// tenantNameFunc maps a tenant schema to the tenant's name, for the analytics role.
const tenantNameFunc = `"analytics_parts"."tenant_name"`

// tenantNameFuncStatements (re)create tenantNameFunc; they run as the owner role.
func tenantNameFuncStatements() []string {
	return []string{
		"CREATE OR REPLACE FUNCTION " + tenantNameFunc + "(schema text) RETURNS text" +
			" LANGUAGE sql IMMUTABLE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS " +
			lit("SELECT name FROM tenantproxy.tenants WHERE schema = $1"),
		"REVOKE ALL ON FUNCTION " + tenantNameFunc + "(text) FROM PUBLIC",
		"GRANT EXECUTE ON FUNCTION " + tenantNameFunc + "(text) TO " + q(config.AnalyticsRole),
	}
}

// analyticsPartsSchema holds the parts of the analytics views.
const analyticsPartsSchema = "analytics_parts"

// analyticsBuckets is how many parts a view is split into.
const analyticsBuckets = 32

// commentPrefix starts the comment that records a view's SQL hash.
const commentPrefix = "tenantproxy analytics "

func bucketOf(tenant string) int {
	h := fnv.New32a()
	h.Write([]byte(tenant))
	return int(h.Sum32() % analyticsBuckets)
}

// partName is the part view of table for bucket b; names that would pass PostgreSQL's 63 bytes are
// shortened with a hash, so that two tables never share a part.
func partName(table string, b int) string {
	name := fmt.Sprintf("%s__%02d", table, b)
	if len(name) <= 63 {
		return name
	}
	h := fnv.New32a()
	h.Write([]byte(table))
	return fmt.Sprintf("%s_%08x__%02d", table[:48], h.Sum32(), b)
}

func sqlHash(sql string) string {
	sum := sha256.Sum256([]byte(sql))
	return hex.EncodeToString(sum[:12])
}

// viewDef is one view to have: its qualified, quoted name and its body (the SELECT).
type viewDef struct {
	name, body string
}

func (v viewDef) hash() string { return sqlHash(v.body) }

// analyticsDefs is the two levels of one analyticsView: its parts, in bucket order, and the top view.
func (v analyticsView) defs() (parts []viewDef, top viewDef) {
	cols := ""
	for _, c := range v.columns {
		cols += ", " + q(c)
	}
	byBucket := map[int][][2]string{}
	for _, t := range v.tenants {
		b := bucketOf(t[0])
		byBucket[b] = append(byBucket[b], t)
	}
	buckets := make([]int, 0, len(byBucket))
	for b := range byBucket {
		buckets = append(buckets, b)
	}
	slices.Sort(buckets)
	var topBody strings.Builder
	for i, b := range buckets {
		var body strings.Builder
		for j, t := range byBucket[b] {
			if j > 0 {
				body.WriteString("\nUNION ALL\n")
			}
			body.WriteString("SELECT " + tenantNameFunc + "(" + lit(t[1]) + ") AS tenant" + cols + " FROM " + q(t[1]) + "." + q(v.table))
		}
		p := viewDef{name: q(analyticsPartsSchema) + "." + q(partName(v.table, b)), body: body.String()}
		parts = append(parts, p)
		if i > 0 {
			topBody.WriteString("\nUNION ALL\n")
		}
		topBody.WriteString("SELECT tenant" + cols + " FROM " + p.name)
	}
	return parts, viewDef{name: q(config.Analytics) + "." + q(v.table), body: topBody.String()}
}

// existingViews maps the qualified name, quoted as q quotes it, of every view of the two schemas to the hash in its
// comment ("" when it has none).
func existingViews(ctx context.Context, db querier) (map[string]string, error) {
	rows, err := db.Query(ctx, `
SELECT '"' || replace(n.nspname, '"', '""') || '"."' || replace(c.relname, '"', '""') || '"', coalesce(obj_description(c.oid, 'pg_class'), '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ($1, $2) AND c.relkind = 'v'`, config.Analytics, analyticsPartsSchema)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	var name, comment string
	_, err = pgx.ForEachRow(rows, []any{&name, &comment}, func() error {
		out[name] = strings.TrimPrefix(comment, commentPrefix)
		return nil
	})
	return out, err
}

// refreshStatements are the statements that turn the existing views into those of views: top views that
// change are dropped first and created last; parts that change are replaced in place while their top view
// stays, and dropped and created while it is rebuilt; views no longer wanted are dropped.
func refreshStatements(views []analyticsView, existing map[string]string) []string {
	var dropTops, parts, dropParts, createTops []string
	create := func(v viewDef, replace bool) []string {
		verb := "CREATE VIEW "
		if replace {
			verb = "CREATE OR REPLACE VIEW "
		}
		return []string{verb + v.name + " AS\n" + v.body, "COMMENT ON VIEW " + v.name + " IS " + lit(commentPrefix+v.hash())}
	}
	wanted := map[string]bool{}
	for _, v := range views {
		ps, top := v.defs()
		wanted[top.name] = true
		oldTop, hadTop := existing[top.name]
		rebuild := !hadTop || oldTop != top.hash()
		if rebuild && hadTop {
			dropTops = append(dropTops, "DROP VIEW "+top.name)
		}
		for _, p := range ps {
			wanted[p.name] = true
			old, had := existing[p.name]
			switch {
			case had && old == p.hash():
			case had && rebuild:
				parts = append(parts, "DROP VIEW "+p.name)
				parts = append(parts, create(p, false)...)
			case had:
				// The top view is unchanged, so the part keeps its columns: replace it in place.
				parts = append(parts, create(p, true)...)
			default:
				parts = append(parts, create(p, false)...)
			}
		}
		if rebuild {
			createTops = append(createTops, create(top, false)...)
		}
	}
	names := make([]string, 0, len(existing))
	for n := range existing {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if wanted[n] {
			continue
		}
		if strings.HasPrefix(n, q(config.Analytics)+".") {
			dropTops = append(dropTops, "DROP VIEW "+n)
		} else {
			dropParts = append(dropParts, "DROP VIEW "+n)
		}
	}
	out := append(dropTops, dropParts...)
	out = append(out, parts...)
	return append(out, createTops...)
}

// dropTenantViews drops what depends on a tenant's tables before its schema goes: the part of its bucket
// of every view and the top views over them. The refresh afterwards recreates the top views (a few parts
// each) and the one part, not every branch.
func dropTenantViews(ctx context.Context, tx pgx.Tx, tenant string) error {
	existing, err := existingViews(ctx, tx)
	if err != nil || len(existing) == 0 {
		return err
	}
	var tops, parts []string
	suffix := fmt.Sprintf("__%02d\"", bucketOf(tenant))
	for n := range existing {
		switch {
		case strings.HasPrefix(n, q(config.Analytics)+"."):
			tops = append(tops, n)
		case strings.HasSuffix(n, suffix):
			parts = append(parts, n)
		}
	}
	slices.Sort(tops)
	slices.Sort(parts)
	for _, list := range [][]string{tops, parts} {
		if len(list) > 0 {
			if _, err := tx.Exec(ctx, "DROP VIEW "+strings.Join(list, ", ")); err != nil {
				return err
			}
		}
	}
	return nil
}
