package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/lib/pq"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// poolModes are the pool modes the end-to-end tests run in, each through a proxy of its own.
var poolModes = []config.PoolMode{config.ModeTransaction, config.ModeSession}

// execModes are every way pgx can send a query.
var execModes = []struct {
	name string
	mode pgx.QueryExecMode
}{
	{"CacheStatement", pgx.QueryExecModeCacheStatement},
	{"CacheDescribe", pgx.QueryExecModeCacheDescribe},
	{"DescribeExec", pgx.QueryExecModeDescribeExec},
	{"Exec", pgx.QueryExecModeExec},
	{"SimpleProtocol", pgx.QueryExecModeSimpleProtocol},
}

// startProxy starts a proxy over the shared fixture in pool mode, with the base configuration changed
// by configure (may be nil).
func startProxy(t *testing.T, mode config.PoolMode, configure func(*config.Config)) *proxytest.Proxy {
	t.Helper()
	return fx.Start(t, func(c *config.Config) {
		c.Pool.Mode = mode
		if configure != nil {
			configure(c)
		}
	})
}

// testContext is a context that ends after d or with the test.
func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// connectPgx opens a pgx connection in exec mode; a cancelled context makes pgx send a CancelRequest
// (rather than close the connection, pgx's default). The connection is closed when the test ends.
func connectPgx(t *testing.T, ctx context.Context, url string, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	conn, err := dialPgx(ctx, url, mode, nil)
	if err != nil {
		t.Fatalf("connect %s: %v", redact(url), err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// dialPgx opens a pgx connection in exec mode with RuntimeParams params added; the caller closes it.
func dialPgx(ctx context.Context, url string, mode pgx.QueryExecMode, params map[string]string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.DefaultQueryExecMode = mode
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: 4 * time.Second}
	}
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// redact hides the password of a URL in messages.
func redact(url string) string { return strings.Replace(url, ":"+proxytest.Password+"@", ":***@", 1) }

// sqlstate returns the SQLSTATE of a PostgreSQL error from pgx or lib/pq, or "" when err carries none.
func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	var qe *pq.Error
	if errors.As(err, &qe) {
		return string(qe.Code)
	}
	return ""
}

// errorMessage returns the message of a PostgreSQL error, or err's text.
func errorMessage(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Message
	}
	var qe *pq.Error
	if errors.As(err, &qe) {
		return qe.Message
	}
	return err.Error()
}

var markerSeq atomic.Int64

// marker returns a name prefix no other test uses, for the rows a test inserts; they are deleted from
// every tenant when the test ends.
func marker(t *testing.T) string {
	t.Helper()
	m := fmt.Sprintf("m%d-%d", time.Now().UnixNano()%1e9, markerSeq.Add(1))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var b strings.Builder
		for _, tenant := range fx.Tenants {
			fmt.Fprintf(&b, "DELETE FROM %s.employees WHERE name LIKE '%s%%';\n", tenant, m)
		}
		if err := fx.Cluster.Exec(ctx, proxytest.Database, b.String()); err != nil {
			t.Errorf("remove the rows of %s: %v", m, err)
		}
	})
	return m
}

// superuser opens a superuser connection to the backend database, closed when the test ends.
func superuser(t *testing.T, ctx context.Context) *pgx.Conn {
	t.Helper()
	conn, err := fx.Cluster.Connect(ctx, proxytest.Database)
	if err != nil {
		t.Fatalf("superuser connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// identity is what a session sees of its tenant context.
type identity struct {
	user, setting, searchPath, tenants string
}

const identitySQL = `SELECT current_user::text, current_setting('tenantproxy.tenant'),
	current_setting('search_path'), coalesce(string_agg(DISTINCT tenant, ','), '') FROM employees`

// whoAmI reads the session's identity and the distinct tenant values of the rows it can see.
func whoAmI(ctx context.Context, conn *pgx.Conn) (identity, error) {
	var id identity
	err := conn.QueryRow(ctx, identitySQL).Scan(&id.user, &id.setting, &id.searchPath, &id.tenants)
	return id, err
}

// wantIdentity fails the test unless the session is tenant's, sees only tenant's rows, and has tenant's
// schema first on its search_path.
func wantIdentity(t *testing.T, ctx context.Context, conn *pgx.Conn, tenant string) {
	t.Helper()
	id, err := whoAmI(ctx, conn)
	if err != nil {
		t.Fatalf("read identity: %v", err)
	}
	if id.user != "tenant_"+tenant || id.setting != tenant || id.tenants != tenant || !strings.HasPrefix(id.searchPath, tenant) {
		t.Fatalf("want the context of %s, got current_user=%q tenantproxy.tenant=%q search_path=%q rows of %q",
			tenant, id.user, id.setting, id.searchPath, id.tenants)
	}
}
