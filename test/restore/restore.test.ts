/**
 * restore() against replicas written by our Replicator: full and point-in-time restores, each compared with the
 * source as recorded at that position and with stock `litestream restore` v0.3.13 output; plus the file-level
 * contract (no clobbering, no leftovers, abort) and one S3 (s3rver) round trip.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { hasCode } from '../../src/errors.js'
import { Replicator } from '../../src/replicator.js'
import { auditReplica } from '../../src/restore/audit.js'
import { restore } from '../../src/restore/restore.js'
import { digest, insertRows, integrity, openApp, tmpDir } from '../helpers/db.js'
import { fileReplica, s3Replica, withS3 } from '../helpers/replicas.js'
import { buildReplica, copyReplica } from './fixture.js'

function leftovers(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => n.includes('.tmp'))
}

test('full restore equals the source and stock litestream restore; audit is clean', async (t) => {
  const b = await buildReplica(t)
  const last = b.points.at(-1)!
  assert.equal(last.pos.index, 2, 'history spans wal indexes 0..2')

  const out = path.join(b.dir, 'ours.db')
  const got = await restore(b.client, { outPath: out })
  assert.deepEqual(fs.readdirSync(b.dir).filter((n) => n.startsWith('ours.db')), ['ours.db'], 'no .tmp/-wal/-shm files next to our output')
  assert.equal(got.generation, b.generation)
  assert.equal(got.index, last.pos.index, 'restored index')
  assert.equal(got.offset, last.pos.offset, 'restored offset = shipped offset')
  assert.equal(got.snapshotIndex, 0)
  assert.equal(got.pageSize, 4096)
  assert.equal(got.bytes, fs.statSync(out).size)
  assert.equal(integrity(out), 'ok')
  assert.deepEqual(digest(out), last.digest, 'restored equals the source')
  assert.deepEqual(digest(out), digest(b.app), 'source did not move')

  const stockOut = path.join(b.dir, 'stock.db')
  const stock = await fileReplica(b.dir).stockRestore(stockOut)
  assert.equal(stock.code, 0, stock.output)
  assert.deepEqual(digest(out), digest(stockOut), 'ours equals stock')

  assert.deepEqual(await auditReplica(b.client), [], 'audit of a good replica')
  assert.ok(leftovers(b.dir).every((n) => n.startsWith('stock.db.tmp-')), 'only stock restore leaves OUT.tmp-shm/-wal behind (spec 5.3 step 7)')
})

test('point in time by index: each index equals the source at the end of that index, and stock -index', async (t) => {
  const b = await buildReplica(t)
  for (const index of [0, 1, 2]) {
    const want = b.points.filter((p) => p.pos.index === index).at(-1)!
    const out = path.join(b.dir, `idx-${index}.db`)
    const got = await restore(b.client, { outPath: out, index })
    assert.equal(got.index, index)
    assert.equal(got.offset, want.pos.offset, `index ${index}: end offset`)
    assert.deepEqual(digest(out), want.digest, `index ${index}: content`)
    const stockOut = path.join(b.dir, `idx-${index}-stock.db`)
    const stock = await fileReplica(b.dir).stockRestore(stockOut, ['-index', index.toString(16)])
    assert.equal(stock.code, 0, stock.output)
    assert.deepEqual(digest(stockOut), want.digest, `index ${index}: stock agrees`)
  }
  await assert.rejects(restore(b.client, { outPath: path.join(b.dir, 'x.db'), index: 7 }), (err) => hasCode(err, 'NOT_FOUND') && /index 00000007 not found/.test((err as Error).message))
})

test('point in time by timestamp: each recorded time gives the source at that time, and stock -timestamp agrees', async (t) => {
  const b = await buildReplica(t)
  for (const [i, p] of b.points.entries()) {
    const out = path.join(b.dir, `ts-${i}.db`)
    const got = await restore(b.client, { outPath: out, timestamp: p.at })
    assert.deepEqual({ index: got.index, offset: got.offset }, { index: p.pos.index, offset: p.pos.offset }, `point ${i}: position`)
    assert.deepEqual(digest(out), p.digest, `point ${i}: content`)
    if (i < b.points.length - 1) {
      // v0.3.13 skips a generation whose newest object is older than -timestamp, so only inner points compare.
      const stockOut = path.join(b.dir, `ts-${i}-stock.db`)
      const stock = await fileReplica(b.dir).stockRestore(stockOut, ['-timestamp', p.at.toISOString()])
      assert.equal(stock.code, 0, stock.output)
      assert.deepEqual(digest(stockOut), p.digest, `point ${i}: stock agrees`)
    }
  }
  // Timestamp and index together: the earlier bound wins.
  const both = await restore(b.client, { outPath: path.join(b.dir, 'both.db'), timestamp: b.points.at(-1)!.at, index: 1 })
  assert.equal(both.index, 1)
  assert.deepEqual(digest(path.join(b.dir, 'both.db')), b.points[4]!.digest)
  // Before the generation existed: nothing to restore.
  await assert.rejects(
    restore(b.client, { outPath: path.join(b.dir, 'early.db'), timestamp: new Date(b.points[0]!.at.getTime() - 3600_000) }),
    (err) => hasCode(err, 'NOT_FOUND') && /no matching backups/.test((err as Error).message),
  )
})

test('generation choice: newest by object time, or the one asked for; a snapshotless newest generation fails loudly', async (t) => {
  const b = await buildReplica(t)
  // A second, newer generation: the database replaced by a fresh one, replicated into the same root.
  const db2 = path.join(b.dir, 'other.db')
  const app2 = openApp(db2)
  t.after(() => app2.close())
  insertRows(app2, 3)
  const r2 = new Replicator({ dbPath: db2, client: b.client, minCheckpointPages: 0, retentionMs: 0 })
  const pos2 = await r2.sync()
  await r2.close()
  assert.notEqual(pos2.generation, b.generation)

  const newest = await restore(b.client, { outPath: path.join(b.dir, 'newest.db') })
  assert.equal(newest.generation, pos2.generation, 'newest generation by object time')
  assert.deepEqual(digest(path.join(b.dir, 'newest.db')), digest(app2))
  const older = await restore(b.client, { outPath: path.join(b.dir, 'older.db'), generation: b.generation })
  assert.equal(older.generation, b.generation)
  assert.deepEqual(digest(path.join(b.dir, 'older.db')), b.points.at(-1)!.digest)
  await assert.rejects(restore(b.client, { outPath: path.join(b.dir, 'none.db'), generation: '0123456789abcdef' }), (err) => hasCode(err, 'NOT_FOUND'))

  // Newest generation without a snapshot (as Litestream: chosen, then refused with a clear message).
  fs.rmSync(path.join(b.root, 'generations', pos2.generation, 'snapshots'), { recursive: true })
  fs.utimesSync(path.join(b.root, 'generations', pos2.generation, 'wal', '00000000_00000000.wal.lz4'), new Date(), new Date(Date.now() + 60_000))
  await assert.rejects(restore(b.client, { outPath: path.join(b.dir, 'nosnap.db') }), (err) => hasCode(err, 'REPLICA_INVALID') && /has no snapshot/.test((err as Error).message))
})

test('output handling: refuses to overwrite without force, replaces with force, never leaves .tmp files', async (t) => {
  const b = await buildReplica(t)
  const out = path.join(b.dir, 'out.db')
  fs.writeFileSync(out, 'precious')
  await assert.rejects(restore(b.client, { outPath: out }), /already exists/)
  assert.equal(fs.readFileSync(out, 'utf8'), 'precious', 'existing file untouched')
  fs.writeFileSync(`${out}-wal`, 'stale wal that SQLite would replay')
  await restore(b.client, { outPath: out, force: true })
  assert.equal(fs.existsSync(`${out}-wal`), false, 'stale -wal removed')
  assert.deepEqual(digest(out), b.points.at(-1)!.digest)

  // A stale -wal alone also blocks a restore without force.
  const out2 = path.join(b.dir, 'out2.db')
  fs.writeFileSync(`${out2}-wal`, 'x')
  await assert.rejects(restore(b.client, { outPath: out2 }), /out2\.db-wal already exists/)

  // Leftovers of a killed restore are ours to replace; a failing restore leaves nothing behind.
  const out3 = path.join(b.dir, 'out3.db')
  fs.writeFileSync(`${out3}.tmp-wal`, 'leftover')
  const d = copyReplica(b, 'broken')
  fs.truncateSync(d.seg(0, 0), 20)
  await assert.rejects(restore(d.client, { outPath: out3 }), (err) => hasCode(err, 'REPLICA_INVALID'))
  assert.deepEqual(leftovers(b.dir), [], 'no .tmp files after a failure')
  assert.equal(fs.existsSync(out3), false)

  // Abort midway: rejects, nothing left.
  const ac = new AbortController()
  await assert.rejects(
    restore(b.client, { outPath: out3, parallelism: 1, signal: ac.signal, onProgress: (p) => p.doneBytes > 0 && ac.abort() }),
    (err) => (err as Error).name === 'AbortError',
  )
  assert.deepEqual(leftovers(b.dir), [])
  assert.equal(fs.existsSync(out3), false)
})

test('progress reports compressed bytes up to the total', async (t) => {
  const b = await buildReplica(t)
  const seen: { doneBytes: number; totalBytes: number }[] = []
  await restore(b.client, { outPath: path.join(b.dir, 'p.db'), parallelism: 2, onProgress: (p) => seen.push(p) })
  assert.equal(seen[0]!.doneBytes, 0)
  const total = seen[0]!.totalBytes
  assert.ok(seen.every((p) => p.totalBytes === total))
  assert.ok(seen.every((p, i) => i === 0 || p.doneBytes >= seen[i - 1]!.doneBytes), 'monotonic')
  assert.equal(seen.at(-1)!.doneBytes, total)
  const files = fs.readdirSync(b.root, { recursive: true, withFileTypes: true }).filter((e) => e.isFile())
  assert.equal(total, files.reduce((n, e) => n + fs.statSync(path.join(e.parentPath, e.name)).size, 0), 'total = every object of the generation')
})

test('S3 round trip: Replicator -> s3rver -> restore equals the source and stock restore', async (t) => {
  const s3 = await withS3(t)
  const dir = tmpDir(t)
  const rep = s3Replica(s3, dir)
  const dbPath = path.join(dir, 'app.db')
  const app = openApp(dbPath)
  app.pragma('wal_autocheckpoint = 0')
  t.after(() => app.close())
  const r = new Replicator({ dbPath, client: rep.client, minCheckpointPages: 0, retentionMs: 0 })
  insertRows(app, 20)
  await r.sync()
  insertRows(app, 10, 3000, true)
  await r.sync()
  r.notify('db')
  await r.sync()
  app.pragma('wal_checkpoint(TRUNCATE)')
  insertRows(app, 4)
  r.notify('wal')
  const pos = await r.sync()
  await r.close()
  assert.equal(pos.index, 1)

  const out = path.join(dir, 'ours.db')
  const got = await restore(rep.client, { outPath: out })
  assert.deepEqual({ generation: got.generation, index: got.index, offset: got.offset }, pos)
  assert.deepEqual(digest(out), digest(app))
  const stockOut = path.join(dir, 'stock.db')
  const stock = await rep.stockRestore(stockOut)
  assert.equal(stock.code, 0, stock.output)
  assert.deepEqual(digest(stockOut), digest(out))
  assert.deepEqual(await auditReplica(rep.client), [])
})
