package tenants

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/tenantproxy/tenantproxy/config"
)

// A target's run is lock-safe: every statement runs with [migrations] lock_timeout and
// statement_timeout, so a migration that waits for a lock behind a long transaction gives up after
// lock_timeout instead of queueing the tenant's traffic behind it; the run is then retried with backoff,
// up to [migrations] retries times. Transactional files run in one transaction per stretch of files; a
// no-transaction file ends that stretch and runs statement by statement (each with the same timeouts),
// recording its progress after each statement so that a rerun resumes at the statement that failed.

// migrationSetup switches a transaction to the owner role and the target's schema; migration files
// run after it.
func migrationSetup(cfg *config.Config, schema string) []string {
	return []string{
		"SET LOCAL ROLE " + q(cfg.Admin.OwnerRole),
		"SET LOCAL search_path TO " + q(schema),
	}
}

// timeoutSetup bounds lock waits and statements of a transaction (local) or session.
func timeoutSetup(cfg *config.Config, local bool) []string {
	scope := "SET LOCAL "
	if !local {
		scope = "SET "
	}
	lt, st := migrationTimeouts(cfg)
	return []string{
		scope + "lock_timeout = " + strconv.FormatInt(lt.Milliseconds(), 10),
		scope + "statement_timeout = " + strconv.FormatInt(st.Milliseconds(), 10),
	}
}

// migrationTimeouts are [migrations] lock_timeout and statement_timeout, defaulted for a config built
// in code.
func migrationTimeouts(cfg *config.Config) (lock, stmt time.Duration) {
	lock, stmt = cfg.Migrations.LockTimeout.Duration, cfg.Migrations.StatementTimeout.Duration
	if lock <= 0 {
		lock = 3 * time.Second
	}
	if stmt <= 0 {
		stmt = 10 * time.Minute
	}
	return lock, stmt
}

func migrationRetries(cfg *config.Config) int {
	if cfg.Migrations.Retries == nil {
		return 5
	}
	return *cfg.Migrations.Retries
}

// retryBackoff is the pause before retry n (1, 2, ...): 100ms doubling up to 5s, with jitter.
func retryBackoff(n int) time.Duration {
	d := 100 * time.Millisecond << min(n-1, 6)
	d = min(d, 5*time.Second)
	return d/2 + rand.N(d/2+1)
}

// lockNotGranted is a statement that gave up waiting for a lock (lock_timeout) or lost a deadlock.
func lockNotGranted(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == pgerrcode.LockNotAvailable || pe.Code == pgerrcode.DeadlockDetected)
}

var concurrentDDL = regexp.MustCompile(`(?is)^((?:\s|--[^\n]*\n)*(?:create\s+(?:unique\s+)?index|drop\s+index|reindex\s+(?:index|table|schema))\s+)concurrently\b`)

// inTxSQL is a file's SQL as it may run inside a transaction: a no-transaction file has CONCURRENTLY
// removed from its CREATE INDEX, DROP INDEX and REINDEX statements (for a new, empty tenant and for the
// reference schema of drift checks, where no traffic waits).
func inTxSQL(m migration) (string, error) {
	if !m.NoTx {
		return m.SQL, nil
	}
	stmts, err := splitStatements(m)
	if err != nil {
		return "", err
	}
	for i, s := range stmts {
		stmts[i] = concurrentDDL.ReplaceAllString(s, "$1")
	}
	return strings.Join(stmts, ";\n"), nil
}

// splitStatements splits a no-transaction file into its statements.
func splitStatements(m migration) ([]string, error) {
	parts, err := pg_query.SplitWithParser(m.SQL, true)
	if err != nil {
		return nil, &migrationError{File: m.File, Err: fmt.Errorf("cannot split it into statements: %w", err)}
	}
	out := parts[:0]
	for _, p := range parts {
		if strings.TrimSpace(p) != "" {
			out = append(out, p)
		}
	}
	return out, nil
}

// execFile runs one file inside tx and checks that it left the transaction open.
func execFile(ctx context.Context, tx pgx.Tx, m migration) error {
	if !utf8.ValidString(m.SQL) {
		return &migrationError{File: m.File, Err: errors.New("the file is not valid UTF-8")}
	}
	sql, err := inTxSQL(m)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
		return newMigrationError(m, err)
	}
	if st := tx.Conn().PgConn().TxStatus(); st != 'T' {
		return &migrationError{File: m.File, Err: fmt.Errorf("the file ended the transaction (transaction status %q); migrations must not contain COMMIT or ROLLBACK, and this target may be partly migrated", st)}
	}
	return nil
}

// recordFiles records applied files of one line of a tenant.
func recordFiles(ctx context.Context, db querier, tenant, line string, files []migration) error {
	if len(files) == 0 {
		return nil
	}
	versions, names, sums := make([]int32, len(files)), make([]string, len(files)), make([]string, len(files))
	for i, m := range files {
		versions[i], names[i], sums[i] = int32(m.Version), m.File, m.Checksum
	}
	table := CatalogSchema + ".migrations"
	if line == lineTenant {
		table = specificTable
	}
	_, err := db.Exec(ctx, `
INSERT INTO `+table+` (tenant, version, name, checksum)
SELECT $1, v, n, c FROM unnest($2::int4[], $3::text[], $4::text[]) AS f(v, n, c)`, tenant, versions, names, sums)
	if err != nil {
		return fmt.Errorf("record %s in the catalog: %w", fileList(files), err)
	}
	return nil
}

// runFiles runs the pending files of one target inside tx, which holds the target's lock and has run
// migrationSetup, and then records them in the catalog (common line). tenant create uses it.
func runFiles(ctx context.Context, tx pgx.Tx, tenant string, pending []migration) error {
	for _, m := range pending {
		if err := execFile(ctx, tx, m); err != nil {
			return err
		}
	}
	return recordFiles(ctx, tx, tenant, lineCommon, pending)
}

// queueLock queues the transaction-level lock of one target (tenant "" is the shared schema). Create,
// drop, backup, restore and migrations of one tenant take it, so they never interleave.
func queueLock(b *pgx.Batch, tenant string) {
	b.Queue("SELECT pg_advisory_xact_lock($1, hashtext($2))", lockClassTenant, tenant)
}

// lockTarget takes the lock of queueLock at once.
func lockTarget(ctx context.Context, tx pgx.Tx, tenant string) error {
	b := &pgx.Batch{}
	queueLock(b, tenant)
	return tx.SendBatch(ctx, b).Close()
}

// target is one schema to migrate: a tenant, or the shared schema (tenant "").
type target struct {
	tenant, schema string
	common         []migration // the common line (or the shared files)
	specific       []migration // the tenant's own line
	to             int         // common versions up to to only (0: all)
}

// targetResult is what a target's run did.
type targetResult struct {
	applied []migration
	retries int  // runs retried because a lock was not granted in time
	gaveUp  bool // the lock was still not granted after every retry
}

// migrateTarget migrates one target (common files only) and returns the files it applied. For a
// tenant it does nothing when the tenant is no longer in the catalog.
func migrateTarget(ctx context.Context, conn *pgx.Conn, cfg *config.Config, tenant, schema string, files []migration, to int) ([]migration, error) {
	res, err := runTarget(ctx, conn, cfg, target{tenant: tenant, schema: schema, common: files, to: to})
	return res.applied, err
}

// runTarget migrates one target, retrying with backoff when a lock is not granted.
func runTarget(ctx context.Context, conn *pgx.Conn, cfg *config.Config, t target) (targetResult, error) {
	var res targetResult
	retries := migrationRetries(cfg)
	for {
		applied, done, err := stepTarget(ctx, conn, cfg, t)
		res.applied = append(res.applied, applied...)
		switch {
		case err == nil && done:
			return res, nil
		case err == nil:
			continue
		case lockNotGranted(err) && res.retries < retries:
			res.retries++
			timer := time.NewTimer(retryBackoff(res.retries))
			select {
			case <-ctx.Done():
				timer.Stop()
				return res, ctx.Err()
			case <-timer.C:
			}
		default:
			if lockNotGranted(err) {
				res.gaveUp = true
				err = fmt.Errorf("gave up after %d retries: %w", res.retries, err)
			}
			return res, err
		}
	}
}

// targetState is a target's records, read under its lock.
type targetState struct {
	exists          bool
	common, special []appliedMigration
}

// pendingStep is one file to apply, of one line.
type pendingStep struct {
	line string
	m    migration
}

func (t target) pending(st targetState) ([]pendingStep, error) {
	var out []pendingStep
	common, err := plan(t.common, st.common, t.to)
	if err != nil {
		return nil, err
	}
	for _, m := range common {
		out = append(out, pendingStep{lineCommon, m})
	}
	special, err := plan(t.specific, st.special, 0)
	if err != nil {
		return nil, fmt.Errorf("tenant-specific line: %w", err)
	}
	for _, m := range special {
		out = append(out, pendingStep{lineTenant, m})
	}
	return out, nil
}

// queueState queues the lock, the timeouts and the reads of a target's records.
func queueState(b *pgx.Batch, cfg *config.Config, t target, st *targetState) {
	for _, s := range timeoutSetup(cfg, true) {
		b.Queue(s)
	}
	queueLock(b, t.tenant)
	st.exists = true
	if t.tenant == "" {
		b.Queue("CREATE SCHEMA IF NOT EXISTS " + q(SharedSchema) + " AUTHORIZATION " + q(cfg.Admin.OwnerRole))
		b.Queue("REVOKE ALL ON SCHEMA " + q(SharedSchema) + " FROM PUBLIC")
	} else {
		b.Queue("SELECT EXISTS (SELECT FROM tenantproxy.tenants WHERE name = $1 AND schema = $2)", t.tenant, t.schema).
			QueryRow(func(r pgx.Row) error { return r.Scan(&st.exists) })
	}
	queueApplied(b, t.tenant, &st.common)
	if t.tenant != "" {
		b.Queue("SELECT version, name, checksum FROM "+specificTable+" WHERE tenant = $1 ORDER BY version", t.tenant).
			Query(func(rows pgx.Rows) error {
				var err error
				st.special, err = pgx.CollectRows(rows, pgx.RowToStructByPos[appliedMigration])
				return err
			})
	}
}

// stepTarget applies the next stretch of transactional files, or the next no-transaction file, and says
// whether nothing is left.
func stepTarget(ctx context.Context, conn *pgx.Conn, cfg *config.Config, t target) ([]migration, bool, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, false, err
	}
	defer tx.Rollback(context.Background())
	var st targetState
	b := &pgx.Batch{}
	queueState(b, cfg, t, &st)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, false, catalogError(err)
	}
	if !st.exists {
		return nil, true, nil
	}
	steps, err := t.pending(st)
	if err != nil || len(steps) == 0 {
		return nil, true, err
	}
	if steps[0].m.NoTx {
		tx.Rollback(ctx)
		if err := runNoTx(ctx, conn, cfg, t, steps[0]); err != nil {
			return nil, false, err
		}
		return []migration{steps[0].m}, len(steps) == 1, nil
	}
	n := 0
	for n < len(steps) && !steps[n].m.NoTx {
		n++
	}
	if err := execScript(ctx, tx, migrationSetup(cfg, t.schema)); err != nil {
		return nil, false, err
	}
	var done [2][]migration
	for _, s := range steps[:n] {
		if err := execFile(ctx, tx, s.m); err != nil {
			return nil, false, err
		}
		if s.line == lineTenant {
			done[1] = append(done[1], s.m)
		} else {
			done[0] = append(done[0], s.m)
		}
	}
	if err := recordFiles(ctx, tx, t.tenant, lineCommon, done[0]); err != nil {
		return nil, false, err
	}
	if err := recordFiles(ctx, tx, t.tenant, lineTenant, done[1]); err != nil {
		return nil, false, err
	}
	if t.tenant != "" {
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", NotifyChannel, migrateNotifyPayload(t, st, done[0], done[1])); err != nil {
			return nil, false, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, false, err
	}
	return append(done[0], done[1]...), n == len(steps), nil
}

// migrateNotifyPayload is the NOTIFY payload sent when a tenant's migration commits:
// "migrate TENANT VERSION" with the tenant's common version after the commit, and " SPECIFIC" (the
// version of its tenant-specific line) when the tenant has such files.
func migrateNotifyPayload(t target, st targetState, common, special []migration) string {
	v := maxVersion(st.common, common)
	p := fmt.Sprintf("migrate %s %d", t.tenant, v)
	if len(t.specific) > 0 || len(st.special) > 0 {
		p += fmt.Sprintf(" %d", maxVersion(st.special, special))
	}
	return p
}

func maxVersion(applied []appliedMigration, more []migration) int {
	v := 0
	for _, a := range applied {
		v = max(v, a.Version)
	}
	for _, m := range more {
		v = max(v, m.Version)
	}
	return v
}

var cicName = regexp.MustCompile(`(?is)^(?:\s|--[^\n]*\n)*create\s+(?:unique\s+)?index\s+concurrently\s+(?:if\s+not\s+exists\s+)?("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)`)

// runNoTx runs a no-transaction file of a target (a tenant, or the shared schema) statement by
// statement under the target's session-level lock, resuming after the statements a previous run finished.
func runNoTx(ctx context.Context, conn *pgx.Conn, cfg *config.Config, t target, s pendingStep) (err error) {
	m := s.m
	if !utf8.ValidString(m.SQL) {
		return &migrationError{File: m.File, Err: errors.New("the file is not valid UTF-8")}
	}
	stmts, err := splitStatements(m)
	if err != nil {
		return err
	}
	if err := ensureMigrationCatalog(ctx, conn, cfg); err != nil {
		return err
	}
	if err := execScript(ctx, conn, timeoutSetup(cfg, false)); err != nil {
		return err
	}
	defer func() {
		// A connection left in an unknown state is closed; the worker reconnects.
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if rerr := execScript(rctx, conn, []string{"RESET ROLE", "RESET search_path", "RESET lock_timeout", "RESET statement_timeout",
			fmt.Sprintf("SELECT pg_advisory_unlock(%d, hashtext(%s))", lockClassTenant, lit(t.tenant))}); rerr != nil {
			conn.Close(rctx)
		}
	}()
	// The admin role takes the lock: hardening revokes the advisory lock functions from the owner role.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, hashtext($2))", lockClassTenant, t.tenant); err != nil {
		return err
	}
	if err := execScript(ctx, conn, []string{"SET ROLE " + q(cfg.Admin.OwnerRole), "SET search_path TO " + q(t.schema)}); err != nil {
		return err
	}
	var recorded bool
	var doneSum *string
	var done int
	table := CatalogSchema + ".migrations"
	if s.line == lineTenant {
		table = specificTable
	}
	err = conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM `+table+` WHERE tenant = $1 AND version = $2),
  (SELECT checksum FROM `+progressTable+` WHERE tenant = $1 AND line = $3 AND version = $2),
  coalesce((SELECT statements FROM `+progressTable+` WHERE tenant = $1 AND line = $3 AND version = $2), 0)`,
		t.tenant, m.Version, s.line).Scan(&recorded, &doneSum, &done)
	if err != nil || recorded {
		return err
	}
	if doneSum != nil && *doneSum != m.Checksum {
		return &migrationError{File: m.File, Err: fmt.Errorf("the file changed after %d of its statements ran (checksum %.12s… then, %.12s… now); restore it", done, *doneSum, m.Checksum)}
	}
	for i := done; i < len(stmts); i++ {
		if _, err := conn.Exec(ctx, stmts[i], pgx.QueryExecModeSimpleProtocol); err != nil {
			dropInvalidIndex(conn, t.schema, stmts[i])
			var me *migrationError
			if errors.As(newMigrationError(migration{File: m.File, SQL: stmts[i]}, err), &me) {
				me.Err = fmt.Errorf("statement %d of %d: %w", i+1, len(stmts), me.Err)
				me.Line = 0
				return me
			}
			return err
		}
		if conn.PgConn().TxStatus() != 'I' {
			return &migrationError{File: m.File, Err: fmt.Errorf("statement %d of %d left a transaction open; a no-transaction file must not contain BEGIN", i+1, len(stmts))}
		}
		if _, err := conn.Exec(ctx, `INSERT INTO `+progressTable+` (tenant, line, version, checksum, statements) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (tenant, line, version) DO UPDATE SET statements = excluded.statements, updated_at = now()`, t.tenant, s.line, m.Version, m.Checksum, i+1); err != nil {
			return fmt.Errorf("%s: record progress: %w", m.File, err)
		}
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	var st targetState
	b := &pgx.Batch{}
	queueApplied(b, t.tenant, &st.common)
	b.Queue("SELECT version, name, checksum FROM "+specificTable+" WHERE tenant = $1 ORDER BY version", t.tenant).
		Query(func(rows pgx.Rows) error {
			var err error
			st.special, err = pgx.CollectRows(rows, pgx.RowToStructByPos[appliedMigration])
			return err
		})
	b.Queue("DELETE FROM "+progressTable+" WHERE tenant = $1 AND line = $2 AND version = $3", t.tenant, s.line, m.Version)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	var common, special []migration
	if s.line == lineTenant {
		special = []migration{m}
	} else {
		common = []migration{m}
	}
	if err := recordFiles(ctx, tx, t.tenant, s.line, []migration{m}); err != nil {
		return err
	}
	if t.tenant != "" {
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", NotifyChannel, migrateNotifyPayload(t, st, common, special)); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// dropInvalidIndex removes the INVALID index that a failed CREATE INDEX CONCURRENTLY leaves behind, so
// that the retry builds it again instead of tripping on (or, with IF NOT EXISTS, keeping) the husk.
func dropInvalidIndex(conn *pgx.Conn, schema, stmt string) {
	m := cicName.FindStringSubmatch(stmt)
	if m == nil || conn.IsClosed() || conn.PgConn().TxStatus() != 'I' {
		return
	}
	name := m[1]
	if strings.HasPrefix(name, `"`) {
		name = strings.ReplaceAll(name[1:len(name)-1], `""`, `"`)
	} else {
		name = strings.ToLower(name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var invalid bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND NOT x.indisvalid)`, schema, name).Scan(&invalid)
	if err == nil && invalid {
		conn.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+q(schema)+"."+q(name))
	}
}
