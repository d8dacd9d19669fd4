#!/usr/bin/python3
"""The driver matrix scenario for asyncpg (Debian's python3-asyncpg) with its statement cache on (the default).

Reads TP_DSN_A, TP_DSN_B, TP_TENANT_A, TP_TENANT_B and TP_MODE; see integration/drivers/doc.go. Exits 1 with a
message on the first failed check and prints "ok asyncpg" at the end.
"""
import asyncio
import os
import sys
import time

import asyncpg

DRIVER = "asyncpg"

INSERT = "INSERT INTO employees (name, email) VALUES ($1, $2) RETURNING id, tenant"
SELECT = "SELECT name, email, tenant FROM employees WHERE id = $1"
UPDATE = "UPDATE employees SET email = $2 WHERE id = $1"
DELETE = "DELETE FROM employees WHERE id = $1"
TENANTS = "SELECT DISTINCT tenant FROM employees ORDER BY tenant"
FOREIGN = "SELECT count(*) FROM employees WHERE tenant <> $1"
COUNT_LIKE = "SELECT count(*) FROM employees WHERE name LIKE $1"
DELETE_LIKE = "DELETE FROM employees WHERE name LIKE $1"


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def env(key, default=None):
    value = os.environ.get(key, default)
    if not value:
        raise Failure(f"environment variable {key} is not set")
    return value


def affected(status):
    """Returns the row count of a command tag such as 'DELETE 1'."""
    return int(status.split()[-1])


class Client:
    """One tenant's connection with the scenario's explicitly prepared statements."""

    @classmethod
    async def open(cls, dsn, tenant):
        self = cls()
        self.tenant = tenant
        self.conn = await asyncpg.connect(dsn)
        self.ins = await self.conn.prepare(INSERT)
        self.sel = await self.conn.prepare(SELECT)
        self.upd = await self.conn.prepare(UPDATE)
        self.dele = await self.conn.prepare(DELETE)
        return self

    async def assert_own_tenant(self):
        seen = [r[0] for r in await self.conn.fetch(TENANTS)]
        check(seen == [self.tenant], f"tenant {self.tenant} sees rows of tenants {seen}, want only its own")
        check(await self.conn.fetchval(FOREIGN, self.tenant) == 0, f"tenant {self.tenant} counts rows of others")

    async def create_read_update(self, name):
        email = name + "@example.com"
        row = await self.ins.fetchrow(name, email)
        check(row["tenant"] == self.tenant, f"insert {name}: got tenant {row['tenant']}, want {self.tenant}")
        ident = row["id"]
        got = tuple(await self.sel.fetchrow(ident))
        check(got == (name, email, self.tenant), f"select id {ident}: got {got}")
        await self.upd.fetch(ident, "new-" + email)
        check(self.upd.get_statusmsg() == "UPDATE 1", f"update id {ident}: {self.upd.get_statusmsg()}")
        got = await self.sel.fetchrow(ident)
        check(got["email"] == "new-" + email, f"select id {ident} after update: got {tuple(got)}")
        return ident

    async def delete(self, ident):
        await self.dele.fetch(ident)
        check(self.dele.get_statusmsg() == "DELETE 1", f"delete id {ident}: {self.dele.get_statusmsg()}")
        check(await self.sel.fetchrow(ident) is None, f"id {ident} survived its delete")


async def scenario(a, b, mark_a, mark_b):
    await a.assert_own_tenant()
    await b.assert_own_tenant()

    # CRUD with prepared statements, reused across interleaved transactions of both tenants.
    ids_a = []
    for rnd in range(1, 4):
        await a.conn.execute("BEGIN")
        ids_a.append(await a.create_read_update(f"{mark_a}{rnd}"))
        await a.assert_own_tenant()
        await a.conn.execute("COMMIT")

        await b.conn.execute("BEGIN")
        id_b = await b.create_read_update(f"{mark_b}{rnd}")
        check(await b.conn.fetchval(COUNT_LIKE, mark_a + "%") == 0, f"tenant {b.tenant} sees rows of {a.tenant}")
        await b.delete(id_b)
        await b.assert_own_tenant()
        await b.conn.execute("COMMIT")
    check(await a.conn.fetchval(COUNT_LIKE, mark_a + "%") == 3, "tenant A's three rows are not all there")
    await a.conn.execute("BEGIN")
    for ident in ids_a:
        await a.delete(ident)
    await a.conn.execute("COMMIT")
    check(await a.conn.fetchval(COUNT_LIKE, mark_a + "%") == 0, "tenant A's rows survived their delete")

    # An error inside a transaction raises; ROLLBACK; the connection goes on.
    await a.conn.execute("BEGIN")
    try:
        await a.conn.fetchval("SELECT 1 / $1::int", 0)
        raise Failure("SELECT 1/0 did not raise")
    except asyncpg.DivisionByZeroError as e:
        check(e.sqlstate == "22012", f"1/0: SQLSTATE {e.sqlstate}")
    await a.conn.execute("ROLLBACK")
    check(await a.conn.fetchval(FOREIGN, a.tenant) == 0, "query after rollback")

    # A cancel: asyncpg's timeout= sends a CancelRequest and raises TimeoutError (asyncpg reports no
    # SQLSTATE 57014 to the caller); the cancel reached the server when the next query answers at once
    # instead of after the 10 s sleep.
    start = time.monotonic()
    try:
        await a.conn.fetchval("SELECT pg_sleep(10)", timeout=0.3)
        raise Failure("pg_sleep(10) was not cancelled")
    except asyncio.TimeoutError:
        pass
    check(await a.conn.fetchval(FOREIGN, a.tenant) == 0, "query after cancel")
    took = time.monotonic() - start
    check(took < 5, f"cancelled pg_sleep(10) and the next query took {took:.1f}s")

    # COPY in and out.
    copied = 50
    rows = [(f"{mark_a}copy-{i}", f"copy{i}@example.com") for i in range(copied)]
    status = await a.conn.copy_records_to_table("employees", records=rows, columns=["name", "email"])
    check(affected(status) == copied, f"copy_records_to_table: {status}, want {copied} rows")
    check(await a.conn.fetchval(COUNT_LIKE, mark_a + "copy-%") == copied, "copied rows not all there")
    check(await b.conn.fetchval(COUNT_LIKE, mark_a + "%") == 0, f"tenant {b.tenant} sees rows copied by {a.tenant}")
    chunks = []

    async def sink(data):
        chunks.append(data)

    status = await a.conn.copy_from_query(
        "SELECT name, tenant FROM employees WHERE name LIKE $1", mark_a + "copy-%", output=sink)
    lines = b"".join(chunks).decode().splitlines()
    check(affected(status) == copied and len(lines) == copied, f"copy_from_query: {status}, {len(lines)} lines")
    check(all(line.split("\t")[1] == a.tenant for line in lines), "copy_from_query returned another tenant's rows")
    await a.assert_own_tenant()
    status = await a.conn.execute(DELETE_LIKE, mark_a + "%")
    check(affected(status) == copied, f"delete copied rows: {status}")


async def cleanup(client, mark):
    """Removes the rows marked by this run, also after a failure, and closes the connection."""
    try:
        if client.conn.is_in_transaction():
            await client.conn.execute("ROLLBACK")
        await client.conn.execute(DELETE_LIKE, mark + "%")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        pass
    await client.conn.close()


async def main():
    dsn_a, dsn_b = env("TP_DSN_A"), env("TP_DSN_B")
    tenant_a, tenant_b = env("TP_TENANT_A", "acme"), env("TP_TENANT_B", "globex")
    run = f"py-asyncpg-{os.getpid()}-{time.time_ns()}"
    mark_a, mark_b = run + "-a-", run + "-b-"
    print(f"{DRIVER} {asyncpg.__version__}, mode {os.environ.get('TP_MODE', '?')}")
    a = await Client.open(dsn_a, tenant_a)
    b = await Client.open(dsn_b, tenant_b)
    try:
        await scenario(a, b, mark_a, mark_b)
    finally:
        await cleanup(a, mark_a)
        await cleanup(b, mark_b)
    print(f"ok {DRIVER}")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Failure as e:
        print(f"FAIL {DRIVER}: {e}", file=sys.stderr)
        sys.exit(1)
    except asyncpg.PostgresError as e:
        print(f"FAIL {DRIVER}: {type(e).__name__} (SQLSTATE {e.sqlstate}): {e}", file=sys.stderr)
        sys.exit(1)
