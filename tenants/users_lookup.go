package tenants

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/config"
)

// userCacheMax bounds the user cache; when full it starts over (so that a flood of made-up names costs
// lookups, not memory).
const userCacheMax = 10000

// CatalogUsers finds users in the database catalog for the proxy ([auth] users = "database"). It
// connects as the pool role and calls only UserLookupFunction, schema-qualified. Answers, "no such user"
// included, are cached per (user, tenant) for [auth] user_cache_ttl; a "user <name>" notification on
// NotifyChannel drops that user's entries at once, any other catalog notification and every reconnect
// of the listening connection drop them all. VALID UNTIL is checked by the function and again at every
// use of a cached entry, so a user expires on time whatever the cache holds.
type CatalogUsers struct {
	cfg *config.Config
	log *zap.Logger
	now func() time.Time

	// connMu serializes lookups on conn, the one lookup connection (opened on demand, dropped on error).
	connMu sync.Mutex
	conn   *pgx.Conn
	closed bool // set when the listener stops: no connection is opened after that

	mu    sync.Mutex
	cache map[[2]string]cachedUser
	gen   uint64 // bumped by every invalidation; an answer read across one is not cached
	done  chan struct{}

	listening chan<- struct{}
}

type cachedUser struct {
	user       *config.User // nil: no such user (or not usable)
	validUntil time.Time    // zero: no limit
	at         time.Time
}

// NewCatalogUsers starts the change listener; it stops when ctx is done (Wait waits for that).
// Connections are opened on demand: a server that is down now fails lookups, not the start.
func NewCatalogUsers(ctx context.Context, cfg *config.Config, log *zap.Logger) *CatalogUsers {
	return newCatalogUsers(ctx, cfg, log, time.Now, nil)
}

// newCatalogUsers is NewCatalogUsers with a clock, and a channel that gets a value each time the
// listener is listening (with the cache emptied).
func newCatalogUsers(ctx context.Context, cfg *config.Config, log *zap.Logger, now func() time.Time, listening chan<- struct{}) *CatalogUsers {
	u := &CatalogUsers{cfg: cfg, log: log, now: now, cache: map[[2]string]cachedUser{}, done: make(chan struct{}), listening: listening}
	go u.listen(ctx)
	return u
}

// connect opens a pool-role connection to the served database.
func (u *CatalogUsers) connect(ctx context.Context, appName string) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(connString(u.cfg, u.cfg.Backend.Database, u.cfg.Backend.User, u.cfg.BackendPassword(), appName))
	if err != nil {
		return nil, err
	}
	cc.ConnectTimeout = u.cfg.Backend.ConnectTimeout.Duration
	return pgx.ConnectConfig(ctx, cc)
}

// Wait returns when the listener has stopped and the connections are closed.
func (u *CatalogUsers) Wait() { <-u.done }

// Lookup implements routing.UserSource.
func (u *CatalogUsers) Lookup(ctx context.Context, user, tenant string) (*config.User, error) {
	key := [2]string{user, tenant}
	u.mu.Lock()
	c, ok := u.cache[key]
	gen := u.gen
	u.mu.Unlock()
	now := u.now()
	if !ok || now.Sub(c.at) >= u.cfg.Auth.UserCacheTTL.Duration {
		var err error
		if c, err = u.query(ctx, user, tenant); err != nil {
			return nil, err
		}
		c.at = now
		u.mu.Lock()
		if u.gen == gen {
			if len(u.cache) >= userCacheMax {
				clear(u.cache)
			}
			u.cache[key] = c
		}
		u.mu.Unlock()
	}
	if c.user == nil || (!c.validUntil.IsZero() && !now.Before(c.validUntil)) {
		return nil, nil
	}
	cp := *c.user
	return &cp, nil
}

func (u *CatalogUsers) query(ctx context.Context, user, tenant string) (cachedUser, error) {
	u.connMu.Lock()
	defer u.connMu.Unlock()
	c, err := u.queryLocked(ctx, user, tenant)
	if err != nil && ctx.Err() == nil {
		// Once more on a fresh connection: the server may have closed the old one (a restart, a kill).
		c, err = u.queryLocked(ctx, user, tenant)
	}
	return c, err
}

func (u *CatalogUsers) queryLocked(ctx context.Context, user, tenant string) (cachedUser, error) {
	var c cachedUser
	var verifier, profile string
	var until *time.Time
	var allow []string
	var bound bool
	if u.closed {
		return c, errors.New("user catalog: closed")
	}
	if u.conn == nil || u.conn.IsClosed() {
		conn, err := u.connect(ctx, "tenantproxy-users")
		if err != nil {
			return c, fmt.Errorf("user catalog: %w", err)
		}
		u.conn = conn
	}
	err := u.conn.QueryRow(ctx, "SELECT verifier, profile, valid_until, allow, bound FROM "+UserLookupFunction+"($1, $2)", user, tenant).
		Scan(&verifier, &profile, &until, &allow, &bound)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		// A timed-out or broken query leaves the connection in an unknown state: start over next time.
		u.conn.Close(context.Background())
		u.conn = nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("%s: %w", UserLookupFunction, err)
	}
	c.user = &config.User{Name: user, Password: verifier, Profile: config.Profile(profile), Allow: allow}
	if bound {
		c.user.Tenants = []string{tenant}
	}
	if until != nil {
		c.validUntil = *until
	}
	return c, nil
}

// invalidate drops the entries of user, or all of them for "".
func (u *CatalogUsers) invalidate(user string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.gen++
	if user == "" {
		clear(u.cache)
		return
	}
	for k := range u.cache {
		if k[0] == user {
			delete(u.cache, k)
		}
	}
}

// listen follows NotifyChannel on a connection of its own, reconnecting with backoff.
func (u *CatalogUsers) listen(ctx context.Context) {
	defer close(u.done)
	defer func() {
		u.connMu.Lock()
		u.closed = true
		if u.conn != nil {
			u.conn.Close(context.Background())
			u.conn = nil
		}
		u.connMu.Unlock()
	}()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := u.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		u.log.Warn("user catalog listener lost its connection; retrying", zap.Error(err))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (u *CatalogUsers) follow(ctx context.Context) error {
	conn, err := u.connect(ctx, "tenantproxy-users-listen")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+q(NotifyChannel)); err != nil {
		return err
	}
	// Whatever changed while no one listened is read afresh.
	u.invalidate("")
	if u.listening != nil {
		select {
		case u.listening <- struct{}{}:
		default:
		}
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if name, ok := strings.CutPrefix(n.Payload, "user "); ok {
			u.invalidate(name)
		} else if !strings.HasPrefix(n.Payload, "migrate ") {
			u.invalidate("")
		}
	}
}
