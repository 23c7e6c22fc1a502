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
 * - For a moment, a slot whose mark is above every frame (raise): a checkpointer then backfills the whole WAL,
 *   while the slot still keeps the WAL from restarting.
 * - For the hand-off of a fully backfilled WAL to the application (holdZero, dropSlot; matrix B2): READ(0) alone.
 *   A checkpointer needs READ(0) exclusively to backfill, so while we hold it nBackfill cannot move; and a WAL
 *   restarts only when nBackfill equals mxFrame. So with READ(0) alone the WAL can restart at most once, exactly
 *   at the end it had when backfill froze, and not again until we let go: a complete pin that does not stop the
 *   application's next transaction from restarting a fully backfilled WAL.
 * @module
 */
import fs from 'node:fs'
import { ReplicaError } from '../errors.js'
import { probeLock, setLock, waitLock } from './ofd-lock.js'
import { readShmHeader, type ShmHeader } from './shm.js'

/** Database-file lock bytes of SQLite's unix VFS (os_unix.c). */
const PENDING_BYTE = 0x40000000
const SHARED_FIRST = PENDING_BYTE + 2
const SHARED_SIZE = 510
/** `-shm` lock bytes: WALINDEX_LOCK_OFFSET + WAL_READ_LOCK(i), and the dead-man switch after the eight locks. */
const SHM_LOCK_BASE = 120
const READ_LOCK = (i: number): number => SHM_LOCK_BASE + 3 + i
const SHM_DMS = SHM_LOCK_BASE + 8
const WRITE_LOCK = SHM_LOCK_BASE
/** WalCkptInfo follows the two 48-byte header copies: nBackfill, then aReadMark[0..4]. */
const READ_MARK = (i: number): number => 100 + 4 * i
const NBACKFILL = 96
const READMARK_NOT_USED = 0xffffffff
/** HIGH_MARK is a read mark above every frame. No SQLite reader shares a slot whose mark is above mxFrame. */
const HIGH_MARK = 0xfffffffe
const NREADER = 5
const HDR_BYTES = 136
/** NO_SLOT_FREE is why a pin failed when the index was readable but every read-mark slot was taken by others. */
const NO_SLOT_FREE = 'no read-mark slot available'

/** IndexRead is what a pin needs of one read of the index header: its end and its salts (hex). */
interface IndexRead {
  readonly mxFrame: number
  readonly salts: string
}

/** PinResult says what acquire achieved: the slot and mark held, or why not. */
export type PinResult = { readonly pinned: true; readonly slot: number; readonly mark: number } | { readonly pinned: false; readonly reason: string }

/**
 * PinState is what a WalPin holds, so that a hand-off worker (handoff-worker.ts) can take the pin over on the same
 * descriptors (WalPin.borrow) and hand it back (adopt). Locks belong to the open file description, not the thread.
 */
export interface PinState {
  readonly slot: number
  readonly mark: number
  readonly zero: boolean
  readonly zeroAt: string
  readonly lastSlot: number
}

/** WalPin owns a descriptor on the database file and one on its `-shm` file, and the locks described above. */
export class WalPin {
  readonly #buf = Buffer.alloc(HDR_BYTES)
  readonly #mark = Buffer.alloc(4)
  /** index is the header readIndex parsed from #buf, while #buf (read marks included) still holds that read. */
  #index: ShmHeader | undefined
  #slot = 0
  /** zero: READ(0) is held (shared); zeroAt is the index's end (salts, mxFrame) when backfill froze. */
  #zero = false
  #zeroAt = ''
  /** heldMark is the mark of the slot held, as verified when it was taken (no one can change it while we hold it). */
  #heldMark = 0
  /** lastSlot is the slot held before the last release: claimed again only when no other is free. */
  #lastSlot = 0
  #closed = false

  /** borrowed: the descriptors belong to another WalPin (borrow); close never closes them. */
  #borrowed = false

  private constructor(
    readonly dbFd: number,
    readonly shmFd: number,
  ) {}

  /**
   * borrow makes a WalPin over another pin's descriptors, in the state that pin handed over (state()). The owner
   * must not use its locks until it adopts the state back. close() of a borrowed pin closes nothing.
   */
  static borrow(dbFd: number, shmFd: number, state: PinState): WalPin {
    const p = new WalPin(dbFd, shmFd)
    p.#borrowed = true
    p.adopt(state)
    return p
  }

  /** state is what this pin holds, to hand to a borrower. */
  state(): PinState {
    return { slot: this.#slot, mark: this.#heldMark, zero: this.#zero, zeroAt: this.#zeroAt, lastSlot: this.#lastSlot }
  }

  /** adopt takes back the state a borrower left the locks in. */
  adopt(s: PinState): void {
    if (this.#closed) throw new ReplicaError('CLOSED', 'wal pin is closed')
    this.#index = undefined // the borrower moved locks and marks
    this.#slot = s.slot
    this.#heldMark = s.mark
    this.#zero = s.zero
    this.#zeroAt = s.zeroAt
    this.#lastSlot = s.lastSlot
  }

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

  /** pinned reports whether the WAL is held: by a read-mark slot, or by READ(0) alone after a hand-off. */
  get pinned(): boolean {
    return this.#slot !== 0 || this.#zero
  }

  /** slotHeld reports whether a read-mark slot READ(1..4) is held. */
  get slotHeld(): boolean {
    return this.#slot !== 0
  }

  /**
   * acquire pins the WAL at (at most) its committed end, as walTryBeginRead does: share a slot whose mark is the
   * end, else claim a free slot and set its mark, else share the slot with the largest mark below the end. After
   * locking it re-reads the mark and the salts; a change means a checkpointer or a WAL restart got in between.
   * Never waits. Keeps an existing pin (a raised slot, READ(0) alone), unless atEnd asks for a slot with a mark at
   * the end, as reading the database file needs.
   */
  acquire(opts: { readonly atEnd?: boolean; readonly known?: ShmHeader | undefined } = {}): PinResult {
    if (this.#closed) throw new ReplicaError('CLOSED', 'wal pin is closed')
    const atEnd = opts.atEnd === true
    if (this.#slot !== 0 && (this.#heldMark !== HIGH_MARK || !atEnd)) return { pinned: true, slot: this.#slot, mark: this.#heldMark }
    if (this.#slot === 0 && this.#zero && !atEnd) return { pinned: true, slot: 0, mark: 0 }
    return this.#exchange(false, opts.known)
  }

  /** raised reports whether the held slot's mark is above every frame (raise). */
  get raised(): boolean {
    return this.#slot !== 0 && this.#heldMark === HIGH_MARK
  }

  /**
   * raise holds a slot whose mark is above every frame, so a checkpointer backfills the whole WAL while the WAL
   * still cannot restart. Claims a fresh slot before letting the old one go (never unpinned in between). False
   * when no slot is free; the pin is then unchanged.
   */
  raise(): boolean {
    if (this.#closed) throw new ReplicaError('CLOSED', 'wal pin is closed')
    if (this.#slot !== 0 && this.#heldMark === HIGH_MARK) return true
    return this.#exchange(true).pinned && this.#heldMark === HIGH_MARK
  }

  /**
   * exchange takes a new slot (with a high mark, or at the committed end) while still holding whatever is held,
   * then lets the old slot and READ(0) go. If no slot is free: a raised slot is released and a slot at the end
   * acquired (a few microseconds unpinned, as SQLite readers are between transactions); otherwise the pin is
   * left as it was.
   */
  #exchange(high: boolean, known?: ShmHeader): PinResult {
    const old = this.#slot
    const r = this.#acquireSlot(high, old, this.#known(known))
    if (r.pinned) {
      if (old !== 0) {
        this.#lastSlot = old
        setLock(this.shmFd, 'none', READ_LOCK(old), 1)
      }
      this.dropZero()
      return r
    }
    this.#slot = old // still held: nothing changed
    if (high || old === 0) return r // READ(0) alone, if held, stays: it is still a complete pin
    // Only when every other slot is taken does the held one go, to be claimed again at the end; a header that stayed
    // unreadable or kept changing would fail that try too and leave the WAL unpinned, so the held slot stays then.
    if (r.reason !== NO_SLOT_FREE) return r
    this.release()
    return this.#acquireSlot(false, 0, this.#readHeader())
  }

  #acquireSlot(high: boolean, keep: number, first: IndexRead | undefined): PinResult {
    this.#slot = 0
    let reason = NO_SLOT_FREE
    for (let attempt = 0; attempt < 10; attempt++) {
      // The first try starts from the caller's read (first: one whose marks are still in #buf), which may be a little
      // stale: the verification below reads again anyway.
      const hdr = attempt === 0 ? first : this.#readHeader()
      if (!hdr) {
        reason = 'wal index header unreadable'
        continue
      }
      const { mxFrame, salts } = hdr
      let mxI = 0
      let mxReadMark = 0
      if (!high) {
        for (let i = 1; i < NREADER; i++) {
          const m = this.#buf.readUInt32LE(READ_MARK(i))
          if (i !== keep && m !== READMARK_NOT_USED && m <= mxFrame && m >= mxReadMark) {
            mxReadMark = m
            mxI = i
          }
        }
      }
      if (high || mxI === 0 || mxReadMark < mxFrame) {
        // Claim the slot we held last only if no other is free: a checkpointer may be waiting (its busy handler
        // retries the lock of that very slot) to move the old mark, and taking it back would starve it.
        const mark = high ? HIGH_MARK : mxFrame
        for (const i of this.#claimOrder(keep)) {
          if (!setLock(this.shmFd, 'write', READ_LOCK(i), 1)) continue
          this.#mark.writeUInt32LE(mark, 0)
          try {
            fs.writeSync(this.shmFd, this.#mark, 0, 4, READ_MARK(i))
          } finally {
            setLock(this.shmFd, 'none', READ_LOCK(i), 1)
          }
          mxI = i
          mxReadMark = mark
          break
        }
      }
      if (mxI === 0) {
        reason = NO_SLOT_FREE
        if (high) break
        continue
      }
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
   * advance re-pins at the committed end if the held mark is behind it (a raised mark never is), in a slot other
   * than the one held (which a checkpointer may be waiting for), taken before the held one is let go. If the header
   * cannot be read or no other slot can be taken, the held slot stays: advance never leaves the WAL unpinned. (It
   * used to let go first; a header left torn for milliseconds by a writer descheduled between its two copies then
   * failed every retry, and the application restarted the WAL under unshipped frames: the B2 queue bound flake.)
   * With READ(0) alone it takes a slot only once the index moved since backfill froze (the application wrote: the
   * WAL restarted, or it appended and cannot restart until backfill resumes). Returns the new state.
   */
  advance(known?: ShmHeader): PinResult {
    if (this.#slot === 0) {
      if (!this.#zero) return this.acquire({ known })
      const hdr = this.#known(known)
      if (hdr && `${hdr.salts}:${hdr.mxFrame}` === this.#zeroAt) return { pinned: true, slot: 0, mark: 0 }
      return this.acquire({ atEnd: true, known: this.#index })
    }
    const hdr = this.#known(known)
    const old = this.#slot
    const mark = this.#heldMark
    if (!hdr || mark >= hdr.mxFrame) return { pinned: true, slot: old, mark } // unreadable: keep it; a raised mark stays
    // The read just made (its marks are in #buf) serves the first try; the pin is verified after locking anyway.
    const r = this.#acquireSlot(false, old, hdr)
    if (!r.pinned || r.mark < mark) {
      // No other slot at or past the held mark (all taken): keep the held one, nothing changed.
      if (r.pinned) setLock(this.shmFd, 'none', READ_LOCK(r.slot), 1)
      this.#slot = old
      this.#heldMark = mark
      return { pinned: true, slot: old, mark }
    }
    this.#lastSlot = old
    setLock(this.shmFd, 'none', READ_LOCK(old), 1)
    this.dropZero()
    return r
  }

  /**
   * holdZero takes READ(0) shared alongside the held slot: from then on no checkpointer can backfill. Returns
   * the index header read after locking (salts, mxFrame, nBackfill), or undefined when a checkpointer is
   * backfilling right now or the header is unreadable (READ(0) is then not held).
   */
  holdZero(): { readonly mxFrame: number; readonly nBackfill: number; readonly salts: string; readonly iChange: number } | undefined {
    if (this.#closed || this.#zero) return undefined
    if (!setLock(this.shmFd, 'read', READ_LOCK(0), 1)) return undefined
    return this.#zeroHeld()
  }

  /**
   * holdZeroWait is holdZero that waits while a checkpointer holds READ(0) exclusively (it backfills), blocking the
   * calling thread: for the hand-off worker only. The header is read right after the lock is granted, that is
   * right after the checkpointer set nBackfill, synced and let go.
   */
  holdZeroWait(): { readonly mxFrame: number; readonly nBackfill: number; readonly salts: string; readonly iChange: number } | undefined {
    if (this.#closed || this.#zero) return undefined
    waitLock(this.shmFd, 'read', READ_LOCK(0), 1)
    return this.#zeroHeld()
  }

  /** zeroHeld records READ(0) as held at the index's end, read now; or lets it go if the header is unreadable. */
  #zeroHeld(): { readonly mxFrame: number; readonly nBackfill: number; readonly salts: string; readonly iChange: number } | undefined {
    const hdr = this.#readHeader()
    if (!hdr) {
      setLock(this.shmFd, 'none', READ_LOCK(0), 1)
      return undefined
    }
    this.#zero = true
    this.#zeroAt = `${hdr.salts}:${hdr.mxFrame}`
    return { ...hdr, nBackfill: this.#buf.readUInt32LE(NBACKFILL), iChange: this.#buf.readUInt32LE(8) }
  }

  /**
   * othersInWal reports whether another connection holds one of READ(1..4): a reader or writer using the WAL, such
   * as a writer whose restart our slot has just refused (it reads through a slot from then on, and appends).
   */
  othersInWal(): boolean {
    return probeLock(this.shmFd, READ_LOCK(1), NREADER - 1) !== 'none'
  }

  /** writerActive reports whether a connection holds the WAL write lock right now (a write transaction is open). */
  writerActive(): boolean {
    return probeLock(this.shmFd, WRITE_LOCK, 1) !== 'none'
  }

  /** dropSlot lets go of the slot while READ(0) is held: the application's next write may restart the WAL. */
  dropSlot(): void {
    if (this.#slot === 0 || !this.#zero) return
    this.#lastSlot = this.#slot
    setLock(this.shmFd, 'none', READ_LOCK(this.#slot), 1)
    this.#slot = 0
  }

  /**
   * forget lets go of READ(0..4), whatever this descriptor holds of them, for when the state is unknown (a hand-off
   * worker died mid-job). Unlocking a byte range we do not hold is a no-op.
   */
  forget(): void {
    if (this.#closed) return
    this.#index = undefined
    if (this.#slot !== 0) this.#lastSlot = this.#slot
    this.#slot = 0
    this.#zero = false
    setLock(this.shmFd, 'none', READ_LOCK(0), NREADER)
  }

  /** dropZero lets go of READ(0), if held. */
  dropZero(): void {
    if (!this.#zero) return
    this.#zero = false
    setLock(this.shmFd, 'none', READ_LOCK(0), 1)
  }

  /** release lets go of the read-mark slot and READ(0), if held; the database and dead-man-switch locks stay. */
  release(): void {
    this.dropZero()
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
    this.#zero = false
    if (this.#borrowed) return
    try {
      fs.closeSync(this.shmFd)
    } finally {
      fs.closeSync(this.dbFd)
    }
  }

  /** claimOrder lists the slots to try claiming: never keep (held), the last one released only at the end. */
  #claimOrder(keep: number): number[] {
    const order: number[] = []
    for (let i = 1; i < NREADER; i++) if (i !== this.#lastSlot && i !== keep) order.push(i)
    if (this.#lastSlot !== 0 && this.#lastSlot !== keep) order.push(this.#lastSlot)
    return order
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

  /** forgetIndex drops the last readIndex result: a connection of ours may have moved the read marks since. */
  forgetIndex(): void {
    this.#index = undefined
  }

  /** known is the header of known when it is the last readIndex result (still in #buf), else a fresh read. */
  #known(known: ShmHeader | undefined): IndexRead | undefined {
    if (known === undefined || known !== this.#index) return this.#readHeader()
    return { mxFrame: known.mxFrame, salts: this.#buf.toString('hex', 32, 40) }
  }

  /** readHeader reads the index header and checkpoint info; undefined unless both header copies agree. */
  #readHeader(): IndexRead | undefined {
    this.#index = undefined
    const b = this.#buf
    if (fs.readSync(this.shmFd, b, 0, HDR_BYTES, 0) < HDR_BYTES) return undefined
    if (b[12] !== 1 || b.compare(b, 0, 48, 48, 96) !== 0) return undefined
    return { mxFrame: b.readUInt32LE(16), salts: b.toString('hex', 32, 40) }
  }
}
