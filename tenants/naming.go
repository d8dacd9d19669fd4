package tenants

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// Opaque names. PostgreSQL shows every schema name (pg_namespace) and every role name (pg_roles) to every
// role, whatever its privileges, so a schema or role named after the customer tells every other tenant who
// the customers are. `tenant create NAME` therefore names the schema with a random id, kept in the catalog
// and not derived from NAME, and the default [tenancy] role "tenant_{schema}" derives the role from that
// schema. --schema (and [[tenants]] schema) keep explicit names for those who want them; doctor warns when
// a schema or role name contains its tenant's name.

// opaquePrefix starts every opaque schema name: "t" and 16 hex digits (64 random bits).
const opaquePrefix = "t"

// NewOpaqueSchema returns a fresh random schema name such as "t3f9a0c2d7e41b6a8".
func NewOpaqueSchema() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic("tenants: crypto/rand failed: " + err.Error())
	}
	return opaquePrefix + hex.EncodeToString(b)
}

// chooseSchema is the schema of `tenant create NAME` without --schema: the catalog's when the tenant
// exists (create is idempotent), the [[tenants]] schema when the config lists the tenant with
// [tenancy] catalog = "config", and a new opaque name otherwise.
func chooseSchema(ctx context.Context, conn *pgx.Conn, cfg *config.Config, name string) (string, error) {
	var schema string
	err := conn.QueryRow(ctx, "SELECT schema FROM tenantproxy.tenants WHERE name = $1", name).Scan(&schema)
	switch {
	case err == nil:
		return schema, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return "", catalogError(err)
	}
	if cfg.Tenancy.Catalog == config.CatalogConfig {
		for _, t := range cfg.Tenants {
			if t.Name == name {
				return t.Schema, nil
			}
		}
	}
	return NewOpaqueSchema(), nil
}

// revealsName reports whether an object name (schema or role) contains the tenant's name, so that anyone
// who can list schemas or roles learns the tenant from it.
func revealsName(object, tenant string) bool {
	return tenant != "" && strings.Contains(strings.ToLower(object), strings.ToLower(tenant))
}

// checkNaming warns (it never fails) about tenants whose schema or role name contains the tenant's name.
func (d *doctor) checkNaming(ts []tenantRef) {
	var revealing []string
	for _, t := range ts {
		var what []string
		if revealsName(t.Schema, t.Name) {
			what = append(what, "schema "+q(t.Schema))
		}
		if revealsName(t.Role, t.Name) {
			what = append(what, "role "+q(t.Role))
		}
		if len(what) > 0 {
			revealing = append(revealing, t.Name+": "+strings.Join(what, " and "))
		}
	}
	name := "tenant schema and role names do not reveal the tenant"
	if len(revealing) == 0 {
		d.add(name, true, fmt.Sprintf("%d tenants", len(ts)), "")
		return
	}
	d.rep.Checks = append(d.rep.Checks, Check{
		Name: name, OK: true, Warn: true,
		Detail: "every tenant can list schema and role names; these contain their tenant's name: " + listed(revealing, "; "),
		Fix:    "create tenants without --schema (opaque names) and keep [tenancy] role = \"tenant_{schema}\"; an existing tenant moves with `tenant backup` and `tenant restore --as`",
	})
}
