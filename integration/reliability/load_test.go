package reliability

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// opTimeout bounds one operation of the load: an operation that takes longer hung.
const opTimeout = 15 * time.Second

// load is clients working through a proxy while a test hurts the server: each connects as a tenant's app
// user and loops over a transaction that inserts a row and reads every row it can see, reconnecting after
// any error. It counts acknowledged inserts (committed, with the id the server returned), errors by
// SQLSTATE, rows of another tenant, and operations that hung.
type load struct {
	p    *proxytest.Proxy
	name string // rows are named "rel-<name>"
	stop chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	acked  map[string][]int32 // tenant -> acknowledged ids
	errs   map[string]int     // SQLSTATE ("none" when the error carried none) -> count
	sample map[string]string  // SQLSTATE -> one message
	cross  int
	tx     int
	hung   []string
	lastOK []time.Time // per client
}

// startLoad starts n clients, alternating between the fixture's tenants.
func startLoad(t *testing.T, p *proxytest.Proxy, name string, n int) *load {
	t.Helper()
	l := &load{p: p, name: name, stop: make(chan struct{}), acked: map[string][]int32{}, errs: map[string]int{},
		sample: map[string]string{}, lastOK: make([]time.Time, n)}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, tenant := range fx.Tenants {
			superExec(ctx, "DELETE FROM "+tenant+".employees WHERE name = 'rel-"+name+"'")
		}
	})
	for i := 0; i < n; i++ {
		l.wg.Add(1)
		go l.client(i, fx.Tenants[i%len(fx.Tenants)])
	}
	return l
}

// client is one client's loop.
func (l *load) client(i int, tenant string) {
	defer l.wg.Done()
	cfg, err := pgx.ParseConfig(l.p.TenantURL(tenant))
	if err != nil {
		panic(err)
	}
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: time.Second}
	}
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		if conn == nil {
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			conn, err = pgx.ConnectConfig(ctx, cfg)
			hung := ctx.Err() != nil
			cancel()
			if err != nil {
				conn = nil
				l.failed("connect", err, hung)
				continue
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		id, cross, err := l.transaction(ctx, conn, tenant)
		hung := ctx.Err() != nil
		cancel()
		if err != nil {
			conn.Close(context.Background())
			conn = nil
			l.failed("transaction", err, hung)
			continue
		}
		l.mu.Lock()
		l.tx++
		l.cross += cross
		l.acked[tenant] = append(l.acked[tenant], id)
		l.lastOK[i] = time.Now()
		l.mu.Unlock()
	}
}

// transaction inserts a row and reads the tenant's rows in one transaction; it returns the id of the
// insert once the commit is acknowledged, and how many rows of another tenant it saw.
func (l *load) transaction(ctx context.Context, conn *pgx.Conn, tenant string) (int32, int, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback(context.Background())
	var id int32
	var got string
	if err := tx.QueryRow(ctx, "INSERT INTO employees (name) VALUES ($1) RETURNING id, tenant", "rel-"+l.name).Scan(&id, &got); err != nil {
		return 0, 0, err
	}
	cross := 0
	if got != tenant {
		cross++
	}
	rows, err := tx.Query(ctx, "SELECT tenant FROM employees")
	if err != nil {
		return 0, 0, err
	}
	for rows.Next() {
		var tn string
		if err := rows.Scan(&tn); err != nil {
			rows.Close()
			return 0, 0, err
		}
		if tn != tenant {
			cross++
		}
	}
	if err := rows.Err(); err != nil {
		return 0, 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, 0, err
	}
	return id, cross, nil
}

// eofMidMessage is the outcome recorded for a connection that ended without an error message: what a
// client sees when its backend dies in the middle of a message, directly or through the proxy.
const eofMidMessage = "unexpected EOF"

// failed records an error and pauses briefly, as a client's retry loop would.
func (l *load) failed(what string, err error, hung bool) {
	code := sqlstate(err)
	switch {
	case code != "":
	case errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "unexpected EOF"):
		code = eofMidMessage
	default:
		code = "none"
	}
	l.mu.Lock()
	l.errs[code]++
	if _, ok := l.sample[code]; !ok {
		l.sample[code] = what + ": " + err.Error()
	}
	if hung {
		l.hung = append(l.hung, what+": "+err.Error())
	}
	l.mu.Unlock()
	time.Sleep(50 * time.Millisecond)
}

// waitAllOK waits until every client completed a transaction after since.
func (l *load) waitAllOK(t *testing.T, d time.Duration, since time.Time) {
	t.Helper()
	waitFor(t, d, "every client working again", func() (bool, string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		behind := 0
		for _, ok := range l.lastOK {
			if ok.Before(since) {
				behind++
			}
		}
		return behind == 0, fmt.Sprintf("%d of %d clients without a transaction since; errors %s", behind, len(l.lastOK), summary(l.errs))
	})
}

// finish stops the clients and checks the invariants: no hung operation, no row of another tenant, every
// acknowledged insert present on the server, and every error carried a SQLSTATE of an expected class.
// allowed lists the SQLSTATEs the fault may cause.
func (l *load) finish(t *testing.T, allowed ...string) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("%d transactions; errors: %s", l.tx, summary(l.errs))
	for code, msg := range l.sample {
		t.Logf("  %s e.g. %s", code, msg)
	}
	if len(l.hung) > 0 {
		t.Errorf("%d operations hung for %s: %v", len(l.hung), opTimeout, l.hung)
	}
	if l.cross != 0 {
		t.Errorf("%d rows of another tenant read", l.cross)
	}
	if l.tx == 0 {
		t.Error("no transaction succeeded")
	}
	ok := map[string]bool{}
	for _, c := range allowed {
		ok[c] = true
	}
	for code, n := range l.errs {
		if !ok[code] {
			t.Errorf("%d errors %s (%s): not an expected outcome of the fault", n, code, l.sample[code])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := fx.Cluster.Connect(ctx, proxytest.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for tenant, ids := range l.acked {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+tenant+".employees WHERE id = ANY($1)", ids).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != len(ids) {
			t.Errorf("%s: %d of %d acknowledged inserts lost", tenant, len(ids)-n, len(ids))
		}
	}
}

// summary formats a count map in key order.
func summary(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %d", k, m[k])
	}
	return b.String()
}
