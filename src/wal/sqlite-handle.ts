/**
 * The replicator's hold on a database: the file check, the WAL pin, and short-lived connections opened with no
 * busy wait (better-sqlite3 is synchronous and a busy wait would freeze every other database and the dashboard),
 * which never write user data. The only importer of better-sqlite3 in the engine.
 * @module
 */
import fs from 'node:fs'
import Database from 'better-sqlite3'
import { ReplicaError, type ErrorCode } from '../errors.js'
import { WalPin, type PinState } from './pin.js'
import type { ShmHeader } from './shm.js'

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1')

/** DbFileCheck is the outcome of looking at a database file's header without opening it with SQLite. */
export type DbFileCheck =
  | { readonly ok: true; readonly pageSize: number; readonly wal: boolean }
  | { readonly ok: false; readonly reason: 'missing' | 'empty' | 'not-a-file' | 'not-sqlite' | 'unreadable'; readonly detail: string }

/**
 * checkDbFile reads the first 100 bytes of path and says whether it is a SQLite database.
 * It opens with O_NONBLOCK so a FIFO never blocks, and never writes.
 */
export function checkDbFile(path: string): DbFileCheck {
  let st: fs.Stats
  try {
    st = fs.statSync(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return { ok: false, reason: 'missing', detail: 'file does not exist' }
    return { ok: false, reason: 'unreadable', detail: `stat: ${code ?? String(err)}` }
  }
  if (!st.isFile()) return { ok: false, reason: 'not-a-file', detail: st.isDirectory() ? 'is a directory' : 'is not a regular file' }
  if (st.size === 0) return { ok: false, reason: 'empty', detail: 'zero-byte file: waiting for the application to create the database' }
  let fd: number
  try {
    fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  } catch (err) {
    return { ok: false, reason: 'unreadable', detail: `open: ${(err as NodeJS.ErrnoException).code ?? String(err)}` }
  }
  try {
    const buf = Buffer.alloc(100)
    const n = fs.readSync(fd, buf, 0, 100, 0)
    if (n < 100 || !buf.subarray(0, 16).equals(SQLITE_MAGIC)) {
      return { ok: false, reason: 'not-sqlite', detail: n < 100 ? `only ${n} bytes, shorter than a SQLite header` : 'no SQLite header magic' }
    }
    let pageSize = buf.readUInt16BE(16)
    if (pageSize === 1) pageSize = 65536
    if (pageSize < 512 || (pageSize & (pageSize - 1)) !== 0) return { ok: false, reason: 'not-sqlite', detail: `invalid page size ${pageSize}` }
    if (st.size % pageSize !== 0) return { ok: false, reason: 'not-sqlite', detail: `file size ${st.size} is not a multiple of the page size ${pageSize}` }
    return { ok: true, pageSize, wal: buf[18] === 2 && buf[19] === 2 }
  } catch (err) {
    return { ok: false, reason: 'unreadable', detail: `read: ${(err as NodeJS.ErrnoException).code ?? String(err)}` }
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * busyOr classifies a SQLite error: SQLITE_BUSY* means the application holds a lock right now (we never wait on
 * one), so BUSY, retried later; anything else gets code.
 */
function busyOr(err: unknown, code: ErrorCode): ErrorCode {
  return (err as { code?: unknown }).code?.toString().startsWith('SQLITE_BUSY') === true ? 'BUSY' : code
}

/** connect opens a short-lived connection that never waits on locks, with a small page cache. */
function connect(path: string): Database.Database {
  try {
    const db = new Database(path, { fileMustExist: true, timeout: 0 })
    db.pragma('cache_size = -64')
    return db
  } catch (err) {
    throw new ReplicaError(busyOr(err, 'NOT_SQLITE'), `open ${path}`, { cause: err })
  }
}

/**
 * SqliteHandle is the replicator's hold on a database: a WalPin (lock-only, no connection) for the long run, and a
 * short-lived better-sqlite3 connection for the rare moments that need SQLite itself (opening, checkpoints, drill
 * counts). A connection per database costs 200-400 KiB; a pin costs two descriptors (decision 0003).
 */
export class SqliteHandle {
  readonly #path: string
  readonly #pin: WalPin

  private constructor(path: string, pin: WalPin) {
    this.#path = path
    this.#pin = pin
  }

  /**
   * open puts a database that checkDbFile accepted in WAL mode if it is not (as Litestream does), starts a read
   * transaction so the WAL index is live, and pins the WAL at that transaction's end before the connection closes.
   */
  static open(path: string): SqliteHandle {
    const db = connect(path)
    try {
      const mode = db.pragma('journal_mode', { simple: true })
      if (mode !== 'wal') {
        const got = db.pragma('journal_mode = wal', { simple: true })
        if (got !== 'wal') throw new ReplicaError('NOT_SQLITE', `cannot switch ${path} to WAL mode (journal_mode=${String(got)})`)
      }
      db.prepare('BEGIN').run()
      db.prepare('SELECT count(*) FROM sqlite_schema').get()
      const pin = WalPin.open(path)
      const r = pin.acquire()
      db.prepare('COMMIT').run()
      if (!r.pinned) {
        pin.close()
        throw new ReplicaError('BUSY', `${path}: cannot pin the wal: ${r.reason}`)
      }
      return new SqliteHandle(path, pin)
    } catch (err) {
      if (err instanceof ReplicaError) throw err
      throw new ReplicaError(busyOr(err, 'NOT_SQLITE'), `prepare ${path}`, { cause: err })
    } finally {
      // Our pin holds SHARED on the database file, so this close cannot checkpoint and delete the WAL.
      db.close()
    }
  }

  /** dbFd is a read-only descriptor on the database file, open as long as the handle. */
  get dbFd(): number {
    return this.#pin.dbFd
  }

  /** shmFd is a descriptor on the `-shm` file, open as long as the handle. */
  get shmFd(): number {
    return this.#pin.shmFd
  }

  /** reading reports whether the WAL is pinned (by a slot, or by READ(0) alone after a hand-off). */
  get reading(): boolean {
    return this.#pin.pinned
  }

  /** readIndex reads the WAL-index header, or undefined when it is unreadable. */
  readIndex(): ShmHeader | undefined {
    return this.#pin.readIndex()
  }

  /** slotHeld reports whether a read-mark slot is held (not READ(0) alone). */
  get slotHeld(): boolean {
    return this.#pin.slotHeld
  }

  /**
   * beginRead pins the WAL at its committed end (or keeps the pin). Throws BUSY when it cannot right now. Given the
   * last readIndex result, it saves a read of its own.
   */
  beginRead(known?: ShmHeader): void {
    const r = this.#pin.acquire({ known })
    if (!r.pinned) throw new ReplicaError('BUSY', `${this.#path}: cannot pin the wal: ${r.reason}`)
  }

  /**
   * beginReadForImage pins with a read-mark slot at the committed end, as a SQLite reader does, so that neither a
   * checkpointer nor a WAL restart moves what a snapshot image reads. Throws BUSY when it cannot right now.
   */
  beginReadForImage(): void {
    const r = this.#pin.acquire({ atEnd: true })
    if (!r.pinned || r.slot === 0) throw new ReplicaError('BUSY', `${this.#path}: cannot pin the wal: ${r.pinned ? 'no read-mark slot free' : r.reason}`)
  }

  /** raiseMark, raised, holdZero, dropSlot, dropZero: the steps of the hand-off of a fully backfilled WAL (WalPin). */
  raiseMark(): boolean {
    return this.#pin.raise()
  }

  get raised(): boolean {
    return this.#pin.raised
  }

  holdZero(): ReturnType<WalPin['holdZero']> {
    return this.#pin.holdZero()
  }

  othersInWal(): boolean {
    return this.#pin.othersInWal()
  }

  dropSlot(): void {
    this.#pin.dropSlot()
  }

  dropZero(): void {
    this.#pin.dropZero()
  }

  /** pinState, adoptPin, forgetPin: lend the pin's locks to a hand-off worker and take them back (WalPin). */
  pinState(): PinState {
    return this.#pin.state()
  }

  adoptPin(s: PinState): void {
    this.#pin.adopt(s)
  }

  forgetPin(): void {
    this.#pin.forget()
  }

  /**
   * advance moves a held pin to the current end of the WAL when its mark is behind; the held slot stays if it
   * cannot. Given the last readIndex result, it saves a read of its own.
   */
  advance(known?: ShmHeader): void {
    this.#pin.advance(known)
  }

  /** endRead releases the pin, if any. */
  endRead(): void {
    this.#pin.release()
  }

  /**
   * tableCounts counts the rows of every user table in a read transaction at the current end of the WAL (full
   * scans: for restore drills, not hot paths). sqlite_* and _litestream_* tables are left out.
   */
  tableCounts(): Record<string, number> {
    this.#pin.forgetIndex() // this connection may move the read marks
    const db = connect(this.#path)
    try {
      db.prepare('BEGIN').run()
      const names = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '\\_litestream\\_%' ESCAPE '\\' ORDER BY name").pluck().all() as string[]
      const out: Record<string, number> = {}
      for (const n of names) out[n] = Number(db.prepare(`SELECT count(*) FROM "${n.replace(/"/g, '""')}"`).pluck().get())
      db.prepare('COMMIT').run()
      return out
    } finally {
      db.close()
    }
  }

  /**
   * checkpoint runs `PRAGMA wal_checkpoint(mode)` on a short-lived connection, never waiting. It releases the pin
   * first unless keepPin (a raised mark lets a PASSIVE checkpoint backfill everything while the WAL stays put).
   */
  checkpoint(mode: 'PASSIVE' | 'TRUNCATE', opts: { readonly keepPin?: boolean } = {}): { busy: boolean; log: number; checkpointed: number } {
    if (opts.keepPin !== true) this.endRead()
    this.#pin.forgetIndex() // this connection may move the read marks
    const db = connect(this.#path)
    try {
      const row = db.prepare(`PRAGMA wal_checkpoint(${mode})`).get() as { busy: number; log: number; checkpointed: number }
      return { busy: row.busy !== 0, log: row.log, checkpointed: row.checkpointed }
    } finally {
      db.close()
    }
  }

  /** close releases every lock and descriptor. Idempotent. */
  close(): void {
    this.#pin.close()
  }
}
