package tenants

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/config"
)

// Migrations are files named NNNN_description.sql in [migrations] dir (tenant schemas) and
// [migrations] shared_dir (the shared schema, applied once). The version is NNNN as an integer; other
// files are ignored; two files with one version are an error; NNNN_description.down.sql undoes NNNN.
// A target's pending transactional files run in ONE transaction, as the owner role with search_path set
// to the target's schema only and under [migrations] lock_timeout and statement_timeout: a failing file
// rolls back that target's whole run, other tenants go on, and a rerun starts that target again from its
// first pending file. No-transaction files, the tenant-specific line, waves, drift, down and repair are in
// migrate_run.go, migrate_specific.go, migrate_rollout.go, migrate_drift.go and migrate_down.go; the
// operator's reference is docs/migrations.md.
// An applied file whose content changed (sha256), an applied version whose file is gone, and a pending
// version below an applied one are refused for that target.

// migration is one versioned SQL file.
type migration struct {
	Version  int
	File     string // base name, e.g. 0001_create_employees.sql; tenants/NAME/0001_x.sql for a tenant's own
	SQL      string
	Checksum string // hex sha256 of the file's bytes
	// NoTx is the header "-- tenantproxy: no-transaction": the file runs statement by statement.
	NoTx bool
	// Targets are the tenants and migration groups of the header "-- tenantproxy: tenants a,b"; a file
	// with targets belongs to the tenant-specific line of each of them, not to the common line.
	Targets []string
	// Down is the optional NNNN_description.down.sql of the same version (empty: none).
	Down, DownFile string
}

// appliedMigration is one row of tenantproxy.migrations.
type appliedMigration struct {
	Version  int
	File     string
	Checksum string
}

var (
	migrationFile = regexp.MustCompile(`^([0-9]+)_([^/]+)\.sql$`)
	downFile      = regexp.MustCompile(`^([0-9]+)_([^/]+)\.down\.sql$`)
	headerLine    = regexp.MustCompile(`^--\s*tenantproxy:\s*(.*?)\s*$`)
)

// parseHeader reads the "-- tenantproxy: ..." directives of the comment lines that open a file.
func parseHeader(m *migration) error {
	for _, line := range strings.Split(m.SQL, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, "--") {
			return nil
		}
		h := headerLine.FindStringSubmatch(line)
		if h == nil {
			continue
		}
		word, rest, _ := strings.Cut(h[1], " ")
		switch word {
		case "no-transaction":
			if strings.TrimSpace(rest) != "" {
				return fmt.Errorf("%s: header %q takes no argument", m.File, line)
			}
			m.NoTx = true
		case "tenants":
			for _, n := range strings.Split(rest, ",") {
				if n = strings.TrimSpace(n); n != "" {
					m.Targets = append(m.Targets, n)
				}
			}
			if len(m.Targets) == 0 {
				return fmt.Errorf("%s: header %q names no tenant", m.File, line)
			}
		default:
			return fmt.Errorf("%s: unknown header %q (known: no-transaction, tenants NAME,...)", m.File, line)
		}
	}
	return nil
}

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
	downs := map[int]string{}
	var out []migration
	for _, e := range entries {
		if d := downFile.FindStringSubmatch(e.Name()); d != nil && !e.IsDir() {
			v, _ := strconv.Atoi(d[1])
			if prev, dup := downs[v]; dup {
				return nil, fmt.Errorf("migrations: %s and %s both undo version %d", prev, e.Name(), v)
			}
			downs[v] = e.Name()
			continue
		}
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
		mg := migration{Version: v, File: e.Name(), SQL: string(b), Checksum: hex.EncodeToString(sum[:])}
		if err := parseHeader(&mg); err != nil {
			return nil, fmt.Errorf("migrations: %w", err)
		}
		out = append(out, mg)
	}
	for i := range out {
		name, ok := downs[out[i].Version]
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("migrations: %w", err)
		}
		out[i].Down, out[i].DownFile = string(b), name
		delete(downs, out[i].Version)
	}
	for v, name := range downs {
		return nil, fmt.Errorf("migrations: %s undoes version %d, which has no file", name, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// migrationSet is every migration file of the config.
type migrationSet struct {
	tenant, shared []migration
	// specific are the tenant-specific files: those of [migrations] dir and dir/tenants/ with a
	// "tenants" header, and those of dir/tenants/NAME/ (Targets is then NAME).
	specific []migration
}

func loadMigrationSet(cfg *config.Config) (migrationSet, error) {
	var ms migrationSet
	var err error
	dir := resolveDir(cfg, cfg.Migrations.Dir)
	all, err := loadMigrations(dir)
	if err != nil {
		return ms, err
	}
	for _, m := range all {
		if len(m.Targets) > 0 {
			ms.specific = append(ms.specific, m)
		} else {
			ms.tenant = append(ms.tenant, m)
		}
	}
	if ms.specific, err = loadSpecific(dir, ms.specific); err != nil {
		return ms, err
	}
	if ms.shared, err = loadMigrations(resolveDir(cfg, cfg.Migrations.SharedDir)); err != nil {
		return ms, fmt.Errorf("shared %w", err)
	}
	for _, m := range ms.shared {
		if len(m.Targets) > 0 {
			return ms, fmt.Errorf("shared migrations: %s: the shared schema has no tenant-specific files (header \"tenants\")", m.File)
		}
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
