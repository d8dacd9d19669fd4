package integration

import (
	"database/sql"
	"testing"
	"time"

	_ "github.com/lib/pq"

	"github.com/tenantproxy/tenantproxy/config"
)

// TestAdminConsoleReadsLikePgbouncerToLibpq runs the queries the prometheus-community pgbouncer exporter
// makes, the way it makes them (database/sql over lib/pq, no arguments, so the simple protocol), and
// reads the columns by name as it does.
func TestAdminConsoleReadsLikePgbouncerToLibpq(t *testing.T) {
	p := startProxy(t, config.ModeTransaction, consoleUsers)
	ctx := testContext(t, 30*time.Second)
	db, err := sql.Open("postgres", consoleURL(p, "watcher", "pgbouncer"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var version string
	if err := db.QueryRowContext(ctx, "SHOW VERSION").Scan(&version); err != nil || version != "tenantproxy test" {
		t.Fatalf("SHOW VERSION: %q %v", version, err)
	}
	for _, tc := range []struct {
		q    string
		cols []string
	}{
		{"SHOW LISTS", []string{"list", "items"}},
		{"SHOW CONFIG", []string{"key", "value", "default", "changeable"}},
		{"SHOW DATABASES", []string{"name", "host", "port", "database", "force_user", "pool_size", "min_pool_size", "reserve_pool_size", "server_lifetime", "pool_mode", "load_balance_hosts", "max_connections", "current_connections", "max_client_connections", "current_client_connections", "paused", "disabled"}},
	} {
		rows, err := db.QueryContext(ctx, tc.q)
		if err != nil {
			t.Fatalf("%s: %v", tc.q, err)
		}
		cols, _ := rows.Columns()
		if len(cols) != len(tc.cols) {
			t.Errorf("%s: columns %v", tc.q, cols)
		}
		for i := range tc.cols {
			if i < len(cols) && cols[i] != tc.cols[i] {
				t.Errorf("%s column %d = %s, want %s", tc.q, i, cols[i], tc.cols[i])
			}
		}
		n := 0
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Errorf("%s: scan: %v", tc.q, err)
			}
			n++
		}
		if err := rows.Err(); err != nil || n == 0 {
			t.Errorf("%s: %d rows, %v", tc.q, n, err)
		}
		rows.Close()
	}
}
