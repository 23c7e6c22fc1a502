/**
 * Reads the WAL-index header from a database's `-shm` file (sqlite.org/walformat.html#the_wal_index_file_format).
 * SQLite keeps two copies of the 48-byte header and a checksum; a reader retries until both copies agree.
 * The header gives the committed end of the WAL (mxFrame), its salts, and iChange, a counter SQLite increments
 * on every commit. iChange is what lets the replicator prove that no commit slipped past it across a WAL restart.
 * @module
 */
import fs from 'node:fs'

/** ShmHeader is the part of the WAL-index header the replicator uses. */
export interface ShmHeader {
  /** iChange counts commits (mod 2^32). */
  readonly iChange: number
  /** mxFrame is the number of committed frames in the current WAL incarnation. */
  readonly mxFrame: number
  /** nPage is the database size in pages after the last commit. */
  readonly nPage: number
  readonly pageSize: number
  readonly salt1: number
  readonly salt2: number
  /** frameChecksum is the running checksum after frame mxFrame. */
  readonly frameChecksum: readonly [number, number]
  /** nBackfill is how many frames have been checkpointed into the database file. */
  readonly nBackfill: number
}

const HDR = 48
const READ_LEN = HDR * 2 + 8

/** shmChecksum is SQLite's native-order checksum over the first 40 bytes of a header copy. */
function hdrChecksumOk(b: Buffer, off: number): boolean {
  let s0 = 0
  let s1 = 0
  for (let i = off; i < off + 40; i += 8) {
    s0 = (s0 + b.readUInt32LE(i) + s1) >>> 0
    s1 = (s1 + b.readUInt32LE(i + 4) + s0) >>> 0
  }
  return s0 === b.readUInt32LE(off + 40) && s1 === b.readUInt32LE(off + 44)
}

/**
 * readShmHeader reads a consistent WAL-index header from an open `-shm` file descriptor, or returns undefined
 * when the file is too short, uninitialised, or keeps changing (callers retry on their next pass).
 * Assumes a little-endian host, as SQLite writes the index in native order.
 */
export function readShmHeader(fd: number, buf: Buffer = Buffer.alloc(READ_LEN)): ShmHeader | undefined {
  // A larger buffer is filled whole (the WAL pin's also holds the read marks that follow).
  const len = Math.max(READ_LEN, buf.length)
  for (let attempt = 0; attempt < 5; attempt++) {
    const n = fs.readSync(fd, buf, 0, len, 0)
    if (n < len) return undefined
    const h = parseShmHeader(buf)
    if (h !== null) return h
  }
  return undefined
}

/**
 * parseShmHeader parses the first 104 bytes of `-shm` (both header copies and nBackfill) as read in one go:
 * undefined when the index is not initialised, null when the two copies disagree or the checksum fails (a writer
 * was updating it: read again).
 */
function parseShmHeader(buf: Buffer): ShmHeader | undefined | null {
  if (buf.compare(buf, 0, HDR, HDR, HDR * 2) !== 0) return null
  if (buf[12] !== 1) return undefined // isInit
  if (!hdrChecksumOk(buf, 0)) return null
  const sz = buf.readUInt16LE(14)
  return {
    iChange: buf.readUInt32LE(8),
    pageSize: (sz & 0xff00) | ((sz & 0x0001) << 16),
    mxFrame: buf.readUInt32LE(16),
    nPage: buf.readUInt32LE(20),
    frameChecksum: [buf.readUInt32LE(24), buf.readUInt32LE(28)],
    // Salts are copied from the WAL header bytes, so they are big-endian in memory.
    salt1: buf.readUInt32BE(32),
    salt2: buf.readUInt32BE(36),
    nBackfill: buf.readUInt32LE(HDR * 2),
  }
}
