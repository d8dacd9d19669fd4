// Package catalog is what the proxy (serve) and the tenant lifecycle (package tenants) share about the
// tenant database: the catalog's schema and notification channel, the connection string both build, the
// catalog watch that feeds serve its tenants when [tenancy] catalog = "database", and the hardening gate
// serve passes before it accepts a client.
//
// It exists so that serve does not import the lifecycle: internal/app imports catalog, and so does
// tenants. The checks behind the hardening gate are `tenantproxy doctor`'s, which live in tenants; tenants
// registers them here when it is linked (as database/sql drivers register themselves), and the gate
// fails closed when nothing is registered.
package catalog

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/config"
)

// Schema is the schema holding the tenant catalog and the applied migrations.
const Schema = "tenantproxy"

// NotifyChannel is the LISTEN/NOTIFY channel on which tenant create, suspend, resume, drop and restore
// announce a change of the catalog. The payload is "<op> <tenant>", for example "create acme".
const NotifyChannel = "tenantproxy_catalog"

// ConnString builds a keyword/value connection string to [backend] host and port; every value is quoted.
// Like the proxy's own backend connections it does not ask for TLS, unless PGSSLMODE says otherwise
// (sslmode=prefer would cost a second connection, and a second server process, whenever the server
// refuses TLS).
func ConnString(cfg *config.Config, database, user, password, appName string) string {
	kv := [][2]string{
		{"host", cfg.Backend.Host},
		{"port", fmt.Sprint(cfg.Backend.Port)},
		{"dbname", database},
		{"user", user},
		{"application_name", appName},
	}
	if password != "" {
		kv = append(kv, [2]string{"password", password})
	}
	if os.Getenv("PGSSLMODE") == "" {
		kv = append(kv, [2]string{"sslmode", "disable"})
	}
	var b strings.Builder
	for _, p := range kv {
		b.WriteString(p[0])
		b.WriteString("='")
		b.WriteString(strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(p[1]))
		b.WriteString("' ")
	}
	return b.String()
}

// Error turns "relation tenantproxy.x does not exist" into advice to run init; other errors pass
// through.
func Error(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == pgerrcode.UndefinedTable || pe.Code == pgerrcode.InvalidSchemaName) && strings.Contains(pe.Message, Schema) {
		return fmt.Errorf("the tenant catalog is missing (%s); run `tenantproxy init` first", pe.Message)
	}
	return err
}
