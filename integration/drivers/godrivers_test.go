package drivers

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/lib/pq"
)

// The scenario's statements. Those of the CRUD cycle are prepared under the names in preparedStatements on
// both tenants' connections (the same names and texts for two tenants); the others run as plain SQL text,
// which each pgx QueryExecMode sends its own way (cached named statements, unnamed ones, simple queries).
const (
	sqlInsert     = "INSERT INTO employees (name, email) VALUES ($1, $2) RETURNING id, tenant"
	sqlSelect     = "SELECT name, email, tenant FROM employees WHERE id = $1"
	sqlUpdate     = "UPDATE employees SET email = $2 WHERE id = $1"
	sqlDelete     = "DELETE FROM employees WHERE id = $1"
	sqlTenants    = "SELECT DISTINCT tenant FROM employees ORDER BY tenant"
	sqlForeign    = "SELECT count(*) FROM employees WHERE tenant <> $1"
	sqlCountLike  = "SELECT count(*) FROM employees WHERE name LIKE $1"
	sqlDeleteLike = "DELETE FROM employees WHERE name LIKE $1"
	sqlDivide     = "SELECT 1 / $1::int"
	sqlSleep      = "SELECT pg_sleep(10)"
)

var preparedStatements = map[string]string{
	"tp_ins": sqlInsert,
	"tp_sel": sqlSelect,
	"tp_upd": sqlUpdate,
	"tp_del": sqlDelete,
}

// errCopyOutUnsupported is returned by goConn.copyOut of a driver without COPY TO STDOUT.
var errCopyOutUnsupported = errors.New("the driver has no COPY TO STDOUT")

// goConn is one connection of a Go driver, reduced to what the scenario needs. A stmt argument is SQL text
// or a name given to prepare.
type goConn interface {
	prepare(ctx context.Context, name, sql string) error
	exec(ctx context.Context, stmt string, args ...any) (rowsAffected int64, err error)
	queryRow(ctx context.Context, stmt string, args []any, dest ...any) error
	queryStrings(ctx context.Context, stmt string, args ...any) ([]string, error)
	// copyIn copies rows of (name, email) into employees and returns the number of rows copied.
	copyIn(ctx context.Context, rows [][]any) (int64, error)
	// copyOut runs a COPY ... TO STDOUT and returns the number of lines received.
	copyOut(ctx context.Context, sql string) (int64, error)
	close()
}

// goDriver is one Go driver configuration of the matrix.
type goDriver struct {
	name string
	open func(ctx context.Context, dsn string) (goConn, error)
	// cancelClosesConn is set when the driver gives up its connection after cancelling a query for a context
	// (lib/pq marks it bad on purpose), so the scenario closes it and continues on a new connection.
	cancelClosesConn bool
}

// TestGoDriverScenario runs the scenario with pgx in every QueryExecMode and with lib/pq, in each pool mode.
func TestGoDriverScenario(t *testing.T) {
	drivers := []goDriver{
		{name: "pgx/CacheStatement", open: openPgx(pgx.QueryExecModeCacheStatement)},
		{name: "pgx/CacheDescribe", open: openPgx(pgx.QueryExecModeCacheDescribe)},
		{name: "pgx/DescribeExec", open: openPgx(pgx.QueryExecModeDescribeExec)},
		{name: "pgx/Exec", open: openPgx(pgx.QueryExecModeExec)},
		{name: "pgx/SimpleProtocol", open: openPgx(pgx.QueryExecModeSimpleProtocol)},
		{name: "lib/pq", open: openPQ, cancelClosesConn: true},
	}
	forEachMode(t, func(t *testing.T, mode string) {
		for _, d := range drivers {
			t.Run(d.name, func(t *testing.T) {
				runGoScenario(t, d, startTarget(t, mode))
			})
		}
	})
}

// goScenario carries the state of one run of the scenario.
type goScenario struct {
	t                *testing.T
	ctx              context.Context
	tenantA, tenantB string
	markA, markB     string // name prefixes of the rows this run inserts, per tenant
}

func runGoScenario(t *testing.T, d goDriver, tg target) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tenantA, tenantB, dsnA, dsnB := tg.tenantA, tg.tenantB, tg.dsnA, tg.dsnB
	run := fmt.Sprintf("go-%s-%d-%d", strings.ReplaceAll(d.name, "/", "-"), os.Getpid(), time.Now().UnixNano())
	s := &goScenario{t: t, ctx: ctx, tenantA: tenantA, tenantB: tenantB, markA: run + "-a-", markB: run + "-b-"}

	a := s.connect(d, dsnA, s.markA)
	b := s.connect(d, dsnB, s.markB)
	s.assertOwnTenant(a, tenantA)
	s.assertOwnTenant(b, tenantB)

	// CRUD with the prepared statements, reused across interleaved transactions of both tenants.
	var idsA []int64
	for round := 1; round <= 3; round++ {
		s.exec(a, "BEGIN")
		idsA = append(idsA, s.createReadUpdate(a, tenantA, fmt.Sprintf("%s%d", s.markA, round)))
		s.assertOwnTenant(a, tenantA)
		s.exec(a, "COMMIT")

		s.exec(b, "BEGIN")
		idB := s.createReadUpdate(b, tenantB, fmt.Sprintf("%s%d", s.markB, round))
		s.wantCount(b, 0, sqlCountLike, s.markA+"%")
		s.wantAffected(b, 1, "tp_del", idB)
		s.assertOwnTenant(b, tenantB)
		s.exec(b, "COMMIT")
	}
	s.wantCount(a, 3, sqlCountLike, s.markA+"%")
	s.exec(a, "BEGIN")
	for _, id := range idsA {
		s.wantAffected(a, 1, "tp_del", id)
	}
	s.exec(a, "COMMIT")
	s.wantCount(a, 0, sqlCountLike, s.markA+"%")
	s.wantCount(b, 0, sqlCountLike, s.markB+"%")

	// An error inside a transaction, then rollback, and the connection goes on.
	s.exec(a, "BEGIN")
	var q int64
	err := a.queryRow(ctx, sqlDivide, []any{0}, &q)
	if got := sqlstate(err); got != "22012" {
		t.Fatalf("1/0 in a transaction: want SQLSTATE 22012, got %q (%v)", got, err)
	}
	s.exec(a, "ROLLBACK")
	s.wantCount(a, 0, sqlForeign, tenantA)

	// A cancel of a long query: SQLSTATE 57014 within 5 s, and the connection goes on.
	sleepCtx, stop := context.WithTimeout(ctx, 300*time.Millisecond)
	start := time.Now()
	_, err = a.exec(sleepCtx, sqlSleep)
	stop()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("cancelled pg_sleep(10) returned after %v, want < 5s", took)
	}
	if got := sqlstate(err); got != "57014" {
		t.Fatalf("cancelled pg_sleep(10): want SQLSTATE 57014, got %q (%v)", got, err)
	}
	if d.cancelClosesConn {
		// The driver only marks the connection bad; closing it gives its server connection back, which the
		// new one needs in session pooling on a pool of two.
		a.close()
		a = s.connect(d, dsnA, s.markA)
	}
	s.wantCount(a, 0, sqlForeign, tenantA)
	s.wantAffected(a, 0, "tp_del", int64(-1))

	// COPY in and out.
	const copied = 50
	rows := make([][]any, copied)
	for i := range rows {
		rows[i] = []any{fmt.Sprintf("%scopy-%d", s.markA, i), fmt.Sprintf("copy%d@example.com", i)}
	}
	n, err := a.copyIn(ctx, rows)
	if err != nil || n != copied {
		t.Fatalf("COPY employees FROM STDIN: %d rows, %v; want %d", n, err, copied)
	}
	s.wantCount(a, copied, sqlCountLike, s.markA+"copy-%")
	s.wantCount(a, 0, sqlForeign, tenantA)
	s.wantCount(b, 0, sqlCountLike, s.markA+"%")
	n, err = a.copyOut(ctx, fmt.Sprintf("COPY (SELECT name, tenant FROM employees WHERE name LIKE '%scopy-%%') TO STDOUT", s.markA))
	switch {
	case errors.Is(err, errCopyOutUnsupported):
		t.Logf("COPY TO STDOUT not checked: %v", err)
	case err != nil || n != copied:
		t.Fatalf("COPY ... TO STDOUT: %d lines, %v; want %d", n, err, copied)
	}
	s.wantAffected(a, copied, sqlDeleteLike, s.markA+"%")
	s.wantCount(a, 0, sqlCountLike, s.markA+"%")
}

// connect opens a connection, prepares the scenario's statements on it, and removes the rows marked mark
// when the test ends, also after a failure.
func (s *goScenario) connect(d goDriver, dsn, mark string) goConn {
	s.t.Helper()
	c, err := d.open(s.ctx, dsn)
	if err != nil {
		s.t.Fatalf("connect %s: %v", redact(dsn), err)
	}
	s.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.exec(ctx, "ROLLBACK")
		c.exec(ctx, sqlDeleteLike, mark+"%")
		c.close()
	})
	for name, sql := range preparedStatements {
		if err := c.prepare(s.ctx, name, sql); err != nil {
			s.t.Fatalf("prepare %s: %v", name, err)
		}
	}
	return c
}

// createReadUpdate inserts an employee named name, reads it back, updates its email and reads it again, all
// with the prepared statements, and returns its id.
func (s *goScenario) createReadUpdate(c goConn, tenant, name string) int64 {
	s.t.Helper()
	var id int64
	var gotTenant, gotName, email string
	if err := c.queryRow(s.ctx, "tp_ins", []any{name, name + "@example.com"}, &id, &gotTenant); err != nil {
		s.t.Fatalf("insert %s: %v", name, err)
	}
	if gotTenant != tenant {
		s.t.Fatalf("insert %s: row got tenant %q, want %q", name, gotTenant, tenant)
	}
	if err := c.queryRow(s.ctx, "tp_sel", []any{id}, &gotName, &email, &gotTenant); err != nil {
		s.t.Fatalf("select id %d: %v", id, err)
	}
	if gotName != name || email != name+"@example.com" || gotTenant != tenant {
		s.t.Fatalf("select id %d: got (%q, %q, %q), want (%q, %q, %q)", id, gotName, email, gotTenant, name, name+"@example.com", tenant)
	}
	s.wantAffected(c, 1, "tp_upd", id, "new-"+name+"@example.com")
	if err := c.queryRow(s.ctx, "tp_sel", []any{id}, &gotName, &email, &gotTenant); err != nil {
		s.t.Fatalf("select id %d after update: %v", id, err)
	}
	if email != "new-"+name+"@example.com" {
		s.t.Fatalf("select id %d after update: email %q, want %q", id, email, "new-"+name+"@example.com")
	}
	return id
}

// assertOwnTenant checks that c sees rows of tenant only.
func (s *goScenario) assertOwnTenant(c goConn, tenant string) {
	s.t.Helper()
	got, err := c.queryStrings(s.ctx, sqlTenants)
	if err != nil {
		s.t.Fatalf("%s: %v", sqlTenants, err)
	}
	if len(got) != 1 || got[0] != tenant {
		s.t.Fatalf("tenant %s sees rows of tenants %q, want only its own", tenant, got)
	}
	s.wantCount(c, 0, sqlForeign, tenant)
}

func (s *goScenario) exec(c goConn, stmt string) {
	s.t.Helper()
	if _, err := c.exec(s.ctx, stmt); err != nil {
		s.t.Fatalf("%s: %v", stmt, err)
	}
}

func (s *goScenario) wantAffected(c goConn, want int64, stmt string, args ...any) {
	s.t.Helper()
	n, err := c.exec(s.ctx, stmt, args...)
	if err != nil || n != want {
		s.t.Fatalf("%s %v: %d rows, %v; want %d rows", stmt, args, n, err, want)
	}
}

func (s *goScenario) wantCount(c goConn, want int64, stmt string, args ...any) {
	s.t.Helper()
	var n int64
	if err := c.queryRow(s.ctx, stmt, args, &n); err != nil || n != want {
		s.t.Fatalf("%s %v: %d, %v; want %d", stmt, args, n, err, want)
	}
}

// sqlstate returns the SQLSTATE of a server error reported by pgx or lib/pq, or "" for other errors.
func sqlstate(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		return string(pqErr.Code)
	}
	return ""
}

// redact hides the password of a URL DSN.
func redact(dsn string) string {
	if cfg, err := pgconn.ParseConfig(dsn); err == nil {
		return fmt.Sprintf("host=%s port=%d dbname=%s user=%s", cfg.Host, cfg.Port, cfg.Database, cfg.User)
	}
	return "(unparsable DSN)"
}

// pgxConn is a goConn of pgx in one QueryExecMode; explicitly prepared statements are used by name in every
// mode. A cancelled context makes pgx send a CancelRequest (CancelRequestContextWatcherHandler) rather than
// close the connection as pgx's default handler does, so the connection lives on after a cancel.
type pgxConn struct{ conn *pgx.Conn }

func openPgx(mode pgx.QueryExecMode) func(ctx context.Context, dsn string) (goConn, error) {
	return func(ctx context.Context, dsn string) (goConn, error) {
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			return nil, err
		}
		cfg.DefaultQueryExecMode = mode
		cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
			return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: 4 * time.Second}
		}
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return nil, err
		}
		return &pgxConn{conn: conn}, nil
	}
}

func (c *pgxConn) prepare(ctx context.Context, name, sql string) error {
	_, err := c.conn.Prepare(ctx, name, sql)
	return err
}

func (c *pgxConn) exec(ctx context.Context, stmt string, args ...any) (int64, error) {
	tag, err := c.conn.Exec(ctx, stmt, args...)
	return tag.RowsAffected(), err
}

func (c *pgxConn) queryRow(ctx context.Context, stmt string, args []any, dest ...any) error {
	return c.conn.QueryRow(ctx, stmt, args...).Scan(dest...)
}

func (c *pgxConn) queryStrings(ctx context.Context, stmt string, args ...any) ([]string, error) {
	rows, _ := c.conn.Query(ctx, stmt, args...)
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func (c *pgxConn) copyIn(ctx context.Context, rows [][]any) (int64, error) {
	return c.conn.CopyFrom(ctx, pgx.Identifier{"employees"}, []string{"name", "email"}, pgx.CopyFromRows(rows))
}

func (c *pgxConn) copyOut(ctx context.Context, sql string) (int64, error) {
	pr, pw := io.Pipe()
	lines := make(chan int64, 1)
	go func() {
		var n int64
		for sc := bufio.NewScanner(pr); sc.Scan(); n++ {
		}
		lines <- n
	}()
	_, err := c.conn.PgConn().CopyTo(ctx, pw, sql)
	pw.Close()
	return <-lines, err
}

func (c *pgxConn) close() { c.conn.Close(context.Background()) }

// pqConn is a goConn of lib/pq through database/sql, pinned to one connection; prepare makes a named
// server-side statement (lib/pq names them "1", "2", ...).
type pqConn struct {
	db    *sql.DB
	conn  *sql.Conn
	stmts map[string]*sql.Stmt
}

func openPQ(ctx context.Context, dsn string) (goConn, error) {
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &pqConn{db: db, conn: conn, stmts: map[string]*sql.Stmt{}}, nil
}

func (c *pqConn) prepare(ctx context.Context, name, sql string) error {
	st, err := c.conn.PrepareContext(ctx, sql)
	if err != nil {
		return err
	}
	c.stmts[name] = st
	return nil
}

func (c *pqConn) exec(ctx context.Context, stmt string, args ...any) (int64, error) {
	var res sql.Result
	var err error
	if st, ok := c.stmts[stmt]; ok {
		res, err = st.ExecContext(ctx, args...)
	} else {
		res, err = c.conn.ExecContext(ctx, stmt, args...)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (c *pqConn) queryRow(ctx context.Context, stmt string, args []any, dest ...any) error {
	if st, ok := c.stmts[stmt]; ok {
		return st.QueryRowContext(ctx, args...).Scan(dest...)
	}
	return c.conn.QueryRowContext(ctx, stmt, args...).Scan(dest...)
}

func (c *pqConn) queryStrings(ctx context.Context, stmt string, args ...any) ([]string, error) {
	rows, err := c.conn.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func (c *pqConn) copyIn(ctx context.Context, rows [][]any) (int64, error) {
	tx, err := c.conn.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, pq.CopyIn("employees", "name", "email"))
	if err != nil {
		return 0, err
	}
	for _, r := range rows {
		if _, err := st.ExecContext(ctx, r...); err != nil {
			return 0, err
		}
	}
	res, err := st.ExecContext(ctx)
	if err != nil {
		return 0, err
	}
	if err := st.Close(); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (c *pqConn) copyOut(context.Context, string) (int64, error) {
	return 0, errCopyOutUnsupported
}

func (c *pqConn) close() {
	for _, st := range c.stmts {
		st.Close()
	}
	c.conn.Close()
	c.db.Close()
}
