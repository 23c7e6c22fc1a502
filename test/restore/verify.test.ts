/** verifyReplica, runDrill and the database listing of a bucket root. */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { FileReplicaClient } from '../../src/file/replica-client.js'
import { childClient } from '../../src/replica-url.js'
import { Replicator } from '../../src/replicator.js'
import { runDrill } from '../../src/restore/drill.js'
import { listDatabaseIds, listDatabases, listPrefixes, summarizeReplica } from '../../src/restore/list.js'
import { verifyReplica } from '../../src/restore/verify.js'
import type { Pos } from '../../src/types.js'
import { insertRows, openApp, tmpDir } from '../helpers/db.js'
import { buildReplica, copyReplica, rewrite } from './fixture.js'

test('verifyReplica reports position, time range and row counts, and cleans up', async (t) => {
  const b = await buildReplica(t)
  const scratch = path.join(b.dir, 'scratch')
  fs.mkdirSync(scratch)
  const last = b.points.at(-1)!
  const v = await verifyReplica(b.client, { tmpDir: scratch })
  assert.deepEqual({ generation: v.generation, index: v.index, offset: v.offset }, last.pos)
  assert.equal(v.snapshotIndex, 0)
  assert.equal(v.pageSize, 4096)
  assert.deepEqual(v.tables, last.digest.tables)
  assert.ok(v.timeRange.from <= v.timeRange.to)
  assert.ok(v.timeRange.to <= last.at, 'newest object applied is not after the last recorded point')
  assert.ok(v.timeRange.from <= b.points[0]!.at)
  assert.ok(v.durationMs >= 0)
  assert.deepEqual(fs.readdirSync(scratch), [], 'temporary copy removed')

  // At an earlier point.
  const early = await verifyReplica(b.client, { tmpDir: scratch, index: 0 })
  assert.deepEqual(early.tables, b.points[2]!.digest.tables)

  // A damaged replica throws, and still cleans up.
  const d = copyReplica(b, 'damaged')
  rewrite(d.seg(2, 0), (c) => c.subarray(0, c.length - 4120))
  await assert.rejects(verifyReplica(d.client, { tmpDir: scratch }), /after its last commit frame/)
  assert.deepEqual(fs.readdirSync(scratch), [])
})

test('runDrill: ok against the counts recorded at the restored position; fails loudly otherwise', async (t) => {
  const dir = tmpDir(t)
  const dbPath = path.join(dir, 'app.db')
  const app = openApp(dbPath)
  t.after(() => app.close())
  const client = new FileReplicaClient(path.join(dir, 'replica'))
  const r = new Replicator({ dbPath, client, minCheckpointPages: 0, retentionMs: 0 })
  t.after(() => r.close().catch(() => {}))
  // The caller records row counts at every acknowledged position, as the manager would.
  const recorded = new Map<string, Record<string, number>>()
  const key = (p: Pos): string => `${p.generation}/${p.index}/${p.offset}`
  insertRows(app, 10)
  recorded.set(key(await r.sync()), { t: 10 })
  insertRows(app, 5)
  recorded.set(key(await r.sync()), { t: 15 })
  insertRows(app, 100) // committed after the last acknowledged position: not in the replica yet

  const scratch = path.join(dir, 'scratch')
  fs.mkdirSync(scratch)
  const good = await runDrill(client, dbPath, { tmpDir: scratch, expected: (p) => recorded.get(key(p)) })
  assert.equal(good.ok, true, good.error)
  assert.deepEqual(good.position, r.pos())
  assert.deepEqual(good.tables, { t: { restored: 15, source: 115, expected: 15 } })
  assert.ok(good.at > 0 && good.durationMs >= 0)
  assert.deepEqual(fs.readdirSync(scratch), [])

  // Fewer rows restored than were acknowledged: not ok.
  const bad = await runDrill(client, dbPath, { tmpDir: scratch, expected: () => ({ t: 16, gone: 1 }) })
  assert.equal(bad.ok, false)
  assert.match(bad.error!, /table t has 15 rows, expected at least 16/)
  assert.match(bad.error!, /table gone is missing/)

  // Bounded disk.
  const big = await runDrill(client, dbPath, { tmpDir: scratch, maxBytes: 1000 })
  assert.equal(big.ok, false)
  assert.equal(big.skipped, true)
  assert.match(big.error!, /over the drill limit of 1000 bytes/)

  // A broken replica: the restore error is the drill's error.
  const seg = path.join(dir, 'replica', 'generations', r.pos().generation, 'wal', '00000000_00000000.wal.lz4')
  fs.truncateSync(seg, 30)
  const broken = await runDrill(client, dbPath, { tmpDir: scratch })
  assert.equal(broken.ok, false)
  assert.equal(broken.position, null)
  assert.match(broken.error!, /00000000_00000000\.wal\.lz4: lz4: truncated frame/)
  assert.deepEqual(fs.readdirSync(scratch), [])

  // Abort rejects instead of reporting a failure.
  await assert.rejects(runDrill(client, dbPath, { tmpDir: scratch, signal: AbortSignal.abort() }), (err) => (err as Error).name === 'AbortError')
})

test('listDatabases enumerates databases/<guid> under a file root and summarizes generations', async (t) => {
  const dir = tmpDir(t)
  const root = new FileReplicaClient(path.join(dir, 'bucket'))
  assert.deepEqual(await listDatabaseIds(root), [], 'empty root')
  const ids = ['7b0c6f5e-2a1d-4c3b-9e8f-0a1b2c3d4e5f', '01234567-89ab-cdef-0123-456789abcdef']
  for (const [i, id] of ids.entries()) {
    const dbPath = path.join(dir, `${id}.db`)
    const app = openApp(dbPath)
    insertRows(app, 3 + i)
    const r = new Replicator({ dbPath, client: childClient(root, `databases/${id}`), minCheckpointPages: 0, retentionMs: 0 })
    await r.sync()
    await r.close()
    app.close()
  }
  fs.mkdirSync(path.join(dir, 'bucket', 'databases', 'not-a-guid'))
  assert.deepEqual(await listPrefixes(root, 'databases'), [...ids.sort(), 'not-a-guid'])
  const dbs = await listDatabases(root)
  assert.deepEqual(
    dbs.map((d) => d.id),
    [...ids].sort(),
  )
  for (const d of dbs) {
    assert.equal(d.generations.length, 1)
    const g = d.generations[0]!
    assert.deepEqual(g.snapshotIndexes, [0])
    assert.equal(g.lastIndex, 0)
    assert.ok(g.segments >= 1 && g.bytes > 0 && g.timeRange !== undefined)
  }
  assert.deepEqual(await summarizeReplica(childClient(root, 'databases/ffffffff-ffff-ffff-ffff-ffffffffffff')), [])

})
