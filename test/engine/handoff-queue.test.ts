/**
 * Matrix B2, the queue of held incarnations (decision 0003, addendum of session 6): an application in another process
 * writes flat out with SQLite's default autocheckpoint while the replica is slower than it (each upload waits), so
 * hand-offs go on while earlier held incarnations are still unshipped. Each incarnation must ship as its own index, in
 * one generation, and the stock `litestream restore` must give back exactly the source.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { test, type TestContext } from 'node:test'
import type { Logger } from '../../src/log.js'
import type { ReplicaClient } from '../../src/replica-client.js'
import { Replicator } from '../../src/replicator.js'
import { digest, integrity, tmpDir } from '../helpers/db.js'
import { fileReplica } from '../helpers/replicas.js'
import { startAppProcess, type AppProcess } from '../helpers/app-process.js'

const APP_SRC = `
const Database = require('better-sqlite3')
const crypto = require('node:crypto')
const db = new Database(process.argv[1], { timeout: 5000 })
db.pragma('journal_mode = wal')
db.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)')
const ins = db.prepare('INSERT INTO t (v) VALUES (?)')
require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, arg] = line.split(' ')
  let out = null
  try {
    if (cmd === 'write') { const end = Date.now() + Number(arg); let n = 0; while (Date.now() < end) { ins.run(crypto.randomBytes(100)); n++ } out = n }
    else if (cmd === 'close') db.close()
  } catch (err) { out = { error: String(err.code || err.message) } }
  process.stdout.write(JSON.stringify(out) + '\\n')
  if (cmd === 'close') process.exit(0)
})
`

function startApp(t: TestContext, file: string): AppProcess {
  return startAppProcess(t, APP_SRC, file)
}

/** slowClient delays every WAL segment upload by ms, so the replica falls behind the application. */
function slowClient(inner: ReplicaClient, ms: number): ReplicaClient {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown
      if (prop === 'writeWalSegment' && typeof v === 'function') {
        return async (...args: unknown[]) => {
          await new Promise((r) => setTimeout(r, ms))
          return (v as (...a: unknown[]) => unknown).apply(target, args)
        }
      }
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    },
  })
}

/** debugLog records the objects logged at debug level under the messages of debug, and everything above it in info. */
function debugLog(debug: Record<string, Record<string, unknown>[]>, info: Record<string, unknown>[]): Logger {
  const rec = (level: string, obj: unknown, m: string): void => {
    if (FLAKE_LOG) fullLog.push({ t: Math.round(performance.now() * 1000) / 1000, level, msg: m, ...(obj as object) })
  }
  const log: Logger = {
    debug: (obj, m) => {
      rec('debug', obj, m)
      debug[m]?.push(obj as Record<string, unknown>)
    },
    info: (obj, m) => (rec('info', obj, m), info.push({ ...(obj as object), msg: m })),
    warn: (obj, m) => (rec('warn', obj, m), info.push({ ...(obj as object), msg: m })),
    error: (obj, m) => (rec('error', obj, m), info.push({ ...(obj as object), msg: m })),
    child: () => log,
  }
  return log
}

/** FLAKE_LOG: a file to which every message the replicator logs (debug included) is written after each test. */
const FLAKE_LOG = process.env.FLAKE_LOG
const fullLog: Record<string, unknown>[] = []
function dumpLog(t: TestContext): void {
  t.after(() => {
    if (!FLAKE_LOG) return
    fs.writeFileSync(FLAKE_LOG, fullLog.map((l) => JSON.stringify(l)).join('\n') + '\n', { flag: 'a' })
    fullLog.length = 0
  })
}

test('B2 queue: hand-offs go on while earlier incarnations are held; each ships as its own index, one generation, stock restore equals the source', { timeout: 120_000 }, async (t) => {
  const dir = tmpDir(t)
  const file = path.join(dir, 'q.db')
  const app = startApp(t, file)
  assert.equal(typeof (await app.run('write 50')), 'number', 'the application created its database')
  const replica = fileReplica(dir)
  const handOffs: Record<string, unknown>[] = []
  const infos: Record<string, unknown>[] = []
  const r = new Replicator({ dbPath: file, client: slowClient(replica.client, 100), syncIntervalMs: 0, log: debugLog({ 'wal hand-off': handOffs }, infos) })
  t.after(() => r.close().catch(() => {}))
  r.start()
  await r.whenStarted()
  let maxWal = 0
  // The manager's watcher would notify on every WAL change; here a timer does.
  const watch = setInterval(() => {
    r.notify('wal')
    try {
      maxWal = Math.max(maxWal, fs.statSync(`${file}-wal`).size)
    } catch {
      // absent for a moment
    }
  }, 20)
  t.after(() => clearInterval(watch))
  const rows = (await app.run('write 5000')) as number
  assert.ok(rows > 0, `the application wrote (${JSON.stringify(rows)})`)
  await r.syncNow()
  clearInterval(watch)
  const handed = handOffs.filter((h) => h.handed === true)
  const queuedMax = Math.max(0, ...handed.map((h) => Number(h.queued)))
  t.diagnostic(`${rows} rows; ${handed.length}/${handOffs.length} hand-offs landed; up to ${queuedMax} incarnations held at a hand-off; max WAL ${(maxWal / 2 ** 20).toFixed(1)} MiB`)
  const newGens = infos.filter((i) => i.msg === 'new generation')
  assert.deepEqual(
    newGens.map((g) => g.reason),
    ['no generation exists'],
    'one generation: continuity proven across every held incarnation',
  )
  assert.ok(queuedMax >= 1, 'a hand-off landed while an earlier incarnation was still held')
  const gens = await replica.client.generations()
  assert.equal(gens.length, 1)
  const segs = await replica.client.walSegments(gens[0]!)
  const indexes = [...new Set(segs.map((s) => s.index))].sort((a, b) => a - b)
  assert.ok(indexes.length >= 3, `several WAL indexes shipped (${indexes.length})`)
  assert.deepEqual(indexes, indexes.map((_, i) => indexes[0]! + i), 'indexes are consecutive')
  await r.close()
  const out = path.join(dir, 'restored.db')
  const res = await replica.stockRestore(out)
  assert.equal(res.code, 0, res.output)
  assert.equal(integrity(out), 'ok')
  assert.deepEqual(digest(out), digest(file), 'stock restore equals the source')
})

test('B2 queue bound: past maxHeldBytes no hand-off starts, the WAL grows instead, and nothing is lost', { timeout: 120_000 }, async (t) => {
  const dir = tmpDir(t)
  const file = path.join(dir, 'bound.db')
  const app = startApp(t, file)
  assert.equal(typeof (await app.run('write 50')), 'number', 'the application created its database')
  const replica = fileReplica(dir)
  const bound = 6 << 20
  dumpLog(t)
  const handOffs: Record<string, unknown>[] = []
  const deferred: Record<string, unknown>[] = []
  const infos: Record<string, unknown>[] = []
  const log = debugLog({ 'wal hand-off': handOffs, 'wal hand-off deferred: held bytes at their bound': deferred }, infos)
  // The replica is slower than the application, so the backlog outgrows the bound.
  const r = new Replicator({ dbPath: file, client: slowClient(replica.client, 150), syncIntervalMs: 0, maxHeldBytes: bound, log })
  t.after(() => r.close().catch(() => {}))
  r.start()
  await r.whenStarted()
  const watch = setInterval(() => r.notify('wal'), 20)
  t.after(() => clearInterval(watch))
  const rows = (await app.run('write 5000')) as number
  assert.ok(rows > 0, `the application wrote (${JSON.stringify(rows)})`)
  await r.syncNow()
  clearInterval(watch)
  const handed = handOffs.filter((h) => h.handed === true)
  t.diagnostic(`${rows} rows; ${handed.length}/${handOffs.length} hand-offs landed; ${deferred.length} deferred at the bound`)
  assert.ok(deferred.length > 0, 'a hand-off was deferred because the held bytes would pass the bound')
  for (const d of deferred) assert.ok(Number(d.heldBytes) + Number(d.backlog) > bound, `deferred only past the bound (${JSON.stringify(d)})`)
  for (const h of handed) assert.ok(Number(h.heldBytes) + Number(h.held) <= bound, `held bytes within the bound after a hand-off (${JSON.stringify(h)})`)
  assert.deepEqual(
    infos.filter((i) => i.msg === 'new generation').map((g) => g.reason),
    ['no generation exists'],
    'one generation',
  )
  await r.close()
  const out = path.join(dir, 'restored.db')
  const res = await replica.stockRestore(out)
  assert.equal(res.code, 0, res.output)
  assert.equal(integrity(out), 'ok')
  assert.deepEqual(digest(out), digest(file), 'stock restore equals the source')
})
