package policy

import "testing"

// benchStatements are typical messages: pgbench's select, a three-statement message and a large ORM query.
var benchStatements = []struct{ name, sql string }{
	{"pgbench", "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"},
	{"three", "BEGIN; UPDATE pgbench_accounts SET abalance = abalance + 5 WHERE aid = 42; SELECT abalance FROM pgbench_accounts WHERE aid = 42"},
	{"orm", `SELECT "orders"."id", "orders"."customer_id", "orders"."created_at", "orders"."status", "orders"."total",
       "customers"."id" AS "customer__id", "customers"."name" AS "customer__name", "customers"."email" AS "customer__email",
       COALESCE(SUM("order_lines"."quantity" * "order_lines"."unit_price"), 0) AS "computed_total",
       COUNT(DISTINCT "order_lines"."product_id") AS "distinct_products",
       (SELECT MAX("payments"."paid_at") FROM "payments" WHERE "payments"."order_id" = "orders"."id") AS "last_payment",
       EXISTS (SELECT 1 FROM "refunds" WHERE "refunds"."order_id" = "orders"."id" AND "refunds"."status" <> 'rejected') AS "has_refund"
FROM "orders"
INNER JOIN "customers" ON ("orders"."customer_id" = "customers"."id")
LEFT OUTER JOIN "order_lines" ON ("order_lines"."order_id" = "orders"."id")
LEFT OUTER JOIN "products" ON ("order_lines"."product_id" = "products"."id" AND "products"."deleted_at" IS NULL)
WHERE ("orders"."created_at" >= $1 AND "orders"."created_at" < $2 AND "orders"."status" IN ($3, $4, $5)
       AND ("customers"."email" ILIKE $6 OR "customers"."name" ILIKE $7) AND NOT ("orders"."id" = ANY($8::bigint[])))
GROUP BY "orders"."id", "customers"."id"
HAVING COALESCE(SUM("order_lines"."quantity" * "order_lines"."unit_price"), 0) > $9
ORDER BY "orders"."created_at" DESC, "orders"."id" ASC
LIMIT 50 OFFSET 100`},
}

// BenchmarkCheckCached measures a verdict served from the cache: the hot path.
func BenchmarkCheckCached(b *testing.B) {
	for _, bs := range benchStatements {
		b.Run(bs.name, func(b *testing.B) {
			g := newTestGuard()
			g.Check(bs.sql, ProfileApp, tenantSchemas)
			b.ReportAllocs()
			for b.Loop() {
				if a := g.Check(bs.sql, ProfileApp, tenantSchemas); a.Refused {
					b.Fatal(a.Reason)
				}
			}
		})
	}
}

// BenchmarkCheckUncached measures parsing and classifying a text the cache does not hold.
func BenchmarkCheckUncached(b *testing.B) {
	for _, bs := range benchStatements {
		b.Run(bs.name, func(b *testing.B) {
			g := newTestGuard()
			b.ReportAllocs()
			for b.Loop() {
				if a := g.classify(bs.sql).Decide(ProfileApp, tenantSchemas); a.Refused {
					b.Fatal(a.Reason)
				}
			}
		})
	}
}

// BenchmarkNormalize measures libpg_query's normalization, for comparison with a cached Check.
func BenchmarkNormalize(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Normalize(benchStatements[0].sql); err != nil {
			b.Fatal(err)
		}
	}
}
