/**
 * The replicator's own SQLite connection: opened with no busy wait (better-sqlite3 is synchronous and a busy
 * wait would freeze every other database and the dashboard), never writes user data, never checkpoints on its own.
 * The only importer of better-sqlite3 in the engine.
 * @module
 */
import fs from 'node:fs'
import Database from 'better-sqlite3'
import { ReplicaError } from '../errors.js'

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

/** SqliteHandle is the replicator's connection: a read transaction it can hold and release, and checkpoints. */
export class SqliteHandle {
  readonly #db: Database.Database
  readonly #begin: Database.Statement
  readonly #touch: Database.Statement
  readonly #commit: Database.Statement
  #reading = false

  private constructor(db: Database.Database) {
    this.#db = db
    this.#begin = db.prepare('BEGIN')
    this.#touch = db.prepare('SELECT count(*) FROM sqlite_schema')
    this.#commit = db.prepare('COMMIT')
  }

  /**
   * open connects to a database that checkDbFile accepted, and puts it in WAL mode if it is not (as Litestream does).
   * cacheKiB bounds the page cache: the replicator reads pages from the files directly, not through SQLite.
   */
  static open(path: string, opts: { readonly cacheKiB?: number } = {}): SqliteHandle {
    let db: Database.Database
    try {
      db = new Database(path, { fileMustExist: true, timeout: 0 })
    } catch (err) {
      throw new ReplicaError('NOT_SQLITE', `open ${path}`, { cause: err })
    }
    try {
      db.pragma(`cache_size = -${opts.cacheKiB ?? 64}`)
      db.pragma('wal_autocheckpoint = 0')
      const mode = db.pragma('journal_mode', { simple: true })
      if (mode !== 'wal') {
        const got = db.pragma('journal_mode = wal', { simple: true })
        if (got !== 'wal') throw new ReplicaError('NOT_SQLITE', `cannot switch ${path} to WAL mode (journal_mode=${String(got)})`)
      }
      return new SqliteHandle(db)
    } catch (err) {
      db.close()
      if (err instanceof ReplicaError) throw err
      throw new ReplicaError('NOT_SQLITE', `prepare ${path}`, { cause: err })
    }
  }

  /** reading reports whether a read transaction is held. */
  get reading(): boolean {
    return this.#reading
  }

  /** beginRead starts (or keeps) a read transaction, pinning the WAL against restarts. Throws SQLITE_BUSY as is. */
  beginRead(): void {
    if (this.#reading) return
    this.#begin.run()
    try {
      this.#touch.get()
    } catch (err) {
      this.#db.prepare('ROLLBACK').run()
      throw err
    }
    this.#reading = true
  }

  /** endRead releases the read transaction, if any. */
  endRead(): void {
    if (!this.#reading) return
    this.#reading = false
    this.#commit.run()
  }

  /**
   * tableCounts counts the rows of every user table inside the current read transaction (full scans: for restore
   * drills, not hot paths). sqlite_* and _litestream_* tables are left out.
   */
  tableCounts(): Record<string, number> {
    const names = this.#db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '\\_litestream\\_%' ESCAPE '\\' ORDER BY name").pluck().all() as string[]
    const out: Record<string, number> = {}
    for (const n of names) out[n] = Number(this.#db.prepare(`SELECT count(*) FROM "${n.replace(/"/g, '""')}"`).pluck().get())
    return out
  }

  /** checkpoint runs `PRAGMA wal_checkpoint(mode)` without waiting on locks; the read transaction must be released. */
  checkpoint(mode: 'PASSIVE' | 'TRUNCATE'): { busy: boolean; log: number; checkpointed: number } {
    this.endRead()
    const row = this.#db.prepare(`PRAGMA wal_checkpoint(${mode})`).get() as { busy: number; log: number; checkpointed: number }
    return { busy: row.busy !== 0, log: row.log, checkpointed: row.checkpointed }
  }

  /** close releases the read transaction and closes the connection. Idempotent. */
  close(): void {
    if (!this.#db.open) return
    try {
      this.endRead()
    } finally {
      this.#db.close()
    }
  }
}
