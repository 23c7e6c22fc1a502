/**
 * replicaClientSuite registers the ReplicaClient contract tests (src/replica-client.ts) for one backend, like
 * Litestream's RunWithReplicaClient. Every backend's test file calls it with a factory for a fresh, empty replica.
 * @module
 */
import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { hasCode } from '../../src/errors.js'
import type { ReplicaClient } from '../../src/replica-client.js'

/** TestReplicaClient is a fresh, empty replica and how to remove it. */
export interface TestReplicaClient {
  readonly client: ReplicaClient
  cleanup(): Promise<void>
  /** writeRaw stores bytes at a key relative to the replica root, bypassing the client (for foreign names). */
  writeRaw?(key: string, body: Buffer): Promise<void>
}

/** MakeReplicaClient creates one empty replica per test. */
export type MakeReplicaClient = (t: TestContext) => Promise<TestReplicaClient>

const GEN_A = '0123456789abcdef'
const GEN_B = 'fedcba9876543210'
const GEN_C = '00b3510545f6b71e'
/** STREAM_BYTES is larger than one 8 MiB multipart part, so S3 backends take the multipart path. */
const STREAM_BYTES = (9 << 20) + 12_345

/** chunkedStream yields buf in chunks of chunkBytes, then optionally fails. */
function chunkedStream(buf: Buffer, chunkBytes = 256 << 10, failAfter?: Error): Readable {
  let off = 0
  return new Readable({
    read() {
      if (off < buf.length) {
        this.push(buf.subarray(off, off + chunkBytes))
        off += chunkBytes
      } else if (failAfter) {
        this.destroy(failAfter)
      } else {
        this.push(null)
      }
    },
  })
}

async function setup(t: TestContext, make: MakeReplicaClient): Promise<TestReplicaClient> {
  const r = await make(t)
  t.after(() => r.cleanup())
  return r
}

async function assertNotFound(p: Promise<unknown>, what: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(hasCode(err, 'NOT_FOUND'), `${what}: want NOT_FOUND, got ${String(err)}`)
    return true
  })
}

/** replicaClientSuite registers the contract tests for one backend under describe(name). */
export function replicaClientSuite(name: string, make: MakeReplicaClient): void {
  describe(`ReplicaClient contract: ${name}`, () => {
    test('an empty replica has no generations and lists empty', async (t) => {
      const { client } = await setup(t, make)
      assert.deepEqual(await client.generations(), [], 'generations')
      assert.deepEqual(await client.snapshots(GEN_A), [], 'snapshots of a missing generation')
      assert.deepEqual(await client.walSegments(GEN_A), [], 'wal segments of a missing generation')
      assert.equal(typeof client.type, 'string')
      assert.equal(typeof client.describe(), 'string')
    })

    test('snapshot buffer round trip is byte-exact', async (t) => {
      const { client } = await setup(t, make)
      const body = randomBytes(100_003)
      const before = Date.now()
      const info = await client.writeSnapshot(GEN_A, 7, body)
      assert.equal(info.generation, GEN_A, 'info.generation')
      assert.equal(info.index, 7, 'info.index')
      assert.equal(info.size, body.length, 'info.size')
      assert.ok(info.createdAt instanceof Date, 'info.createdAt')
      assert.ok(body.equals(await client.readSnapshot(GEN_A, 7)), 'read back bytes')

      const list = await client.snapshots(GEN_A)
      assert.equal(list.length, 1, 'snapshots listed')
      assert.equal(list[0]!.index, 7, 'listed index')
      assert.equal(list[0]!.size, body.length, 'listed size')
      // S3 LastModified may have second precision; allow slack either side.
      const at = list[0]!.createdAt.getTime()
      assert.ok(at >= before - 2_000 && at <= Date.now() + 2_000, `listed createdAt ${list[0]!.createdAt.toISOString()}`)
      assert.deepEqual(await client.generations(), [GEN_A], 'generations')
    })

    test(`snapshot stream round trip of ${STREAM_BYTES} bytes is byte-exact`, async (t) => {
      const { client } = await setup(t, make)
      const body = randomBytes(STREAM_BYTES)
      const info = await client.writeSnapshot(GEN_A, 0, chunkedStream(body))
      assert.equal(info.size, body.length, 'info.size')
      const got = await client.readSnapshot(GEN_A, 0)
      assert.equal(got.length, body.length, 'read back length')
      assert.ok(body.equals(got), 'read back bytes')
      assert.equal((await client.snapshots(GEN_A))[0]?.size, body.length, 'listed size')
    })

    test('a small stream snapshot round trips too', async (t) => {
      const { client } = await setup(t, make)
      const body = randomBytes(1_000)
      const info = await client.writeSnapshot(GEN_A, 1, chunkedStream(body, 100))
      assert.equal(info.size, body.length, 'info.size')
      assert.ok(body.equals(await client.readSnapshot(GEN_A, 1)), 'read back bytes')
    })

    test('a failing stream leaves no snapshot behind', async (t) => {
      const { client } = await setup(t, make)
      const body = randomBytes(STREAM_BYTES)
      await assert.rejects(client.writeSnapshot(GEN_A, 3, chunkedStream(body, 256 << 10, new Error('source broke'))))
      await assertNotFound(client.readSnapshot(GEN_A, 3), 'read after failed write')
      assert.deepEqual(await client.snapshots(GEN_A), [], 'snapshots after failed write')
    })

    test('wal segment round trip is byte-exact', async (t) => {
      const { client } = await setup(t, make)
      const body = randomBytes(32_960)
      const info = await client.writeWalSegment(GEN_A, 1, 0x4080, body)
      assert.deepEqual(
        { generation: info.generation, index: info.index, offset: info.offset, size: info.size },
        { generation: GEN_A, index: 1, offset: 0x4080, size: body.length },
        'info',
      )
      assert.ok(body.equals(await client.readWalSegment(GEN_A, 1, 0x4080)), 'read back bytes')
      const list = await client.walSegments(GEN_A)
      assert.equal(list.length, 1, 'segments listed')
      assert.deepEqual({ index: list[0]!.index, offset: list[0]!.offset, size: list[0]!.size }, { index: 1, offset: 0x4080, size: body.length })
    })

    test('overwriting an object replaces it', async (t) => {
      const { client } = await setup(t, make)
      await client.writeWalSegment(GEN_A, 0, 0, Buffer.from('first version, longer'))
      await client.writeWalSegment(GEN_A, 0, 0, Buffer.from('second'))
      assert.equal((await client.readWalSegment(GEN_A, 0, 0)).toString(), 'second')
      assert.equal((await client.walSegments(GEN_A)).length, 1, 'one segment listed')
    })

    test('listings are sorted: generations by id, snapshots by index, segments by (index, offset)', async (t) => {
      const { client } = await setup(t, make)
      for (const g of [GEN_B, GEN_A, GEN_C]) await client.writeSnapshot(g, 0, Buffer.from(g))
      assert.deepEqual(await client.generations(), [GEN_C, GEN_A, GEN_B].sort(), 'generations')

      for (const i of [0x10, 2, 0xff, 1]) await client.writeSnapshot(GEN_A, i, Buffer.from([i]))
      assert.deepEqual((await client.snapshots(GEN_A)).map((s) => s.index), [0, 1, 2, 0x10, 0xff], 'snapshot indexes')

      const positions: Array<[number, number]> = [[1, 0], [0, 0x4080], [0x10, 0], [0, 0], [0, 0x1038], [2, 0xffffffff], [1, 0x20]]
      for (const [i, o] of positions) await client.writeWalSegment(GEN_A, i, o, Buffer.from(`${i}:${o}`))
      const got = (await client.walSegments(GEN_A)).map((s) => [s.index, s.offset])
      assert.deepEqual(got, [[0, 0], [0, 0x1038], [0, 0x4080], [1, 0], [1, 0x20], [2, 0xffffffff], [0x10, 0]], 'segment positions')
      for (const s of await client.walSegments(GEN_A)) assert.equal(s.generation, GEN_A)
    })

    test('generations are isolated from each other', async (t) => {
      const { client } = await setup(t, make)
      await client.writeSnapshot(GEN_A, 0, Buffer.from('a'))
      await client.writeWalSegment(GEN_B, 0, 0, Buffer.from('b'))
      assert.deepEqual((await client.snapshots(GEN_B)).length, 0, 'no snapshots in B')
      assert.deepEqual((await client.walSegments(GEN_A)).length, 0, 'no segments in A')
      assert.deepEqual(await client.generations(), [GEN_A, GEN_B], 'generations')
    })

    test('names Litestream would skip are not listed', async (t) => {
      const r = await setup(t, make)
      if (!r.writeRaw) return t.skip('backend test gives no writeRaw')
      const { client } = r
      await client.writeSnapshot(GEN_A, 1, Buffer.from('real'))
      await client.writeWalSegment(GEN_A, 1, 0, Buffer.from('real'))
      const foreign = [
        'generations/0123456789ABCDEF/snapshots/00000000.snapshot.lz4', // uppercase generation
        'generations/0123456789abcde/snapshots/00000000.snapshot.lz4', // 15 chars
        'generations/0123456789abcdef0/snapshots/00000000.snapshot.lz4', // 17 chars
        'generations/not-a-generation/wal/00000000_00000000.wal.lz4',
        `generations/${GEN_B}`, // an object/file, not a generation directory
        `generations/${GEN_A}/snapshots/00000002.snapshot.lz4.tmp`,
        `generations/${GEN_A}/snapshots/00000003.snapshot`,
        `generations/${GEN_A}/snapshots/0000000A.snapshot.lz4`,
        `generations/${GEN_A}/snapshots/4.snapshot.lz4`,
        `generations/${GEN_A}/snapshots/nested/00000005.snapshot.lz4`,
        `generations/${GEN_A}/snapshots/README`,
        `generations/${GEN_A}/wal/00000001_00000020.wal.lz4.tmp`,
        `generations/${GEN_A}/wal/00000001.wal.lz4`,
        `generations/${GEN_A}/wal/00000001_100000000.wal.lz4`, // 9-digit offset: v0.3.13 ignores it
        `generations/${GEN_A}/wal/00000001_0000002G.wal.lz4`,
        `generations/${GEN_A}/wal/nested/00000001_00000040.wal.lz4`,
        `generations/${GEN_A}/00000001_00000060.wal.lz4`,
      ]
      for (const key of foreign) await r.writeRaw(key, Buffer.from('foreign'))
      assert.deepEqual(await client.generations(), [GEN_A], 'generations')
      assert.deepEqual((await client.snapshots(GEN_A)).map((s) => s.index), [1], 'snapshots')
      assert.deepEqual((await client.walSegments(GEN_A)).map((s) => [s.index, s.offset]), [[1, 0]], 'segments')

      // deleteGeneration removes foreign objects inside the generation too.
      await client.deleteGeneration(GEN_A)
      assert.deepEqual(await client.generations(), [], 'generations after delete')
    })

    test('reading a missing object rejects with NOT_FOUND', async (t) => {
      const { client } = await setup(t, make)
      await assertNotFound(client.readSnapshot(GEN_A, 0), 'snapshot in missing generation')
      await assertNotFound(client.readWalSegment(GEN_A, 0, 0), 'segment in missing generation')
      await client.writeSnapshot(GEN_A, 0, Buffer.from('x'))
      await client.writeWalSegment(GEN_A, 0, 0, Buffer.from('x'))
      await assertNotFound(client.readSnapshot(GEN_A, 1), 'missing snapshot')
      await assertNotFound(client.readWalSegment(GEN_A, 0, 32), 'missing segment offset')
      await assertNotFound(client.readWalSegment(GEN_A, 1, 0), 'missing segment index')
    })

    test('deleteGeneration removes one generation and leaves the others', async (t) => {
      const { client } = await setup(t, make)
      await client.writeSnapshot(GEN_A, 0, Buffer.from('a0'))
      for (let i = 0; i < 5; i++) await client.writeWalSegment(GEN_A, 0, i * 4152, Buffer.from(`a${i}`))
      await client.writeSnapshot(GEN_B, 0, Buffer.from('b0'))
      await client.writeWalSegment(GEN_B, 0, 0, Buffer.from('b0'))

      await client.deleteGeneration(GEN_A)
      assert.deepEqual(await client.generations(), [GEN_B], 'generations')
      assert.deepEqual(await client.snapshots(GEN_A), [], 'snapshots of deleted generation')
      assert.deepEqual(await client.walSegments(GEN_A), [], 'segments of deleted generation')
      await assertNotFound(client.readSnapshot(GEN_A, 0), 'deleted snapshot')
      assert.equal((await client.readSnapshot(GEN_B, 0)).toString(), 'b0', 'other generation intact')
      assert.equal((await client.walSegments(GEN_B)).length, 1, 'other generation segments intact')
    })

    test('deleting missing things succeeds', async (t) => {
      const { client } = await setup(t, make)
      await client.deleteGeneration(GEN_C)
      await client.deleteSnapshot(GEN_C, 0)
      await client.deleteWalSegments(GEN_C, [{ index: 0, offset: 0 }])
      await client.deleteWalSegments(GEN_C, [])
      await client.writeSnapshot(GEN_C, 0, Buffer.from('x'))
      await client.deleteSnapshot(GEN_C, 5)
      await client.deleteWalSegments(GEN_C, [{ index: 9, offset: 9 }])
      assert.equal((await client.snapshots(GEN_C)).length, 1, 'existing snapshot untouched')
    })

    test('deleteSnapshot removes one snapshot', async (t) => {
      const { client } = await setup(t, make)
      await client.writeSnapshot(GEN_A, 0, Buffer.from('0'))
      await client.writeSnapshot(GEN_A, 1, Buffer.from('1'))
      await client.deleteSnapshot(GEN_A, 0)
      assert.deepEqual((await client.snapshots(GEN_A)).map((s) => s.index), [1], 'snapshots')
      await assertNotFound(client.readSnapshot(GEN_A, 0), 'deleted snapshot')
    })

    test('deleteWalSegments removes exactly the given segments, missing ones included', async (t) => {
      const { client } = await setup(t, make)
      const positions = [[0, 0], [0, 32], [0, 4152], [1, 0], [1, 4152]] as const
      for (const [i, o] of positions) await client.writeWalSegment(GEN_A, i, o, Buffer.from(`${i}:${o}`))
      await client.deleteWalSegments(GEN_A, [
        { index: 0, offset: 0 },
        { index: 0, offset: 4152 },
        { index: 7, offset: 0 }, // missing
        { index: 1, offset: 4152 },
      ])
      assert.deepEqual((await client.walSegments(GEN_A)).map((s) => [s.index, s.offset]), [[0, 32], [1, 0]], 'remaining')
      await assertNotFound(client.readWalSegment(GEN_A, 0, 0), 'deleted segment')
    })

    test('deleteWalSegments handles more than one S3 batch (1000 keys)', async (t) => {
      const { client } = await setup(t, make)
      const segments = Array.from({ length: 1005 }, (_, i) => ({ index: 0, offset: i * 32 }))
      const body = Buffer.from('s')
      for (let i = 0; i < segments.length; i += 50) {
        await Promise.all(segments.slice(i, i + 50).map((s) => client.writeWalSegment(GEN_A, s.index, s.offset, body)))
      }
      assert.equal((await client.walSegments(GEN_A)).length, segments.length, 'listed across pages')
      await client.deleteWalSegments(GEN_A, segments.slice(0, 1002))
      assert.deepEqual((await client.walSegments(GEN_A)).map((s) => s.offset), [1002 * 32, 1003 * 32, 1004 * 32], 'remaining')
      await client.writeWalSegment(GEN_A, 1, 0, body)
      await client.deleteGeneration(GEN_A)
      assert.deepEqual(await client.walSegments(GEN_A), [], 'segments after deleteGeneration')
    })

    test('invalid generation names and positions are rejected before any I/O', async (t) => {
      const { client } = await setup(t, make)
      for (const g of ['', '..', '0123456789ABCDEF', '../../etc/passwd', '0123456789abcdef/']) {
        await assert.rejects(client.deleteGeneration(g), RangeError, `deleteGeneration(${JSON.stringify(g)})`)
        await assert.rejects(client.writeWalSegment(g, 0, 0, Buffer.from('x')), RangeError, `writeWalSegment(${JSON.stringify(g)})`)
        await assert.rejects(client.snapshots(g), RangeError, `snapshots(${JSON.stringify(g)})`)
      }
      await assert.rejects(client.writeWalSegment(GEN_A, -1, 0, Buffer.from('x')), RangeError, 'negative index')
      await assert.rejects(client.writeWalSegment(GEN_A, 0, 2 ** 32, Buffer.from('x')), RangeError, 'offset >= 2^32')
      await assert.rejects(client.writeSnapshot(GEN_A, 1.5, Buffer.from('x')), RangeError, 'fractional index')
      assert.deepEqual(await client.generations(), [], 'nothing written')
    })

    test('an aborted signal stops a write and nothing is stored', async (t) => {
      const { client } = await setup(t, make)
      const signal = AbortSignal.abort()
      await assert.rejects(client.writeWalSegment(GEN_A, 0, 0, Buffer.from('x'), { signal }))
      await assert.rejects(client.writeSnapshot(GEN_A, 0, chunkedStream(randomBytes(1000)), { signal }))
      await assert.rejects(client.readSnapshot(GEN_A, 0, { signal }))
      assert.deepEqual(await client.generations(), [], 'generations')
    })
  })
}
