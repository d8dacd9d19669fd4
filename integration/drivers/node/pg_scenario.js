'use strict'
// The driver matrix scenario for node-postgres (npm package pg) with named prepared statements, and
// pg-copy-streams for COPY. Reads TP_DSN_A, TP_DSN_B, TP_TENANT_A, TP_TENANT_B and TP_MODE; see
// integration/drivers/doc.go. Exits 1 with a message on the first failed check and prints "ok node-pg" at
// the end.

const { pipeline } = require('node:stream/promises')
const { Readable, Writable } = require('node:stream')
const pg = require('pg')
const { from: copyFrom, to: copyTo } = require('pg-copy-streams')

const DRIVER = 'node-pg'

// pg's own Client.cancel reads its deprecated Client.activeQuery; keep that warning out of the output.
const emitWarning = process.emitWarning
process.emitWarning = (warning, ...rest) => {
  if (!String(warning).includes('Client.activeQuery')) emitWarning.call(process, warning, ...rest)
}

// Named prepared statements: node-postgres parses each name once per connection and then only binds it.
const INSERT = 'INSERT INTO employees (name, email) VALUES ($1, $2) RETURNING id, tenant'
const SELECT = 'SELECT name, email, tenant FROM employees WHERE id = $1'
const UPDATE = 'UPDATE employees SET email = $2 WHERE id = $1'
const DELETE = 'DELETE FROM employees WHERE id = $1'
const TENANTS = 'SELECT DISTINCT tenant FROM employees ORDER BY tenant'
const FOREIGN = 'SELECT count(*)::int AS n FROM employees WHERE tenant <> $1'
const COUNT_LIKE = 'SELECT count(*)::int AS n FROM employees WHERE name LIKE $1'
const DELETE_LIKE = 'DELETE FROM employees WHERE name LIKE $1'

class Failure extends Error {}

function check (cond, msg) {
  if (!cond) throw new Failure(msg)
}

function env (key, def) {
  const v = process.env[key] || def
  if (!v) throw new Failure(`environment variable ${key} is not set`)
  return v
}

async function named (client, name, text, values) {
  return client.query({ name, text, values })
}

async function count (client, text, value) {
  return (await named(client, text === FOREIGN ? 'tp_foreign' : 'tp_count_like', text, [value])).rows[0].n
}

async function assertOwnTenant (client, tenant) {
  const seen = (await client.query(TENANTS)).rows.map(r => r.tenant)
  check(seen.length === 1 && seen[0] === tenant, `tenant ${tenant} sees rows of tenants ${JSON.stringify(seen)}, want only its own`)
  check(await count(client, FOREIGN, tenant) === 0, `tenant ${tenant} counts rows of other tenants`)
}

async function createReadUpdate (client, tenant, name) {
  const email = `${name}@example.com`
  const ins = await named(client, 'tp_ins', INSERT, [name, email])
  check(ins.rows[0].tenant === tenant, `insert ${name}: got tenant ${ins.rows[0].tenant}, want ${tenant}`)
  const id = ins.rows[0].id
  let got = (await named(client, 'tp_sel', SELECT, [id])).rows[0]
  check(got && got.name === name && got.email === email && got.tenant === tenant, `select id ${id}: got ${JSON.stringify(got)}`)
  const upd = await named(client, 'tp_upd', UPDATE, [id, `new-${email}`])
  check(upd.rowCount === 1, `update id ${id}: ${upd.rowCount} rows, want 1`)
  got = (await named(client, 'tp_sel', SELECT, [id])).rows[0]
  check(got && got.email === `new-${email}`, `select id ${id} after update: got ${JSON.stringify(got)}`)
  return id
}

async function expectError (promise, sqlstate, what) {
  try {
    await promise
  } catch (e) {
    check(e.code === sqlstate, `${what}: want SQLSTATE ${sqlstate}, got ${e.code} (${e.message})`)
    return
  }
  throw new Failure(`${what} did not raise`)
}

async function scenario (a, b, tenantA, tenantB, markA, markB, dsnA) {
  await assertOwnTenant(a, tenantA)
  await assertOwnTenant(b, tenantB)

  // CRUD with named prepared statements, reused across interleaved transactions of both tenants.
  const idsA = []
  for (let round = 1; round <= 3; round++) {
    await a.query('BEGIN')
    idsA.push(await createReadUpdate(a, tenantA, `${markA}${round}`))
    await assertOwnTenant(a, tenantA)
    await a.query('COMMIT')

    await b.query('BEGIN')
    const idB = await createReadUpdate(b, tenantB, `${markB}${round}`)
    check(await count(b, COUNT_LIKE, `${markA}%`) === 0, `tenant ${tenantB} sees rows of ${tenantA}`)
    check((await named(b, 'tp_del', DELETE, [idB])).rowCount === 1, `delete id ${idB} of ${tenantB}`)
    await assertOwnTenant(b, tenantB)
    await b.query('COMMIT')
  }
  check(await count(a, COUNT_LIKE, `${markA}%`) === 3, "tenant A's three rows are not all there")
  await a.query('BEGIN')
  for (const id of idsA) {
    check((await named(a, 'tp_del', DELETE, [id])).rowCount === 1, `delete id ${id}`)
  }
  await a.query('COMMIT')
  check(await count(a, COUNT_LIKE, `${markA}%`) === 0, "tenant A's rows survived their delete")

  // An error inside a transaction rejects; ROLLBACK; the connection goes on.
  await a.query('BEGIN')
  await expectError(named(a, 'tp_div', 'SELECT 1 / $1::int', [0]), '22012', 'SELECT 1/0')
  await a.query('ROLLBACK')
  check(await count(a, FOREIGN, tenantA) === 0, 'query after rollback')

  // A cancel: node-postgres cancels a running query with Client.prototype.cancel(client, query) called on a
  // second, unconnected client, which sends the CancelRequest with the first client's BackendKeyData.
  const sleep = new pg.Query('SELECT pg_sleep(10)')
  const done = new Promise((resolve, reject) => {
    sleep.on('end', resolve)
    sleep.on('error', reject)
  })
  const start = Date.now()
  a.query(sleep)
  await new Promise(resolve => setTimeout(resolve, 300))
  new pg.Client({ connectionString: dsnA }).cancel(a, sleep)
  await expectError(done, '57014', 'cancelled pg_sleep(10)')
  const took = (Date.now() - start) / 1000
  check(took < 5, `cancelled pg_sleep(10) returned after ${took}s`)
  check(await count(a, FOREIGN, tenantA) === 0, 'query after cancel')

  // COPY in and out with pg-copy-streams.
  const copied = 50
  const lines = []
  for (let i = 0; i < copied; i++) lines.push(`${markA}copy-${i}\tcopy${i}@example.com\n`)
  const into = a.query(copyFrom('COPY employees (name, email) FROM STDIN'))
  await pipeline(Readable.from(lines), into)
  check(into.rowCount === copied, `COPY FROM STDIN: ${into.rowCount} rows, want ${copied}`)
  check(await count(a, COUNT_LIKE, `${markA}copy-%`) === copied, 'copied rows not all there')
  check(await count(b, COUNT_LIKE, `${markA}%`) === 0, `tenant ${tenantB} sees rows copied by ${tenantA}`)
  let out = ''
  await pipeline(
    a.query(copyTo(`COPY (SELECT name, tenant FROM employees WHERE name LIKE '${markA}copy-%') TO STDOUT`)),
    new Writable({ write (chunk, _, cb) { out += chunk; cb() } })
  )
  const rows = out.split('\n').filter(Boolean)
  check(rows.length === copied, `COPY TO STDOUT: ${rows.length} rows, want ${copied}`)
  check(rows.every(r => r.split('\t')[1] === tenantA), "COPY TO STDOUT returned another tenant's rows")
  await assertOwnTenant(a, tenantA)
  check((await named(a, 'tp_del_like', DELETE_LIKE, [`${markA}%`])).rowCount === copied, 'delete copied rows')
}

// cleanup removes the rows marked by this run, also after a failure, and closes the connection.
async function cleanup (client, mark) {
  try {
    await client.query('ROLLBACK')
    await client.query(DELETE_LIKE, [`${mark}%`])
  } catch (e) {
    // The connection may be broken by the failure being reported.
  }
  await client.end().catch(() => {})
}

async function main () {
  const dsnA = env('TP_DSN_A')
  const dsnB = env('TP_DSN_B')
  const tenantA = env('TP_TENANT_A', 'acme')
  const tenantB = env('TP_TENANT_B', 'globex')
  const run = `node-pg-${process.pid}-${Date.now()}`
  const markA = `${run}-a-`
  const markB = `${run}-b-`
  console.log(`${DRIVER} ${require('pg/package.json').version}, mode ${process.env.TP_MODE || '?'}`)
  const a = new pg.Client({ connectionString: dsnA })
  const b = new pg.Client({ connectionString: dsnB })
  await a.connect()
  await b.connect()
  try {
    await scenario(a, b, tenantA, tenantB, markA, markB, dsnA)
  } finally {
    await cleanup(a, markA)
    await cleanup(b, markB)
  }
  console.log(`ok ${DRIVER}`)
}

main().catch(e => {
  const detail = e instanceof Failure ? e.message : `${e.code ? `SQLSTATE ${e.code}: ` : ''}${e.stack}`
  console.error(`FAIL ${DRIVER}: ${detail}`)
  process.exit(1)
})
