import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import { Readable } from 'node:stream'
import { buffer } from 'node:stream/consumers'
import { test } from 'node:test'
import lz4 from 'lz4-napi'
import { hasCode } from '../src/errors.js'
import { decodeFrame, encodeFrame, FrameEncoder, xxh32 } from '../src/lz4.js'

const MiB = 1 << 20
const sizes = [0, 1, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, 4 * MiB - 1, 4 * MiB, 4 * MiB + 1, 9 * MiB]

function body(n: number, compressible: boolean): Buffer {
  const b = crypto.randomBytes(n)
  if (compressible) b.fill(0x41, 0, n >> 1)
  return b
}

test('A9 one frame with Litestream header bytes 04 22 4d 18 64 70 b9', () => {
  assert.equal(encodeFrame(Buffer.from('hello')).subarray(0, 7).toString('hex'), '04224d186470b9')
})

for (const n of sizes) {
  for (const compressible of [true, false]) {
    test(`A9 round trip ${n} bytes ${compressible ? 'compressible' : 'incompressible'}: ours <-> lz4-napi`, () => {
      const b = body(n, compressible)
      const ours = encodeFrame(b)
      assert.equal(ours.subarray(0, 7).toString('hex'), '04224d186470b9', 'Litestream header bytes at every size')
      assert.ok(lz4.decompressFrameSync(ours).equals(b), 'lz4-napi decodes ours')
      assert.ok(decodeFrame(ours).equals(b), 'we decode ours')
      assert.ok(decodeFrame(lz4.compressFrameSync(b, { contentChecksum: true })).equals(b), 'we decode lz4-napi with content checksum')
      assert.ok(decodeFrame(lz4.compressFrameSync(b)).equals(b), 'we decode lz4-napi without checksums')
    })
  }
}

test('A9 streaming encoder emits the same content as one frame', async () => {
  const b = body(9 * MiB + 123, true)
  const chunks = []
  for (let p = 0; p < b.length; p += 300_001) chunks.push(b.subarray(p, p + 300_001))
  const framed = await buffer(Readable.from(chunks).pipe(new FrameEncoder()))
  assert.ok(lz4.decompressFrameSync(framed).equals(b))
  assert.ok(decodeFrame(framed).equals(b))
  assert.ok(decodeFrame(await buffer(Readable.from([]).pipe(new FrameEncoder()))).equals(Buffer.alloc(0)), 'empty stream is an empty frame')
})

test('xxh32 matches the content checksum lz4-napi writes', () => {
  for (const n of [0, 1, 15, 16, 17, 1000, 100_003]) {
    for (const at of [0, 1, 2, 3]) {
      // Aligned and unaligned starts take different paths.
      const b = body(n + at, false).subarray(at)
      const f = lz4.compressFrameSync(b, { contentChecksum: true })
      assert.equal(xxh32(b), f.readUInt32LE(f.length - 4), `xxh32 of ${n} bytes at offset ${at}`)
    }
  }
})

test('A9 strict decoding rejects what Litestream would silently misread', () => {
  const b = body(100_000, true)
  const f = encodeFrame(b)
  const invalid = (buf: Buffer, re: RegExp): void => {
    assert.throws(() => decodeFrame(buf), (err: unknown) => hasCode(err, 'REPLICA_INVALID') && re.test((err as Error).message))
  }
  invalid(Buffer.concat([f, f]), /after the end of the frame/)
  invalid(f.subarray(0, f.length - 6), /truncated/)
  invalid(f.subarray(0, 20), /truncated/)
  const bad = Buffer.from(f)
  bad[bad.length - 1]! ^= 0xff
  invalid(bad, /content checksum mismatch/)
  invalid(Buffer.from('not lz4 at all'), /bad magic/)
})
