package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgident"
)

// Timing of WatchCatalog: a notification is acted on at once; without one the catalog is reloaded every
// catalogResync; a lost connection is retried after 100ms, doubling up to catalogMaxBackoff.
const (
	catalogResync     = 2 * time.Second
	catalogQueryLimit = 5 * time.Second
	catalogMaxBackoff = time.Second
)

// WatchCatalog feeds the proxy the tenants of the database catalog ([tenancy] catalog = "database"). It
// connects as the pool role ([backend] user and password), LISTENs on NotifyChannel, loads every tenant
// (name, schema, suspended, limits) and calls onChange with the full list; afterwards it calls onChange again,
// with the full list, whenever the catalog changes: at once on a notification, and within catalogResync
// through a periodic reload (which also covers notifications lost while disconnected). When the server
// goes away it reconnects with backoff and reloads. Rows whose name or schema are not valid tenant names
// are left out. onChange runs on WatchCatalog's goroutine and must not block for long.
//
// A failure to connect or to load the catalog the first time is returned at once (for example when
// `tenantproxy init` has not run); after that WatchCatalog retries until ctx is done and then returns nil.
func WatchCatalog(ctx context.Context, cfg *config.Config, onChange func([]config.Tenant)) error {
	return WatchCatalogNotify(ctx, cfg, onChange, nil)
}

// WatchCatalogNotify is WatchCatalog that also hands every notification's payload to onNotify (when not
// nil) before the reload it causes, for instance "migrate acme 0003" after a tenant's migration.
func WatchCatalogNotify(ctx context.Context, cfg *config.Config, onChange func([]config.Tenant), onNotify func(payload string)) error {
	w := &catalogWatcher{cfg: cfg, onChange: onChange, onNotify: onNotify}
	conn, err := w.connect(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("tenant catalog: %w", err)
	}
	for {
		w.follow(ctx, conn)
		conn.Close(context.Background())
		if conn = w.reconnect(ctx); conn == nil {
			return nil
		}
	}
}

type catalogWatcher struct {
	cfg       *config.Config
	onChange  func([]config.Tenant)
	onNotify  func(string)
	last      []config.Tenant
	delivered bool
}

// connect opens a pool-role connection, LISTENs, and loads and delivers the catalog.
func (w *catalogWatcher) connect(ctx context.Context) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(ConnString(w.cfg, w.cfg.Backend.Database, w.cfg.Backend.User, w.cfg.BackendPassword(), "tenantproxy-catalog"))
	if err != nil {
		return nil, err
	}
	cc.ConnectTimeout = w.cfg.Backend.ConnectTimeout.Duration
	if w.onNotify != nil {
		cc.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) { w.onNotify(n.Payload) }
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgident.Quote(NotifyChannel)); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	if err := w.load(ctx, conn); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// reconnect retries connect with backoff; it returns nil when ctx is done.
func (w *catalogWatcher) reconnect(ctx context.Context) *pgx.Conn {
	backoff := 100 * time.Millisecond
	for {
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if conn, err := w.connect(ctx); err == nil {
			return conn
		}
		backoff = min(2*backoff, catalogMaxBackoff)
	}
}

// follow waits for notifications and reloads on each one and every catalogResync, until ctx is done or
// the connection fails.
func (w *catalogWatcher) follow(ctx context.Context, conn *pgx.Conn) {
	for {
		wctx, cancel := context.WithTimeout(ctx, catalogResync)
		err := conn.PgConn().WaitForNotification(wctx)
		timedOut := errors.Is(wctx.Err(), context.DeadlineExceeded)
		cancel()
		if ctx.Err() != nil || (err != nil && !timedOut) || conn.IsClosed() {
			return
		}
		if err := w.load(ctx, conn); err != nil {
			return
		}
	}
}

// load reads the catalog and calls onChange when it differs from the last list delivered.
func (w *catalogWatcher) load(ctx context.Context, conn *pgx.Conn) error {
	qctx, cancel := context.WithTimeout(ctx, catalogQueryLimit)
	defer cancel()
	rows, err := conn.Query(qctx, catalogTenantsQuery)
	if err != nil {
		return Error(err)
	}
	all, err := pgx.CollectRows(rows, scanCatalogTenant)
	if err != nil {
		return Error(err)
	}
	list := make([]config.Tenant, 0, len(all))
	for _, t := range all {
		if pgident.ValidateName(t.Name) == nil && pgident.ValidateName(t.Schema) == nil {
			list = append(list, t)
		}
	}
	if w.delivered && slices.EqualFunc(list, w.last, sameTenant) {
		return nil
	}
	w.last, w.delivered = list, true
	w.onChange(slices.Clone(list))
	return nil
}
