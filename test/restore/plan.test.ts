/** chooseGeneration and planRestore on synthetic listings: Litestream v0.3.13's choices, plus our stricter checks. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { hasCode } from '../../src/errors.js'
import { checkSnapshot, chooseGeneration, planRestore, WalIndexChecker, type GenerationListing } from '../../src/restore/plan.js'
import type { SnapshotInfo, WalSegmentInfo } from '../../src/types.js'

const G1 = '1111111111111111'
const G2 = '2222222222222222'
const at = (s: number): Date => new Date(Date.UTC(2026, 0, 1, 0, 0, s))
const snap = (generation: string, index: number, s: number): SnapshotInfo => ({ generation, index, size: 100, createdAt: at(s) })
const seg = (generation: string, index: number, offset: number, s: number): WalSegmentInfo => ({ generation, index, offset, size: 10, createdAt: at(s) })

function gen(generation: string, snapshots: SnapshotInfo[], segments: WalSegmentInfo[]): GenerationListing {
  return { generation, snapshots, segments }
}

test('chooseGeneration: newest object wins, ties go to the first listed, timestamp excludes younger generations', () => {
  const a = gen(G1, [snap(G1, 0, 10)], [seg(G1, 0, 0, 11), seg(G1, 0, 100, 30)])
  const b = gen(G2, [snap(G2, 0, 20)], [seg(G2, 0, 0, 25)])
  assert.equal(chooseGeneration([a, b]).generation, G1, 'G1 was updated last (30 > 25)')
  assert.equal(chooseGeneration([a, b], { timestamp: at(15) }).generation, G1, 'G2 did not exist at 15')
  assert.equal(chooseGeneration([a, b], { timestamp: at(22) }).generation, G1, 'both existed; the newest object decides, as Litestream')
  assert.equal(chooseGeneration([a, b], { generation: G2 }).generation, G2)
  const tie = gen(G2, [snap(G2, 0, 30)], [])
  assert.equal(chooseGeneration([a, tie]).generation, G1, 'tie: first listed')
  assert.equal(chooseGeneration([a, b], { timestamp: at(99) }).generation, G1, 'after every object: still restorable (Litestream would find none)')
  assert.throws(() => chooseGeneration([a, b], { timestamp: at(5) }), (e) => hasCode(e, 'NOT_FOUND') && /no matching backups found at/.test((e as Error).message))
  assert.throws(() => chooseGeneration([a], { generation: G2 }), /generation 2222222222222222 not found/)
  assert.throws(() => chooseGeneration([]), /no generations/)
})

test('planRestore: snapshot by time (or highest index for -index), segments cut at the target, no gaps', () => {
  const g = gen(
    G1,
    [snap(G1, 0, 10), snap(G1, 2, 40)],
    [seg(G1, 0, 0, 11), seg(G1, 0, 64, 12), seg(G1, 1, 0, 20), seg(G1, 1, 64, 21), seg(G1, 2, 0, 41), seg(G1, 2, 64, 50), seg(G1, 3, 0, 60)],
  )
  let p = planRestore(g)
  assert.equal(p.snapshot.index, 2)
  assert.deepEqual(p.indexes.map((i) => [i.index, i.segments.map((s) => s.offset)]), [[2, [0, 64]], [3, [0]]])
  assert.equal(p.totalBytes, 100 + 30)
  assert.deepEqual(p.timeRange, { from: at(10), to: at(60) })

  p = planRestore(g, { timestamp: at(20) })
  assert.equal(p.snapshot.index, 0)
  assert.deepEqual(p.indexes.map((i) => [i.index, i.segments.length]), [[0, 2], [1, 1]], 'segments after the time are cut')
  assert.deepEqual(p.timeRange.to, at(20))

  p = planRestore(g, { index: 1 })
  assert.equal(p.snapshot.index, 0)
  assert.deepEqual(p.indexes.map((i) => i.index), [0, 1])
  p = planRestore(g, { index: 2 })
  assert.equal(p.snapshot.index, 2)
  assert.deepEqual(p.indexes.map((i) => i.index), [2])

  // Snapshot-only: a snapshot whose index has no segment yet (ahead by one) is fine.
  p = planRestore(gen(G1, [snap(G1, 4, 10)], [seg(G1, 3, 0, 5)]))
  assert.deepEqual(p.indexes, [])

  assert.throws(() => planRestore(g, { index: 9 }), (e) => hasCode(e, 'NOT_FOUND') && /wal index 00000009 not found in generation 1111111111111111 \(highest index is 00000003\)/.test((e as Error).message))
  assert.throws(() => planRestore(g, { timestamp: at(5) }), /no snapshot at or below time/)
  assert.throws(() => planRestore(gen(G1, [], [seg(G1, 0, 0, 1)])), (e) => hasCode(e, 'REPLICA_INVALID') && /has no snapshot/.test((e as Error).message))
  assert.throws(() => planRestore(gen(G1, [snap(G1, 0, 1)], [seg(G1, 0, 0, 2), seg(G1, 2, 0, 3)])), /missing wal index 1111111111111111\/00000001/)
  assert.throws(() => planRestore(gen(G1, [snap(G1, 0, 1)], [seg(G1, 0, 64, 2)])), /missing initial wal segment: generations\/1111111111111111\/wal\/00000000_00000000\.wal\.lz4/)
  assert.throws(() => planRestore(gen(G1, [snap(G1, 5, 1)], [seg(G1, 0, 0, 2), seg(G1, 1, 0, 3)])), /snapshot index 00000005 is ahead of the highest wal index 00000001/)
})

test('checkSnapshot and WalIndexChecker basics', () => {
  assert.deepEqual(checkSnapshot(Buffer.alloc(4096)), { ok: false, reason: 'not a SQLite database (no "SQLite format 3" header)' })
  const db = Buffer.alloc(8192)
  db.write('SQLite format 3\0', 'latin1')
  db.writeUInt16BE(4096, 16)
  assert.deepEqual(checkSnapshot(db), { ok: true, pageSize: 4096, pages: 2 })
  assert.equal(checkSnapshot(db.subarray(0, 5000)).ok, false)

  const c = new WalIndexChecker(G1, 0, 4096)
  const f = c.check(0, Buffer.alloc(32))
  assert.deepEqual(f.findings.map((x) => x.rule), ['wal-header'])
  assert.match(f.findings[0]!.message, /^generations\/1111111111111111\/wal\/00000000_00000000\.wal\.lz4: does not start with a valid WAL header/)
  const c2 = new WalIndexChecker(G1, 3)
  assert.deepEqual(c2.check(64, Buffer.alloc(10)).findings.map((x) => x.rule), ['missing-initial-segment'])
})
