/**
 * Manager discovery and lifecycle against real files, real watchers and a file replica; every replicated client
 * is restored by stock litestream v0.3.13 and compared with its source.
 */
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { test, type TestContext } from 'node:test'
import type Database from 'better-sqlite3'
import { FileReplicaClient } from '../../src/file/replica-client.js'
import { Manager } from '../../src/manager.js'
import { childClient } from '../../src/replica-url.js'
import type { ReplicaClient } from '../../src/replica-client.js'
import type { ClientInfo } from '../../src/types.js'
import { digest, insertRows, integrity, openApp, tmpDir } from '../helpers/db.js'
import { litestreamBin } from '../helpers/litestream.js'
import { execFileSync } from 'node:child_process'

function setup(t: TestContext, opts: { reconcileIntervalMs?: number } = {}) {
  const dir = tmpDir(t)
  const a = path.join(dir, 'a')
  const b = path.join(dir, 'b')
  fs.mkdirSync(a)
  fs.mkdirSync(b)
  const replicaRoot = path.join(dir, 'replica')
  const root = new FileReplicaClient(replicaRoot)
  const changes: string[] = []
  const m = new Manager({
    watchDirs: [a, b],
    clientFor: (id) => childClient(root, `databases/${id}`),
    replicatorOptions: { syncIntervalMs: 50 },
    reconcileIntervalMs: opts.reconcileIntervalMs ?? 60_000,
    onChange: (id) => changes.push(id),
  })
  const apps: Database.Database[] = []
  t.after(async () => {
    await m.close().catch(() => {})
    for (const x of apps) if (x.open) x.close()
  })
  const app = (file: string): Database.Database => {
    const db = openApp(file)
    apps.push(db)
    return db
  }
  return { dir, a, b, replicaRoot, m, app, changes }
}

/** until polls a condition driven by watcher events, bounded; the barrier for asynchronous discovery. */
async function until<T>(what: string, fn: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const start = Date.now()
  for (;;) {
    const v = fn()
    if (v) return v
    if (Date.now() - start > timeoutMs) throw new Error(`timed out: ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

function state(m: Manager, id: string): ClientInfo | undefined {
  return m.clients().find((c) => c.id === id && c.state !== 'conflict')
}

function stockRestore(replicaRoot: string, id: string, out: string): void {
  execFileSync(litestreamBin(), ['restore', '-o', out, `file://${path.join(replicaRoot, 'databases', id)}`], { stdio: 'pipe' })
}

const guid = (): string => crypto.randomUUID()

test('A1 create, write, sync barrier: stock restore equals source, in both watched directories', async (t) => {
  const { dir, a, b, replicaRoot, m, app } = setup(t)
  await m.start()
  const ids = [guid(), guid()]
  const dbs = [app(path.join(a, `${ids[0]}.db`)), app(path.join(b, `${ids[1]}.db`))]
  for (const db of dbs) insertRows(db, 20)
  for (const id of ids) await until(`${id} replicating`, () => state(m, id)?.replicator?.generation)
  for (const db of dbs) insertRows(db, 5, 1000)
  for (const [i, id] of ids.entries()) {
    const pos = await m.sync(id)
    assert.ok(pos && pos.generation !== '', 'sync barrier returns the durable position')
    const out = path.join(dir, `${id}.restored.db`)
    stockRestore(replicaRoot, id, out)
    assert.equal(integrity(out), 'ok')
    assert.deepEqual(digest(out), digest(dbs[i]!))
  }
})

test('B10 delete stops the replicator and keeps backups; recreating starts a new generation', async (t) => {
  const { a, replicaRoot, m, app } = setup(t)
  await m.start()
  const id = guid()
  const file = path.join(a, `${id}.db`)
  const db = app(file)
  insertRows(db, 10)
  const g1 = await until('replicating', () => state(m, id)?.replicator?.generation)
  await m.sync(id)
  db.close()
  for (const f of [file, `${file}-wal`, `${file}-shm`]) fs.rmSync(f, { force: true })
  await until('stopped', () => state(m, id)?.state === 'stopped')
  assert.ok(fs.existsSync(path.join(replicaRoot, 'databases', id, 'generations', g1)), 'backups stay')
  const db2 = app(file)
  insertRows(db2, 3)
  const g2 = await until('replicating again', () => {
    const g = state(m, id)?.replicator?.generation
    return g && g !== g1 ? g : undefined
  })
  assert.notEqual(g2, g1)
})

test('B12 replace by rename: new inode at the same path is a new generation with the new content', async (t) => {
  const { dir, a, replicaRoot, m, app } = setup(t)
  await m.start()
  const id = guid()
  const file = path.join(a, `${id}.db`)
  const db = app(file)
  insertRows(db, 10)
  const g1 = await until('replicating', () => state(m, id)?.replicator?.generation)
  // A new database built elsewhere, renamed over the tracked one.
  const tmp = path.join(dir, 'new.db')
  const other = openApp(tmp)
  insertRows(other, 42)
  other.pragma('wal_checkpoint(TRUNCATE)')
  other.pragma('journal_mode = delete')
  other.close()
  db.close()
  fs.rmSync(`${file}-wal`, { force: true })
  fs.rmSync(`${file}-shm`, { force: true })
  fs.renameSync(tmp, file)
  const g2 = await until('new generation', () => {
    const g = state(m, id)?.replicator?.generation
    return g && g !== g1 ? g : undefined
  })
  assert.notEqual(g2, g1)
  await m.sync(id)
  const out = path.join(dir, 'restored.db')
  stockRestore(replicaRoot, id, out)
  assert.equal(digest(out).tables.t, 42, 'restore is the new database only')
})

test('F1 F2 F3 F5 F6 bad inputs: ignored or error, never modified, never uploaded; others unaffected', async (t) => {
  const { dir, a, b, replicaRoot, m, app } = setup(t)
  const good = guid()
  const notSqlite = guid()
  const empty = guid()
  const names = ['foo.db', `${guid()}.db.bak`, `${guid().toUpperCase()}.db`, `{${guid()}}.db`, `${guid().replace(/-/g, '')}.db`, `${guid()}.db `, `${guid()}.DB`]
  for (const n of names) fs.writeFileSync(path.join(a, n), 'x')
  fs.mkdirSync(path.join(a, `${guid()}.db`)) // a directory with a GUID name
  const outside = path.join(dir, 'outside.db')
  openApp(outside).close()
  const link = guid()
  fs.symlinkSync(outside, path.join(a, `${link}.db`))
  const fifo = guid()
  execFileSync('mkfifo', [path.join(b, `${fifo}.db`)])
  fs.writeFileSync(path.join(b, `${notSqlite}.db`), crypto.randomBytes(8192))
  fs.writeFileSync(path.join(b, `${empty}.db`), '')
  const before = new Map([...fs.readdirSync(a).map((n) => path.join(a, n)), ...fs.readdirSync(b).map((n) => path.join(b, n))].filter((f) => fs.lstatSync(f).isFile()).map((f) => [f, fs.readFileSync(f)]))
  await m.start()
  const db = app(path.join(a, `${good}.db`))
  insertRows(db, 5)
  await until('good replicating', () => state(m, good)?.replicator?.generation)
  await m.sync(good)
  assert.equal(state(m, notSqlite)?.state, 'error')
  assert.match(state(m, notSqlite)?.lastError ?? '', /SQLite/)
  assert.equal(state(m, empty)?.state, 'waiting')
  for (const [f, bytes] of before) assert.ok(fs.readFileSync(f).equals(bytes), `${path.basename(f)} untouched`)
  for (const f of [notSqlite, empty]) {
    assert.equal(fs.existsSync(path.join(b, `${f}.db-wal`)), false, 'no -wal created next to an invalid file')
  }
  const replicated = fs.readdirSync(path.join(replicaRoot, 'databases'))
  assert.deepEqual(replicated, [good], 'objects exist only for the valid client')
  // F3/F11: once the application initialises the zero-byte file, it replicates.
  const late = app(path.join(b, `${empty}.db`))
  insertRows(late, 3)
  await until('empty file picked up once valid', () => state(m, empty)?.replicator?.generation)
})

test('F8 the same GUID in two watched directories: only one replicates, the conflict is reported', async (t) => {
  const { a, b, m, app } = setup(t)
  const id = guid()
  insertRows(app(path.join(a, `${id}.db`)), 3)
  insertRows(app(path.join(b, `${id}.db`)), 3)
  await m.start()
  await until('one replicating', () => state(m, id)?.replicator?.generation)
  const rows = m.clients().filter((c) => c.id === id)
  assert.equal(rows.length, 2)
  assert.equal(rows.filter((c) => c.state === 'conflict').length, 1, 'the duplicate is reported')
  assert.equal(rows.find((c) => c.state !== 'conflict')!.dir, a, 'the first watched directory wins')
})

test('200 clients created in a burst are all replicated (reconcile backs up the watcher)', async (t) => {
  const { a, b, replicaRoot, m } = setup(t, { reconcileIntervalMs: 2000 })
  await m.start()
  const ids = Array.from({ length: 200 }, guid)
  for (const [i, id] of ids.entries()) {
    const db = openApp(path.join(i % 2 ? a : b, `${id}.db`))
    insertRows(db, 2)
    db.close()
  }
  await until('all replicating', () => ids.every((id) => state(m, id)?.replicator?.generation), 60_000)
  for (const id of ids) assert.ok(fs.existsSync(path.join(replicaRoot, 'databases', id, 'generations')), `${id} has a replica`)
})

test('restore drill: restores the replica, compares rows at the shipped position, and records the outcome', async (t) => {
  const { a, replicaRoot, m, app } = setup(t)
  await m.start()
  const id = guid()
  const db = app(path.join(a, `${id}.db`))
  insertRows(db, 25)
  await until('replicating', () => state(m, id)?.replicator?.generation)
  const ok = await m.drill(id)
  assert.ok(ok?.ok, `drill passed: ${ok?.error}`)
  assert.equal(ok!.compared, true, 'rows compared at exactly the restored position')
  assert.deepEqual(m.client(id)?.drill, ok)
  // Damage the replica: the drill must fail loudly.
  const gen = m.client(id)!.replicator!.generation
  const walDir = path.join(replicaRoot, 'databases', id, 'generations', gen, 'wal')
  for (const f of fs.readdirSync(walDir)) fs.writeFileSync(path.join(walDir, f), 'garbage')
  insertRows(db, 1)
  await m.sync(id)
  const bad = await m.drill(id)
  assert.equal(bad?.ok, false)
  assert.match(bad?.error ?? '', /lz4|invalid|magic/i)
})

/**
 * closeScenario: three clients, each replica upload 30 ms slower; all caught up, then a commit to each in the same
 * turn as close(), so only the final syncs ship it. Returns the most uploads seen in progress at once.
 */
async function closeScenario(t: TestContext, maxConcurrentPasses: number): Promise<number> {
  const dir = tmpDir(t)
  const a = path.join(dir, 'a')
  fs.mkdirSync(a)
  const replicaRoot = path.join(dir, 'replica')
  const root = new FileReplicaClient(replicaRoot)
  let active = 0
  let max = 0
  const around = async <T>(fn: () => Promise<T>): Promise<T> => {
    active++
    max = Math.max(max, active)
    try {
      await new Promise((r) => setTimeout(r, 30))
      return await fn()
    } finally {
      active--
    }
  }
  const slow = (c: ReplicaClient): ReplicaClient =>
    new Proxy(c, {
      get(target, prop) {
        if (prop === 'writeWalSegment') return (...args: Parameters<ReplicaClient['writeWalSegment']>) => around(() => target.writeWalSegment(...args))
        if (prop === 'writeSnapshot') return (...args: Parameters<ReplicaClient['writeSnapshot']>) => around(() => target.writeSnapshot(...args))
        const v: unknown = Reflect.get(target, prop, target)
        return typeof v === 'function' ? v.bind(target) : v
      },
    })
  const m = new Manager({
    watchDirs: [a],
    clientFor: (id) => slow(childClient(root, `databases/${id}`)),
    replicatorOptions: { syncIntervalMs: 50 },
    reconcileIntervalMs: 60_000,
    maxConcurrentPasses,
  })
  const ids = [guid(), guid(), guid()]
  const dbs = ids.map((id) => openApp(path.join(a, `${id}.db`)))
  t.after(async () => {
    await m.close().catch(() => {})
    for (const db of dbs) if (db.open) db.close()
  })
  for (const db of dbs) insertRows(db, 10)
  await m.start()
  for (const id of ids) await until(`${id} replicating`, () => state(m, id)?.replicator?.generation)
  for (const id of ids) await m.sync(id)
  max = 0
  for (const db of dbs) insertRows(db, 5, 300)
  await m.close()
  for (const [i, id] of ids.entries()) {
    const want = digest(dbs[i]!)
    dbs[i]!.close()
    const out = path.join(dir, `${id}.restored.db`)
    stockRestore(replicaRoot, id, out)
    assert.equal(integrity(out), 'ok')
    assert.deepEqual(digest(out), want, `${id}: the final sync shipped the last commit`)
  }
  return max
}

test('close runs the final syncs as many at a time as passes, and each ships the last commit', async (t) => {
  assert.equal(await closeScenario(t, 1), 1, 'final-sync uploads in progress at once with one pass slot')
})

test('close runs final syncs side by side when slots allow (control for the test above)', async (t) => {
  assert.ok((await closeScenario(t, 3)) >= 2, 'final-sync uploads overlap with three pass slots')
})
