package tenants

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/config"
)

// Migrations are files named NNNN_description.sql in [migrations] dir (tenant schemas) and
// [migrations] shared_dir (the shared schema, applied once). The version is NNNN as an integer; other
// files are ignored; two files with one version are an error. A target's run is ONE transaction, as the
// owner role with search_path set to the target's schema only: a failing file rolls back that target's
// whole run, other tenants go on, and a rerun starts that target again from its first pending file.
// An applied file whose content changed (sha256), an applied version whose file is gone, and a pending
// version below an applied one are refused for that target.

// migration is one versioned SQL file.
type migration struct {
	Version  int
	File     string // base name, e.g. 0001_create_employees.sql
	SQL      string
	Checksum string // hex sha256 of the file's bytes
}

// appliedMigration is one row of tenantproxy.migrations.
type appliedMigration struct {
	Version  int
	File     string
	Checksum string
}

var migrationFile = regexp.MustCompile(`^([0-9]+)_([^/]+)\.sql$`)

// resolveDir makes a relative [migrations] path relative to the config file's directory.
func resolveDir(cfg *config.Config, dir string) string {
	if dir == "" || filepath.IsAbs(dir) || cfg.Path == "" {
		return dir
	}
	return filepath.Join(filepath.Dir(cfg.Path), dir)
}

// loadMigrations reads the migration files of dir in version order; an empty dir name means none.
func loadMigrations(dir string) ([]migration, error) {
	if dir == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	byVersion := map[int]string{}
	var out []migration
	for _, e := range entries {
		m := migrationFile.FindStringSubmatch(e.Name())
		if m == nil || e.IsDir() {
			continue
		}
		v, err := strconv.Atoi(m[1])
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migrations: %s: version %q must be a positive integer", filepath.Join(dir, e.Name()), m[1])
		}
		if prev, dup := byVersion[v]; dup {
			return nil, fmt.Errorf("migrations: %s and %s both have version %d", prev, e.Name(), v)
		}
		byVersion[v] = e.Name()
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("migrations: %w", err)
		}
		sum := sha256.Sum256(b)
		out = append(out, migration{Version: v, File: e.Name(), SQL: string(b), Checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// migrationSet is every migration file of the config.
type migrationSet struct {
	tenant, shared []migration
}

func loadMigrationSet(cfg *config.Config) (migrationSet, error) {
	var ms migrationSet
	var err error
	if ms.tenant, err = loadMigrations(resolveDir(cfg, cfg.Migrations.Dir)); err != nil {
		return ms, err
	}
	if ms.shared, err = loadMigrations(resolveDir(cfg, cfg.Migrations.SharedDir)); err != nil {
		return ms, fmt.Errorf("shared %w", err)
	}
	return ms, nil
}

// plan returns the files to apply on top of applied, up to version to (0: all), or why it must not run.
func plan(files []migration, applied []appliedMigration, to int) ([]migration, error) {
	byVersion := map[int]migration{}
	for _, f := range files {
		byVersion[f.Version] = f
	}
	done := map[int]bool{}
	maxApplied := 0
	for _, a := range applied {
		f, ok := byVersion[a.Version]
		switch {
		case !ok:
			return nil, fmt.Errorf("migration %04d (%s) was applied but its file is gone; restore the file", a.Version, a.File)
		case f.Checksum != a.Checksum:
			return nil, fmt.Errorf("%s was changed after it was applied (checksum %.12s… recorded, %.12s… now); restore the file and put the change in a new migration",
				f.File, a.Checksum, f.Checksum)
		}
		done[a.Version] = true
		maxApplied = max(maxApplied, a.Version)
	}
	var pending []migration
	for _, f := range files {
		if done[f.Version] || (to > 0 && f.Version > to) {
			continue
		}
		if f.Version < maxApplied {
			return nil, fmt.Errorf("%s is not applied but version %04d is; renumber it above %04d", f.File, maxApplied, maxApplied)
		}
		pending = append(pending, f)
	}
	return pending, nil
}

// queueApplied queues the read of one target's applied migrations (tenant "" is the shared schema).
func queueApplied(b *pgx.Batch, tenant string, out *[]appliedMigration) {
	b.Queue("SELECT version, name, checksum FROM tenantproxy.migrations WHERE tenant = $1 ORDER BY version", tenant).
		Query(func(rows pgx.Rows) error {
			var err error
			*out, err = pgx.CollectRows(rows, pgx.RowToStructByPos[appliedMigration])
			return err
		})
}

// readAllApplied reads every applied migration, by tenant.
func readAllApplied(ctx context.Context, db querier) (map[string][]appliedMigration, error) {
	rows, err := db.Query(ctx, "SELECT tenant, version, name, checksum FROM tenantproxy.migrations ORDER BY tenant, version")
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

// migrationError is a failed migration file, with the line the server pointed at.
type migrationError struct {
	File string
	Line int
	Err  error
}

func (e *migrationError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s line %d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *migrationError) Unwrap() error { return e.Err }

func newMigrationError(m migration, err error) error {
	me := &migrationError{File: m.File, Err: err}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Position > 0 {
		runes := 0
		me.Line = 1
		for _, r := range m.SQL {
			runes++
			if runes >= int(pe.Position) {
				break
			}
			if r == '\n' {
				me.Line++
			}
		}
		if pe.Detail != "" {
			me.Err = fmt.Errorf("%w: %s", err, pe.Detail)
		}
	}
	return me
}

// migrationSetup switches a transaction to the owner role and the target's schema; migration files
// run after it.
func migrationSetup(cfg *config.Config, schema string) []string {
	return []string{
		"SET LOCAL ROLE " + q(cfg.Admin.OwnerRole),
		"SET LOCAL search_path TO " + q(schema),
	}
}

// runFiles runs the pending files of one target inside tx, which holds the target's lock and has run
// migrationSetup, and then records them in the catalog.
func runFiles(ctx context.Context, tx pgx.Tx, tenant string, pending []migration) error {
	if len(pending) == 0 {
		return nil
	}
	versions, names, sums := make([]int32, len(pending)), make([]string, len(pending)), make([]string, len(pending))
	for i, m := range pending {
		if !utf8.ValidString(m.SQL) {
			return &migrationError{File: m.File, Err: errors.New("the file is not valid UTF-8")}
		}
		if _, err := tx.Exec(ctx, m.SQL, pgx.QueryExecModeSimpleProtocol); err != nil {
			return newMigrationError(m, err)
		}
		if st := tx.Conn().PgConn().TxStatus(); st != 'T' {
			return &migrationError{File: m.File, Err: fmt.Errorf("the file ended the transaction (transaction status %q); migrations must not contain COMMIT or ROLLBACK, and this target may be partly migrated", st)}
		}
		versions[i], names[i], sums[i] = int32(m.Version), m.File, m.Checksum
	}
	_, err := tx.Exec(ctx, `
INSERT INTO tenantproxy.migrations (tenant, version, name, checksum)
SELECT $1, v, n, c FROM unnest($2::int4[], $3::text[], $4::text[]) AS f(v, n, c)`, tenant, versions, names, sums)
	if err != nil {
		return fmt.Errorf("record %s in the catalog: %w", fileList(pending), err)
	}
	return nil
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

// migrateTarget migrates one target in one transaction and returns the files it applied. For a tenant
// it does nothing when the tenant is no longer in the catalog.
func migrateTarget(ctx context.Context, conn *pgx.Conn, cfg *config.Config, tenant, schema string, files []migration, to int) ([]migration, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.Background())
	b := &pgx.Batch{}
	queueLock(b, tenant)
	exists := true
	if tenant == "" {
		b.Queue("CREATE SCHEMA IF NOT EXISTS " + q(SharedSchema) + " AUTHORIZATION " + q(cfg.Admin.OwnerRole))
		b.Queue("REVOKE ALL ON SCHEMA " + q(SharedSchema) + " FROM PUBLIC")
	} else {
		b.Queue("SELECT EXISTS (SELECT FROM tenantproxy.tenants WHERE name = $1 AND schema = $2)", tenant, schema).
			QueryRow(func(r pgx.Row) error { return r.Scan(&exists) })
	}
	var applied []appliedMigration
	queueApplied(b, tenant, &applied)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, catalogError(err)
	}
	if !exists {
		return nil, nil
	}
	pending, err := plan(files, applied, to)
	if err != nil || len(pending) == 0 {
		return nil, err
	}
	if err := execScript(ctx, tx, migrationSetup(cfg, schema)); err != nil {
		return nil, err
	}
	if err := runFiles(ctx, tx, tenant, pending); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	return pending, nil
}

// migrateOptions are the flags of `migrate up`.
type migrateOptions struct {
	to       int
	tenant   string
	parallel int
	dryRun   bool
}

// acquireMigrateLock takes the session-level lock that allows one `migrate up` at a time.
func acquireMigrateLock(ctx context.Context, conn *pgx.Conn) error {
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", migrateLockKey).Scan(&ok); err != nil {
		return fmt.Errorf("take the migration lock: %w", err)
	}
	if ok {
		return nil
	}
	holder := "another session"
	var pid int32
	var app string
	var since time.Time
	err := conn.QueryRow(ctx, `
SELECT l.pid, coalesce(a.application_name, ''), coalesce(a.backend_start, now())
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.classid = ($1::bigint >> 32)::oid AND l.objid = ($1::bigint & 4294967295)::oid
LIMIT 1`, migrateLockKey).Scan(&pid, &app, &since)
	if err == nil {
		holder = fmt.Sprintf("server process %d (%s, connected %s)", pid, app, since.Format(time.RFC3339))
	}
	return fmt.Errorf("another `tenantproxy migrate up` is running (%s holds the migration lock); only one run at a time — wait for it to finish", holder)
}

// migrateUp runs `migrate up`.
func migrateUp(ctx context.Context, cfg *config.Config, opts migrateOptions, stdout, stderr io.Writer) error {
	ms, err := loadMigrationSet(cfg)
	if err != nil {
		return err
	}
	conn, err := connectAdmin(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if !opts.dryRun {
		if err := acquireMigrateLock(ctx, conn); err != nil {
			return err
		}
	}
	tenants, err := catalogTenants(ctx, conn, cfg)
	if err != nil {
		return err
	}
	if opts.tenant != "" {
		i := indexTenant(tenants, opts.tenant)
		if i < 0 {
			return fmt.Errorf("tenant %q does not exist", opts.tenant)
		}
		tenants = tenants[i : i+1]
	}
	applied, err := readAllApplied(ctx, conn)
	if err != nil {
		return err
	}

	if len(ms.shared) > 0 && opts.tenant == "" {
		pending, err := plan(ms.shared, applied[""], opts.to)
		switch {
		case err != nil:
			fmt.Fprintf(stderr, "(shared): error: %v\n", err)
			return fmt.Errorf("shared migrations: %w; tenant migrations not run", err)
		case opts.dryRun && len(pending) > 0:
			fmt.Fprintf(stdout, "(shared): would apply %s\n", fileList(pending))
		case len(pending) > 0:
			if _, err := migrateTarget(ctx, conn, cfg, "", SharedSchema, ms.shared, opts.to); err != nil {
				fmt.Fprintf(stderr, "(shared): error: %v\n", err)
				return fmt.Errorf("shared migrations: %w; tenant migrations not run", err)
			}
			fmt.Fprintf(stdout, "(shared): applied %s\n", fileList(pending))
		}
	}

	start := time.Now()
	var jobs []tenantRef
	failed, upToDate, wouldApply := 0, 0, 0
	for _, t := range tenants {
		pending, err := plan(ms.tenant, applied[t.Name], opts.to)
		switch {
		case err != nil:
			failed++
			fmt.Fprintf(stderr, "%s: error: %v\n", t.Name, err)
		case len(pending) == 0:
			upToDate++
		case opts.dryRun:
			wouldApply += len(pending)
			fmt.Fprintf(stdout, "%s: would apply %s\n", t.Name, fileList(pending))
		default:
			jobs = append(jobs, t)
		}
	}
	if opts.dryRun {
		fmt.Fprintf(stdout, "migrate up --dry-run: %d tenants, %d to migrate (%d files), %d up to date, %d refused; nothing was changed\n",
			len(tenants), len(tenants)-upToDate-failed, wouldApply, upToDate, failed)
		if failed > 0 {
			return fmt.Errorf("%d tenants would be refused", failed)
		}
		return nil
	}

	res := runMigrations(ctx, cfg, ms.tenant, opts, jobs, stdout, stderr)
	failed += res.failed
	fmt.Fprintf(stdout, "migrate up: %d tenants: %d migrated, %d up to date, %d failed; %d files applied in %s\n",
		len(tenants), res.migrated, upToDate+res.upToDate, failed, res.files, time.Since(start).Round(time.Millisecond))
	if failed > 0 {
		return fmt.Errorf("%d of %d tenants failed (see the lines above; a rerun resumes them)", failed, len(tenants))
	}
	return ctx.Err()
}

func indexTenant(ts []tenantRef, name string) int {
	for i, t := range ts {
		if t.Name == name {
			return i
		}
	}
	return -1
}

func fileList(ms []migration) string {
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.File
	}
	return strings.Join(names, ", ")
}

type runResult struct {
	migrated, upToDate, failed, files int
}

type tenantResult struct {
	tenant  tenantRef
	applied []migration
	err     error
}

// runMigrations migrates jobs over opts.parallel connections of their own and reports progress.
func runMigrations(ctx context.Context, cfg *config.Config, files []migration, opts migrateOptions,
	jobs []tenantRef, stdout, stderr io.Writer) runResult {
	var res runResult
	if len(jobs) == 0 {
		return res
	}
	workers := min(max(opts.parallel, 1), len(jobs))
	queue := make(chan tenantRef)
	results := make(chan tenantResult)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			worker(ctx, cfg, files, opts.to, queue, results)
		}()
	}
	go func() {
		defer close(queue)
		for _, j := range jobs {
			select {
			case queue <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(results)
	}()

	bar := newProgress(stdout, len(jobs))
	for r := range results {
		switch {
		case r.err != nil:
			res.failed++
			bar.printf(stderr, "%s: error: %v\n", r.tenant.Name, r.err)
		case len(r.applied) == 0:
			res.upToDate++
		default:
			res.migrated++
			res.files += len(r.applied)
			if !bar.tty {
				bar.printf(stdout, "%s: applied %s\n", r.tenant.Name, fileList(r.applied))
			}
		}
		bar.step(r.err != nil)
	}
	bar.finish()
	return res
}

// worker migrates tenants from queue on a connection of its own, reconnecting when it breaks.
func worker(ctx context.Context, cfg *config.Config, files []migration, to int, queue <-chan tenantRef, results chan<- tenantResult) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for t := range queue {
		if conn == nil || conn.IsClosed() {
			c, err := connectAdmin(ctx, cfg, "")
			if err != nil {
				results <- tenantResult{tenant: t, err: err}
				continue
			}
			conn = c
		}
		applied, err := migrateTarget(ctx, conn, cfg, t.Name, t.Schema, files, to)
		results <- tenantResult{tenant: t, applied: applied, err: err}
	}
}

// migrateStatus prints every target's version and pending count.
func migrateStatus(ctx context.Context, cfg *config.Config, asJSON bool, stdout io.Writer) error {
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
	type row struct {
		Tenant  string `json:"tenant"`
		Schema  string `json:"schema"`
		Version int    `json:"version"`
		Applied int    `json:"applied"`
		Pending int    `json:"pending"`
		Error   string `json:"error,omitempty"`
	}
	var rows []row
	add := func(name, schema string, files []migration, app []appliedMigration) {
		r := row{Tenant: name, Schema: schema, Applied: len(app)}
		for _, a := range app {
			r.Version = max(r.Version, a.Version)
		}
		pending, err := plan(files, app, 0)
		if err != nil {
			r.Error = err.Error()
		}
		r.Pending = len(pending)
		rows = append(rows, r)
	}
	if len(ms.shared) > 0 || len(applied[""]) > 0 {
		add("(shared)", SharedSchema, ms.shared, applied[""])
	}
	for _, t := range tenants {
		add(t.Name, t.Schema, ms.tenant, applied[t.Name])
	}
	bad := 0
	for _, r := range rows {
		if r.Error != "" {
			bad++
		}
	}
	if asJSON {
		if err := writeJSON(stdout, map[string]any{"latest": latestVersion(ms.tenant), "tenants": rows}); err != nil {
			return err
		}
	} else {
		tw := newTable(stdout, "TENANT", "SCHEMA", "VERSION", "APPLIED", "PENDING", "STATE")
		for _, r := range rows {
			state := "up to date"
			switch {
			case r.Error != "":
				state = "error: " + r.Error
			case r.Pending > 0:
				state = "pending"
			}
			tw.row(r.Tenant, r.Schema, fmt.Sprintf("%04d", r.Version), strconv.Itoa(r.Applied), strconv.Itoa(r.Pending), state)
		}
		if err := tw.flush(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "latest tenant migration: %04d; %d tenants\n", latestVersion(ms.tenant), len(tenants))
	}
	if bad > 0 {
		return fmt.Errorf("%d targets have migrations that cannot run", bad)
	}
	return nil
}

func latestVersion(ms []migration) int {
	if len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].Version
}
