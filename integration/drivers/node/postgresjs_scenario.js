'use strict'
// The driver matrix scenario for postgres.js (npm package postgres) with prepared statements on
// (prepare: true, its default). Reads TP_DSN_A, TP_DSN_B, TP_TENANT_A, TP_TENANT_B and TP_MODE; see
// integration/drivers/doc.go. Exits 1 with a message on the first failed check and prints "ok postgresjs" at
// the end.

const { pipeline } = require('node:stream/promises')
const { Readable } = require('node:stream')
const { readFileSync } = require('node:fs')
const { join } = require('node:path')
const postgres = require('postgres')

const DRIVER = 'postgresjs'

class Failure extends Error {}

// step prints the step the scenario starts, so that the output of a scenario that hangs shows where.
function step (name) {
  console.log(`step: ${name}`)
}

function check (cond, msg) {
  if (!cond) throw new Failure(msg)
}

function env (key, def) {
  const v = process.env[key] || def
  if (!v) throw new Failure(`environment variable ${key} is not set`)
  return v
}

// connect returns one tenant's client: a pool of one connection, so every query of the scenario runs on the
// same session, as in the other drivers' scenarios.
function connect (dsn) {
  return postgres(dsn, { max: 1, prepare: true, onnotice: () => {} })
}

async function assertOwnTenant (sql, tenant) {
  const seen = (await sql`SELECT DISTINCT tenant FROM employees ORDER BY tenant`).map(r => r.tenant)
  check(seen.length === 1 && seen[0] === tenant, `tenant ${tenant} sees rows of tenants ${JSON.stringify(seen)}, want only its own`)
  const [{ n }] = await sql`SELECT count(*)::int AS n FROM employees WHERE tenant <> ${tenant}`
  check(n === 0, `tenant ${tenant} counts ${n} rows of other tenants`)
}

// withTimeout rejects with a Failure when promise does not settle within ms.
async function withTimeout (promise, ms, msg) {
  let timer
  const timeout = new Promise((resolve, reject) => { timer = setTimeout(() => reject(new Failure(msg)), ms) })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

async function countLike (sql, pattern) {
  const [{ n }] = await sql`SELECT count(*)::int AS n FROM employees WHERE name LIKE ${pattern}`
  return n
}

async function createReadUpdate (sql, tenant, name) {
  const email = `${name}@example.com`
  const [ins] = await sql`INSERT INTO employees (name, email) VALUES (${name}, ${email}) RETURNING id, tenant`
  check(ins.tenant === tenant, `insert ${name}: got tenant ${ins.tenant}, want ${tenant}`)
  const id = ins.id
  let [got] = await sql`SELECT name, email, tenant FROM employees WHERE id = ${id}`
  check(got && got.name === name && got.email === email && got.tenant === tenant, `select id ${id}: got ${JSON.stringify(got)}`)
  const upd = await sql`UPDATE employees SET email = ${'new-' + email} WHERE id = ${id}`
  check(upd.count === 1, `update id ${id}: ${upd.count} rows, want 1`)
  ;[got] = await sql`SELECT name, email, tenant FROM employees WHERE id = ${id}`
  check(got && got.email === `new-${email}`, `select id ${id} after update: got ${JSON.stringify(got)}`)
  return id
}

async function deleteID (sql, id) {
  const del = await sql`DELETE FROM employees WHERE id = ${id}`
  check(del.count === 1, `delete id ${id}: ${del.count} rows, want 1`)
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

async function scenario (a, b, tenantA, tenantB, markA, markB) {
  step('connect and check the tenants')
  await assertOwnTenant(a, tenantA)
  await assertOwnTenant(b, tenantB)

  // CRUD with prepared statements, reused across interleaved transactions (sql.begin sends BEGIN and COMMIT).
  const idsA = []
  for (let round = 1; round <= 3; round++) {
    step(`CRUD round ${round}`)
    await a.begin(async tx => {
      idsA.push(await createReadUpdate(tx, tenantA, `${markA}${round}`))
      await assertOwnTenant(tx, tenantA)
    })
    await b.begin(async tx => {
      const idB = await createReadUpdate(tx, tenantB, `${markB}${round}`)
      check(await countLike(tx, `${markA}%`) === 0, `tenant ${tenantB} sees rows of ${tenantA}`)
      await deleteID(tx, idB)
      await assertOwnTenant(tx, tenantB)
    })
  }
  step('delete')
  check(await countLike(a, `${markA}%`) === 3, "tenant A's three rows are not all there")
  await a.begin(async tx => {
    for (const id of idsA) await deleteID(tx, id)
  })
  check(await countLike(a, `${markA}%`) === 0, "tenant A's rows survived their delete")

  // An error inside a transaction rejects; sql.begin sends ROLLBACK; the connection goes on.
  step('error in a transaction')
  await expectError(a.begin(async tx => {
    await tx`SELECT 1 / ${0}::int`
  }), '22012', 'SELECT 1/0 in a transaction')
  await assertOwnTenant(a, tenantA)

  // A cancel with query.cancel(): SQLSTATE 57014 within 5 s, and the connection goes on.
  step('cancel')
  const start = Date.now()
  const sleep = a`SELECT pg_sleep(10)`.execute()
  setTimeout(() => sleep.cancel(), 300)
  await expectError(sleep, '57014', 'cancelled pg_sleep(10)')
  const took = (Date.now() - start) / 1000
  check(took < 5, `cancelled pg_sleep(10) returned after ${took}s`)
  await assertOwnTenant(a, tenantA)

  // COPY in and out as streams.
  step('COPY FROM STDIN')
  const copied = 50
  const lines = []
  for (let i = 0; i < copied; i++) lines.push(`${markA}copy-${i}\tcopy${i}@example.com\n`)
  // postgres.js does not fail the stream when the server fails the COPY (it never calls back its final), so
  // an error such as a late cancel would hang the scenario: bound the wait.
  await withTimeout(pipeline(Readable.from(lines), await a`COPY employees (name, email) FROM STDIN`.writable()),
    10000, 'COPY FROM STDIN did not complete in 10 s (a server error during COPY leaves the postgres.js stream hanging)')
  check(await countLike(a, `${markA}copy-%`) === copied, 'copied rows not all there')
  check(await countLike(b, `${markA}%`) === 0, `tenant ${tenantB} sees rows copied by ${tenantA}`)
  step('COPY TO STDOUT')
  let out = ''
  const readable = await a.unsafe(`COPY (SELECT name, tenant FROM employees WHERE name LIKE '${markA}copy-%') TO STDOUT`).readable()
  for await (const chunk of readable) out += chunk
  const rows = out.split('\n').filter(Boolean)
  check(rows.length === copied, `COPY TO STDOUT: ${rows.length} rows, want ${copied}`)
  check(rows.every(r => r.split('\t')[1] === tenantA), "COPY TO STDOUT returned another tenant's rows")
  step('delete the copied rows')
  await assertOwnTenant(a, tenantA)
  const del = await a`DELETE FROM employees WHERE name LIKE ${markA + '%'}`
  check(del.count === copied, `delete copied rows: ${del.count}, want ${copied}`)
}

// cleanup removes the rows marked by this run, also after a failure, and closes the client.
async function cleanup (sql, mark) {
  try {
    await sql`DELETE FROM employees WHERE name LIKE ${mark + '%'}`
  } catch (e) {
    // The connection may be broken by the failure being reported.
  }
  await sql.end({ timeout: 5 })
}

// installedVersion reads the version of an installed package (postgres.js does not export its package.json).
function installedVersion (pkg) {
  return JSON.parse(readFileSync(join(__dirname, 'node_modules', pkg, 'package.json'))).version
}

async function main () {
  const tenantA = env('TP_TENANT_A', 'acme')
  const tenantB = env('TP_TENANT_B', 'globex')
  const run = `postgresjs-${process.pid}-${Date.now()}`
  const markA = `${run}-a-`
  const markB = `${run}-b-`
  console.log(`${DRIVER} ${installedVersion('postgres')}, mode ${process.env.TP_MODE || '?'}`)
  const a = connect(env('TP_DSN_A'))
  const b = connect(env('TP_DSN_B'))
  try {
    await scenario(a, b, tenantA, tenantB, markA, markB)
  } finally {
    step('cleanup')
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
