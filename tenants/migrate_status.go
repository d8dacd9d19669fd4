package tenants

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/tenantproxy/tenantproxy/config"
)

// MigrationVersion is a tenant's place on its two lines of migrations.
type MigrationVersion struct {
	// Version is the highest applied common migration (0: none).
	Version int `json:"version"`
	// Specific is the highest applied tenant-specific migration (0: none).
	Specific int `json:"specific,omitempty"`
}

// String is the version as the console shows it, and as the "migrate" notification carries it: the
// common line's version, then "+" and the tenant-specific line's when there is one.
func (v MigrationVersion) String() string {
	if v.Specific > 0 {
		return fmt.Sprintf("%d+%d", v.Version, v.Specific)
	}
	return fmt.Sprint(v.Version)
}

// TenantMigrationVersions reads every tenant's migration version from the catalog, by tenant name.
// db must be allowed to read tenantproxy.migrations (the admin or owner role; the pool role is not).
// The console's SHOW TENANTS can call it, or follow the "migrate TENANT VERSION [SPECIFIC]" payloads
// on NotifyChannel.
func TenantMigrationVersions(ctx context.Context, db querier) (map[string]MigrationVersion, error) {
	common, err := readAllApplied(ctx, db)
	if err != nil {
		return nil, err
	}
	special, err := readSpecificIfAny(ctx, db)
	if err != nil {
		return nil, err
	}
	out := map[string]MigrationVersion{}
	for t, app := range common {
		if t != "" {
			out[t] = MigrationVersion{Version: maxVersion(app, nil)}
		}
	}
	for t, app := range special {
		v := out[t]
		v.Specific = maxVersion(app, nil)
		out[t] = v
	}
	return out, nil
}

// statusOptions are the flags of `migrate status`.
type statusOptions struct {
	asJSON, drift bool
}

// migrateStatus prints every target's version and pending count, how many tenants are at each common
// version, the tenant-specific lines, and with --drift the tenants whose schema differs from what their
// migrations produce.
func migrateStatus(ctx context.Context, cfg *config.Config, opts statusOptions, stdout io.Writer) error {
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
	special, err := readSpecificIfAny(ctx, conn)
	if err != nil {
		return err
	}
	type row struct {
		Tenant   string   `json:"tenant"`
		Schema   string   `json:"schema"`
		Version  int      `json:"version"`
		Applied  int      `json:"applied"`
		Pending  int      `json:"pending"`
		Specific []string `json:"specific,omitempty"` // tenant-specific files: "tenants/acme/0001_x.sql (applied|pending)"
		Error    string   `json:"error,omitempty"`
	}
	var rows []row
	versions := map[int]int{}
	add := func(name, schema string, files []migration, app []appliedMigration) *row {
		r := row{Tenant: name, Schema: schema, Applied: len(app), Version: maxVersion(app, nil)}
		pending, err := plan(files, app, 0)
		if err != nil {
			r.Error = err.Error()
		}
		r.Pending = len(pending)
		rows = append(rows, r)
		return &rows[len(rows)-1]
	}
	if len(ms.shared) > 0 || len(applied[""]) > 0 {
		add("(shared)", SharedSchema, ms.shared, applied[""])
	}
	for _, t := range tenants {
		r := add(t.Name, t.Schema, ms.tenant, applied[t.Name])
		versions[r.Version]++
		files, err := specificFor(cfg, ms, t.Name)
		if err == nil {
			_, err = plan(files, special[t.Name], 0)
		}
		if err != nil && r.Error == "" {
			r.Error = "tenant-specific line: " + err.Error()
		}
		done := map[int]bool{}
		for _, a := range special[t.Name] {
			done[a.Version] = true
			if !hasVersion(files, a.Version) {
				r.Specific = append(r.Specific, a.File+" (applied, file gone)")
			}
		}
		for _, f := range files {
			state := "pending"
			if done[f.Version] {
				state = "applied"
			} else {
				r.Pending++
			}
			r.Specific = append(r.Specific, f.File+" ("+state+")")
		}
	}
	bad := 0
	for _, r := range rows {
		if r.Error != "" {
			bad++
		}
	}
	var drift []tenantDrift
	if opts.drift {
		if drift, err = findDrift(ctx, conn, cfg, ms, tenants, applied, special); err != nil {
			return err
		}
	}
	vs := make([]int, 0, len(versions))
	for v := range versions {
		vs = append(vs, v)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(vs)))
	if opts.asJSON {
		byVersion := map[string]int{}
		for v, n := range versions {
			byVersion[strconv.Itoa(v)] = n
		}
		out := map[string]any{"latest": latestVersion(ms.tenant), "tenants": rows, "versions": byVersion}
		if opts.drift {
			out["drift"] = drift
		}
		if err := writeJSON(stdout, out); err != nil {
			return err
		}
	} else {
		tw := newTable(stdout, "TENANT", "SCHEMA", "VERSION", "APPLIED", "PENDING", "STATE", "TENANT-SPECIFIC")
		for _, r := range rows {
			state := "up to date"
			switch {
			case r.Error != "":
				state = "error: " + r.Error
			case r.Pending > 0:
				state = "pending"
			}
			tw.row(r.Tenant, r.Schema, fmt.Sprintf("%04d", r.Version), strconv.Itoa(r.Applied), strconv.Itoa(r.Pending), state, strings.Join(r.Specific, ", "))
		}
		if err := tw.flush(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "latest tenant migration: %04d; %d tenants\n", latestVersion(ms.tenant), len(tenants))
		for _, v := range vs {
			fmt.Fprintf(stdout, "version %04d: %d tenants\n", v, versions[v])
		}
		if opts.drift {
			printDrift(stdout, drift, len(tenants))
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d targets have migrations that cannot run", bad)
	}
	if len(drift) > 0 {
		return fmt.Errorf("%d tenants have drifted from their migrations", len(drift))
	}
	return nil
}

func hasVersion(files []migration, v int) bool {
	for _, f := range files {
		if f.Version == v {
			return true
		}
	}
	return false
}

func latestVersion(ms []migration) int {
	if len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].Version
}
