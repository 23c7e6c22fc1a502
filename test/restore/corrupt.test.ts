/**
 * Damaged replicas: our restore refuses each one with a message naming the object, the auditor reports each kind
 * of damage, and stock `litestream restore` v0.3.13 is shown to exit 0 with a wrong or malformed database on
 * several of them (spec §6.4, §7).
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { test, type TestContext } from 'node:test'
import { hasCode } from '../../src/errors.js'
import { encodeFrame } from '../../src/lz4.js'
import { auditReplica, type AuditRule } from '../../src/restore/audit.js'
import { restore } from '../../src/restore/restore.js'
import { digest, integrity } from '../helpers/db.js'
import { fileReplica } from '../helpers/replicas.js'
import { buildReplica, copyReplica, decoded, rewrite, type Built, type Damaged } from './fixture.js'

const FRAME = 24 + 4096

/** StockOutcome is what stock restore did: failed, or exited 0 with a database matching a recorded point, or malformed. */
type StockOutcome = { code: number; result: 'malformed' | 'failed' | `point ${number}` | 'unknown' }

async function stockOutcome(b: Built, d: Damaged): Promise<StockOutcome & { output: string }> {
  const out = path.join(d.dir, 'stock.db')
  const st = await fileReplica(d.dir).stockRestore(out)
  if (st.code !== 0) return { code: st.code, result: 'failed', output: st.output }
  if (integrity(out) !== 'ok') return { code: 0, result: 'malformed', output: st.output }
  const got = JSON.stringify(digest(out))
  const k = b.points.findIndex((p) => JSON.stringify(p.digest) === got)
  return { code: 0, result: k >= 0 ? `point ${k}` : 'unknown', output: st.output }
}

/** offsets returns the segment offsets of one index of the (undamaged) replica. */
function offsets(d: Damaged, index: number): number[] {
  return d.segments().filter((s) => s.index === index).map((s) => s.offset)
}

interface Variant {
  readonly name: string
  /** damage breaks the copy and returns the replica-relative name of the object restore must blame. */
  readonly damage: (d: Damaged) => string
  readonly ours: RegExp
  readonly rule: AuditRule
  /** stock is what stock restore does on this damage (observed with v0.3.13). */
  readonly stock: StockOutcome
}

const rel = (d: Damaged, file: string): string => path.relative(d.root, file)

const VARIANTS: readonly Variant[] = [
  {
    name: 'a missing segment (middle of index 0)',
    damage: (d) => {
      const [, o1, o2] = offsets(d, 0)
      fs.rmSync(d.seg(0, o1!))
      return rel(d, d.seg(0, o2!))
    },
    ours: /offset \d+ but the previous segments end at byte \d+ \(gap of \d+ bytes\)/,
    rule: 'offset-gap',
    stock: { code: 0, result: 'malformed' },
  },
  {
    name: 'an offset gap (segment renamed one frame further)',
    damage: (d) => {
      const o2 = offsets(d, 0)[2]!
      fs.renameSync(d.seg(0, o2), d.seg(0, o2 + FRAME))
      return rel(d, d.seg(0, o2 + FRAME))
    },
    ours: /gap of 4120 bytes/,
    rule: 'offset-gap',
    stock: { code: 0, result: 'point 5' }, // v0.3.13 never checks offsets against lengths (spec §5.3)
  },
  {
    name: 'a truncated LZ4 frame',
    damage: (d) => {
      const f = d.seg(0, offsets(d, 0)[1]!)
      fs.truncateSync(f, fs.statSync(f).size - 6)
      return rel(d, f)
    },
    ours: /lz4: truncated frame/,
    rule: 'lz4',
    stock: { code: 1, result: 'failed' },
  },
  {
    name: 'a wrong salt (first frame of index 2)',
    damage: (d) => {
      rewrite(d.seg(2, 0), (c) => {
        c.writeUInt32BE((c.readUInt32BE(32 + 8) + 1) >>> 0, 32 + 8)
        return c
      })
      return rel(d, d.seg(2, 0))
    },
    ours: /frame 1 \(byte 32\) has salts [0-9a-f]{8}\/[0-9a-f]{8}, the WAL header has/,
    rule: 'salt',
    stock: { code: 0, result: 'point 4' }, // SQLite ignores index 2 entirely: the last transaction is silently lost
  },
  {
    name: 'two concatenated LZ4 frames in one object',
    damage: (d) => {
      const f = d.seg(0, offsets(d, 0)[1]!)
      const c = decoded(f)
      fs.writeFileSync(f, Buffer.concat([encodeFrame(c.subarray(0, 4 * FRAME)), encodeFrame(c.subarray(4 * FRAME))]))
      return rel(d, f)
    },
    ours: /bytes after the end of the frame \(only one frame per object is read by Litestream\)/,
    rule: 'lz4',
    stock: { code: 0, result: 'malformed' },
  },
  {
    name: 'a segment not ending on a commit frame',
    damage: (d) => {
      rewrite(d.seg(2, 0), (c) => c.subarray(0, c.length - FRAME))
      return rel(d, d.seg(2, 0))
    },
    ours: /ends with \d+ frame\(s\) after its last commit frame/,
    rule: 'commit-end',
    stock: { code: 0, result: 'point 4' }, // the uncommitted tail is dropped without a word
  },
]

async function built(t: TestContext): Promise<Built> {
  const b = await buildReplica(t)
  assert.deepEqual(
    copyReplica(b, 'layout').segments().map((s) => s.index),
    [0, 0, 0, 1, 1, 2],
    'fixture layout: three segments in index 0, two in index 1, one in index 2',
  )
  return b
}

test('corrupt replicas: ours refuses with the object named, audit reports the rule, stock restore is fooled', async (t) => {
  const b = await built(t)
  let stockFooled = 0
  for (const v of VARIANTS) {
    const d = copyReplica(b, v.name.replace(/\W+/g, '-'))
    const object = v.damage(d)

    const out = path.join(d.dir, 'ours.db')
    await assert.rejects(restore(d.client, { outPath: out }), (err: Error) => {
      assert.ok(hasCode(err, 'REPLICA_INVALID'), `${v.name}: code REPLICA_INVALID, got ${err.message}`)
      assert.ok(err.message.startsWith(`${object}: `), `${v.name}: message names ${object}: ${err.message}`)
      assert.match(err.message, v.ours, v.name)
      return true
    })
    assert.equal(fs.existsSync(out), false, `${v.name}: no output`)
    assert.deepEqual(fs.readdirSync(d.dir).filter((n) => n.startsWith('ours.db')), [], `${v.name}: no leftovers`)

    const found = await auditReplica(d.client)
    assert.deepEqual(
      found.map((f) => ({ rule: f.rule, object: f.object })),
      [{ rule: v.rule, object }],
      `${v.name}: audit finds exactly this damage: ${JSON.stringify(found)}`,
    )

    const stock = await stockOutcome(b, d)
    assert.deepEqual({ code: stock.code, result: stock.result }, v.stock, `${v.name}: stock restore outcome\n${stock.output}`)
    if (stock.code === 0 && stock.result !== `point ${b.points.length - 1}`) stockFooled++
  }
  assert.ok(stockFooled >= 3, 'stock restore exits 0 with a wrong or malformed database on several of these')
})

test('audit: structural damage, bad snapshots, bad headers and checksums, names and foreign keys', async (t) => {
  const b = await built(t)
  const gen = b.generation
  const cases: { name: string; damage: (d: Damaged) => void; want: { rule: AuditRule; object?: string }[]; restore: RegExp | null }[] = [
    {
      name: 'missing wal index',
      damage: (d) => {
        for (const o of offsets(d, 1)) fs.rmSync(d.seg(1, o))
      },
      want: [{ rule: 'missing-index' }],
      restore: /missing wal index [0-9a-f]{16}\/00000001/,
    },
    {
      name: 'missing initial segment',
      damage: (d) => fs.rmSync(d.seg(1, 0)),
      want: [{ rule: 'missing-initial-segment', object: `generations/${gen}/wal/00000001_${offsets(copyReplica(b, 'probe'), 1)[1]!.toString(16).padStart(8, '0')}.wal.lz4` }],
      restore: /missing initial wal segment/,
    },
    {
      name: 'bad wal header',
      damage: (d) => rewrite(d.seg(1, 0), (c) => (c.fill(0, 0, 4), c)),
      want: [{ rule: 'wal-header', object: `generations/${gen}/wal/00000001_00000000.wal.lz4` }],
      restore: /does not start with a valid WAL header \(bad wal magic\)/,
    },
    {
      name: 'checksum chain broken',
      damage: (d) => rewrite(d.seg(1, offsets(d, 1)[1]!), (c) => (c.writeUInt8(c[24 + 100]! ^ 0xff, 24 + 100), c)),
      want: [{ rule: 'checksum' }],
      restore: /breaks the WAL checksum chain/,
    },
    {
      name: 'snapshot ahead of the wal',
      damage: (d) => fs.copyFileSync(d.snap(0), d.snap(5)),
      want: [{ rule: 'snapshot-ahead', object: `generations/${gen}/snapshots/00000005.snapshot.lz4` }],
      restore: /snapshot index 00000005 is ahead of the highest wal index 00000002/,
    },
    {
      name: 'no snapshot',
      damage: (d) => fs.rmSync(d.snap(0)),
      want: [{ rule: 'no-snapshot' }],
      restore: /has no snapshot/,
    },
    {
      name: 'snapshot is not a database',
      damage: (d) => rewrite(d.snap(0), (c) => c.fill(7, 0, 16)),
      want: [{ rule: 'snapshot', object: `generations/${gen}/snapshots/00000000.snapshot.lz4` }],
      restore: /not a SQLite database/,
    },
    {
      name: 'foreign keys and names Litestream ignores',
      damage: (d) => {
        fs.writeFileSync(path.join(d.root, 'README'), 'x')
        fs.writeFileSync(path.join(d.root, 'generations', gen, 'marker'), '')
        fs.mkdirSync(path.join(d.root, 'generations', gen.toUpperCase(), 'snapshots'), { recursive: true })
        fs.copyFileSync(d.snap(0), path.join(d.root, 'generations', gen.toUpperCase(), 'snapshots', '00000000.snapshot.lz4'))
        fs.writeFileSync(path.join(d.root, 'generations', gen, 'wal', '00000000_100000000.wal.lz4'), '')
        fs.writeFileSync(path.join(d.root, 'generations', gen, 'snapshots', '0.snapshot.lz4'), '')
      },
      want: [
        { rule: 'foreign-key', object: 'README' },
        { rule: 'name', object: `generations/${gen.toUpperCase()}/snapshots/00000000.snapshot.lz4` },
        { rule: 'foreign-key', object: `generations/${gen}/marker` },
        { rule: 'name', object: `generations/${gen}/snapshots/0.snapshot.lz4` },
        { rule: 'offset-range', object: `generations/${gen}/wal/00000000_100000000.wal.lz4` },
      ],
      restore: null, // names Litestream ignores do not stop a restore
    },
  ]
  for (const c of cases) {
    const d = copyReplica(b, c.name.replace(/\W+/g, '-'))
    c.damage(d)
    const found = await auditReplica(d.client)
    const got = found.map((f) => (c.want.some((w) => w.object !== undefined && w.rule === f.rule) ? { rule: f.rule, object: f.object } : { rule: f.rule }))
    assert.deepEqual(
      [...got].sort((x, y) => `${x.rule}${x.object}`.localeCompare(`${y.rule}${y.object}`)),
      [...c.want].sort((x, y) => `${x.rule}${x.object}`.localeCompare(`${y.rule}${y.object}`)),
      `${c.name}: ${JSON.stringify(found, null, 1)}`,
    )
    for (const f of found) assert.equal(typeof f.message, 'string')
    const out = path.join(d.dir, 'ours.db')
    if (c.restore) await assert.rejects(restore(d.client, { outPath: out }), c.restore, c.name)
    else assert.deepEqual(digest((await restore(d.client, { outPath: out }), out)), b.points.at(-1)!.digest, c.name)
  }
})

test('audit: raw key hook, and the client\'s own key listing finds foreign objects', async (t) => {
  const b = await built(t)
  const found = await auditReplica(b.client, { listKeys: async () => [`generations/${b.generation}/snapshots/00000000.snapshot.lz4`, 'stray.txt'] })
  assert.deepEqual(found.map((f) => f.rule), ['foreign-key'])
  fs.writeFileSync(path.join(b.root, 'stray.txt'), 'x')
  assert.deepEqual((await auditReplica(b.client)).map((f) => f.rule), ['foreign-key'])
})
