// Package pgident quotes and validates PostgreSQL identifiers and literals. Every piece of SQL that
// tenantproxy builds from a name (tenant, schema, role, setting) goes through it.
package pgident

import (
	"fmt"
	"strings"
)

// MaxLen is PostgreSQL's NAMEDATALEN-1: the longest identifier the server keeps without truncation.
const MaxLen = 63

// Quote returns name as a double-quoted identifier, doubling embedded quotes.
func Quote(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// QuoteLiteral returns s as a standard-conforming string literal. The proxy keeps
// standard_conforming_strings on for every backend, so backslashes need no escaping.
func QuoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// reserved lists names a tenant, schema or role may never take: PostgreSQL's own schemas and roles, the
// catalog schema of tenantproxy, and SQL key words that would need quoting everywhere.
var reserved = map[string]bool{
	"public": true, "pg_catalog": true, "information_schema": true, "pg_toast": true, "pg_temp": true,
	"tenantproxy": true, "postgres": true, "template0": true, "template1": true, "none": true,
	"current_user": true, "session_user": true, "current_role": true, "user": true, "all": true,
	"default": true, "select": true, "table": true, "from": true, "where": true, "grant": true,
	"role": true, "schema": true, "authorization": true,
}

// ValidateName checks that name is a plain, unquoted PostgreSQL identifier that tenantproxy can use as a
// tenant or schema name: lower-case ASCII letters, digits and underscores, starting with a letter or
// underscore, at most 63 bytes, not starting with "pg_" and not a reserved name.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("name is empty")
	}
	if len(name) > MaxLen {
		return fmt.Errorf("name %q is %d bytes long; PostgreSQL keeps at most %d", name, len(name), MaxLen)
	}
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r == '_':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return fmt.Errorf("name %q: only lower-case letters, digits and '_' are allowed, starting with a letter or '_'", name)
		}
	}
	if strings.HasPrefix(name, "pg_") {
		return fmt.Errorf("name %q: the prefix pg_ is reserved by PostgreSQL", name)
	}
	if reserved[name] {
		return fmt.Errorf("name %q is reserved", name)
	}
	return nil
}
