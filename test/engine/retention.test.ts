/** Retention and snapshot interval never cost an unchanged database a new snapshot (Litestream v0.3 does, daily). */
import assert from 'node:assert/strict'
import path from 'node:path'
import { test } from 'node:test'
import { FileReplicaClient } from '../../src/file/replica-client.js'
import { Replicator } from '../../src/replicator.js'
import { insertRows, openApp, tmpDir } from '../helpers/db.js'

test('an unchanged database gets no new snapshot, however much time passes; a changed one does', async (t) => {
  const dir = tmpDir(t)
  const db = path.join(dir, 'app.db')
  const app = openApp(db)
  insertRows(app, 10)
  const client = new FileReplicaClient(path.join(dir, 'replica'))
  let now = Date.now()
  const r = new Replicator({ dbPath: db, client, now: () => now, retentionMs: 3600_000, snapshotIntervalMs: 3600_000, retentionCheckIntervalMs: 60_000 })
  t.after(async () => {
    await r.close().catch(() => {})
    app.close()
  })
  const p0 = await r.sync()
  const count = async (): Promise<number> => (await client.snapshots(p0.generation)).length + (await client.walSegments(p0.generation)).length
  const objects = await count()
  for (let day = 0; day < 3; day++) {
    now += 24 * 3600_000 // a day later, nothing written
    r.notify('wal') // even a spurious wake-up
    await r.sync()
  }
  assert.equal(await count(), objects, 'no object written for an unchanged database')
  assert.equal((await client.snapshots(p0.generation)).length, 1)
  insertRows(app, 1)
  now += 3600_000
  await r.sync()
  const snaps = await client.snapshots(p0.generation)
  assert.equal(snaps.length, 1, 'one snapshot object per index: the new one replaced it')
  assert.equal(r.status().generationsStarted, 1)
  assert.ok(r.status().lastSnapshotAt! >= now, 'a changed database past its snapshot interval got a new snapshot')
})
