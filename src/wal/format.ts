/**
 * SQLite WAL file format: header, frame header, and the running checksum (sqlite.org/fileformat2.html#walformat).
 * Pure functions over Buffers; the hot loop allocates nothing.
 * @module
 */

/** WAL_HEADER_SIZE is the size of the WAL file header. */
export const WAL_HEADER_SIZE = 32
/** FRAME_HEADER_SIZE is the size of each frame header. */
export const FRAME_HEADER_SIZE = 24
/** WAL_MAGIC_LE and WAL_MAGIC_BE select the checksum byte order. */
export const WAL_MAGIC_LE = 0x377f0682
export const WAL_MAGIC_BE = 0x377f0683
const WAL_VERSION = 3007000

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1

/** WalHeader is a parsed, validated WAL header. `bytes` is the exact 32-byte header. */
export interface WalHeader {
  readonly bytes: Buffer
  readonly bigEndian: boolean
  readonly pageSize: number
  readonly checkpointSeq: number
  readonly salt1: number
  readonly salt2: number
  /** checksum is the header checksum, the seed of the first frame's running checksum. */
  readonly checksum: readonly [number, number]
}

/** HeaderResult is the outcome of parsing a WAL header: expected failures are values, not throws. */
export type HeaderResult = { readonly ok: true; readonly header: WalHeader } | { readonly ok: false; readonly reason: string }

/**
 * walChecksum continues SQLite's WAL checksum over buf[start, end) (a multiple of 8 bytes) from state,
 * writing the result back into state. Words are read in the byte order the WAL magic selects.
 */
export function walChecksum(bigEndian: boolean, state: Uint32Array, buf: Buffer, start: number, end: number): void {
  let s0 = state[0]!
  let s1 = state[1]!
  const at = buf.byteOffset + start
  if (!bigEndian && LITTLE_ENDIAN_HOST && (at & 3) === 0) {
    // Fast path: the host's byte order matches, so read words through a typed-array view (no per-word call).
    const w = new Uint32Array(buf.buffer, at, (end - start) >>> 2)
    for (let i = 0; i < w.length; i += 2) {
      s0 = (s0 + w[i]! + s1) >>> 0
      s1 = (s1 + w[i + 1]! + s0) >>> 0
    }
  } else if (bigEndian) {
    for (let i = start; i < end; i += 8) {
      s0 = (s0 + buf.readUInt32BE(i) + s1) >>> 0
      s1 = (s1 + buf.readUInt32BE(i + 4) + s0) >>> 0
    }
  } else {
    for (let i = start; i < end; i += 8) {
      s0 = (s0 + buf.readUInt32LE(i) + s1) >>> 0
      s1 = (s1 + buf.readUInt32LE(i + 4) + s0) >>> 0
    }
  }
  state[0] = s0
  state[1] = s1
}

/** parseWalHeader validates magic, version, page size and the header checksum. */
export function parseWalHeader(buf: Buffer): HeaderResult {
  if (buf.length < WAL_HEADER_SIZE) return { ok: false, reason: 'short wal header' }
  const magic = buf.readUInt32BE(0)
  if (magic !== WAL_MAGIC_LE && magic !== WAL_MAGIC_BE) return { ok: false, reason: 'bad wal magic' }
  const bigEndian = magic === WAL_MAGIC_BE
  if (buf.readUInt32BE(4) !== WAL_VERSION) return { ok: false, reason: 'unsupported wal version' }
  let pageSize = buf.readUInt32BE(8)
  if (pageSize === 1) pageSize = 65536
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return { ok: false, reason: 'bad wal page size' }
  const state = new Uint32Array(2)
  walChecksum(bigEndian, state, buf, 0, 24)
  if (state[0] !== buf.readUInt32BE(24) || state[1] !== buf.readUInt32BE(28)) return { ok: false, reason: 'wal header checksum mismatch' }
  return {
    ok: true,
    header: {
      bytes: Buffer.from(buf.subarray(0, WAL_HEADER_SIZE)),
      bigEndian,
      pageSize,
      checkpointSeq: buf.readUInt32BE(12),
      salt1: buf.readUInt32BE(16),
      salt2: buf.readUInt32BE(20),
      checksum: [state[0]!, state[1]!],
    },
  }
}

/** frameSize is the on-disk size of one frame for a page size. */
export function frameSize(pageSize: number): number {
  return FRAME_HEADER_SIZE + pageSize
}

/** frameOffset is the byte offset of 1-based frame n. */
export function frameOffset(pageSize: number, n: number): number {
  return WAL_HEADER_SIZE + (n - 1) * frameSize(pageSize)
}

/** FrameCheck says where validation of a run of frames stopped. */
export interface FrameRun {
  /** frames is the number of valid frames read (committed or not). */
  readonly frames: number
  /** commitFrames is the number of valid frames up to and including the last commit frame. */
  readonly commitFrames: number
  /** commits counts commit frames among the first commitFrames frames. */
  readonly commits: number
  /** checksum is the running checksum after the last commit frame. */
  readonly checksum: readonly [number, number]
  /** dbPages is the database size in pages recorded by the last commit frame (0 if none). */
  readonly dbPages: number
  /** stop says why reading stopped: 'end' (limit or no more bytes), 'salt', 'checksum'. */
  readonly stop: 'end' | 'salt' | 'checksum'
}

/**
 * checkFrames validates consecutive frames in buf (starting at a frame boundary) against the header salts and
 * the running checksum seeded by `seed`, as Litestream's copyToShadowWAL does, stopping at the first invalid frame.
 * At most maxFrames frames are examined.
 */
export function checkFrames(
  header: WalHeader,
  seed: readonly [number, number],
  buf: Buffer,
  start: number,
  end: number,
  maxFrames: number,
): FrameRun {
  const fs = frameSize(header.pageSize)
  const state = new Uint32Array([seed[0], seed[1]])
  let frames = 0
  let commitFrames = 0
  let commits = 0
  let dbPages = 0
  let c0 = seed[0]
  let c1 = seed[1]
  let stop: FrameRun['stop'] = 'end'
  for (let p = start; p + fs <= end && frames < maxFrames; p += fs) {
    if (buf.readUInt32BE(p + 8) !== header.salt1 || buf.readUInt32BE(p + 12) !== header.salt2) {
      stop = 'salt'
      break
    }
    walChecksum(header.bigEndian, state, buf, p, p + 8)
    walChecksum(header.bigEndian, state, buf, p + FRAME_HEADER_SIZE, p + fs)
    if (state[0] !== buf.readUInt32BE(p + 16) || state[1] !== buf.readUInt32BE(p + 20)) {
      stop = 'checksum'
      break
    }
    frames++
    const commitSize = buf.readUInt32BE(p + 4)
    if (commitSize !== 0) {
      commitFrames = frames
      commits++
      dbPages = commitSize
      c0 = state[0]!
      c1 = state[1]!
    }
  }
  return { frames, commitFrames, commits, checksum: [c0, c1], dbPages, stop }
}
