/**
 * WalPin holds a database's WAL in place the way a SQLite reader does, without a SQLite connection: it speaks
 * SQLite's own locking protocol on the database file and its `-shm` WAL index with open-file-description locks
 * (sqlite.org/walformat.html, "the WAL-index file format" and "locks"; src/wal.c walTryBeginRead).
 *
 * - A SHARED lock on the database file, held from open to close. While any connection holds it, the last
 *   application connection to close cannot take EXCLUSIVE, so it does not checkpoint and delete the WAL before
 *   we read its final frames. (Recent SQLite also declines while another process holds the dead-man switch;
 *   the SHARED lock is what every version respects.)
 * - A SHARED lock on the `-shm` dead-man-switch byte, held from open to close, taken only while some SQLite
 *   connection already holds it (the index is live). A later opener then trusts the index instead of rebuilding it.
 * - While pinned, a SHARED lock on one of the read-mark slots READ(1..4), whose mark is at most the committed end
 *   of the WAL. A writer restarts the WAL only after taking every READ(1..4) exclusively, and a checkpointer never
 *   backfills past the mark of a slot it cannot take: so no frame is overwritten and the database file does not
 *   move past the mark while we read. Exactly what a SQLite read transaction guarantees, for about two descriptors
 *   of memory instead of a connection's page cache, lookaside and schema.
 * @module
 */
import fs from 'node:fs'
import { ReplicaError } from '../errors.js'
import { probeLock, setLock } from './ofd-lock.js'
import { readShmHeader, type ShmHeader } from './shm.js'

/** Database-file lock bytes of SQLite's unix VFS (os_unix.c). */
const PENDING_BYTE = 0x40000000
const SHARED_FIRST = PENDING_BYTE + 2
const SHARED_SIZE = 510
/** `-shm` lock bytes: WALINDEX_LOCK_OFFSET + WAL_READ_LOCK(i), and the dead-man switch after the eight locks. */
const SHM_LOCK_BASE = 120
const READ_LOCK = (i: number): number => SHM_LOCK_BASE + 3 + i
const SHM_DMS = SHM_LOCK_BASE + 8
/** WalCkptInfo follows the two 48-byte header copies: nBackfill, then aReadMark[0..4]. */
const READ_MARK = (i: number): number => 100 + 4 * i
const READMARK_NOT_USED = 0xffffffff
const NREADER = 5
const HDR_BYTES = 136

/** PinResult says what acquire achieved: the slot and mark held, or why not. */
export type PinResult = { readonly pinned: true; readonly slot: number; readonly mark: number } | { readonly pinned: false; readonly reason: string }

/** WalPin owns a descriptor on the database file and one on its `-shm` file, and the locks described above. */
export class WalPin {
  readonly #buf = Buffer.alloc(HDR_BYTES)
  readonly #mark = Buffer.alloc(4)
  /** index is the header readIndex parsed from #buf, while #buf (read marks included) still holds that read. */
  #index: ShmHeader | undefined
  #slot = 0
  /** heldMark is the mark of the slot held, as verified when it was taken (no one can change it while we hold it). */
  #heldMark = 0
  /** lastSlot is the slot held before the last release: claimed again only when no other is free. */
  #lastSlot = 0
  #closed = false

  private constructor(
    readonly dbFd: number,
    readonly shmFd: number,
  ) {}

  /**
   * open takes the database SHARED lock and the index's dead-man switch. The caller must hold a SQLite
   * connection with a read transaction on the database for the duration of the call, so that the index is live
   * (initialised, recovered) and the switch is already held; the connection can close afterwards.
   */
  static open(dbPath: string): WalPin {
    const dbFd = fs.openSync(dbPath, 'r')
    let shmFd = -1
    try {
      shmFd = fs.openSync(`${dbPath}-shm`, 'r+')
      // SHARED as SQLite takes it: a read lock on PENDING first, so a writer waiting for EXCLUSIVE is not starved.
      if (!setLock(dbFd, 'read', PENDING_BYTE, 1)) throw new ReplicaError('BUSY', `${dbPath}: a writer is taking an exclusive lock`)
      const shared = setLock(dbFd, 'read', SHARED_FIRST, SHARED_SIZE)
      setLock(dbFd, 'none', PENDING_BYTE, 1)
      if (!shared) throw new ReplicaError('BUSY', `${dbPath}: database is locked exclusively`)
      const dms = probeLock(shmFd, SHM_DMS, 1)
      if (dms === 'none') throw new ReplicaError('BUSY', `${dbPath}-shm: no SQLite connection holds the wal index`)
      if (dms === 'write' || !setLock(shmFd, 'read', SHM_DMS, 1)) throw new ReplicaError('BUSY', `${dbPath}-shm: the wal index is being initialised`)
      return new WalPin(dbFd, shmFd)
    } catch (err) {
      if (shmFd >= 0) fs.closeSync(shmFd)
      fs.closeSync(dbFd)
      throw err
    }
  }

  /** pinned reports whether a read-mark slot is held. */
  get pinned(): boolean {
    return this.#slot !== 0
  }

  /**
   * acquire pins the WAL at (at most) its committed end, as walTryBeginRead does: share a slot whose mark is the
   * end, else claim a free slot and set its mark, else share the slot with the largest mark below the end. After
   * locking it re-reads the mark and the salts; a change means a checkpointer or a WAL restart got in between.
   * Never waits. Keeps an existing pin.
   */
  acquire(known?: ShmHeader): PinResult {
    if (this.#closed) throw new ReplicaError('CLOSED', 'wal pin is closed')
    if (this.#slot !== 0) return { pinned: true, slot: this.#slot, mark: this.#heldMark }
    let reason = 'no read-mark slot available'
    for (let attempt = 0; attempt < 10; attempt++) {
      // The first try may start from the caller's fresh read: the verification below reads again anyway.
      const hdr = attempt === 0 ? this.#known(known) : this.#readHeader()
      if (!hdr) {
        reason = 'wal index header unreadable'
        continue
      }
      const { mxFrame, salts } = hdr
      let mxI = 0
      let mxReadMark = 0
      for (let i = 1; i < NREADER; i++) {
        const m = this.#buf.readUInt32LE(READ_MARK(i))
        if (m !== READMARK_NOT_USED && m <= mxFrame && m >= mxReadMark) {
          mxReadMark = m
          mxI = i
        }
      }
      if (mxI === 0 || mxReadMark < mxFrame) {
        // Claim the slot we held last only if no other is free: a checkpointer may be waiting (its busy handler
        // retries the lock of that very slot) to move the old mark, and taking it back would starve it.
        for (const i of this.#claimOrder()) {
          if (!setLock(this.shmFd, 'write', READ_LOCK(i), 1)) continue
          this.#mark.writeUInt32LE(mxFrame, 0)
          try {
            fs.writeSync(this.shmFd, this.#mark, 0, 4, READ_MARK(i))
          } finally {
            setLock(this.shmFd, 'none', READ_LOCK(i), 1)
          }
          mxI = i
          mxReadMark = mxFrame
          break
        }
      }
      if (mxI === 0) continue
      if (!setLock(this.shmFd, 'read', READ_LOCK(mxI), 1)) {
        reason = `read-mark slot ${mxI} is being changed`
        continue
      }
      const after = this.#readHeader()
      if (after && after.salts === salts && this.#buf.readUInt32LE(READ_MARK(mxI)) === mxReadMark) {
        this.#slot = mxI
        this.#heldMark = mxReadMark
        return { pinned: true, slot: mxI, mark: mxReadMark }
      }
      setLock(this.shmFd, 'none', READ_LOCK(mxI), 1)
      reason = 'wal index changed while pinning'
    }
    return { pinned: false, reason }
  }

  /**
   * advance re-pins at the committed end if the held mark is behind it: release, then acquire, which claims a
   * slot other than the one just released when one is free. Returns the new state.
   */
  advance(known?: ShmHeader): PinResult {
    if (this.#slot === 0) return this.acquire(known)
    const hdr = this.#known(known) // also has the read marks in #buf: no second pread for ours
    const mark = this.#buf.readUInt32LE(READ_MARK(this.#slot))
    if (hdr && mark >= hdr.mxFrame) return { pinned: true, slot: this.#slot, mark }
    this.release()
    return this.acquire(this.#index)
  }

  /**
   * readIndex reads the WAL-index header (and, into the pin's buffer, the read marks) in one pread; undefined when
   * unreadable or uninitialised. Passing the result straight back to advance or acquire saves them a read: a pin
   * taken from it is verified by a read after locking, like any other.
   */
  readIndex(): ShmHeader | undefined {
    this.#index = readShmHeader(this.shmFd, this.#buf)
    return this.#index
  }

  /** forget drops the last readIndex result: a connection of ours may have moved the read marks since. */
  forget(): void {
    this.#index = undefined
  }

  /** known is the header of known when it is the last readIndex result (still in #buf), else a fresh read. */
  #known(known: ShmHeader | undefined): { mxFrame: number; salts: string } | undefined {
    if (known === undefined || known !== this.#index) return this.#readHeader()
    return { mxFrame: known.mxFrame, salts: this.#buf.toString('hex', 32, 40) }
  }

  /** release lets go of the read-mark slot, if held; the database and dead-man-switch locks stay. */
  release(): void {
    if (this.#slot === 0) return
    const slot = this.#slot
    this.#lastSlot = slot
    this.#slot = 0
    setLock(this.shmFd, 'none', READ_LOCK(slot), 1)
  }

  /** close releases every lock (closing the descriptors does) and the descriptors. Idempotent. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#slot = 0
    try {
      fs.closeSync(this.shmFd)
    } finally {
      fs.closeSync(this.dbFd)
    }
  }

  #claimOrder(): number[] {
    const order: number[] = []
    for (let i = 1; i < NREADER; i++) if (i !== this.#lastSlot) order.push(i)
    if (this.#lastSlot !== 0) order.push(this.#lastSlot)
    return order
  }

  /** readHeader reads the index header and checkpoint info; undefined unless both header copies agree. */
  #readHeader(): { mxFrame: number; salts: string } | undefined {
    this.#index = undefined
    const b = this.#buf
    if (fs.readSync(this.shmFd, b, 0, HDR_BYTES, 0) < HDR_BYTES) return undefined
    if (b[12] !== 1 || b.compare(b, 0, 48, 48, 96) !== 0) return undefined
    return { mxFrame: b.readUInt32LE(16), salts: b.toString('hex', 32, 40) }
  }
}
