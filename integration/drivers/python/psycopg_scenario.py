#!/usr/bin/python3
"""The driver matrix scenario for psycopg 3 (Debian's python3-psycopg), always preparing (prepare_threshold=0).

Reads TP_DSN_A, TP_DSN_B, TP_TENANT_A, TP_TENANT_B and TP_MODE; see integration/drivers/doc.go. Exits 1 with a
message on the first failed check and prints "ok psycopg" at the end.
"""
import os
import sys
import threading
import time

import psycopg
from psycopg import errors

DRIVER = "psycopg"

INSERT = "INSERT INTO employees (name, email) VALUES (%s, %s) RETURNING id, tenant"
SELECT = "SELECT name, email, tenant FROM employees WHERE id = %s"
UPDATE = "UPDATE employees SET email = %s WHERE id = %s"
DELETE = "DELETE FROM employees WHERE id = %s"
TENANTS = "SELECT DISTINCT tenant FROM employees ORDER BY tenant"
FOREIGN = "SELECT count(*) FROM employees WHERE tenant <> %s"
COUNT_LIKE = "SELECT count(*) FROM employees WHERE name LIKE %s"
DELETE_LIKE = "DELETE FROM employees WHERE name LIKE %s"


def fail(msg):
    print(f"FAIL {DRIVER}: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def env(key, default=None):
    value = os.environ.get(key, default)
    if not value:
        fail(f"environment variable {key} is not set")
    return value


def connect(dsn):
    # autocommit: transactions are opened and closed by explicit BEGIN and COMMIT statements.
    return psycopg.connect(dsn, autocommit=True, prepare_threshold=0)


def scalar(conn, sql, params=None):
    return conn.execute(sql, params).fetchone()[0]


def assert_own_tenant(conn, tenant):
    seen = [r[0] for r in conn.execute(TENANTS).fetchall()]
    check(seen == [tenant], f"tenant {tenant} sees rows of tenants {seen}, want only its own")
    check(scalar(conn, FOREIGN, (tenant,)) == 0, f"tenant {tenant} counts rows of other tenants")


def create_read_update(conn, tenant, name):
    email = name + "@example.com"
    row = conn.execute(INSERT, (name, email)).fetchone()
    check(row is not None and row[1] == tenant, f"insert {name}: got {row}, want tenant {tenant}")
    ident = row[0]
    got = conn.execute(SELECT, (ident,)).fetchone()
    check(got == (name, email, tenant), f"select id {ident}: got {got}, want {(name, email, tenant)}")
    cur = conn.execute(UPDATE, ("new-" + email, ident))
    check(cur.rowcount == 1, f"update id {ident}: {cur.rowcount} rows, want 1")
    got = conn.execute(SELECT, (ident,)).fetchone()
    check(got is not None and got[1] == "new-" + email, f"select id {ident} after update: got {got}")
    return ident


def cleanup(conns):
    """Removes the rows marked by this run, also after a failure, and closes the connections."""
    for conn, mark in conns:
        try:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            conn.execute(DELETE_LIKE, (mark + "%",))
        except psycopg.Error:
            pass
        conn.close()


def main():
    dsn_a, dsn_b = env("TP_DSN_A"), env("TP_DSN_B")
    tenant_a, tenant_b = env("TP_TENANT_A", "acme"), env("TP_TENANT_B", "globex")
    run = f"py-psycopg-{os.getpid()}-{time.time_ns()}"
    mark_a, mark_b = run + "-a-", run + "-b-"
    print(f"{DRIVER} {psycopg.__version__}, libpq {psycopg.pq.version()}, mode {os.environ.get('TP_MODE', '?')}")

    a = connect(dsn_a)
    b = connect(dsn_b)
    try:
        assert_own_tenant(a, tenant_a)
        assert_own_tenant(b, tenant_b)

        # CRUD with prepared statements, reused across interleaved transactions of both tenants.
        ids_a = []
        for rnd in range(1, 4):
            a.execute("BEGIN")
            ids_a.append(create_read_update(a, tenant_a, f"{mark_a}{rnd}"))
            assert_own_tenant(a, tenant_a)
            a.execute("COMMIT")

            b.execute("BEGIN")
            id_b = create_read_update(b, tenant_b, f"{mark_b}{rnd}")
            check(scalar(b, COUNT_LIKE, (mark_a + "%",)) == 0, f"tenant {tenant_b} sees rows of {tenant_a}")
            check(b.execute(DELETE, (id_b,)).rowcount == 1, f"delete id {id_b} of {tenant_b}")
            assert_own_tenant(b, tenant_b)
            b.execute("COMMIT")
        check(scalar(a, COUNT_LIKE, (mark_a + "%",)) == 3, "tenant A's three rows are not all there")
        a.execute("BEGIN")
        for ident in ids_a:
            check(a.execute(DELETE, (ident,)).rowcount == 1, f"delete id {ident}")
        a.execute("COMMIT")
        check(scalar(a, COUNT_LIKE, (mark_a + "%",)) == 0, "tenant A's rows survived their delete")

        # An error inside a transaction raises; ROLLBACK; the connection goes on.
        a.execute("BEGIN")
        try:
            a.execute("SELECT 1 / %s::int", (0,))
            fail("SELECT 1/0 did not raise")
        except errors.DivisionByZero:
            pass
        check(a.info.transaction_status == psycopg.pq.TransactionStatus.INERROR, "not in a failed transaction")
        a.execute("ROLLBACK")
        check(scalar(a, FOREIGN, (tenant_a,)) == 0, "query after rollback")

        # A cancel from another thread: SQLSTATE 57014 within 5 s, and the connection goes on.
        timer = threading.Timer(0.3, a.cancel)
        start = time.monotonic()
        timer.start()
        try:
            a.execute("SELECT pg_sleep(10)")
            fail("pg_sleep(10) was not cancelled")
        except errors.QueryCanceled as e:
            check(e.sqlstate == "57014", f"cancel: SQLSTATE {e.sqlstate}")
        finally:
            timer.join()
        took = time.monotonic() - start
        check(took < 5, f"cancelled pg_sleep(10) returned after {took:.1f}s")
        check(scalar(a, FOREIGN, (tenant_a,)) == 0, "query after cancel")

        # COPY in and out.
        copied = 50
        with a.cursor() as cur:
            with cur.copy("COPY employees (name, email) FROM STDIN") as cp:
                for i in range(copied):
                    cp.write_row((f"{mark_a}copy-{i}", f"copy{i}@example.com"))
            check(cur.rowcount == copied, f"COPY FROM STDIN: {cur.rowcount} rows, want {copied}")
            check(scalar(a, COUNT_LIKE, (mark_a + "copy-%",)) == copied, "copied rows not all there")
            check(scalar(b, COUNT_LIKE, (mark_a + "%",)) == 0, f"tenant {tenant_b} sees rows copied by {tenant_a}")
            lines = 0
            with cur.copy(f"COPY (SELECT name, tenant FROM employees WHERE name LIKE '{mark_a}copy-%') TO STDOUT") as cp:
                for row in cp.rows():
                    check(row[1] == tenant_a, f"COPY TO STDOUT: row {row} of another tenant")
                    lines += 1
            check(lines == copied, f"COPY TO STDOUT: {lines} rows, want {copied}")
        assert_own_tenant(a, tenant_a)
        check(a.execute(DELETE_LIKE, (mark_a + "%",)).rowcount == copied, "delete copied rows")
    finally:
        cleanup(((a, mark_a), (b, mark_b)))
    print(f"ok {DRIVER}")


if __name__ == "__main__":
    try:
        main()
    except psycopg.Error as e:
        fail(f"{type(e).__name__} (SQLSTATE {e.sqlstate}): {e}")
