/**
 * Snapshot images: the database exactly as committed at WAL frame mxFrame, built from the database file with the
 * newest version of each page from WAL frames 1..mxFrame laid over it. Such a snapshot restores on its own, so a
 * crash between a generation's snapshot and its first WAL segment never loses an acknowledged commit.
 * @module
 */
import fs from 'node:fs'
import { Readable } from 'node:stream'
import { ReplicaError } from '../errors.js'
import { FRAME_HEADER_SIZE, type WalHeader } from './format.js'

/** PageOverlay maps page numbers to the WAL byte offset of their newest frame. */
export type PageOverlay = Map<number, number>

/** ImageSource says where the pages of a snapshot image come from. */
export interface ImageSource {
  /** dbFd is the replicator's long-lived descriptor on the database file (never opened and closed here: see Replicator). */
  readonly dbFd: number
  readonly walPath: string
  readonly pageSize: number
  /** nPage is the database size in pages at mxFrame. */
  readonly nPage: number
  /** header is the WAL header whose salts every overlay frame must still carry when read. */
  readonly header: WalHeader | null
  readonly overlay: PageOverlay
}

const CHUNK_PAGES_BYTES = 1 << 20

/** imagePages yields the image in chunks of about 1 MiB, re-checking each overlay frame's salts as it reads. */
export function* imageChunks(src: ImageSource): Generator<Buffer> {
  const dbFd = src.dbFd
  const walFd = src.overlay.size > 0 ? fs.openSync(src.walPath, 'r') : -1
  try {
    const per = Math.max(1, Math.floor(CHUNK_PAGES_BYTES / src.pageSize))
    const salts = Buffer.alloc(8)
    if (src.header) {
      salts.writeUInt32BE(src.header.salt1, 0)
      salts.writeUInt32BE(src.header.salt2, 4)
    }
    const fh = Buffer.alloc(FRAME_HEADER_SIZE)
    for (let first = 1; first <= src.nPage; first += per) {
      const count = Math.min(per, src.nPage - first + 1)
      const chunk = Buffer.alloc(count * src.pageSize)
      const n = fs.readSync(dbFd, chunk, 0, chunk.length, (first - 1) * src.pageSize)
      // Pages past the end of the file (the database grew in the WAL) must all come from the overlay.
      for (let i = 0; i < count; i++) {
        const pgno = first + i
        const off = src.overlay.get(pgno)
        if (off === undefined) {
          if ((i + 1) * src.pageSize > n) throw new ReplicaError('WAL_INVALID', `snapshot: page ${pgno} is neither in the database file nor in the wal`)
          continue
        }
        fs.readSync(walFd, fh, 0, FRAME_HEADER_SIZE, off)
        if (fh.compare(salts, 0, 8, 8, 16) !== 0 || fh.readUInt32BE(0) !== pgno) {
          throw new ReplicaError('WAL_INVALID', 'snapshot: wal frame changed while reading (wal restarted)')
        }
        const got = fs.readSync(walFd, chunk, i * src.pageSize, src.pageSize, off + FRAME_HEADER_SIZE)
        if (got !== src.pageSize) throw new ReplicaError('WAL_INVALID', 'snapshot: short wal frame read')
      }
      yield chunk
    }
  } finally {
    if (walFd >= 0) fs.closeSync(walFd)
  }
}

/** imageStream wraps imageChunks in a Readable. */
export function imageStream(src: ImageSource): Readable {
  return Readable.from(imageChunks(src), { objectMode: false })
}
