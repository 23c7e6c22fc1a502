/**
 * Continuity across WAL restarts that happen while the replicator does not hold the WAL (decision 0001).
 * The replicator is driven directly (sync() and notify()), so each interleaving is exact.
 */
import assert from 'node:assert/strict'
import path from 'node:path'
import { test, type TestContext } from 'node:test'
import type Database from 'better-sqlite3'
import { FileReplicaClient } from '../../src/file/replica-client.js'
import { Replicator } from '../../src/replicator.js'
import { digest, insertRows, integrity, openApp, tmpDir } from '../helpers/db.js'
import { fileReplica } from '../helpers/replicas.js'

function setup(t: TestContext): { dir: string; app: Database.Database; r: Replicator; client: FileReplicaClient } {
  const dir = tmpDir(t)
  const db = path.join(dir, 'app.db')
  const app = openApp(db)
  const client = new FileReplicaClient(path.join(dir, 'replica'))
  const r = new Replicator({ dbPath: db, client, minCheckpointPages: 0 })
  t.after(async () => {
    await r.close().catch(() => {})
    app.close()
  })
  return { dir, app, r, client }
}

/** release makes the replicator let go of the WAL after its next pass, as a database-file event would. */
async function syncAndRelease(r: Replicator): Promise<void> {
  r.notify('db')
  await r.sync()
}

async function assertStockRestores(dir: string, app: Database.Database, label: string): Promise<void> {
  const out = path.join(dir, `${label}.db`)
  const res = await fileReplica(dir).stockRestore(out)
  assert.equal(res.code, 0, res.output)
  assert.equal(integrity(out), 'ok')
  assert.deepEqual(digest(out), digest(app), `${label}: restored equals source`)
}

test('B1 truncate with nothing unshipped, then writes: same generation, next index', async (t) => {
  const { dir, app, r, client } = setup(t)
  insertRows(app, 10)
  const p0 = await r.sync()
  await syncAndRelease(r)
  app.pragma('wal_checkpoint(TRUNCATE)')
  insertRows(app, 7)
  r.notify('wal')
  const p1 = await r.sync()
  assert.equal(p1.generation, p0.generation, 'generation kept')
  assert.equal(p1.index, p0.index + 1, 'a new WAL incarnation is the next index')
  assert.equal((await client.generations()).length, 1)
  await assertStockRestores(dir, app, 'b1')
})

test('B1 commits checkpointed away unseen: detected, new generation, nothing lost', async (t) => {
  const { dir, app, r, client } = setup(t)
  insertRows(app, 10)
  const p0 = await r.sync()
  await syncAndRelease(r)
  insertRows(app, 3) // committed ...
  app.pragma('wal_checkpoint(TRUNCATE)') // ... and truncated away before the replicator saw them
  insertRows(app, 2)
  const p1 = await r.sync()
  assert.notEqual(p1.generation, p0.generation, 'continuity cannot be proven: new generation')
  assert.equal((await client.generations()).length, 2)
  await assertStockRestores(dir, app, 'b1-lost')
})

test('B2 restart by the next writer after a full checkpoint: old tail and new incarnation both shipped', async (t) => {
  const { dir, app, r } = setup(t)
  app.pragma('wal_autocheckpoint = 0')
  insertRows(app, 30, 2000)
  const p0 = await r.sync()
  await syncAndRelease(r)
  insertRows(app, 5, 2000) // unshipped frames at the end of the WAL
  app.pragma('wal_checkpoint(PASSIVE)') // backfills everything: no reader holds the WAL
  insertRows(app, 1) // restarts the WAL: overwrites frame 1 only, the tail survives
  const p1 = await r.sync()
  assert.equal(p1.generation, p0.generation, 'the old tail was still readable: continuity proven')
  assert.equal(p1.index, p0.index + 1)
  await assertStockRestores(dir, app, 'b2')
})

test('held read lock: a restart cannot happen between a commit and its shipping', async (t) => {
  const { dir, app, r } = setup(t)
  insertRows(app, 10)
  const p0 = await r.sync() // caught up: re-pins a fresh read transaction
  insertRows(app, 5)
  const res = app.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[]
  assert.ok(res[0]!.checkpointed < res[0]!.log, 'our read transaction limits the backfill')
  insertRows(app, 1)
  const p1 = await r.sync()
  assert.equal(p1.generation, p0.generation)
  assert.equal(p1.index, p0.index, 'no restart happened')
  await assertStockRestores(dir, app, 'held')
})

test('C2a a snapshot restores on its own: frames not yet checkpointed are in the image', async (t) => {
  const { dir, app, r, client } = setup(t)
  app.pragma('wal_autocheckpoint = 0')
  insertRows(app, 50, 1000)
  const p = await r.sync()
  // Remove every WAL segment: the generation is its snapshot alone, as after a crash right after the snapshot.
  await client.deleteWalSegments(p.generation, await client.walSegments(p.generation))
  await assertStockRestores(dir, app, 'snapshot-only')
})
