package tenants

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// `migrate down --to V` undoes the common migrations above V of each tenant, newest first, with the
// optional NNNN_description.down.sql file beside each NNNN_description.sql: all of one tenant's in one
// transaction, lock-safe and retried like `migrate up`, deleting their records. A tenant whose records
// do not match the files (checksums), or with a version above V that has no .down.sql file, is refused
// and left as it is.
//
// `migrate repair --tenant NAME` is for a tenant whose schema was fixed by hand: it builds the reference
// schema of every prefix of the common line (no files, the first, the first two, ...), finds the longest
// one that the tenant's schema matches exactly, and rewrites the tenant's records to those files. A
// record whose file is gone or whose checksum differs from its file is still refused: repair does not
// launder an edited migration file.

// downOptions are the flags of `migrate down`.
type downOptions struct {
	to       int
	tenant   string
	parallel int
}

// withRetries runs fn, again after a backoff when it failed because a lock was not granted in time.
func withRetries(ctx context.Context, cfg *config.Config, fn func() error) (targetResult, error) {
	var res targetResult
	for {
		err := fn()
		if err == nil || !lockNotGranted(err) {
			return res, err
		}
		if res.retries >= migrationRetries(cfg) {
			res.gaveUp = true
			return res, fmt.Errorf("gave up after %d retries: %w", res.retries, err)
		}
		res.retries++
		t := time.NewTimer(retryBackoff(res.retries))
		select {
		case <-ctx.Done():
			t.Stop()
			return res, ctx.Err()
		case <-t.C:
		}
	}
}

// downFiles are the files to undo for one tenant, newest first, or why it must not run.
func downFiles(files []migration, applied []appliedMigration, to int) ([]migration, error) {
	if _, err := plan(files, applied, 0); err != nil {
		return nil, err
	}
	byVersion := map[int]migration{}
	for _, f := range files {
		byVersion[f.Version] = f
	}
	var out []migration
	for _, a := range applied {
		if a.Version <= to {
			continue
		}
		f := byVersion[a.Version]
		if f.DownFile == "" {
			return nil, fmt.Errorf("%s has no .down.sql file; cannot go below version %04d", f.File, f.Version)
		}
		out = append(out, migration{Version: f.Version, File: f.DownFile, SQL: f.Down})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version > out[j].Version })
	return out, nil
}

// downTenant undoes one tenant's migrations above to in one transaction.
func downTenant(ctx context.Context, conn *pgx.Conn, cfg *config.Config, t tenantRef, files []migration, to int) ([]migration, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.Background())
	tg := target{tenant: t.Name, schema: t.Schema}
	var st targetState
	b := &pgx.Batch{}
	queueState(b, cfg, tg, &st)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, catalogError(err)
	}
	if !st.exists {
		return nil, nil
	}
	undo, err := downFiles(files, st.common, to)
	if err != nil || len(undo) == 0 {
		return nil, err
	}
	if err := execScript(ctx, tx, migrationSetup(cfg, t.Schema)); err != nil {
		return nil, err
	}
	for _, m := range undo {
		if err := execFile(ctx, tx, m); err != nil {
			return nil, err
		}
	}
	if _, err := tx.Exec(ctx, "DELETE FROM tenantproxy.migrations WHERE tenant = $1 AND version > $2", t.Name, to); err != nil {
		return nil, err
	}
	var left []appliedMigration
	for _, a := range st.common {
		if a.Version <= to {
			left = append(left, a)
		}
	}
	st.common = left
	if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", NotifyChannel, migrateNotifyPayload(tg, st, nil, nil)); err != nil {
		return nil, err
	}
	return undo, tx.Commit(ctx)
}

// migrateDown runs `migrate down`.
func migrateDown(ctx context.Context, cfg *config.Config, opts downOptions, stdout, stderr io.Writer) error {
	ms, err := loadMigrationSet(cfg)
	if err != nil {
		return err
	}
	conn, err := connectAdmin(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := acquireMigrateLock(ctx, conn); err != nil {
		return err
	}
	defer releaseMigrateLock(conn)
	if err := ensureMigrationCatalog(ctx, conn, cfg); err != nil {
		return err
	}
	all, err := catalogTenants(ctx, conn, cfg)
	if err != nil {
		return err
	}
	tenants, err := selectTenants(all, migrateOptions{tenant: opts.tenant})
	if err != nil {
		return err
	}
	queue := make(chan tenantRef)
	type result struct {
		t    tenantRef
		undo []migration
		res  targetResult
		err  error
	}
	results := make(chan result)
	var wg sync.WaitGroup
	for range min(opts.parallel, max(len(tenants), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *pgx.Conn
			defer func() {
				if c != nil {
					c.Close(context.Background())
				}
			}()
			for t := range queue {
				if c == nil || c.IsClosed() {
					if c, err = connectAdmin(ctx, cfg, ""); err != nil {
						results <- result{t: t, err: err}
						c = nil
						continue
					}
				}
				var undo []migration
				res, err := withRetries(ctx, cfg, func() error {
					var err error
					undo, err = downTenant(ctx, c, cfg, t, ms.tenant, opts.to)
					return err
				})
				results <- result{t, undo, res, err}
			}
		}()
	}
	go func() {
		defer close(queue)
		for _, t := range tenants {
			select {
			case queue <- t:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(results)
	}()
	undone, failed, files := 0, 0, 0
	for r := range results {
		switch {
		case r.err != nil:
			failed++
			fmt.Fprintf(stderr, "%s: error: %v\n", r.t.Name, r.err)
		case len(r.undo) > 0:
			undone++
			files += len(r.undo)
			fmt.Fprintf(stdout, "%s: undid %s\n", r.t.Name, fileList(r.undo))
		}
	}
	fmt.Fprintf(stdout, "migrate down --to %04d: %d tenants: %d moved down, %d already at or below, %d failed; %d files run\n",
		opts.to, len(tenants), undone, len(tenants)-undone-failed, failed, files)
	if failed > 0 {
		return fmt.Errorf("%d of %d tenants failed (see the lines above)", failed, len(tenants))
	}
	return ctx.Err()
}

// migrateRepair runs `migrate repair --tenant NAME`.
func migrateRepair(ctx context.Context, cfg *config.Config, name string, dryRun bool, stdout io.Writer) error {
	ms, err := loadMigrationSet(cfg)
	if err != nil {
		return err
	}
	conn, err := connectAdmin(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := acquireMigrateLock(ctx, conn); err != nil {
		return err
	}
	defer releaseMigrateLock(conn)
	all, err := catalogTenants(ctx, conn, cfg)
	if err != nil {
		return err
	}
	i := indexTenant(all, name)
	if i < 0 {
		return fmt.Errorf("tenant %q does not exist", name)
	}
	t := all[i]
	applied, err := readAllApplied(ctx, conn)
	if err != nil {
		return err
	}
	byVersion := map[int]migration{}
	for _, f := range ms.tenant {
		byVersion[f.Version] = f
	}
	for _, a := range applied[name] {
		f, ok := byVersion[a.Version]
		switch {
		case !ok:
			return fmt.Errorf("migration %04d (%s) is recorded but its file is gone; restore the file first", a.Version, a.File)
		case f.Checksum != a.Checksum:
			return fmt.Errorf("%s was changed after it was applied (checksum %.12s… recorded, %.12s… now); restore the file and put the change in a new migration", f.File, a.Checksum, f.Checksum)
		}
	}

	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if err := lockTarget(ctx, tx, name); err != nil {
		return err
	}
	// The tenant's applied tenant-specific files are part of every candidate: repair re-syncs the common
	// line only.
	special, err := readSpecificIfAny(ctx, tx)
	if err != nil {
		return err
	}
	own, err := specificFor(cfg, ms, name)
	if err == nil {
		own, err = appliedFiles(own, special[name])
	}
	if err != nil {
		return fmt.Errorf("tenant %q: tenant-specific line: %w", name, err)
	}
	lists := make([][]migration, len(ms.tenant)+1)
	for k := range lists {
		lists[k] = append(slices.Clone(ms.tenant[:k]), own...)
	}
	if _, err := tx.Exec(ctx, "SAVEPOINT refs"); err != nil {
		return err
	}
	refs, err := buildReferences(ctx, tx, cfg, lists)
	if err != nil {
		return err
	}
	objs, err := schemaObjects(ctx, tx, append([]string{t.Schema}, refs...))
	if err != nil {
		return err
	}
	have := objs[t.Schema]
	match, closest, closestDiff := -1, 0, -1
	var diff []string
	for k, r := range refs {
		var d []string
		for o := range objs[r] {
			if !have[o] {
				d = append(d, "missing  "+o)
			}
		}
		for o := range have {
			if !objs[r][o] {
				d = append(d, "extra    "+o)
			}
		}
		if len(d) == 0 {
			match = k
		}
		if closestDiff < 0 || len(d) < closestDiff {
			closest, closestDiff, diff = k, len(d), d
		}
	}
	if match < 0 {
		sort.Strings(diff)
		fmt.Fprintf(stdout, "tenant %s: its schema matches no version of the migrations; closest is version %04d, which differs by:\n", name, versionAt(ms.tenant, closest))
		for _, d := range diff {
			fmt.Fprintf(stdout, "  %s\n", d)
		}
		return fmt.Errorf("tenant %q: nothing repaired; fix the schema by hand to match a version first", name)
	}
	if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT refs"); err != nil {
		return err
	}
	want := ms.tenant[:match]
	recorded := map[int]bool{}
	for _, a := range applied[name] {
		recorded[a.Version] = true
	}
	var add []migration
	keep := map[int]bool{}
	for _, f := range want {
		keep[f.Version] = true
		if !recorded[f.Version] {
			add = append(add, f)
		}
	}
	var drop []string
	for _, a := range applied[name] {
		if !keep[a.Version] {
			drop = append(drop, a.File)
		}
	}
	v := versionAt(ms.tenant, match)
	if len(add) == 0 && len(drop) == 0 {
		fmt.Fprintf(stdout, "tenant %s: its schema matches version %04d and so do its records; nothing to repair\n", name, v)
		return nil
	}
	verb := "repaired"
	if dryRun {
		verb = "would repair"
	} else {
		if err := recordFiles(ctx, tx, name, lineCommon, add); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM tenantproxy.migrations WHERE tenant = $1 AND version > $2", name, v); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", NotifyChannel, fmt.Sprintf("migrate %s %d", name, v)); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "tenant %s: its schema matches version %04d; %s its records: recorded %d (%s), removed %d (%s)\n",
		name, v, verb, len(add), fileList(add), len(drop), joinOr(drop))
	return nil
}

func versionAt(files []migration, k int) int {
	if k == 0 {
		return 0
	}
	return files[k-1].Version
}

func joinOr(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return fmt.Sprint(s)
}
