package main

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

// opTimeout bounds one operation: one that takes longer counts as hung.
const opTimeout = 30 * time.Second

// client is one soak client: it works as its tenant's user until the context ends, mixing reads, writes,
// errors, cancels and disconnects, and records what happened in st.
type client struct {
	id     int
	tenant string
	url    string
	simple bool // simple protocol; otherwise pgx's default, prepared statements
	st     *stats
	rng    *rand.Rand
	conn   *pgx.Conn
}

// run loops until ctx ends.
func (c *client) run(ctx context.Context) {
	defer c.disconnect()
	for ctx.Err() == nil {
		if c.conn == nil && !c.connect(ctx) {
			continue
		}
		switch k := c.rng.IntN(100); {
		case k < 40:
			c.read()
		case k < 70:
			c.write()
		case k < 80:
			c.fail()
		case k < 90:
			c.cancel()
		case k < 95:
			c.autocommitWrite()
		default:
			c.disconnect()
		}
	}
}

func (c *client) connect(ctx context.Context) bool {
	cfg, err := pgx.ParseConfig(c.url)
	if err != nil {
		panic(err)
	}
	if c.simple {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	}
	// A cancelled context sends a CancelRequest through the proxy, as most drivers do.
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 5 * time.Second}
	}
	octx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(octx, cfg)
	if err != nil {
		if ctx.Err() == nil {
			c.st.failed("connect", err, octx.Err() != nil)
			time.Sleep(100 * time.Millisecond)
		}
		return false
	}
	c.conn = conn
	c.st.connects.Add(1)
	return true
}

func (c *client) disconnect() {
	if c.conn != nil {
		c.conn.Close(context.Background())
		c.conn = nil
	}
}

// op runs fn with the operation timeout; on an unexpected error it records it and drops the connection.
func (c *client) op(what string, fn func(ctx context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	err := fn(ctx)
	if err == nil {
		c.st.tx.Add(1)
		return
	}
	c.st.failed(what, err, ctx.Err() != nil)
	c.disconnect()
}

// checkRows counts the rows of rows whose tenant is not the client's.
func (c *client) checkRows(rows pgx.Rows) error {
	for rows.Next() {
		var tenant string
		if err := rows.Scan(&tenant); err != nil {
			rows.Close()
			return err
		}
		if tenant != c.tenant {
			c.st.cross.Add(1)
		}
	}
	return rows.Err()
}

// read reads the newest rows, or one time in twenty every row, and checks each is the tenant's.
func (c *client) read() {
	c.op("read", func(ctx context.Context) error {
		sql := "SELECT tenant FROM employees ORDER BY id DESC LIMIT 20"
		if c.rng.IntN(20) == 0 {
			sql = "SELECT tenant FROM employees"
		}
		rows, err := c.conn.Query(ctx, sql)
		if err != nil {
			return err
		}
		return c.checkRows(rows)
	})
}

// write inserts a row and reads in one transaction; the insert counts as acknowledged once the commit is.
func (c *client) write() {
	c.op("write", func(ctx context.Context) error {
		tx, err := c.conn.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.Background())
		var id int32
		var tenant string
		if err := tx.QueryRow(ctx, "INSERT INTO employees (name, email) VALUES ($1, $2) RETURNING id, tenant",
			"soak", "soak@example.com").Scan(&id, &tenant); err != nil {
			return err
		}
		if tenant != c.tenant {
			c.st.cross.Add(1)
		}
		rows, err := tx.Query(ctx, "SELECT tenant FROM employees WHERE id <= $1 ORDER BY id DESC LIMIT 5", id)
		if err != nil {
			return err
		}
		if err := c.checkRows(rows); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		c.st.ack(c.tenant, id)
		return nil
	})
}

// autocommitWrite inserts a row outside a transaction block.
func (c *client) autocommitWrite() {
	c.op("write", func(ctx context.Context) error {
		var id int32
		var tenant string
		if err := c.conn.QueryRow(ctx, "INSERT INTO employees (name) VALUES ($1) RETURNING id, tenant", "soak-autocommit").Scan(&id, &tenant); err != nil {
			return err
		}
		if tenant != c.tenant {
			c.st.cross.Add(1)
		}
		c.st.ack(c.tenant, id)
		return nil
	})
}

// fail runs a statement that errors (division by zero), half the time inside a transaction, and checks
// the session is usable afterwards.
func (c *client) fail() {
	c.op("error", func(ctx context.Context) error {
		var err error
		if c.rng.IntN(2) == 0 {
			_, err = c.conn.Exec(ctx, "SELECT 1/0")
		} else {
			tx, terr := c.conn.Begin(ctx)
			if terr != nil {
				return terr
			}
			_, err = tx.Exec(ctx, "SELECT 1/0")
			if rerr := tx.Rollback(ctx); rerr != nil && sqlstate(err) == "22012" {
				return rerr
			}
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "22012" {
			if err == nil {
				err = errors.New("SELECT 1/0 succeeded")
			}
			return err
		}
		c.st.expected("22012")
		var one int
		return c.conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	})
}

// cancel runs a slow query with a short deadline, so the driver sends a CancelRequest through the proxy,
// and checks the session is usable afterwards.
func (c *client) cancel() {
	c.op("cancel", func(ctx context.Context) error {
		qctx, cancel := context.WithTimeout(ctx, time.Duration(20+c.rng.IntN(80))*time.Millisecond)
		_, err := c.conn.Exec(qctx, "SELECT pg_sleep(2)")
		cancel()
		var pe *pgconn.PgError
		switch {
		case errors.As(err, &pe) && pe.Code == "57014":
			c.st.expected("57014")
		case err != nil && pgconn.Timeout(err) && sqlstate(err) == "":
			// pgx gave up waiting before the cancel's error came back and closed the connection.
			c.st.expected("client timeout")
			c.disconnect()
			return nil
		case err == nil:
			// The cancel went nowhere and the query ran to its end: counted apart, the session is fine.
			c.st.lostCancels.Add(1)
			return nil
		default:
			return err
		}
		var one int
		return c.conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	})
}

// sqlstate returns the SQLSTATE of a PostgreSQL error, or "".
func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}
