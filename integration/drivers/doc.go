// Package drivers is tenantproxy's driver matrix: one scenario, written once per PostgreSQL client driver,
// that a tenant's application would run through the proxy. Each scenario connects as two tenants' users,
// does create, read, update and delete on employees with prepared statements reused across interleaved
// transactions of both tenants, raises and recovers from an error inside a transaction, cancels a query,
// copies rows in and out where the driver can, and asserts at every step that a tenant sees only its own
// rows.
//
// The Go drivers (pgx in every QueryExecMode, lib/pq) run as Go tests in this package; the others are
// small programs beside it (node/, python/, java/, psql_scenario.sh, pgbench_scenario.sh) that
// TestDriverMatrix runs. All of them read the environment variables TP_DSN_A and TP_DSN_B (URLs of tenant
// A's and tenant B's users), TP_TENANT_A and TP_TENANT_B (the tenants' names) and TP_MODE (the pool mode).
// Each scenario runs in transaction and in session pooling, through a proxy of its own with a pool of two
// backends over one cluster that TestMain provisions with integration/proxytest; when TP_DSN_A is set the
// scenarios run against those DSNs instead, in the mode TP_MODE names.
//
// The runtimes and driver packages come from scripts/install-deps.sh.
package drivers
