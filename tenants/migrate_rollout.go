package tenants

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// migrateOptions are the flags of `migrate up`.
type migrateOptions struct {
	to       int
	tenant   string
	tenants  []string // --tenants a,b,c
	exclude  []string // --exclude a,b
	parallel int
	dryRun   bool
	// canary migrates the first N tenants of the rollout order and stops (or, with wave, goes on in
	// waves after them).
	canary int
	// wave is the percentage of the tenants to migrate at a time; maxFailures the failure rate, in
	// percent of the tenants attempted so far, above which the rollout stops after a wave.
	wave, maxFailures float64
}

// migrateLockWait is how long `migrate up` waits for the migration lock before it reports the holder:
// long enough for the server process of a run that just exited to finish ending.
const migrateLockWait = time.Second

// acquireMigrateLock takes the session-level lock that allows one `migrate up` at a time, waiting up to
// migrateLockWait for it.
func acquireMigrateLock(ctx context.Context, conn *pgx.Conn) error {
	deadline := time.Now().Add(migrateLockWait)
	for {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", migrateLockKey).Scan(&ok); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			break
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
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
	return fmt.Errorf("another `tenantproxy migrate up` is running (%s holds the migration lock; waited %s); only one run at a time — wait for it to finish", holder, migrateLockWait)
}

// releaseMigrateLock gives the migration lock back before the connection closes, so that the next run
// does not find it held by a server process that is still ending.
func releaseMigrateLock(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", migrateLockKey)
}

// selectTenants applies --tenant, --tenants and --exclude; a name that is not a tenant is an error.
func selectTenants(all []tenantRef, opts migrateOptions) ([]tenantRef, error) {
	known := map[string]bool{}
	for _, t := range all {
		known[t.Name] = true
	}
	only := map[string]bool{}
	for _, n := range append(append([]string{}, opts.tenants...), opts.tenant) {
		if n == "" {
			continue
		}
		if !known[n] {
			return nil, fmt.Errorf("tenant %q does not exist", n)
		}
		only[n] = true
	}
	skip := map[string]bool{}
	for _, n := range opts.exclude {
		if !known[n] {
			return nil, fmt.Errorf("tenant %q of --exclude does not exist", n)
		}
		skip[n] = true
	}
	var out []tenantRef
	for _, t := range all {
		if (len(only) == 0 || only[t.Name]) && !skip[t.Name] {
			out = append(out, t)
		}
	}
	return out, nil
}

// orderTenants sorts tenants into the rollout order: tenants with a [[tenants]] migration_group first,
// by group name, then the others; within each, small schemas first (pg_class.relpages, as of the last
// VACUUM or ANALYZE: reading it takes no lock), then by name.
func orderTenants(ctx context.Context, db querier, cfg *config.Config, ts []tenantRef) error {
	schemas := make([]string, len(ts))
	for i, t := range ts {
		schemas[i] = t.Schema
	}
	rows, err := db.Query(ctx, `SELECT n.nspname, coalesce(sum(c.relpages), 0)::bigint
FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid
WHERE n.nspname = ANY($1) GROUP BY n.nspname`, schemas)
	if err != nil {
		return err
	}
	size := map[string]int64{}
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			rows.Close()
			return err
		}
		size[s] = n
	}
	if err := rows.Err(); err != nil {
		return err
	}
	sort.SliceStable(ts, func(i, j int) bool {
		gi, gj := migrationGroup(cfg, ts[i].Name), migrationGroup(cfg, ts[j].Name)
		switch {
		case (gi == "") != (gj == ""):
			return gi != ""
		case gi != gj:
			return gi < gj
		case size[ts[i].Schema] != size[ts[j].Schema]:
			return size[ts[i].Schema] < size[ts[j].Schema]
		}
		return ts[i].Name < ts[j].Name
	})
	return nil
}

// readSpecificIfAny reads the tenant-specific records, none when their table does not exist yet.
func readSpecificIfAny(ctx context.Context, db querier) (map[string][]appliedMigration, error) {
	var have bool
	if err := db.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", specificTable).Scan(&have); err != nil {
		return nil, catalogError(err)
	}
	if !have {
		return map[string][]appliedMigration{}, nil
	}
	return readAllSpecific(ctx, db)
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
		defer releaseMigrateLock(conn)
		if err := ensureMigrationCatalog(ctx, conn, cfg); err != nil {
			return err
		}
	}
	all, err := catalogTenants(ctx, conn, cfg)
	if err != nil {
		return err
	}
	tenants, err := selectTenants(all, opts)
	if err != nil {
		return err
	}
	if err := orderTenants(ctx, conn, cfg, tenants); err != nil {
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
	selected := len(tenants) != len(all)

	if len(ms.shared) > 0 && !selected {
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
	var jobs []job
	failed, upToDate, wouldApply := 0, 0, 0
	for _, t := range tenants {
		tg := target{tenant: t.Name, schema: t.Schema, common: ms.tenant, to: opts.to}
		var steps []pendingStep
		tg.specific, err = specificFor(cfg, ms, t.Name)
		if err == nil {
			steps, err = tg.pending(targetState{common: applied[t.Name], special: special[t.Name]})
		}
		switch {
		case err != nil:
			failed++
			fmt.Fprintf(stderr, "%s: error: %v\n", t.Name, err)
		case len(steps) == 0:
			upToDate++
		case opts.dryRun:
			wouldApply += len(steps)
			files := make([]migration, len(steps))
			for i, s := range steps {
				files[i] = s.m
			}
			fmt.Fprintf(stdout, "%s: would apply %s\n", t.Name, fileList(files))
		default:
			jobs = append(jobs, job{t, tg})
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

	var res runResult
	notStarted := 0
	waves := rolloutWaves(jobs, opts)
	for k, w := range waves {
		r := runMigrations(ctx, cfg, opts, w, stdout, stderr)
		res.add(r)
		attempted := res.migrated + res.upToDate + res.failed
		rate := 100 * float64(res.failed+failed) / float64(max(attempted+failed, 1))
		if k == len(waves)-1 {
			break
		}
		left := 0
		for _, rest := range waves[k+1:] {
			left += len(rest)
		}
		if rate > opts.maxFailures || ctx.Err() != nil {
			notStarted = left
			fmt.Fprintf(stderr, "migrate up: stopped after wave %d of %d: %.1f%% of the tenants attempted failed, above --max-failures %g%%; %d tenants not started\n",
				k+1, len(waves), rate, opts.maxFailures, left)
			break
		}
	}
	if opts.canary > 0 && opts.wave == 0 && len(jobs) > opts.canary {
		notStarted = len(jobs) - opts.canary
		fmt.Fprintf(stdout, "migrate up --canary %d: stopped after the canary; %d tenants not started (rerun without --canary, or with --wave, to go on)\n",
			opts.canary, notStarted)
	}
	failed += res.failed
	summary := fmt.Sprintf("migrate up: %d tenants: %d migrated, %d up to date, %d failed", len(tenants), res.migrated, upToDate+res.upToDate, failed)
	if notStarted > 0 {
		summary += fmt.Sprintf(", %d not started", notStarted)
	}
	fmt.Fprintf(stdout, "%s; %d files applied in %s\n", summary, res.files, time.Since(start).Round(time.Millisecond))
	if len(res.retried) > 0 {
		fmt.Fprintf(stdout, "retried (lock not granted within lock_timeout): %s\n", strings.Join(res.retried, ", "))
	}
	if len(res.gaveUp) > 0 {
		fmt.Fprintf(stderr, "gave up (lock not granted after %d retries): %s\n", migrationRetries(cfg), strings.Join(res.gaveUp, ", "))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d tenants failed (see the lines above; a rerun resumes them)", failed, len(tenants))
	}
	return ctx.Err()
}

// rolloutWaves cuts the jobs, in rollout order, into the waves of --canary and --wave; without them
// all jobs are one wave.
func rolloutWaves(jobs []job, opts migrateOptions) [][]job {
	var waves [][]job
	rest := jobs
	if opts.canary > 0 {
		n := min(opts.canary, len(rest))
		waves = append(waves, rest[:n])
		rest = rest[n:]
		if opts.wave == 0 {
			return waves
		}
	}
	if opts.wave <= 0 {
		if len(rest) > 0 {
			waves = append(waves, rest)
		}
		return waves
	}
	size := max(1, int(math.Ceil(opts.wave/100*float64(len(jobs)))))
	for len(rest) > 0 {
		n := min(size, len(rest))
		waves = append(waves, rest[:n])
		rest = rest[n:]
	}
	return waves
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

// job is one tenant to migrate.
type job struct {
	tenant tenantRef
	target target
}

type runResult struct {
	migrated, upToDate, failed, files int
	retried, gaveUp                   []string
}

func (r *runResult) add(o runResult) {
	r.migrated += o.migrated
	r.upToDate += o.upToDate
	r.failed += o.failed
	r.files += o.files
	r.retried = append(r.retried, o.retried...)
	r.gaveUp = append(r.gaveUp, o.gaveUp...)
}

type tenantResult struct {
	tenant tenantRef
	res    targetResult
	err    error
}

// runMigrations migrates jobs over opts.parallel connections of their own and reports progress.
func runMigrations(ctx context.Context, cfg *config.Config, opts migrateOptions, jobs []job, stdout, stderr io.Writer) runResult {
	var res runResult
	if len(jobs) == 0 {
		return res
	}
	workers := min(max(opts.parallel, 1), len(jobs))
	queue := make(chan job)
	results := make(chan tenantResult)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			worker(ctx, cfg, queue, results)
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
		if r.res.retries > 0 {
			res.retried = append(res.retried, fmt.Sprintf("%s (%d)", r.tenant.Name, r.res.retries))
		}
		if r.res.gaveUp {
			res.gaveUp = append(res.gaveUp, r.tenant.Name)
		}
		res.files += len(r.res.applied)
		switch {
		case r.err != nil:
			res.failed++
			bar.printf(stderr, "%s: error: %v\n", r.tenant.Name, r.err)
		case len(r.res.applied) == 0:
			res.upToDate++
		default:
			res.migrated++
			if !bar.tty {
				retried := ""
				if r.res.retries > 0 {
					retried = fmt.Sprintf(" (after %d retries: lock not granted within lock_timeout)", r.res.retries)
				}
				bar.printf(stdout, "%s: applied %s%s\n", r.tenant.Name, fileList(r.res.applied), retried)
			}
		}
		bar.step(r.err != nil)
	}
	bar.finish()
	return res
}

// worker migrates tenants from queue on a connection of its own, reconnecting when it breaks.
func worker(ctx context.Context, cfg *config.Config, queue <-chan job, results chan<- tenantResult) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for j := range queue {
		if conn == nil || conn.IsClosed() {
			c, err := connectAdmin(ctx, cfg, "")
			if err != nil {
				results <- tenantResult{tenant: j.tenant, err: err}
				continue
			}
			conn = c
		}
		res, err := runTarget(ctx, conn, cfg, j.target)
		results <- tenantResult{tenant: j.tenant, res: res, err: err}
	}
}
