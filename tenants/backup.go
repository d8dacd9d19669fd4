package tenants

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// A tenant backup is a tar file holding two members:
//
//	meta.json  the tenant's catalog row and applied migrations (backupMeta, format_version 1)
//	dump.pgc   pg_dump --format=custom --schema=<schema> of the tenant's schema
//
// Restore provisions the role and an empty schema as tenant create does, runs pg_restore --no-owner
// --no-privileges --role=<owner role> into it, re-applies the grants of the (new) tenant role, and records
// the catalog and migration rows under the (new) name. Restoring under another schema name goes through a
// scratch database: the dump is restored there under its old name, the schema is renamed, and the
// renamed schema is dumped again, so the original tenant is never touched. SQL text inside function
// bodies that names the old schema explicitly is not rewritten.

const backupFormatVersion = 1

// backupMeta is meta.json.
type backupMeta struct {
	FormatVersion int               `json:"format_version"`
	Tenant        string            `json:"tenant"`
	Schema        string            `json:"schema"`
	Role          string            `json:"role"`
	Status        string            `json:"status"`
	CreatedAt     time.Time         `json:"created_at"`
	BackedUpAt    time.Time         `json:"backed_up_at"`
	ServerVersion string            `json:"server_version"`
	Migrations    []backupMigration `json:"migrations"`
}

type backupMigration struct {
	Version   int       `json:"version"`
	Name      string    `json:"name"`
	Checksum  string    `json:"checksum"`
	AppliedAt time.Time `json:"applied_at"`
}

// pgTool finds a PostgreSQL client program: first in the bin directory of the server's major version,
// then beside pg_ctl, then on PATH.
func pgTool(name string, serverMajor int) (string, error) {
	var dirs []string
	if serverMajor > 0 {
		dirs = append(dirs, fmt.Sprintf("/usr/lib/postgresql/%d/bin", serverMajor))
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append(dirs, filepath.Dir(r))
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found (looked in %s and on PATH)", name, strings.Join(dirs, ", "))
	}
	return p, nil
}

// toolRunner runs pg_dump and pg_restore against the configured server as the admin role.
type toolRunner struct {
	cfg         *config.Config
	serverMajor int
}

func (r toolRunner) run(ctx context.Context, tool, database string, args ...string) error {
	path, err := pgTool(tool, r.serverMajor)
	if err != nil {
		return err
	}
	dsn := connString(r.cfg, database, r.cfg.Admin.User, "", "tenantproxy-"+tool)
	cmd := exec.CommandContext(ctx, path, append(args, "--dbname="+dsn)...)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT="+strconv.Itoa(max(1, int(r.cfg.Backend.ConnectTimeout.Seconds()))))
	if pw := r.cfg.AdminPassword(); pw != "" {
		cmd.Env = append(cmd.Env, "PGPASSWORD="+pw)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %v: %s", tool, err, strings.TrimSpace(out.String()))
	}
	return nil
}

func serverMajor(ctx context.Context, db querier) (int, string, error) {
	var num int
	var version string
	err := db.QueryRow(ctx, "SELECT current_setting('server_version_num')::int, current_setting('server_version')").Scan(&num, &version)
	return num / 10000, version, err
}

// backupTenant writes the tenant's backup to outFile, holding the tenant's lock so that no migration
// changes it meanwhile.
func backupTenant(ctx context.Context, cfg *config.Config, name, outFile string, out io.Writer) error {
	conn, err := connectAdmin(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	major, version, err := serverMajor(ctx, conn)
	if err != nil {
		return err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if err := lockTarget(ctx, tx, name); err != nil {
		return err
	}
	meta := backupMeta{FormatVersion: backupFormatVersion, Tenant: name, ServerVersion: version, BackedUpAt: time.Now().UTC()}
	err = tx.QueryRow(ctx, "SELECT schema, status, created_at FROM tenantproxy.tenants WHERE name = $1", name).Scan(
		&meta.Schema, &meta.Status, &meta.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("tenant %q does not exist", name)
	}
	if err != nil {
		return catalogError(err)
	}
	meta.Role = cfg.TenantRole(name, meta.Schema)
	rows, err := tx.Query(ctx, "SELECT version, name, checksum, applied_at FROM tenantproxy.migrations WHERE tenant = $1 ORDER BY version", name)
	if err != nil {
		return err
	}
	if meta.Migrations, err = pgx.CollectRows(rows, pgx.RowToStructByPos[backupMigration]); err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "tenantproxy-backup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dump := filepath.Join(dir, "dump.pgc")
	tr := toolRunner{cfg: cfg, serverMajor: major}
	if err := tr.run(ctx, "pg_dump", cfg.Admin.Database, "--format=custom", "--file="+dump, "--schema="+q(meta.Schema)); err != nil {
		return fmt.Errorf("tenant %q: %w", name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	if err := writeBackup(outFile, meta, dump); err != nil {
		return fmt.Errorf("tenant %q: write %s: %w", name, outFile, err)
	}
	fmt.Fprintf(out, "tenant %s: backed up schema %s and %d migration records to %s\n", name, meta.Schema, len(meta.Migrations), outFile)
	return nil
}

// writeBackup writes the tar atomically: a temporary file in the same directory, renamed when complete.
func writeBackup(outFile string, meta backupMeta, dumpPath string) error {
	metaJSON, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(outFile), "."+filepath.Base(outFile)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	tw := tar.NewWriter(f)
	now := time.Now()
	if err := tw.WriteHeader(&tar.Header{Name: "meta.json", Mode: 0o600, Size: int64(len(metaJSON)), ModTime: now}); err != nil {
		return err
	}
	if _, err := tw.Write(metaJSON); err != nil {
		return err
	}
	d, err := os.Open(dumpPath)
	if err != nil {
		return err
	}
	defer d.Close()
	st, err := d.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "dump.pgc", Mode: 0o600, Size: st.Size(), ModTime: now}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, d); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), outFile)
}

// readBackup reads meta.json and extracts dump.pgc into dir.
func readBackup(file, dir string) (backupMeta, string, error) {
	var meta backupMeta
	f, err := os.Open(file)
	if err != nil {
		return meta, "", err
	}
	defer f.Close()
	dump := filepath.Join(dir, "dump.pgc")
	var haveMeta, haveDump bool
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return meta, "", fmt.Errorf("%s is not a tenant backup: %w", file, err)
		}
		switch h.Name {
		case "meta.json":
			b, err := io.ReadAll(io.LimitReader(tr, 16<<20))
			if err != nil {
				return meta, "", err
			}
			if err := json.Unmarshal(b, &meta); err != nil {
				return meta, "", fmt.Errorf("%s: meta.json: %w", file, err)
			}
			haveMeta = true
		case "dump.pgc":
			d, err := os.Create(dump)
			if err != nil {
				return meta, "", err
			}
			_, err = io.Copy(d, tr)
			if cerr := d.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return meta, "", err
			}
			haveDump = true
		}
	}
	switch {
	case !haveMeta || !haveDump:
		return meta, "", fmt.Errorf("%s is not a tenant backup: it needs meta.json and dump.pgc", file)
	case meta.FormatVersion != backupFormatVersion:
		return meta, "", fmt.Errorf("%s: backup format %d is not supported (this tenantproxy reads format %d)", file, meta.FormatVersion, backupFormatVersion)
	case meta.Status != StatusActive && meta.Status != StatusSuspended:
		return meta, "", fmt.Errorf("%s: meta.json has status %q", file, meta.Status)
	}
	sort.Slice(meta.Migrations, func(i, j int) bool { return meta.Migrations[i].Version < meta.Migrations[j].Version })
	return meta, dump, nil
}

// restoreOptions are the flags of `tenant restore`.
type restoreOptions struct {
	as, schema string
}

// restoreTenant restores a backup as a new tenant. The tenant's session-level lock is held throughout,
// so no create, drop or migration of that name interleaves; on failure everything it created is removed.
func restoreTenant(ctx context.Context, cfg *config.Config, file string, opts restoreOptions, out io.Writer) (err error) {
	dir, err := os.MkdirTemp("", "tenantproxy-restore-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	meta, dump, err := readBackup(file, dir)
	if err != nil {
		return err
	}
	name, schema := meta.Tenant, meta.Schema
	if opts.as != "" {
		// A new tenant gets an opaque schema, as from tenant create.
		name, schema = opts.as, NewOpaqueSchema()
	}
	if opts.schema != "" {
		schema = opts.schema
	}
	if err := validateTenant(cfg, name, schema); err != nil {
		return &usageError{msg: err.Error()}
	}
	t := newTenantRef(cfg, name, schema, meta.Status)

	conn, err := connectAdmin(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	major, _, err := serverMajor(ctx, conn)
	if err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, hashtext($2))", lockClassTenant, name); err != nil {
		return fmt.Errorf("tenant %q: lock: %w", name, err)
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1, hashtext($2))", lockClassTenant, name)

	createdRole, err := restoreProvision(ctx, conn, cfg, t)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			if cerr := restoreCleanup(conn, cfg, t, createdRole); cerr != nil {
				err = fmt.Errorf("%w (cleanup also failed: %v)", err, cerr)
			}
		}
	}()

	tr := toolRunner{cfg: cfg, serverMajor: major}
	if schema != meta.Schema {
		if dump, err = renameInScratch(ctx, conn, tr, dump, meta.Schema, schema, dir); err != nil {
			return fmt.Errorf("tenant %q: %w", name, err)
		}
	}
	if err := tr.run(ctx, "pg_restore", cfg.Admin.Database, restoreArgs(cfg, schema, dump)...); err != nil {
		return fmt.Errorf("tenant %q: %w", name, err)
	}
	if err := restoreRegister(ctx, conn, cfg, t, meta); err != nil {
		return err
	}
	fmt.Fprintf(out, "tenant %s: restored from %s (backup of tenant %s taken %s; schema %s, role %s, %d migration records, status %s)\n",
		name, file, meta.Tenant, meta.BackedUpAt.Format(time.RFC3339), schema, t.Role, len(meta.Migrations), meta.Status)
	return nil
}

func restoreArgs(cfg *config.Config, schema, dump string) []string {
	return []string{"--no-owner", "--no-privileges", "--role=" + cfg.Admin.OwnerRole, "--single-transaction",
		"--exit-on-error", "--schema=" + schema, dump}
}

// restoreProvision creates the role (unless it exists) and an empty schema owned by the owner role, and
// refuses when the tenant or the schema exists.
func restoreProvision(ctx context.Context, conn *pgx.Conn, cfg *config.Config, t tenantRef) (createdRole bool, err error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.Background())
	st, err := readProvisionState(ctx, tx, cfg, t)
	if err != nil {
		return false, fmt.Errorf("tenant %q: %w", t.Name, err)
	}
	switch {
	case st.catalogSchema != nil:
		return false, fmt.Errorf("tenant %q exists; drop it first or restore with --as NEWNAME", t.Name)
	case st.schemaTenant != nil:
		return false, fmt.Errorf("tenant %q: schema %q belongs to tenant %q", t.Name, t.Schema, *st.schemaTenant)
	case st.schemaExists:
		return false, fmt.Errorf("tenant %q: schema %q already exists; restore needs an empty name (use --schema)", t.Name, t.Schema)
	}
	stmts := roleStatements(cfg, t, st)
	stmts = append(stmts,
		"CREATE SCHEMA "+q(t.Schema)+" AUTHORIZATION "+q(cfg.Admin.OwnerRole),
		"REVOKE ALL ON SCHEMA "+q(t.Schema)+" FROM PUBLIC")
	if err := execScript(ctx, tx, stmts); err != nil {
		return false, fmt.Errorf("tenant %q: provision: %w", t.Name, err)
	}
	return st.roleNeedsAlter == nil, tx.Commit(ctx)
}

// restoreRegister grants the tenant role its privileges on the restored objects and records the tenant.
func restoreRegister(ctx context.Context, conn *pgx.Conn, cfg *config.Config, t tenantRef, meta backupMeta) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	st, err := readProvisionState(ctx, tx, cfg, t)
	if err != nil {
		return fmt.Errorf("tenant %q: %w", t.Name, err)
	}
	stmts := grantStatements(cfg, t, st)
	stmts = append(stmts, fmt.Sprintf("INSERT INTO tenantproxy.tenants (name, schema, status, created_at) VALUES (%s, %s, %s, %s)",
		lit(t.Name), lit(t.Schema), lit(meta.Status), lit(meta.CreatedAt.Format(time.RFC3339Nano))))
	for _, m := range meta.Migrations {
		stmts = append(stmts, fmt.Sprintf("INSERT INTO tenantproxy.migrations (tenant, version, name, checksum, applied_at) VALUES (%s, %d, %s, %s, %s)",
			lit(t.Name), m.Version, lit(m.Name), lit(m.Checksum), lit(m.AppliedAt.Format(time.RFC3339Nano))))
	}
	stmts = append(stmts, notifyStatement("create", t.Name))
	if err := execScript(ctx, tx, stmts); err != nil {
		return fmt.Errorf("tenant %q: register: %w", t.Name, err)
	}
	return tx.Commit(ctx)
}

// restoreCleanup removes what a failed restore created. It runs even when ctx is cancelled.
func restoreCleanup(conn *pgx.Conn, cfg *config.Config, t tenantRef, createdRole bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if conn.IsClosed() {
		c, err := connectAdmin(ctx, cfg, "")
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		conn = c
	}
	stmts := []string{"DROP SCHEMA IF EXISTS " + q(t.Schema) + " CASCADE"}
	if createdRole {
		stmts = append(stmts, "DROP OWNED BY "+q(t.Role), "DROP ROLE "+q(t.Role))
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if err := execScript(ctx, tx, stmts); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// renameInScratch restores dump into a scratch database, renames schema from to to, dumps it again and
// returns the new dump's path. The scratch database is always dropped.
func renameInScratch(ctx context.Context, conn *pgx.Conn, tr toolRunner, dump, from, to, dir string) (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	scratch := "tp_restore_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+q(scratch)+" TEMPLATE template0"); err != nil {
		return "", fmt.Errorf("create scratch database for the schema rename: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn.Exec(dctx, "DROP DATABASE IF EXISTS "+q(scratch)+" WITH (FORCE)")
	}()
	scratchExec := func(sql string) error {
		sc, err := connectAdmin(ctx, tr.cfg, scratch)
		if err != nil {
			return err
		}
		defer sc.Close(context.Background())
		_, err = sc.Exec(ctx, sql)
		return err
	}
	if err := scratchExec("CREATE SCHEMA " + q(from) + " AUTHORIZATION " + q(tr.cfg.Admin.OwnerRole)); err != nil {
		return "", fmt.Errorf("scratch database: %w", err)
	}
	if err := tr.run(ctx, "pg_restore", scratch, restoreArgs(tr.cfg, from, dump)...); err != nil {
		return "", fmt.Errorf("scratch database: %w", err)
	}
	if err := scratchExec("ALTER SCHEMA " + q(from) + " RENAME TO " + q(to)); err != nil {
		return "", fmt.Errorf("scratch database: %w", err)
	}
	renamed := filepath.Join(dir, "renamed.pgc")
	if err := tr.run(ctx, "pg_dump", scratch, "--format=custom", "--file="+renamed, "--schema="+q(to)); err != nil {
		return "", fmt.Errorf("scratch database: %w", err)
	}
	return renamed, nil
}
