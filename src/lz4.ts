/**
 * LZ4 frame encoding and strict decoding, as Litestream v0.3.13 (pierrec/lz4 v4) writes and reads them.
 * Exactly one frame per object; content checksum on; block checksums never (pierrec rejects spec-correct ones).
 * The only importer of lz4-napi.
 * @module
 */
import { Transform, type TransformCallback } from 'node:stream'
import lz4 from 'lz4-napi'
import { ReplicaError } from './errors.js'

const MAGIC = 0x184d2204
const BLOCK_MAX = 4 << 20 // BD 0x70: 4 MiB blocks, pierrec's default
const FLG = 0x64 // version 01, independent blocks, content checksum, no block checksum, no content size
const BD = 0x70

// xxHash32 primes as int32: all arithmetic below stays in int32 (`| 0`, Math.imul), which V8 keeps in registers.
const PRIME1 = 0x9e3779b1 | 0
const PRIME2 = 0x85ebca77 | 0
const PRIME3 = 0xc2b2ae3d | 0
const PRIME4 = 0x27d4eb2f | 0
const PRIME5 = 0x165667b1 | 0

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1

/**
 * stripes runs xxHash32's main loop over b[p, end) (a multiple of 16 bytes), updating the four lanes in v.
 * Words are read through an Int32Array view when they are aligned on a little-endian host (about 6 GB/s),
 * else assembled from bytes (about 2.4 GB/s); the earlier readUInt32LE-per-word loop ran at 0.3 GB/s.
 */
function stripes(v: Int32Array, b: Uint8Array, p: number, end: number): void {
  let v1 = v[0]!
  let v2 = v[1]!
  let v3 = v[2]!
  let v4 = v[3]!
  const at = b.byteOffset + p
  if (LITTLE_ENDIAN_HOST && (at & 3) === 0) {
    const w = new Int32Array(b.buffer, at, (end - p) >>> 2)
    for (let i = 0; i < w.length; i += 4) {
      v1 = (v1 + Math.imul(w[i]!, PRIME2)) | 0
      v1 = Math.imul((v1 << 13) | (v1 >>> 19), PRIME1)
      v2 = (v2 + Math.imul(w[i + 1]!, PRIME2)) | 0
      v2 = Math.imul((v2 << 13) | (v2 >>> 19), PRIME1)
      v3 = (v3 + Math.imul(w[i + 2]!, PRIME2)) | 0
      v3 = Math.imul((v3 << 13) | (v3 >>> 19), PRIME1)
      v4 = (v4 + Math.imul(w[i + 3]!, PRIME2)) | 0
      v4 = Math.imul((v4 << 13) | (v4 >>> 19), PRIME1)
    }
  } else {
    for (let q = p; q < end; q += 16) {
      v1 = (v1 + Math.imul(b[q]! | (b[q + 1]! << 8) | (b[q + 2]! << 16) | (b[q + 3]! << 24), PRIME2)) | 0
      v1 = Math.imul((v1 << 13) | (v1 >>> 19), PRIME1)
      v2 = (v2 + Math.imul(b[q + 4]! | (b[q + 5]! << 8) | (b[q + 6]! << 16) | (b[q + 7]! << 24), PRIME2)) | 0
      v2 = Math.imul((v2 << 13) | (v2 >>> 19), PRIME1)
      v3 = (v3 + Math.imul(b[q + 8]! | (b[q + 9]! << 8) | (b[q + 10]! << 16) | (b[q + 11]! << 24), PRIME2)) | 0
      v3 = Math.imul((v3 << 13) | (v3 >>> 19), PRIME1)
      v4 = (v4 + Math.imul(b[q + 12]! | (b[q + 13]! << 8) | (b[q + 14]! << 16) | (b[q + 15]! << 24), PRIME2)) | 0
      v4 = Math.imul((v4 << 13) | (v4 >>> 19), PRIME1)
    }
  }
  v[0] = v1
  v[1] = v2
  v[2] = v3
  v[3] = v4
}

/** Xxh32 computes xxHash32 (seed 0) incrementally, for LZ4 content checksums of streamed data. */
export class Xxh32 {
  #v = new Int32Array([(PRIME1 + PRIME2) | 0, PRIME2, 0, -PRIME1 | 0])
  #mem = Buffer.alloc(16)
  #memLen = 0
  #total = 0

  /** update feeds more bytes. */
  update(b: Uint8Array): this {
    let p = 0
    this.#total += b.length
    if (this.#memLen > 0) {
      const n = Math.min(16 - this.#memLen, b.length)
      this.#mem.set(b.subarray(0, n), this.#memLen)
      this.#memLen += n
      p = n
      if (this.#memLen < 16) return this
      stripes(this.#v, this.#mem, 0, 16)
      this.#memLen = 0
    }
    const end = p + ((b.length - p) & ~15)
    if (end > p) stripes(this.#v, b, p, end)
    if (end < b.length) {
      this.#mem.set(b.subarray(end), 0)
      this.#memLen = b.length - end
    }
    return this
  }

  /** digest returns the 32-bit hash of everything fed so far. */
  digest(): number {
    const v = this.#v
    let h: number
    if (this.#total >= 16) {
      h = (((v[0]! << 1) | (v[0]! >>> 31)) + ((v[1]! << 7) | (v[1]! >>> 25)) + ((v[2]! << 12) | (v[2]! >>> 20)) + ((v[3]! << 18) | (v[3]! >>> 14))) | 0
    } else h = PRIME5
    h = (h + this.#total) | 0 // the length modulo 2^32
    let p = 0
    const m = this.#mem
    for (; p + 4 <= this.#memLen; p += 4) {
      h = (h + Math.imul(m.readInt32LE(p), PRIME3)) | 0
      h = Math.imul((h << 17) | (h >>> 15), PRIME4)
    }
    for (; p < this.#memLen; p++) {
      h = (h + Math.imul(m[p]!, PRIME5)) | 0
      h = Math.imul((h << 11) | (h >>> 21), PRIME1)
    }
    h = Math.imul(h ^ (h >>> 15), PRIME2)
    h = Math.imul(h ^ (h >>> 13), PRIME3)
    return (h ^ (h >>> 16)) >>> 0
  }
}

/** xxh32 hashes one buffer with seed 0. */
export function xxh32(buf: Uint8Array): number {
  return new Xxh32().update(buf).digest()
}

function frameHeader(): Buffer {
  const h = Buffer.alloc(7)
  h.writeUInt32LE(MAGIC, 0)
  h[4] = FLG
  h[5] = BD
  h[6] = (xxh32(h.subarray(4, 6)) >>> 8) & 0xff
  return h
}

const HEADER = frameHeader()

/** encodeBlock compresses one ≤4 MiB chunk into a frame block (size word + data), storing it raw when it would not shrink. */
function encodeBlock(chunk: Buffer): Buffer[] {
  const c = lz4.compressSync(chunk).subarray(4) // lz4_flex prepends the uncompressed size
  const size = Buffer.alloc(4)
  if (c.length >= chunk.length) {
    size.writeUInt32LE((chunk.length | 0x80000000) >>> 0, 0)
    return [size, chunk]
  }
  size.writeUInt32LE(c.length, 0)
  return [size, c]
}

function trailer(checksum: number): Buffer {
  const t = Buffer.alloc(8)
  t.writeUInt32LE(checksum, 4) // end mark 0, then content checksum
  return t
}

/** encodeFrame compresses data into exactly one LZ4 frame with Litestream's header bytes (04 22 4d 18 64 70 b9). */
export function encodeFrame(data: Buffer): Buffer {
  // lz4-napi's native frame encoder (lz4_flex) computes the content checksum natively and is the fastest path at
  // every size. It writes FLG 0x64 like Litestream, but picks the block max size from the input: BD 0x40 (64 KiB)
  // or 0x50 (256 KiB) for small inputs, 0x70 (4 MiB) above. Its blocks never exceed what it declares, so they fit
  // 4 MiB too: rewrite BD and the header checksum byte to Litestream's. Anything else falls back to ours.
  const native = lz4.compressFrameSync(data, { contentChecksum: true })
  const bd = native[5]!
  if (native.length >= 7 && native.readUInt32LE(0) === MAGIC && native[4] === FLG && (bd & 0x8f) === 0 && bd >= 0x40 && bd <= BD) {
    native[5] = BD
    native[6] = HEADER[6]!
    return native
  }
  const parts: Buffer[] = [frameHeader()]
  for (let p = 0; p < data.length; p += BLOCK_MAX) parts.push(...encodeBlock(data.subarray(p, Math.min(p + BLOCK_MAX, data.length))))
  parts.push(trailer(xxh32(data)))
  return Buffer.concat(parts)
}

/**
 * FrameEncoder is a Transform that turns a byte stream into one LZ4 frame, holding at most one 4 MiB block in memory.
 * Used for snapshots, which can be larger than memory allows.
 */
export class FrameEncoder extends Transform {
  #hash = new Xxh32()
  #pending: Buffer[] = []
  #pendingLen = 0
  #started = false

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      if (!this.#started) {
        this.push(frameHeader())
        this.#started = true
      }
      this.#hash.update(chunk)
      this.#pending.push(chunk)
      this.#pendingLen += chunk.length
      while (this.#pendingLen >= BLOCK_MAX) this.#flushBlock(BLOCK_MAX)
      cb()
    } catch (err) {
      cb(err as Error)
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      if (!this.#started) this.push(frameHeader())
      if (this.#pendingLen > 0) this.#flushBlock(this.#pendingLen)
      this.push(trailer(this.#hash.digest()))
      cb()
    } catch (err) {
      cb(err as Error)
    }
  }

  #flushBlock(n: number): void {
    const all = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending, this.#pendingLen)
    const block = all.subarray(0, n)
    const rest = all.subarray(n)
    this.#pending = rest.length > 0 ? [Buffer.from(rest)] : []
    this.#pendingLen = rest.length
    for (const b of encodeBlock(block)) this.push(b)
  }
}

function invalid(msg: string): ReplicaError {
  return new ReplicaError('REPLICA_INVALID', `lz4: ${msg}`)
}

/**
 * decodeFrame decodes exactly one LZ4 frame and verifies its content checksum when present.
 * Stricter than Litestream: trailing bytes after the frame (a second frame) and truncation are errors.
 */
export function decodeFrame(buf: Buffer): Buffer {
  if (buf.length < 7 || buf.readUInt32LE(0) !== MAGIC) throw invalid('bad magic number')
  const flg = buf[4]!
  const bd = buf[5]!
  if (flg >> 6 !== 1) throw invalid(`unsupported frame version in FLG ${flg.toString(16)}`)
  const blockChecksum = (flg & 0x10) !== 0
  const hasContentSize = (flg & 0x08) !== 0
  const contentChecksum = (flg & 0x04) !== 0
  if (flg & 0x01) throw invalid('dictionary frames are not supported')
  const hdrLen = 6 + (hasContentSize ? 8 : 0) + 1
  if (buf.length < hdrLen) throw invalid('truncated frame header')
  if (buf[hdrLen - 1] !== ((xxh32(buf.subarray(4, hdrLen - 1)) >>> 8) & 0xff)) throw invalid('frame header checksum mismatch')
  const maxBlock = [0, 0, 0, 0, 64 << 10, 256 << 10, 1 << 20, 4 << 20][(bd >> 4) & 7] ?? 0
  if (maxBlock === 0) throw invalid(`bad block max size in BD ${bd.toString(16)}`)
  const out: Buffer[] = []
  let total = 0
  let p = hdrLen
  const prefix = Buffer.alloc(4)
  prefix.writeUInt32LE(maxBlock, 0)
  for (;;) {
    if (p + 4 > buf.length) throw invalid('truncated frame: missing end mark')
    const word = buf.readUInt32LE(p)
    p += 4
    if (word === 0) break
    const stored = (word & 0x80000000) !== 0
    const size = word & 0x7fffffff
    if (size > maxBlock) throw invalid(`block of ${size} bytes exceeds block max ${maxBlock}`)
    if (p + size + (blockChecksum ? 4 : 0) > buf.length) throw invalid('truncated frame: short block')
    const data = buf.subarray(p, p + size)
    p += size + (blockChecksum ? 4 : 0)
    const block = stored ? data : lz4.uncompressSync(Buffer.concat([prefix, data]))
    out.push(block)
    total += block.length
  }
  const content = out.length === 1 ? Buffer.from(out[0]!) : Buffer.concat(out, total)
  if (contentChecksum) {
    if (p + 4 > buf.length) throw invalid('truncated frame: missing content checksum')
    const want = buf.readUInt32LE(p)
    p += 4
    const got = xxh32(content)
    if (got !== want) throw invalid(`content checksum mismatch: got ${got.toString(16)}, want ${want.toString(16)}`)
  }
  if (p !== buf.length) throw invalid(`${buf.length - p} bytes after the end of the frame (only one frame per object is read by Litestream)`)
  return content
}
