/**
 * PassSlots bounds how many replicators of a process run a pass at once. Three databases committing at the same
 * moment into a slow replica: without slots their uploads overlap; with one slot they never do, passes queue
 * instead of failing, and stock restore gets every database back.
 */
import assert from 'node:assert/strict'
import path from 'node:path'
import { test, type TestContext } from 'node:test'
import type Database from 'better-sqlite3'
import { FileReplicaClient } from '../../src/file/replica-client.js'
import { PassSlots, Replicator } from '../../src/replicator.js'
import type { ReplicatorStatus } from '../../src/types.js'
import { digest, insertRows, integrity, openApp, tmpDir } from '../helpers/db.js'
import { fileReplica } from '../helpers/replicas.js'

const UPLOAD_MS = 30

/** Uploads counts the uploads in progress across every client that shares it. */
class Uploads {
  active = 0
  max = 0
  async around<T>(fn: () => Promise<T>): Promise<T> {
    this.active++
    this.max = Math.max(this.max, this.active)
    try {
      await new Promise((r) => setTimeout(r, UPLOAD_MS))
      return await fn()
    } finally {
      this.active--
    }
  }
}

/** SlowClient is a file replica whose every upload takes UPLOAD_MS longer, counted by a shared Uploads. */
class SlowClient extends FileReplicaClient {
  constructor(
    root: string,
    readonly uploads: Uploads,
  ) {
    super(root)
  }
  override writeWalSegment(...args: Parameters<FileReplicaClient['writeWalSegment']>): ReturnType<FileReplicaClient['writeWalSegment']> {
    return this.uploads.around(() => super.writeWalSegment(...args))
  }
  override writeSnapshot(...args: Parameters<FileReplicaClient['writeSnapshot']>): ReturnType<FileReplicaClient['writeSnapshot']> {
    return this.uploads.around(() => super.writeSnapshot(...args))
  }
}

/** CountingSlots counts the passes that had to wait for a slot. */
class CountingSlots extends PassSlots {
  waited = 0
  override acquire(): Promise<void> | undefined {
    const w = super.acquire()
    if (w) this.waited++
    return w
  }
}

interface Db {
  dir: string
  app: Database.Database
  r: Replicator
  /** caughtUp resolves at the first idle status, with nothing pending, published at or after since. */
  caughtUp(since: number): Promise<void>
}

function setup(t: TestContext, n: number, uploads: Uploads, passSlots?: PassSlots): Db[] {
  const dbs: Db[] = []
  for (let i = 0; i < n; i++) {
    const dir = tmpDir(t)
    const app = openApp(path.join(dir, 'app.db'))
    insertRows(app, 10)
    let last: ReplicatorStatus | undefined
    const waiters: { since: number; resolve: () => void }[] = []
    const done = (s: ReplicatorStatus): boolean => s.state === 'idle' && s.lagMs === 0
    const r = new Replicator({
      dbPath: path.join(dir, 'app.db'),
      client: new SlowClient(path.join(dir, 'replica'), uploads),
      syncIntervalMs: 0,
      passSlots,
      onStatus: (s) => {
        last = s
        if (!done(s)) return
        for (const w of waiters.splice(0)) {
          if ((s.lastSyncAt ?? 0) >= w.since) w.resolve()
          else waiters.push(w)
        }
      },
    })
    t.after(async () => {
      await r.close().catch(() => {})
      if (app.open) app.close()
    })
    const caughtUp = (since: number): Promise<void> =>
      last && done(last) && (last.lastSyncAt ?? 0) >= since ? Promise.resolve() : new Promise((resolve) => waiters.push({ since, resolve }))
    dbs.push({ dir, app, r, caughtUp })
  }
  return dbs
}

/**
 * commitEverywhere commits to every database in the same turn of the event loop, tells each replicator (the
 * manager's watcher does that in the service), and waits until all have shipped; several rounds.
 */
async function commitEverywhere(dbs: Db[], rounds: number): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    const since = Date.now()
    for (const d of dbs) insertRows(d.app, 3, 200)
    for (const d of dbs) d.r.notify()
    await Promise.all(dbs.map((d) => d.caughtUp(since)))
  }
}

test('without pass slots, the uploads of databases committing together overlap (control)', { timeout: 60_000 }, async (t) => {
  const uploads = new Uploads()
  const dbs = setup(t, 3, uploads)
  const since = Date.now()
  for (const d of dbs) d.r.start()
  await Promise.all(dbs.map((d) => d.caughtUp(since)))
  await commitEverywhere(dbs, 3)
  assert.ok(uploads.max >= 2, `uploads in progress at once: ${uploads.max}`)
})

test('with one pass slot, no two replicators upload at once, and stock restore gets every database back', { timeout: 60_000 }, async (t) => {
  const uploads = new Uploads()
  const slots = new CountingSlots(1)
  const dbs = setup(t, 3, uploads, slots)
  const since = Date.now()
  for (const d of dbs) d.r.start()
  await Promise.all(dbs.map((d) => d.caughtUp(since)))
  await commitEverywhere(dbs, 3)
  assert.equal(uploads.max, 1, 'uploads in progress at once')
  assert.ok(slots.waited > 0, 'some pass waited for a slot (else this test proves nothing)')
  for (const d of dbs) {
    const want = digest(d.app)
    await d.r.close()
    d.app.close()
    const out = path.join(d.dir, 'restored.db')
    const res = await fileReplica(d.dir).stockRestore(out)
    assert.equal(res.code, 0, res.output)
    assert.equal(integrity(out), 'ok')
    assert.deepEqual(digest(out), want)
  }
})

test('PassSlots hands slots over in arrival order and rejects a size that is not a positive integer', () => {
  const slots = new PassSlots(2)
  assert.equal(slots.acquire(), undefined)
  assert.equal(slots.acquire(), undefined)
  const order: number[] = []
  const a = slots.acquire()
  const b = slots.acquire()
  assert.ok(a && b)
  void a.then(() => order.push(1))
  void b.then(() => order.push(2))
  slots.release()
  slots.release()
  return Promise.all([a, b]).then(() => {
    assert.deepEqual(order, [1, 2])
    slots.release()
    slots.release()
    // Both slots are free again: two more take one each without waiting.
    assert.equal(slots.acquire(), undefined)
    assert.equal(slots.acquire(), undefined)
    assert.ok(slots.acquire() instanceof Promise)
    assert.throws(() => new PassSlots(0), RangeError)
    assert.throws(() => new PassSlots(1.5), RangeError)
  })
})

test('a replicator waiting for a slot closes: its loop leaves the queue, its final sync waits half the time and ships everything, and the slot handed over later goes back', { timeout: 60_000 }, async (t) => {
  const slots = new PassSlots(1)
  assert.equal(slots.acquire(), undefined, 'the test holds the only slot')
  const [d] = setup(t, 1, new Uploads(), slots)
  d!.r.start() // its first pass waits for the slot
  await new Promise((r) => setTimeout(r, 100))
  assert.equal(d!.r.status().objectsWritten, 0, 'no pass ran without a slot')
  const closeTimeoutMs = 4_000
  const started = performance.now()
  await d!.r.close({ timeoutMs: closeTimeoutMs })
  const tookMs = performance.now() - started
  // The loop leaves at once; the final sync waits half the time for a slot, then ships without one. A loop still
  // queued for its slot would have held close() for the whole closeTimeoutMs and left no time to ship.
  assert.ok(tookMs >= closeTimeoutMs / 2 - 50 && tookMs < closeTimeoutMs, `close took ${Math.round(tookMs)} ms`)
  slots.release() // handed to a waiter that gave up, which gives it straight back
  await new Promise((r) => setImmediate(r))
  assert.equal(slots.acquire(), undefined, 'the slot came back')
  assert.ok(slots.acquire() instanceof Promise, 'and only one slot exists')
  const want = digest(d!.app)
  d!.app.close()
  const out = path.join(d!.dir, 'restored.db')
  const res = await fileReplica(d!.dir).stockRestore(out)
  assert.equal(res.code, 0, res.output)
  assert.equal(integrity(out), 'ok')
  assert.deepEqual(digest(out), want)
})
