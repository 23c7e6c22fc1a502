/**
 * Replicator ships one SQLite database's WAL to a ReplicaClient in Litestream v0.3's format.
 *
 * One async loop per database owns all of its state. A pass ("sync") reads the WAL-index header from `-shm`,
 * reads the committed WAL frames past the shipped position straight from the `-wal` file, validates salts and
 * the checksum chain, and uploads them as one LZ4 frame per segment. There is no shadow WAL on local disk.
 *
 * Continuity. Litestream keeps a read transaction open forever so the WAL cannot restart under it, which makes an
 * application's TRUNCATE checkpoint wait out its whole busy timeout. We hold a read transaction only while there
 * are unshipped frames, and prove continuity across WAL restarts instead: SQLite increments the WAL-index
 * counter iChange on every commit, so when the WAL restarted while we were not holding it, the number of commits
 * since our shipped position must equal the commits we can still read (the old incarnation's tail plus the new
 * one). If it does not, a commit was checkpointed away unseen and a new generation starts with a fresh snapshot.
 * @module
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { hasCode, errorMessage, ReplicaError } from './errors.js'
import { decodeFrame, encodeFrame, FrameEncoder } from './lz4.js'
import { MAX_INDEX, MAX_OFFSET } from './keys.js'
import { NOOP_LOGGER, type Logger } from './log.js'
import type { ReplicaClient } from './replica-client.js'
import type { Pos, ReplicatorStatus } from './types.js'
export type { ReplicatorState, ReplicatorStatus } from './types.js'
import { checkFrames, FRAME_HEADER_SIZE, frameSize, parseWalHeader, WAL_HEADER_SIZE, type WalHeader } from './wal/format.js'
import { handOff, type HandOffResult } from './wal/handoff.js'
import { imageChunks, imageStream, type PageOverlay } from './wal/image.js'
import type { ShmHeader } from './wal/shm.js'
import { checkDbFile, SqliteHandle } from './wal/sqlite-handle.js'
import { defaultMetaDir, loadState, saveState, type PersistedState } from './wal/state-file.js'

/** DEFAULT_SYNC_INTERVAL_MS is Litestream's sync-interval: the least time between two uploads of one database. */
export const DEFAULT_SYNC_INTERVAL_MS = 1000
/**
 * DEFAULT_BUSY_ERROR_AFTER_MS is how long the application may keep the database locked against us (an application
 * creating its database does, for a moment) before the client shows as an error: until then BUSY is retried and
 * logged as a warning only.
 */
export const DEFAULT_BUSY_ERROR_AFTER_MS = 10_000
/** DEFAULT_MIN_CHECKPOINT_PAGES is Litestream's min-checkpoint-page-count: PASSIVE checkpoint past this many WAL frames. */
export const DEFAULT_MIN_CHECKPOINT_PAGES = 1000
/** DEFAULT_TRUNCATE_PAGES is Litestream's TruncatePageN: TRUNCATE checkpoint past this many WAL frames. */
export const DEFAULT_TRUNCATE_PAGES = 500_000
/** DEFAULT_RETENTION_MS is Litestream's retention: 24 hours. */
export const DEFAULT_RETENTION_MS = 24 * 3600_000
/** DEFAULT_RETENTION_CHECK_INTERVAL_MS is Litestream's retention-check-interval: 1 hour. */
export const DEFAULT_RETENTION_CHECK_INTERVAL_MS = 3600_000
/**
 * MAX_SEGMENT_BYTES caps one segment's uncompressed size; a larger run of frames is split on commit frames.
 * 16 MiB ships as cheaply per byte as 64 MiB did and keeps a busy database's peak memory ~80 MiB lower.
 */
export const MAX_SEGMENT_BYTES = 16 << 20
/** SNAPSHOT_BUFFER_LIMIT: images up to this size are compressed in memory; larger ones are streamed. */
const SNAPSHOT_BUFFER_LIMIT = 32 << 20
/** Offsets must stay below 4 GiB; keep a margin so the last segment of an index still fits. */
const OFFSET_LIMIT = MAX_OFFSET - MAX_SEGMENT_BYTES
/**
 * HANDOFF_WINDOW_MS bounds how long a hand-off keeps our mark raised (#handOff): meanwhile the application's
 * autocheckpoint backfills, and fsyncs, after every commit. The worker usually lands it at the first checkpoint.
 */
const HANDOFF_WINDOW_MS = 250
/** HANDOFF_RETRY_MS: after a hand-off that did not land, the least time before the next try (#handOff). */
const HANDOFF_RETRY_MS = 1000
/**
 * HANDOFF_WAL_BYTES is the WAL size past which the replicator hands the WAL to the application for a restart
 * (#handOff). Without it a continuously written WAL grows until the disk fills (matrix B2). Set by measurement:
 * see docs/decisions/0003 (addendum).
 */
const HANDOFF_WAL_BYTES = 16 << 20
/**
 * MAX_HELD_BYTES is the default bound (option maxHeldBytes) on the bytes all held incarnations of one database take
 * together (#held), on disk in unlinked files of the meta directory, never in memory. A replica slower than the
 * application keeps a backlog, which hand-offs carry along so the WAL stays bounded; past this bound no hand-off starts,
 * and the WAL grows instead (nothing is lost: the pin keeps it in place) until shipping frees held bytes.
 */
export const MAX_HELD_BYTES = 1 << 30
/** ADVANCE_MIN_MS is the least time between two moves of a held pin to the end of the WAL (#advanceSoon). */
const ADVANCE_MIN_MS = 25

/** ReplicatorOptions configures one replicator. Durations are in milliseconds. */
export interface ReplicatorOptions {
  readonly dbPath: string
  readonly client: ReplicaClient
  readonly log?: Logger
  /** metaDir holds the state file. Default: Litestream's `<dir>/.<name>-litestream`. */
  readonly metaDir?: string
  /** syncIntervalMs is the least time between uploads. 0 ships on every change. Default 1000. */
  readonly syncIntervalMs?: number
  /** minCheckpointPages triggers a PASSIVE checkpoint after shipping. 0 disables. Default 1000. */
  readonly minCheckpointPages?: number
  /** truncatePages triggers a TRUNCATE checkpoint (the backstop against runaway WALs). 0 disables. Default 500000. */
  readonly truncatePages?: number
  /** snapshotIntervalMs takes a new snapshot of a database that changed since its last one. 0 disables. Default: retention. */
  readonly snapshotIntervalMs?: number
  /** retentionMs keeps restore points this far back. 0 disables retention. Default 24 h. */
  readonly retentionMs?: number
  /** retentionCheckIntervalMs is the least time between retention passes of an active database. Default 1 h. */
  readonly retentionCheckIntervalMs?: number
  /** busyErrorAfterMs is how long BUSY failures may last before the status says error. Default 10 s. */
  readonly busyErrorAfterMs?: number
  /** onStatus is called with every new status. */
  readonly onStatus?: (status: ReplicatorStatus) => void
  /** passSlots, shared by the replicators of a process, bounds how many run a pass of their loop at once. */
  readonly passSlots?: PassSlots
  /** maxHeldBytes bounds the frames held at WAL hand-offs, on disk, for this database (#held). Default MAX_HELD_BYTES. */
  readonly maxHeldBytes?: number
  /** now is the clock (tests inject one). */
  readonly now?: () => number
}

/**
 * PassSlots is a FIFO semaphore that the replicators of one process share: a loop's pass waits for a slot before it
 * reads anything. Everything a pass holds while its objects become durable (the frames read, the encoded object,
 * its promises) would otherwise be held by every due database at once after a stall, such as the end of a cold
 * start or a busy neighbour on the machine. Passes that tests, barriers or close() start directly do not wait.
 */
export class PassSlots {
  #free: number
  readonly #waiting: (() => void)[] = []

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`pass slots must be a positive integer, got ${size}`)
    this.#free = size
  }

  /** tryAcquire takes a slot if one is free, without waiting. */
  tryAcquire(): boolean {
    if (this.#free === 0) return false
    this.#free--
    return true
  }

  /** acquire takes a slot: undefined when one was free, else a promise that resolves once one is handed over. */
  acquire(): Promise<void> | undefined {
    if (this.#free > 0) {
      this.#free--
      return undefined
    }
    return new Promise((resolve) => this.#waiting.push(resolve))
  }

  /**
   * acquireBefore takes a slot unless until settles first: true with the slot, false without one. A slot handed over
   * after that goes straight back.
   */
  async acquireBefore(until: Promise<unknown>): Promise<boolean> {
    const wait = this.acquire()
    if (!wait) return true
    const got = await Promise.race([wait.then(() => true), until.then(() => false)])
    if (!got) void wait.then(() => this.release())
    return got
  }

  /** release hands the slot to the longest waiter, or frees it. */
  release(): void {
    const next = this.#waiting.shift()
    if (next) next()
    else this.#free++
  }
}

/** Wakeup is a replicator's entry in the WAKEUPS queue, made once per replicator and reused. */
interface Wakeup {
  /** at is when to fire, on performance.now()'s clock; index is the position in the heap, -1 when not queued. */
  at: number
  index: number
  readonly fire: () => void
}

/**
 * WakeupQueue wakes the loops of a process at their due times with a single timer: a binary heap ordered by due time,
 * entries made once per replicator and reused, and one timeout armed for the earliest, rounded up to WAKE_GRANULE_MS
 * so that loops due within the same few milliseconds share it. A timer and a promise per wait, as the loop first
 * had, were made twice per commit at 1,000 busy clients, and lived a sync interval: a third of the bytes promoted
 * to V8's old generation, which drive its full collections (bench/results/notes.md, session 7's profile). An idle
 * replicator has no entry, so it costs nothing.
 */
export class WakeupQueue {
  readonly #heap: Wakeup[] = []
  #timer: NodeJS.Timeout | null = null
  #armedAt = Infinity

  /** schedule queues w to fire at `at` (performance.now() clock), or moves it there if queued. */
  schedule(w: Wakeup, at: number): void {
    if (w.index >= 0) {
      if (Math.abs(w.at - at) < 1) return // re-notified with the same due time: nothing to move
      const earlier = at < w.at
      w.at = at
      if (earlier) this.#up(w.index)
      else this.#down(w.index)
    } else {
      w.at = at
      w.index = this.#heap.length
      this.#heap.push(w)
      this.#up(w.index)
    }
    this.#arm()
  }

  /** cancel takes w out of the queue, if queued. */
  cancel(w: Wakeup): void {
    const i = w.index
    if (i < 0) return
    w.index = -1
    const last = this.#heap.pop()!
    if (last !== w) {
      this.#heap[i] = last
      last.index = i
      this.#up(i)
      this.#down(last.index)
    }
    if (this.#heap.length === 0 && this.#timer !== null) {
      clearTimeout(this.#timer)
      this.#timer = null
      this.#armedAt = Infinity
    }
  }

  #arm(): void {
    const head = this.#heap[0]
    if (head === undefined) return
    const at = Math.ceil(head.at / WAKE_GRANULE_MS) * WAKE_GRANULE_MS
    if (this.#timer !== null && this.#armedAt <= at) return // fires in time, and re-arms for what is left
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#armedAt = at
    this.#timer = setTimeout(this.#onTimer, Math.max(0, at - performance.now()))
  }

  readonly #onTimer = (): void => {
    this.#timer = null
    this.#armedAt = Infinity
    const now = performance.now()
    try {
      // Fire what is due now; a loop that schedules itself again is due later, so this ends.
      for (let head = this.#heap[0]; head !== undefined && head.at <= now; head = this.#heap[0]) {
        this.cancel(head)
        head.fire()
      }
    } finally {
      this.#arm() // a wake-up that threw must not strand the loops queued behind it
    }
  }

  #up(i: number): void {
    const h = this.#heap
    const w = h[i]!
    while (i > 0) {
      const parent = (i - 1) >> 1
      const p = h[parent]!
      if (p.at <= w.at) break
      h[i] = p
      p.index = i
      i = parent
    }
    h[i] = w
    w.index = i
  }

  #down(i: number): void {
    const h = this.#heap
    const n = h.length
    const w = h[i]!
    for (;;) {
      let c = 2 * i + 1
      if (c >= n) break
      if (c + 1 < n && h[c + 1]!.at < h[c]!.at) c++
      const child = h[c]!
      if (child.at >= w.at) break
      h[i] = child
      child.index = i
      i = c
    }
    h[i] = w
    w.index = i
  }
}

/** WAKE_GRANULE_MS: loops due within this many milliseconds of each other share one timeout (WakeupQueue). */
const WAKE_GRANULE_MS = 5
/** WAKEUPS is the process's one wake-up queue for every replicator's loop. */
const WAKEUPS = new WakeupQueue()

interface Shipped {
  /** header of the incarnation shipped as the current index; null when nothing of it has been shipped. */
  header: WalHeader | null
  /** offset is the end of what was shipped in the current index (0 = nothing). */
  offset: number
  checksum: readonly [number, number]
}

interface ReadWal {
  readonly bytes: Buffer
  readonly start: number
}

type Plan =
  | {
      readonly kind: 'ship'
      readonly tail: Buffer | null
      readonly tailCommits: number
      readonly tailChecksum: readonly [number, number]
      readonly next: NextIncarnation | null
    }
  | { readonly kind: 'new-generation'; readonly reason: string }
  | { readonly kind: 'retry'; readonly reason: string }

/** ResumePos is a shipped position recovered on open, from the state file or from the replica. */
interface ResumePos {
  readonly index: number
  readonly offset: number
  readonly header: Buffer | null
  readonly checksum: readonly [number, number]
  readonly lastSegment: { readonly index: number; readonly offset: number; readonly size: number } | null
}

interface NextIncarnation {
  readonly header: WalHeader
  /** body: the WAL header and the first whole committed frames of the incarnation (at most about MAX_SEGMENT_BYTES). */
  readonly body: Buffer
  /** commits: the commits of the whole incarnation up to the index's end (the continuity proof), not only of body. */
  readonly commits: number
  readonly checksum: readonly [number, number]
}

/**
 * Held is one incarnation's frames copied at a hand-off into an unlinked file: WAL bytes [start, start + length) at
 * [0, length). start is the shipped position (the shipped incarnation) or 0, the WAL header first (a later one).
 */
interface Held {
  readonly header: WalHeader
  readonly start: number
  readonly fd: number
  /** length grows when a later hand-off of the same incarnation copies what it appended since. */
  length: number
  /** endIChange: iChange when the incarnation's committed end was start + length (HandOffResult.endIChange). */
  endIChange: number
  /** proven: the commits of an incarnation held from its start were counted against iChange (#planHeldIncarnation). */
  proven: boolean
}

/** CommittedRun is whole committed frames read and validated by readCommitted; bytes is a pooled buffer's view. */
interface CommittedRun {
  readonly bytes: Buffer
  readonly commits: number
  readonly checksum: readonly [number, number]
}

/** Replicator replicates one database. All mutable state is written by its loop (or by close, after the loop ended). */
export class Replicator {
  readonly #opts: Required<Omit<ReplicatorOptions, 'onStatus' | 'log' | 'metaDir' | 'passSlots'>> & Pick<ReplicatorOptions, 'onStatus' | 'passSlots'>
  readonly #log: Logger
  readonly #metaDir: string
  readonly #walPath: string

  #handle: SqliteHandle | null = null
  /** The handle's descriptor on the database file (its WAL pin's), open exactly as long as it is. */
  #dbFd = -1
  /** walFd is a descriptor on the `-wal` file, open while the handle is (see #plan); -1 when not open. */
  #walFd = -1
  /** dbDev and dbIno identify the open database file, compared with the path's on every pass. */
  #dbDev = -1n
  #dbIno = -1n
  #pageSize = 0
  #generation = ''
  #index = 0
  #shipped: Shipped = { header: null, offset: 0, checksum: [0, 0] }
  /** iChange at the shipped position; undefined when unknown (before the first pass after opening). */
  #iChangeBase: number | undefined
  /** trustRestart: the database file was untouched since our clean close, so a WAL restart lost nothing. */
  #trustRestart = false
  #lastSegment: { index: number; offset: number; size: number } | null = null
  #changedSinceSnapshot = false
  /** imaging: a snapshot image is being read from the database file, so the pin must not move. */
  #imaging = false
  #lastRetentionAt = 0

  #dirtySince: number | null = null
  /** changeSeq counts notifications, so a pass knows whether changes arrived while it ran. */
  #changeSeq = 0
  #urgent = false
  #releaseRequested = false
  /** releasedAtIChange is iChange when we last let go for a checkpointer; undefined once re-pinned. */
  #releasedAtIChange: number | undefined
  /** wakeup is this loop's entry in WAKEUPS; passing: a pass of the loop is under way (#attempt). */
  readonly #wakeup: Wakeup = { at: 0, index: -1, fire: () => this.#kick() }
  #passing = false
  /** The loop's retry state: backoff after a failed pass, when the last pass started, since when BUSY lasts. */
  #backoffMs = 0
  #lastAttemptAt = -Infinity
  #busySince: number | null = null
  /** aborted settles when close() stops the loop (a pass waiting for a slot gives up); endLoop settles #loop. */
  #aborted: Promise<void> = Promise.resolve()
  #endLoop: () => void = () => {}
  /**
   * held: the incarnations handed off (#handOff) and not yet shipped, oldest first, each in its own unlinked file.
   * The application may have restarted the WAL over them. The first may be the shipped incarnation (from the shipped
   * position on); each later one is held from its WAL header and ships as the next index. Read in bounded chunks and
   * validated like the WAL itself; heldBytes is their total length, at most maxHeldBytes (MAX_HELD_BYTES by default).
   */
  #held: Held[] = []
  #heldBytes = 0
  /** heldBroken: why shipped frames of a held incarnation did not add up to its iChange (the next plan starts a generation). */
  #heldBroken: string | null = null
  /**
   * handOffJob: a hand-off worker holds the pin's locks (src/wal/handoff.ts) until this settles; nothing else may
   * take or release a lock of the pin meanwhile, and the descriptors must stay open.
   */
  #handOffJob: Promise<unknown> | null = null
  /**
   * handOffRetryAt: after a hand-off that did not land (say, autocheckpoint is off), the next is not tried before
   * then (performance.now()); caught-up passes checkpoint PASSIVE themselves meanwhile, as without hand-offs.
   */
  #handOffRetryAt = 0
  /** handedOff: the WAL's end when we last handed it off. */
  #handedOff: { readonly salt1: number; readonly salt2: number; readonly mxFrame: number } | null = null
  /** advanceTimer and lastAdvanceAt pace the pin's moves to the end of the WAL (#advanceSoon). */
  #advanceTimer: NodeJS.Timeout | null = null
  #lastAdvanceAt = -Infinity
  #status: ReplicatorStatus
  /** bytesShipped and objectsWritten are the status counters, counted here and copied by every #publish. */
  #bytesShipped = 0
  #objectsWritten = 0
  #loop: Promise<void> | null = null
  #loopAbort = new AbortController()
  #closing: Promise<void> | null = null
  #passChain: Promise<void> = Promise.resolve()
  readonly #started = deferred()

  constructor(opts: ReplicatorOptions) {
    const retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS
    this.#opts = Object.freeze({
      dbPath: path.resolve(opts.dbPath),
      client: opts.client,
      syncIntervalMs: opts.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS,
      busyErrorAfterMs: opts.busyErrorAfterMs ?? DEFAULT_BUSY_ERROR_AFTER_MS,
      maxHeldBytes: opts.maxHeldBytes ?? MAX_HELD_BYTES,
      minCheckpointPages: opts.minCheckpointPages ?? DEFAULT_MIN_CHECKPOINT_PAGES,
      truncatePages: opts.truncatePages ?? DEFAULT_TRUNCATE_PAGES,
      snapshotIntervalMs: opts.snapshotIntervalMs ?? retentionMs,
      retentionMs,
      retentionCheckIntervalMs: opts.retentionCheckIntervalMs ?? DEFAULT_RETENTION_CHECK_INTERVAL_MS,
      onStatus: opts.onStatus,
      passSlots: opts.passSlots,
      now: opts.now ?? Date.now,
    })
    this.#log = opts.log ?? NOOP_LOGGER
    this.#metaDir = opts.metaDir ?? defaultMetaDir(this.#opts.dbPath)
    this.#walPath = `${this.#opts.dbPath}-wal`
    this.#status = Object.freeze({
      state: 'starting',
      generation: '',
      index: 0,
      offset: 0,
      pageSize: 0,
      lastSyncAt: null,
      lastSnapshotAt: null,
      lagMs: 0,
      lastLagMs: 0,
      bytesShipped: 0,
      objectsWritten: 0,
      generationsStarted: 0,
      lastError: null,
    })
  }

  /** dbPath is the absolute path of the database. */
  get dbPath(): string {
    return this.#opts.dbPath
  }

  /** status returns the latest status, with lag computed now. */
  status(): ReplicatorStatus {
    const lagMs = this.#dirtySince === null ? 0 : this.#opts.now() - this.#dirtySince
    return lagMs === this.#status.lagMs ? this.#status : Object.freeze({ ...this.#status, lagMs })
  }

  /** pos returns the replicated position. */
  pos(): Pos {
    return { generation: this.#generation, index: this.#index, offset: this.#shipped.offset }
  }

  /**
   * notify tells the replicator that its files changed: 'wal' for the `-wal` file, 'db' for the database file
   * (an application checkpoint is backfilling). It never does I/O beyond taking the read lock.
   */
  notify(kind: 'wal' | 'db' = 'wal'): void {
    this.#changeSeq++
    if (this.#dirtySince === null) this.#dirtySince = this.#opts.now()
    if (this.#handOffJob !== null) {
      // A hand-off worker holds the pin: the pass that started it runs again when it is done.
      if (kind === 'db') this.#urgent = true
    } else if (kind === 'db') {
      // Someone is checkpointing: once caught up, let go of the WAL so their checkpoint need not wait on us.
      this.#urgent = true
      this.#releaseRequested = true
    } else if (this.#handle && this.#generation !== '' && !this.#handle.reading) {
      // Pin the WAL right away so a checkpoint cannot restart it before we read the new frames, but only when
      // something was committed since our shipped position: a checkpointer waiting for us to let go (it holds the
      // write lock, so nothing new commits) must not be blocked again by a late event about old writes.
      const shm = this.#readShm()
      if (!shm || this.#iChangeBase === undefined || shm.iChange !== this.#iChangeBase) {
        try {
          this.#handle.beginRead(shm)
        } catch {
          // SQLITE_BUSY: the next pass retries.
        }
      }
    } else if (this.#handle?.reading && this.#generation !== '' && !this.#imaging) {
      // Already pinned: move the pin to the new end of the WAL (into another slot, leaving the old one to a
      // checkpointer that may be waiting for it), so a TRUNCATE is never held back by a mark we took before a
      // burst of commits. The new slot is taken before the old one is let go (WalPin.advance).
      this.#advanceSoon()
    }
    this.#kick()
  }

  /**
   * advanceSoon moves a held pin to the end of the WAL now, or, if it moved less than ADVANCE_MIN_MS ago, once
   * that much time has passed. Moving on every WAL event cost a busy database three quarters of its throughput
   * (each move let the application's auto-checkpoint reach the end, and the WAL restarted under us: thousands of
   * tiny segments). The trailing move also catches a commit whose event came before its index update.
   */
  #advanceSoon(): void {
    if (this.#advanceTimer !== null) return
    const wait = this.#lastAdvanceAt + ADVANCE_MIN_MS - performance.now()
    if (wait <= 0) return this.#advanceNow()
    this.#advanceTimer = setTimeout(() => {
      this.#advanceTimer = null
      this.#advanceNow()
    }, wait)
    this.#advanceTimer.unref()
  }

  #advanceNow(): void {
    const h = this.#handle
    if (!h?.reading || this.#generation === '' || this.#imaging || this.#closing !== null || this.#handOffJob !== null) return
    this.#lastAdvanceAt = performance.now()
    try {
      if (h.slotHeld) h.advance()
      else this.#advanceFromZero()
    } catch {
      // SQLITE_BUSY-like: the next event or pass pins again.
    }
  }

  /** start opens the database and runs the loop in the background until close(). */
  start(): void {
    if (this.#loop) return
    const ended = deferred()
    this.#loop = ended.promise
    this.#endLoop = ended.resolve
    let onAbort!: () => void
    this.#aborted = new Promise<void>((resolve) => (onAbort = resolve))
    this.#loopAbort.signal.addEventListener(
      'abort',
      () => {
        onAbort()
        WAKEUPS.cancel(this.#wakeup)
        if (!this.#passing) this.#endLoop()
      },
      { once: true },
    )
    this.notify() // the first pass opens the database and catches up
  }

  /** running reports whether start() was called and close() has not finished. */
  get running(): boolean {
    return this.#loop !== null && this.#closing === null
  }

  /**
   * kick is the loop: it runs a pass now if one is due, else queues the loop's wake-up for when one will be (none
   * while nothing changed: an idle database has no timer). notify(), the wake-up and the end of every pass call it.
   */
  #kick(): void {
    if (this.#loop === null || this.#passing || this.#loopAbort.signal.aborted) return
    const now = this.#opts.now()
    let dueAt: number
    if (this.#backoffMs > 0) dueAt = this.#lastAttemptAt + this.#backoffMs
    else if (this.#dirtySince === null) dueAt = Infinity
    else if (this.#urgent) dueAt = now
    else dueAt = this.#lastAttemptAt + this.#opts.syncIntervalMs
    // A wake-up fires on performance.now()'s clock, which may be a fraction of a millisecond ahead of now()'s.
    if (dueAt > now + 1) {
      if (dueAt === Infinity) WAKEUPS.cancel(this.#wakeup)
      else WAKEUPS.schedule(this.#wakeup, performance.now() + (dueAt - now))
      return
    }
    WAKEUPS.cancel(this.#wakeup)
    this.#passing = true
    this.#lastAttemptAt = now
    void this.#attempt(now)
  }

  /** attempt runs one pass of the loop (in a pass slot, if the process shares them), then kicks the loop again. */
  async #attempt(now: number): Promise<void> {
    const slots = this.#opts.passSlots
    let held = false
    try {
      // Closing does not wait for a slot.
      held = slots !== undefined && (slots.tryAcquire() || (await slots.acquireBefore(this.#aborted)))
      if (this.#loopAbort.signal.aborted) return
      try {
        await this.sync()
        this.#backoffMs = 0
        this.#busySince = null
        this.#started.resolve()
      } catch (err) {
        this.#started.resolve()
        if (this.#loopAbort.signal.aborted) return
        this.#backoffMs = Math.min(Math.max(this.#backoffMs * 2, 250), 30_000)
        const msg = errorMessage(err)
        if (hasCode(err, 'BUSY')) {
          // A lock the application holds for a moment is expected (we never wait on one): retried, and an error
          // only once it has lasted busyErrorAfterMs.
          this.#busySince ??= now
          const forMs = now - this.#busySince
          this.#log.warn({ err: msg, backoffMs: this.#backoffMs, busyForMs: forMs }, 'database busy; retrying')
          if (forMs >= this.#opts.busyErrorAfterMs) this.#publish({ state: 'error', lastError: `database busy for ${Math.round(forMs / 1000)} s: ${msg}` })
        } else {
          this.#busySince = null
          this.#log.error({ err: msg, backoffMs: this.#backoffMs }, 'sync failed')
          this.#publish({ state: 'error', lastError: msg })
        }
      }
    } finally {
      if (held) slots!.release()
      this.#passing = false
      if (this.#loopAbort.signal.aborted) this.#endLoop()
      else this.#kick()
    }
  }

  /**
   * sync runs one pass: open if needed, ship every committed frame, then checkpoint, snapshot and enforce
   * retention when due. Tests call it directly. Throws on failure; the position never advances past what the
   * replica acknowledged.
   */
  sync(): Promise<Pos> {
    return this.#exclusive(() => this.#syncPass())
  }

  /** syncNow is the acknowledgement barrier: it resolves once everything committed before the call is durable. */
  syncNow(): Promise<Pos> {
    if (this.#closing) return Promise.reject(new ReplicaError('CLOSED', 'replicator is closed'))
    return this.sync()
  }

  /** snapshotNow ships everything, then writes a snapshot of the current state. */
  snapshotNow(): Promise<Pos> {
    if (this.#closing) return Promise.reject(new ReplicaError('CLOSED', 'replicator is closed'))
    return this.snapshot()
  }

  /**
   * drillPoint ships everything, then counts each user table's rows in a read transaction taken at exactly the
   * shipped position, for a restore drill to compare against. undefined when commits kept arriving.
   */
  drillPoint(): Promise<{ pos: Pos; counts: Record<string, number> } | undefined> {
    if (this.#closing) return Promise.reject(new ReplicaError('CLOSED', 'replicator is closed'))
    return this.#exclusive(async () => {
      await this.#syncPass()
      const h = this.#handle
      if (!h) return undefined
      h.endRead()
      h.beginRead() // a snapshot at the current end of the WAL: the shipped position if nothing new committed
      const counts = h.tableCounts()
      const shm = this.#readShm()
      return shm && this.#caughtUp(shm) ? { pos: this.pos(), counts } : undefined
    })
  }

  /** whenStarted resolves after the first pass of the loop, successful or not. */
  whenStarted(): Promise<void> {
    return this.#started.promise
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#passChain.then(fn, fn)
    this.#passChain = run.then(
      () => undefined,
      () => undefined,
    )
    return run
  }

  async #syncPass(): Promise<Pos> {
    const startedDirty = this.#dirtySince
    const startedSeq = this.#changeSeq
    const startedAt = this.#opts.now()
    this.#urgent = false
    if (!this.#handle) await this.#open()
    // Failures in a row, not attempts: a pass that shipped many segments (a backlog, held incarnations) must still
    // retry a read that raced a WAL restart instead of starting a new generation at once.
    let unreadable = 0
    let retries = 0
    for (let attempt = 0; ; attempt++) {
      this.#checkDbIdentity() // may reopen: always use this.#handle afresh
      this.#handle!.beginRead()
      const shm = this.#readShm()
      if (!shm) {
        if (++unreadable <= 3) continue
        throw new ReplicaError('WAL_INVALID', 'wal index (-shm) header unreadable')
      }
      unreadable = 0
      if (this.#generation === '') {
        await this.#newGeneration('no generation exists')
        continue
      }
      const plan = this.#plan(shm)
      if (plan.kind === 'retry') {
        if (++retries <= 5) continue
        retries = 0
        await this.#newGeneration(plan.reason)
        continue
      }
      retries = 0
      if (plan.kind === 'new-generation') {
        await this.#newGeneration(plan.reason)
        continue
      }
      await this.#ship(plan, shm)
      // A pass ships at most MAX_SEGMENT_BYTES per plan: loop until caught up with this pass's index header.
      if (this.#caughtUp(shm) || attempt > 10_000) break
      await this.#handOffIfDue() // a long pass (a slow replica) must not let the WAL grow all the while
    }
    // Caught up: checkpoint, snapshot and retention only run when everything committed is durable.
    await this.#afterShip()
    // Changes notified while this pass ran may not be in it: keep them pending.
    this.#dirtySince = this.#changeSeq === startedSeq ? null : startedAt
    const now = this.#opts.now()
    this.#publish({ state: 'idle', lastSyncAt: now, lastError: null, lastLagMs: startedDirty === null ? this.#status.lastLagMs : now - startedDirty })
    return this.pos()
  }

  #checkDbIdentity(): void {
    let st: fs.BigIntStats
    try {
      st = fs.statSync(this.#opts.dbPath, { bigint: true })
    } catch (err) {
      throw new ReplicaError('NOT_FOUND', `database ${this.#opts.dbPath} is gone`, { cause: err })
    }
    if (st.ino !== this.#dbIno || st.dev !== this.#dbDev) {
      // Replaced by rename or deleted and recreated: a different database from here on.
      this.#log.info({ reason: 'database file replaced' }, 'reopening database')
      this.#closeHandle()
      this.#generation = ''
      this.#openHandle()
    }
  }

  #openHandle(): void {
    const check = checkDbFile(this.#opts.dbPath)
    if (!check.ok) throw new ReplicaError('NOT_SQLITE', `${this.#opts.dbPath}: ${check.detail}`)
    const handle = SqliteHandle.open(this.#opts.dbPath)
    this.#handle = handle
    this.#dbFd = handle.dbFd
    const st = fs.fstatSync(handle.dbFd, { bigint: true })
    this.#dbDev = st.dev
    this.#dbIno = st.ino
    this.#pageSize = check.pageSize
    this.#iChangeBase = undefined
  }

  /** dbIdentity is the open database file's `dev:ino`, as the state file records it. */
  #dbIdentity(): string {
    return `${this.#dbDev}:${this.#dbIno}`
  }

  #closeHandle(): void {
    this.#dropHeld() // held frames are only valid with the pin that kept their WAL from restarting under them
    try {
      this.#closeWal()
      this.#handle?.close()
    } finally {
      this.#handle = null
      this.#dbFd = -1
    }
  }

  /** open connects to the database and restores the shipped position from the state file and the replica. */
  async #open(): Promise<void> {
    this.#openHandle()
    const st = loadState(this.#metaDir)
    if (!st) return
    const reject = (reason: string): void => {
      this.#log.info({ reason, generation: st.generation }, 'not resuming generation')
    }
    if (st.pageSize !== this.#pageSize) return reject('page size changed')
    if (st.dbIno !== this.#dbIdentity()) return reject('database file replaced')
    // The replica is the truth. The state file is written at generation changes and clean closes only, so after a
    // crash the replica is usually ahead of it: then the replica's last segment gives the position.
    const [snaps, segs] = await Promise.all([this.#opts.client.snapshots(st.generation), this.#opts.client.walSegments(st.generation)])
    if (snaps.length === 0) return reject('generation has no snapshot in the replica')
    const last = segs.at(-1)
    const want = st.lastSegment
    const matches = want ? last !== undefined && last.index === want.index && last.offset === want.offset && last.size === want.size : last === undefined
    let pos: ResumePos
    if (matches) {
      pos = { index: st.index, offset: st.offset, header: st.header ? Buffer.from(st.header, 'base64') : null, checksum: st.checksum, lastSegment: st.lastSegment }
    } else if (last && (!want || last.index > want.index || (last.index === want.index && last.offset > want.offset))) {
      const got = await this.#positionFromReplica(st.generation, last)
      if (typeof got === 'string') return reject(got)
      pos = got
    } else {
      return reject('replica does not end where the state file says')
    }
    // Physical continuity: the WAL still holds what we shipped, or the database is untouched since our clean close.
    const header = pos.header
    const untouched = matches && st.clean && st.dbStatAfterClose !== null && sameStat(this.#opts.dbPath, st.dbStatAfterClose)
    const walHead = readAt(this.#walPath, 0, WAL_HEADER_SIZE)
    let continues = false
    if (header && walHead && walHead.equals(header) && pos.offset >= WAL_HEADER_SIZE) {
      const fsz = frameSize(st.pageSize)
      if (pos.offset === WAL_HEADER_SIZE) continues = true
      else {
        const fh = readAt(this.#walPath, pos.offset - fsz, 24)
        continues = fh !== null && fh.readUInt32BE(16) === pos.checksum[0] && fh.readUInt32BE(20) === pos.checksum[1] && fh.compare(header, 16, 24, 8, 16) === 0
      }
    }
    if (!continues && !untouched) return reject('wal changed while not replicating')
    this.#generation = st.generation
    this.#index = pos.index
    const parsed = header ? parseWalHeader(header) : null
    this.#shipped = { header: parsed?.ok ? parsed.header : null, offset: pos.offset, checksum: pos.checksum }
    this.#lastSegment = pos.lastSegment ? { ...pos.lastSegment } : null
    this.#trustRestart = untouched
    const lastSnap = snaps.at(-1)!
    this.#lastSnapshotAtMs = lastSnap.createdAt.getTime()
    this.#publish({ generation: st.generation, index: pos.index, offset: pos.offset, pageSize: this.#pageSize, lastSnapshotAt: this.#lastSnapshotAtMs })
    // Not clean any more until the next graceful close.
    this.#saveState(false, null, true)
    this.#log.info({ generation: st.generation, index: pos.index, offset: pos.offset, trusted: untouched, fromReplica: !matches }, 'resuming generation')
  }

  /**
   * positionFromReplica reads the replica's last segment and returns the position after it, with the WAL header
   * it belongs to taken from the local WAL when the last frame's salts match it (the caller then checks that the
   * local WAL holds that very frame). A string says why not.
   */
  async #positionFromReplica(generation: string, last: { index: number; offset: number; size: number }): Promise<ResumePos | string> {
    let body: Buffer
    try {
      body = decodeFrame(await this.#opts.client.readWalSegment(generation, last.index, last.offset))
    } catch (err) {
      return `cannot read the replica's last segment: ${errorMessage(err)}`
    }
    const fsz = frameSize(this.#pageSize)
    const start = last.offset === 0 ? WAL_HEADER_SIZE : 0
    if (body.length < start + fsz || (body.length - start) % fsz !== 0) return 'last segment of the replica is not whole frames'
    const walHead = readAt(this.#walPath, 0, WAL_HEADER_SIZE)
    if (!walHead) return 'wal changed while not replicating'
    if (start > 0 && !body.subarray(0, WAL_HEADER_SIZE).equals(walHead)) return 'wal changed while not replicating'
    const frame = body.subarray(body.length - fsz, body.length - fsz + 24)
    if (frame.compare(walHead, 16, 24, 8, 16) !== 0) return 'wal changed while not replicating'
    return {
      index: last.index,
      offset: last.offset + body.length,
      header: walHead,
      checksum: [frame.readUInt32BE(16), frame.readUInt32BE(20)],
      lastSegment: { index: last.index, offset: last.offset, size: last.size },
    }
  }

  #lastSnapshotAtMs: number | null = null

  #readShm(): ShmHeader | undefined {
    return this.#handle?.readIndex()
  }

  /**
   * plan decides what to ship, reading and validating WAL bytes synchronously (no await, so nothing moves), through
   * the descriptor on the WAL that the replicator keeps while the handle is open (an open and a close each pass were
   * about 3 % of the service's CPU at 1,000 clients in a perf profile). SQLite deletes a WAL only under an EXCLUSIVE
   * lock on the database, which our pin's SHARED lock excludes, so the descriptor stays the WAL's. Any other process
   * replacing the file makes the header disagree with the index: every plan but 'ship' therefore drops the
   * descriptor, and the next one opens the file afresh.
   */
  #plan(shm: ShmHeader): Plan {
    if (this.#walFd < 0) {
      try {
        this.#walFd = fs.openSync(this.#walPath, 'r')
      } catch {
        // no WAL file: every read below comes back empty
      }
    }
    const plan = this.#planWith(this.#walFd, shm)
    if (plan.kind !== 'ship') this.#closeWal()
    return plan
  }

  /** closeWal closes the WAL descriptor. No lock lives on it (SQLite locks only the database and `-shm`). */
  #closeWal(): void {
    const fd = this.#walFd
    this.#walFd = -1
    if (fd < 0) return
    try {
      fs.closeSync(fd)
    } catch {
      // a read-only descriptor: nothing to flush, nothing lost
    }
  }

  #planWith(wal: number, shm: ShmHeader): Plan {
    if (shm.pageSize !== 0 && shm.pageSize !== this.#pageSize && shm.mxFrame > 0) return { kind: 'new-generation', reason: 'page size changed' }
    // Incarnations held at hand-offs ship first, oldest first: the application may have restarted the WAL over them.
    const heldPlan = this.#planHeld(shm)
    if (heldPlan !== undefined) return heldPlan
    const fsz = frameSize(this.#pageSize)
    const cur = this.#shipped
    const shmInCurrent = cur.header !== null && shm.salt1 === cur.header.salt1 && shm.salt2 === cur.header.salt2
    // Past an incarnation's first segment the frames prove themselves: checkFrames checks every frame's salts and
    // the checksum chain from the shipped checksum, so frames of a restarted WAL fail it whatever its header says.
    // The header is read only where it ships (offset 0) or where the index is in another incarnation.
    const headerKnown = shmInCurrent && cur.offset > WAL_HEADER_SIZE
    let wh: WalHeader | null = cur.header
    if (!headerKnown) {
      const walHead = readAt(wal, 0, WAL_HEADER_SIZE)
      const parsed = walHead ? parseWalHeader(walHead) : null
      wh = parsed?.ok ? parsed.header : null
      if (shmInCurrent && (wh === null || !wh.bytes.equals(cur.header!.bytes))) return { kind: 'retry', reason: 'wal header and wal index disagree' }
    }

    if (shmInCurrent && wh !== null) {
      const end = WAL_HEADER_SIZE + shm.mxFrame * fsz
      if (end < cur.offset) return { kind: 'new-generation', reason: 'wal truncated by another process' }
      if (end === cur.offset) return { kind: 'ship', tail: null, tailCommits: 0, tailChecksum: cur.checksum, next: null }
      const start = Math.max(cur.offset, WAL_HEADER_SIZE)
      // Read at most MAX_SEGMENT_BYTES per pass (more only for one huge transaction); sync() loops until caught up.
      const seed = cur.offset <= WAL_HEADER_SIZE ? wh.checksum : cur.checksum
      // The first segment of an index starts with the WAL header: read it along rather than copy the frames after it.
      // The bytes go into a pooled buffer that #uploadRun hands back (see readAt).
      const from = cur.offset === 0 ? 0 : start
      const skip = start - from
      let len = Math.min(end - start, Math.floor(MAX_SEGMENT_BYTES / fsz) * fsz)
      let bytes = readAt(wal, from, skip + len, true)
      if (!bytes) return { kind: 'retry', reason: 'wal shorter than its index says' }
      let run = checkFrames(wh, seed, bytes, skip, bytes.length, Infinity)
      if (run.frames * fsz === len && run.commitFrames === 0 && len < end - start) {
        len = end - start
        bytes = readAt(wal, from, skip + len, true)
        if (!bytes) return { kind: 'retry', reason: 'wal shorter than its index says' }
        run = checkFrames(wh, seed, bytes, skip, bytes.length, Infinity)
      }
      const complete = len === end - start ? run.commitFrames * fsz === len : run.frames * fsz === len && run.commitFrames > 0
      if (!complete) return { kind: 'retry', reason: `wal overwritten by another process (${run.stop} at frame ${run.frames + 1})` }
      if (skip > 0 && !bytes.subarray(0, skip).equals(wh.bytes)) return { kind: 'retry', reason: 'wal header changed while reading' }
      return { kind: 'ship', tail: bytes.subarray(0, skip + run.commitFrames * fsz), tailCommits: run.commits, tailChecksum: run.checksum, next: null }
    }

    // The WAL restarted (or nothing of the current index was shipped yet). Read what is left of the old
    // incarnation, then the new one, and prove with iChange that no commit fell between them.
    let tail: Buffer | null = null
    let tailCommits = 0
    let tailChecksum = cur.checksum
    if (cur.header !== null && cur.offset > 0) {
      // Frames of the old incarnation past the shipped position survive only where the new one has not overwritten
      // the file yet. Look at the first frame's salts before reading a segment's worth: after a hand-off the bytes
      // there are the new incarnation's, or an older one's, on nearly every restart.
      const size = wal >= 0 ? fs.fstatSync(wal).size : 0
      const avail = size > cur.offset ? Math.floor((size - cur.offset) / fsz) * fsz : 0
      const peek = avail > 0 ? readAt(wal, cur.offset, FRAME_HEADER_SIZE) : null
      const more = peek && peek.readUInt32BE(8) === cur.header.salt1 && peek.readUInt32BE(12) === cur.header.salt2 ? readAt(wal, cur.offset, Math.min(avail, MAX_SEGMENT_BYTES), true) : null
      if (more) {
        const run = checkFrames(cur.header, tailChecksum, more, 0, more.length, Infinity)
        if (run.commitFrames > 0) {
          tail = more.subarray(0, run.commitFrames * fsz)
          tailCommits = run.commits
          tailChecksum = run.checksum
        } else {
          releaseReadBuffer(more)
        }
      }
    }
    let next: NextIncarnation | null = null
    if (shm.mxFrame > 0) {
      if (!wh) return { kind: 'retry', reason: 'wal header missing while its index has frames' }
      if (shm.salt1 !== wh.salt1 || shm.salt2 !== wh.salt2) return { kind: 'retry', reason: 'wal restarted while reading' }
      const end = WAL_HEADER_SIZE + shm.mxFrame * fsz
      // Ship the first MAX_SEGMENT_BYTES or so now (later plans read the rest from the WAL, which the pin keeps), but
      // count every commit up to the index's end for the proof below, in bounded reads that are let go at once.
      const first = readCommitted(wal, 0, wh, wh.checksum, 0, end, fsz)
      if (typeof first === 'string') return { kind: 'retry', reason: `wal changed while reading (${first})` }
      let commits = first.commits
      let seed = first.checksum
      for (let p = first.bytes.length; p < end; ) {
        const more = readCommitted(wal, p, wh, seed, p, end, fsz)
        if (typeof more === 'string') {
          releaseReadBuffer(first.bytes)
          return { kind: 'retry', reason: `wal changed while reading (${more})` }
        }
        commits += more.commits
        seed = more.checksum
        p += more.bytes.length
        releaseReadBuffer(more.bytes)
      }
      next = { header: wh, body: first.bytes, commits, checksum: first.checksum }
    }
    if (tail === null && next === null && cur.header === null) {
      // Nothing shipped in this index and nothing new: just move the baseline.
      if (this.#iChangeBase !== undefined && ((shm.iChange - this.#iChangeBase) >>> 0) !== 0 && !this.#trustRestart) {
        return { kind: 'new-generation', reason: 'commits lost while the wal restarted' }
      }
      return { kind: 'ship', tail: null, tailCommits: 0, tailChecksum: cur.checksum, next: null }
    }
    const seen = tailCommits + (next?.commits ?? 0)
    if (this.#iChangeBase === undefined) {
      if (!this.#trustRestart) return { kind: 'new-generation', reason: 'wal restarted while not replicating' }
    } else if (((shm.iChange - this.#iChangeBase) >>> 0) !== seen && !this.#trustRestart) {
      return {
        kind: 'new-generation',
        reason: `commits lost while the wal restarted (${(shm.iChange - this.#iChangeBase) >>> 0} committed, ${seen} readable)`,
      }
    }
    return { kind: 'ship', tail, tailCommits, tailChecksum, next }
  }

  /**
   * planHeld plans shipping from the incarnations held at hand-offs (#held), or returns undefined when none is left.
   * The shipped incarnation's held frames go first, one bounded chunk per plan; then the next held incarnation, once
   * its commits are proven to follow the shipped ones (#planHeldIncarnation).
   */
  #planHeld(shm: ShmHeader): Plan | undefined {
    if (this.#heldBroken !== null) return { kind: 'new-generation', reason: this.#heldBroken }
    const head = this.#held[0]
    if (head === undefined) return undefined
    const cur = this.#shipped
    const fsz = frameSize(this.#pageSize)
    if (cur.header !== null && sameSalts(head.header, cur.header)) {
      const end = head.start + head.length
      if (cur.offset < head.start || cur.offset >= end) return { kind: 'new-generation', reason: 'frames held at a hand-off do not continue the shipped position' }
      const run = readCommitted(head.fd, cur.offset - head.start, cur.header, cur.checksum, cur.offset, end, fsz)
      if (typeof run === 'string') return { kind: 'new-generation', reason: `frames held at a hand-off do not continue the shipped position (${run})` }
      return { kind: 'ship', tail: run.bytes, tailCommits: run.commits, tailChecksum: run.checksum, next: null }
    }
    // A later incarnation: the shipped one is complete (#ship let go of its held frames once all were shipped), and the
    // WAL has moved on past it.
    if (head.start !== 0) return { kind: 'new-generation', reason: 'frames held at a hand-off skip the start of an incarnation' }
    if (cur.header !== null && shm.salt1 === cur.header.salt1 && shm.salt2 === cur.header.salt2) {
      return { kind: 'new-generation', reason: 'a later incarnation is held while the wal is still the shipped one' }
    }
    return this.#planHeldIncarnation(head)
  }

  /**
   * planHeldIncarnation plans the first chunk of an incarnation held from its WAL header, as the next index. First
   * the proof, once per incarnation: the commits in its held frames (a bounded scan of frame headers; the checksum
   * chain is checked chunk by chunk as it ships) must be exactly iChange at its held end less iChange at the shipped
   * position, the end of the previous incarnation. Otherwise a commit fell between the two unseen: a new generation.
   */
  #planHeldIncarnation(head: Held): Plan {
    const fsz = frameSize(this.#pageSize)
    const wh = head.header
    const end = head.length
    if (!head.proven) {
      if (this.#iChangeBase === undefined) return { kind: 'new-generation', reason: 'wal restarted while not replicating' }
      const scan = scanCommits(head.fd, wh, end, fsz)
      if (typeof scan === 'string') return { kind: 'new-generation', reason: `frames held at a hand-off are not whole committed frames (${scan})` }
      const committed = (head.endIChange - this.#iChangeBase) >>> 0
      if (committed !== scan) return { kind: 'new-generation', reason: `commits lost between held wal incarnations (${committed} committed, ${scan} held)` }
      head.proven = true
    }
    const first = readCommitted(head.fd, 0, wh, wh.checksum, 0, end, fsz)
    if (typeof first === 'string') return { kind: 'new-generation', reason: `frames held at a hand-off do not validate (${first})` }
    return { kind: 'ship', tail: null, tailCommits: 0, tailChecksum: this.#shipped.checksum, next: { header: wh, body: first.bytes, commits: first.commits, checksum: first.checksum } }
  }

  /**
   * settleHeld lets go of the first held incarnation once everything of it is shipped, after checking that the commits
   * shipped add up to iChange at its end (a mismatch is a bug in counting, never a race: the next plan starts a new
   * generation).
   */
  #settleHeld(): void {
    const head = this.#held[0]
    const cur = this.#shipped
    if (head === undefined || cur.header === null || !sameSalts(head.header, cur.header) || cur.offset !== head.start + head.length) return
    if (this.#iChangeBase !== undefined && this.#iChangeBase !== head.endIChange) {
      this.#heldBroken = `commits shipped from a hand-off do not match the wal index (${this.#iChangeBase} shipped, ${head.endIChange} counted; start ${head.start} length ${head.length} queued ${this.#held.length})`
      return
    }
    this.#held.shift()
    this.#heldBytes -= head.length
    fs.closeSync(head.fd)
  }

  /** heldOfShipped: frames of the shipped incarnation are still held, so it is not complete even if the WAL moved on. */
  #heldOfShipped(): boolean {
    const head = this.#held[0]
    const cur = this.#shipped
    return head !== undefined && cur.header !== null && sameSalts(head.header, cur.header)
  }

  /** dropHeld closes every held incarnation's file (unlinked: closing frees it). */
  #dropHeld(): void {
    const held = this.#held
    this.#held = []
    this.#heldBytes = 0
    this.#heldBroken = null
    for (const h of held) fs.closeSync(h.fd)
  }

  async #ship(plan: Extract<Plan, { kind: 'ship' }>, shm: ShmHeader): Promise<void> {
    const indexBefore = this.#index
    if (plan.tail) {
      await this.#uploadRun(plan.tail, this.#shipped.offset)
      this.#settleHeld()
    }
    const restarted = (): boolean => this.#shipped.header !== null && this.#shipped.offset > 0 && (shm.salt1 !== this.#shipped.header.salt1 || shm.salt2 !== this.#shipped.header.salt2)
    // Complete only once nothing of it is held any more: a held incarnation ships in chunks, over several plans.
    if (restarted() && !this.#heldOfShipped()) {
      // The shipped incarnation is complete: the next one is the next index, from offset 0.
      if (this.#index + 1 > MAX_INDEX) throw new ReplicaError('WAL_INVALID', 'max index exceeded')
      this.#index++
      this.#shipped = { header: null, offset: 0, checksum: [0, 0] }
    }
    if (plan.next) {
      this.#shipped = { header: plan.next.header, offset: 0, checksum: plan.next.header.checksum }
      await this.#uploadRun(plan.next.body, 0)
      this.#settleHeld()
    }
    if (this.#caughtUp(shm)) this.#iChangeBase = shm.iChange
    this.#trustRestart = false
    if (plan.tail || plan.next) this.#changedSinceSnapshot = true
    // The state file is a hint (the replica's last segment gives the position on restart): write it when the
    // WAL index changes, not on every segment, which cost half the CPU of 1,000 busy clients.
    if (this.#index !== indexBefore) this.#saveState(false)
    this.#publish({ state: 'replicating', generation: this.#generation, index: this.#index, offset: this.#shipped.offset })
  }

  /**
   * uploadRun ships bytes (frames, preceded by the WAL header when at offset 0) as one or more segments of the
   * current index, each ending on a commit frame, advancing the shipped position after each acknowledgement.
   */
  async #uploadRun(bytes: Buffer, offset: number): Promise<void> {
    const header = this.#shipped.header!
    const fsz = frameSize(this.#pageSize)
    let p = 0
    while (p < bytes.length) {
      const segStart = offset + p
      if (segStart > OFFSET_LIMIT) throw new ReplicaError('WAL_INVALID', `wal index ${this.#index} reached the 4 GiB offset limit; waiting for a checkpoint`)
      // Find the last commit frame within MAX_SEGMENT_BYTES (or the first one past it for a huge transaction).
      const frameStart = segStart === 0 ? p + WAL_HEADER_SIZE : p
      let cut = -1
      for (let f = frameStart; f + fsz <= bytes.length; f += fsz) {
        if (bytes.readUInt32BE(f + 4) !== 0) {
          cut = f + fsz
          if (cut - p >= MAX_SEGMENT_BYTES) break
        }
      }
      if (cut < 0) throw new ReplicaError('WAL_INVALID', 'segment does not end on a commit frame')
      const seg = bytes.subarray(p, cut)
      const last = cut - fsz
      const checksum: [number, number] = [bytes.readUInt32BE(last + 16), bytes.readUInt32BE(last + 20)]
      const body = encodeFrame(seg)
      let commits = 0
      for (let f = segStart === 0 ? WAL_HEADER_SIZE : 0; f < seg.length; f += fsz) if (seg.readUInt32BE(f + 4) !== 0) commits++
      const info = await this.#opts.client.writeWalSegment(this.#generation, this.#index, segStart, body)
      this.#shipped = { header, offset: segStart + seg.length, checksum }
      if (this.#iChangeBase !== undefined) this.#iChangeBase = (this.#iChangeBase + commits) >>> 0
      this.#lastSegment = { index: this.#index, offset: segStart, size: info.size }
      this.#bytesShipped += seg.length
      this.#objectsWritten++
      // Progress of a long run shows as it goes; the last segment's is in the status #ship publishes next.
      if (cut < bytes.length) this.#publish({ offset: this.#shipped.offset })
      this.#log.debug({ index: this.#index, offset: segStart, bytes: seg.length }, 'wal segment uploaded')
      p = cut
    }
    releaseReadBuffer(bytes) // every segment of the run is written (encodeFrame copied it): #plan may read into it again
  }

  /**
   * newGeneration starts a generation: a snapshot image of the database at the current commit, durable before
   * any WAL segment of the generation, then the current WAL incarnation as index 0.
   */
  async #newGeneration(reason: string): Promise<void> {
    const handle = this.#handle!
    this.#dropHeld() // frames of the old generation: the snapshot covers them
    for (let attempt = 0; ; attempt++) {
      handle.beginReadForImage()
      const shm = this.#readShm()
      if (!shm) throw new ReplicaError('WAL_INVALID', 'wal index (-shm) header unreadable')
      const fsz = frameSize(this.#pageSize)
      let wh: WalHeader | null = null
      let walBytes: Buffer | null = null
      let checksum: readonly [number, number] = [0, 0]
      const overlay: PageOverlay = new Map()
      let nPage = 0
      if (shm.mxFrame > 0) {
        const head = readAt(this.#walPath, 0, WAL_HEADER_SIZE)
        const parsed = head ? parseWalHeader(head) : null
        const end = WAL_HEADER_SIZE + shm.mxFrame * fsz
        walBytes = parsed?.ok && parsed.header.salt1 === shm.salt1 && parsed.header.salt2 === shm.salt2 ? readAt(this.#walPath, 0, end) : null
        const run = walBytes && parsed?.ok ? checkFrames(parsed.header, parsed.header.checksum, walBytes, WAL_HEADER_SIZE, end, Infinity) : null
        if (!parsed?.ok || !walBytes || !run || WAL_HEADER_SIZE + run.commitFrames * fsz !== end) {
          if (attempt < 5) continue
          throw new ReplicaError('WAL_INVALID', 'cannot read a stable wal for the snapshot')
        }
        wh = parsed.header
        checksum = run.checksum
        nPage = run.dbPages
        for (let f = WAL_HEADER_SIZE; f < end; f += fsz) overlay.set(walBytes.readUInt32BE(f), f)
      } else {
        nPage = Math.floor(fs.fstatSync(this.#dbFd).size / this.#pageSize)
      }
      const generation = crypto.randomBytes(8).toString('hex')
      this.#log.info({ generation, reason }, 'new generation')
      if (attempt === 0) await this.#waitUntilNewest()
      const src = { dbFd: this.#dbFd, walPath: this.#walPath, pageSize: this.#pageSize, nPage, header: wh, overlay }
      try {
        await this.#writeSnapshot(generation, 0, src)
      } catch (err) {
        if (hasCode(err, 'WAL_INVALID') && attempt < 5) continue
        throw err
      }
      this.#generation = generation
      this.#index = 0
      this.#shipped = { header: null, offset: 0, checksum: [0, 0] }
      this.#lastSegment = null
      this.#changedSinceSnapshot = false
      this.#publish({ generationsStarted: this.#status.generationsStarted + 1, generation, index: 0, offset: 0, pageSize: this.#pageSize })
      // The snapshot holds every commit of the WAL so far; the baseline counts from the WAL's start.
      this.#iChangeBase = (shm.iChange - (wh && walBytes ? countCommits(walBytes, fsz) : 0)) >>> 0
      this.#trustRestart = false
      this.#saveState(false)
      if (wh && walBytes) {
        this.#shipped = { header: wh, offset: 0, checksum: wh.checksum }
        await this.#uploadRun(walBytes, 0)
        this.#shipped = { header: wh, offset: walBytes.length, checksum }
      }
      this.#iChangeBase = shm.iChange
      this.#trustRestart = false
      this.#saveState(false)
      return
    }
  }

  /**
   * waitUntilNewest delays a new generation's first object until it will be stamped strictly later than every
   * object of the existing generations: Litestream restores the generation with the newest object, and S3
   * stamps LastModified in whole seconds, with ties going to the smaller id (K6, matrix design rule 5).
   */
  async #waitUntilNewest(): Promise<void> {
    const client = this.#opts.client
    let newest = 0
    for (const g of await client.generations()) {
      const [snaps, segs] = await Promise.all([client.snapshots(g), client.walSegments(g)])
      for (const o of [...snaps, ...segs]) newest = Math.max(newest, o.createdAt.getTime())
    }
    const waitMs = newest + 1000 - this.#opts.now()
    if (waitMs > 0) await new Promise((r) => setTimeout(r, Math.min(waitMs, 1000)))
  }

  async #writeSnapshot(generation: string, index: number, src: Parameters<typeof imageStream>[0]): Promise<void> {
    // The image streams from the database file: the pin's mark must stay at or below its end until it is written.
    this.#imaging = true
    try {
      await this.#writeImage(generation, index, src)
    } finally {
      this.#imaging = false
    }
  }

  async #writeImage(generation: string, index: number, src: Parameters<typeof imageStream>[0]): Promise<void> {
    const bytes = src.nPage * src.pageSize
    if (bytes <= SNAPSHOT_BUFFER_LIMIT) {
      const image = Buffer.concat([...imageChunks(src)])
      await this.#opts.client.writeSnapshot(generation, index, encodeFrame(image))
    } else {
      const stream = imageStream(src).pipe(new FrameEncoder())
      await this.#opts.client.writeSnapshot(generation, index, stream)
    }
    this.#lastSnapshotAtMs = this.#opts.now()
    this.#objectsWritten++
    this.#publish({ lastSnapshotAt: this.#lastSnapshotAtMs })
    this.#log.info({ generation, index, bytes }, 'snapshot written')
  }

  /** snapshot forces a snapshot of the current state into the current generation (after shipping everything). */
  snapshot(): Promise<Pos> {
    return this.#exclusive(async () => {
      await this.#syncPass()
      await this.#snapshotNow()
      return this.pos()
    })
  }

  async #snapshotNow(): Promise<void> {
    const handle = this.#handle!
    handle.beginReadForImage()
    const shm = this.#readShm()
    if (!shm) throw new ReplicaError('WAL_INVALID', 'wal index (-shm) header unreadable')
    const fsz = frameSize(this.#pageSize)
    const cur = this.#shipped
    const inShipped = cur.header !== null && shm.salt1 === cur.header.salt1 && shm.salt2 === cur.header.salt2
    const end = WAL_HEADER_SIZE + shm.mxFrame * fsz
    if (shm.mxFrame > 0 && !(inShipped && end === cur.offset)) return // not caught up; the next pass ships first
    const overlay: PageOverlay = new Map()
    let nPage = Math.floor(fs.fstatSync(this.#dbFd).size / this.#pageSize)
    if (shm.mxFrame > 0) {
      const walBytes = readAt(this.#walPath, 0, end)
      if (!walBytes) return
      const run = checkFrames(cur.header!, cur.header!.checksum, walBytes, WAL_HEADER_SIZE, end, Infinity)
      if (WAL_HEADER_SIZE + run.commitFrames * fsz !== end) return
      nPage = run.dbPages
      for (let f = WAL_HEADER_SIZE; f < end; f += fsz) overlay.set(walBytes.readUInt32BE(f), f)
    } else if (shm.nPage > 0) {
      nPage = shm.nPage
    }
    await this.#writeSnapshot(this.#generation, this.#index, {
      dbFd: this.#dbFd,
      walPath: this.#walPath,
      pageSize: this.#pageSize,
      nPage,
      header: inShipped ? cur.header : null,
      overlay,
    })
    this.#changedSinceSnapshot = false
  }

  async #afterShip(): Promise<void> {
    const handle = this.#handle!
    const o = this.#opts
    const now = o.now()
    if (o.snapshotIntervalMs > 0 && this.#changedSinceSnapshot && this.#lastSnapshotAtMs !== null && now - this.#lastSnapshotAtMs >= o.snapshotIntervalMs) {
      await this.#snapshotNow()
    }
    if (o.retentionMs > 0 && this.#changedSinceSnapshot === false && now - this.#lastRetentionAt >= o.retentionCheckIntervalMs && this.#objectsWritten > 0) {
      this.#lastRetentionAt = now
      await this.enforceRetention()
    }
    // Checkpoint our own way: PASSIVE past the threshold, TRUNCATE as the backstop. Never RESTART (K11).
    const shm = this.#readShm()
    if (!shm) return
    if (handle.reading && !handle.slotHeld) {
      // Handed off (READ(0) alone): kept while the application has not written since, as it then blocks no one
      // (nothing is left to backfill, and a restart needs no lock of ours). Once it wrote, a slot again.
      this.#advanceFromZero()
      if (!handle.slotHeld) {
        this.#releaseRequested = false
        return
      }
    }
    if (!this.#caughtUp(shm)) {
      // Commits arrived while the pass shipped: under continuous writes that is the rule, not the exception. The
      // hand-off reads them into memory, so it need not wait for a moment with nothing to ship.
      await this.#handOffIfDue()
      return
    }
    const walFrames = shm.mxFrame
    const truncateAt = o.truncatePages > 0 ? Math.min(o.truncatePages, Math.floor((1 << 30) / frameSize(this.#pageSize))) : 0
    if (truncateAt > 0 && walFrames >= truncateAt) {
      const r = handle.checkpoint('TRUNCATE')
      this.#log.info({ mode: 'TRUNCATE', ...r }, 'checkpoint')
    } else if (o.minCheckpointPages > 0 && walFrames >= o.minCheckpointPages) {
      if (this.#handOffDue(shm) && (await this.#handOff())) {
        this.#releaseRequested = false
        this.#releasedAtIChange = undefined
        return
      }
      const r = handle.checkpoint('PASSIVE')
      this.#log.debug({ mode: 'PASSIVE', ...r }, 'checkpoint')
    }
    this.#log.debug({ pos: this.pos(), release: this.#releaseRequested }, 'caught up')
    // Caught up. Hold a fresh read transaction, pinned at the current end of the WAL, so an application
    // checkpoint can backfill everything shipped but cannot restart the WAL under unshipped frames. When the
    // database file changed (someone checkpoints), let go entirely so a TRUNCATE checkpoint need not wait.
    if (this.#releaseRequested) {
      handle.endRead()
      this.#releaseRequested = false
      this.#releasedAtIChange = shm.iChange
    } else if (this.#releasedAtIChange !== shm.iChange) {
      // Re-pin at the end (a pin the WAL events kept at the end stays as it is), unless nothing committed since
      // we let go for a checkpointer: it holds the write lock while it waits for readers, and a later pass (for
      // events of older writes) must not take the WAL back from it.
      this.#releasedAtIChange = undefined
      try {
        if (handle.reading) handle.advance(shm)
        else handle.beginRead(shm)
      } catch {
        // SQLITE_BUSY: unpinned until the next change; iChange still proves continuity.
      }
    } else {
      handle.endRead()
    }
  }

  /** handOffDue: the WAL is past HANDOFF_WAL_BYTES and below the TRUNCATE backstop. */
  #handOffDue(shm: ShmHeader): boolean {
    const o = this.#opts
    return WAL_HEADER_SIZE + shm.mxFrame * frameSize(this.#pageSize) >= HANDOFF_WAL_BYTES && (o.truncatePages <= 0 || shm.mxFrame < o.truncatePages)
  }

  /** handOffIfDue hands the WAL off once it is past the hand-off size (#handOff). */
  async #handOffIfDue(): Promise<void> {
    const o = this.#opts
    const shm = this.#readShm()
    if (shm && o.minCheckpointPages > 0 && this.#handOffDue(shm)) await this.#handOff()
  }

  /**
   * handOff hands a WAL past the hand-off size to the application for a restart (matrix B2, K12). A writer restarts
   * the WAL only when it is fully backfilled and it can lock every read-mark slot, so a slot held at all times
   * (ours) would let the WAL grow forever under continuous writes. A worker thread (src/wal/handoff-worker.ts)
   * takes the pin over: it raises our slot's mark above every frame, so that the application's autocheckpoint after
   * its next commit backfills everything while the WAL still cannot restart; reads the frames we have not shipped
   * into memory; blocks until that checkpoint lets go of READ(0), takes READ(0) (backfill freezes) and, the WAL
   * being fully backfilled, drops the slot, all within microseconds, before the application's next commit, which
   * then restarts the WAL exactly once, at the end we hold. The held frames join the queue of held incarnations
   * (#held), each in its own unlinked file, shipped in order, each incarnation as its own index: so a hand-off need not
   * wait for the frames earlier ones hold to be shipped, up to maxHeldBytes held in all. This pass waits for the
   * worker (at most HANDOFF_WINDOW_MS and a checkpoint); if the window closes without a hand-off (autocheckpoint off,
   * say), the mark goes back to the end and the next pass end checkpoints itself, as before.
   */
  async #handOff(): Promise<boolean> {
    const h = this.#handle
    const cur = this.#shipped
    if (!h?.slotHeld || h.raised || this.#imaging || this.#closing !== null || this.#iChangeBase === undefined || this.#heldBroken !== null) return false
    if (performance.now() < this.#handOffRetryAt) return false
    const shm = this.#readShm()
    if (!shm || shm.mxFrame === 0) return false
    const fsz = frameSize(this.#pageSize)
    const walBytes = WAL_HEADER_SIZE + shm.mxFrame * fsz
    // Where the copy starts: after what is held of this incarnation already; at its WAL header when an earlier
    // incarnation is still held (nothing of this one is shipped or held); else at the shipped position. An incarnation
    // the replica reached without holding the previous one ships from the WAL first (#planWith proves its continuity).
    const last = this.#held.at(-1)
    let header: WalHeader
    let from: number
    let into: Held | null = null
    if (last && last.header.salt1 === shm.salt1 && last.header.salt2 === shm.salt2) {
      into = last
      header = last.header
      from = last.start + last.length
    } else if (last) {
      const head = readAt(this.#walPath, 0, WAL_HEADER_SIZE)
      const parsed = head ? parseWalHeader(head) : null
      if (!parsed?.ok || parsed.header.salt1 !== shm.salt1 || parsed.header.salt2 !== shm.salt2) return false
      header = parsed.header
      from = 0
    } else if (cur.header !== null && cur.offset >= WAL_HEADER_SIZE && shm.salt1 === cur.header.salt1 && shm.salt2 === cur.header.salt2) {
      header = cur.header
      from = cur.offset
    } else {
      return false
    }
    const room = this.#opts.maxHeldBytes - this.#heldBytes
    if (walBytes - from > room) {
      this.#log.debug({ walBytes, heldBytes: this.#heldBytes, backlog: walBytes - from }, 'wal hand-off deferred: held bytes at their bound')
      return false
    }
    let heldFd: number
    if (into) heldFd = into.fd
    else {
      const heldPath = path.join(this.#metaDir, `handoff-${process.pid}-${this.#index}-${this.#held.length}.tmp`)
      fs.mkdirSync(this.#metaDir, { recursive: true })
      heldFd = fs.openSync(heldPath, 'w+')
      fs.unlinkSync(heldPath)
    }
    const job = handOff({
      dbPath: this.#opts.dbPath,
      walPath: this.#walPath,
      dbFd: h.dbFd,
      shmFd: h.shmFd,
      pin: h.pinState(),
      header: { bigEndian: header.bigEndian, pageSize: header.pageSize, salt1: header.salt1, salt2: header.salt2, checkpointSeq: header.checkpointSeq },
      offset: from,
      heldFd,
      fileBase: into ? into.length : 0,
      windowMs: HANDOFF_WINDOW_MS,
      maxBytes: room,
    })
    this.#handOffJob = job.catch(() => undefined)
    let r: HandOffResult
    try {
      r = await job
    } catch (err) {
      // The worker died: which read locks it left held is unknown. Let go of all of them; iChange proves continuity
      // (or a new generation starts) as after any release.
      h.forgetPin()
      if (!into) fs.closeSync(heldFd)
      this.#log.warn({ err: errorMessage(err) }, 'wal hand-off worker failed')
      return false
    } finally {
      this.#handOffJob = null
    }
    h.adoptPin(r.pin)
    this.#log.debug({ handed: r.handed, reason: r.reason, from, endIChange: r.endIChange, base: this.#iChangeBase, shippedOffset: cur.offset, checkpoints: r.checkpoints, lost: r.lost, ms: Math.round(r.ms), held: r.end - from, heldBytes: this.#heldBytes, queued: this.#held.length, walBytes: r.end, readAheadMs: Math.round(r.phases.readAheadMs), firstCheckpointMs: Math.round(r.phases.firstCheckpointMs), raisedMs: Math.round(r.phases.raisedMs) }, 'wal hand-off')
    if (!r.handed) {
      if (!into) fs.closeSync(heldFd) // (into: bytes the worker wrote past its length are overwritten by the next)
      this.#handOffRetryAt = performance.now() + HANDOFF_RETRY_MS
      try {
        h.beginReadForImage() // the raised mark back to the end
      } catch {
        // no slot free: the raised slot stays, and still keeps the WAL in place
      }
      return false
    }
    if (r.end > from) {
      if (into) {
        into.length = r.end - into.start
        into.endIChange = r.endIChange
      } else {
        this.#held.push({ header, start: from, fd: heldFd, length: r.end - from, endIChange: r.endIChange, proven: false })
      }
      this.#heldBytes += r.end - from
    } else if (!into) {
      fs.closeSync(heldFd)
    }
    this.#handedOff = { salt1: header.salt1, salt2: header.salt2, mxFrame: (r.end - WAL_HEADER_SIZE) / fsz }
    return true
  }

  /**
   * advanceFromZero takes a slot again once the application wrote after a hand-off (WalPin.advance): the WAL
   * restarted, or the application appended (a transaction that raced the hand-off), and the next pass past the
   * hand-off size tries again.
   */
  #advanceFromZero(): void {
    const h = this.#handle!
    const shm = this.#readShm()
    const ho = this.#handedOff
    if (shm && ho && shm.salt1 === ho.salt1 && shm.salt2 === ho.salt2 && shm.mxFrame === ho.mxFrame) return // not written since
    this.#handedOff = null
    h.advance(shm)
  }

  #caughtUp(shm: ShmHeader): boolean {
    const cur = this.#shipped
    // Held incarnations are unshipped whatever the WAL says (it may have just restarted: mxFrame 0, new salts).
    if (this.#held.length > 0) return false
    if (shm.mxFrame === 0) return true
    if (cur.header === null || shm.salt1 !== cur.header.salt1 || shm.salt2 !== cur.header.salt2) return false
    return WAL_HEADER_SIZE + shm.mxFrame * frameSize(this.#pageSize) === cur.offset
  }

  /**
   * enforceRetention deletes what no restore point inside the retention window needs: snapshots older than the
   * newest snapshot that is itself outside the window, WAL indexes below it, and older generations once the
   * current one covers the whole window. It never takes a snapshot.
   */
  async enforceRetention(): Promise<void> {
    const client = this.#opts.client
    const cutoff = this.#opts.now() - this.#opts.retentionMs
    const snaps = await client.snapshots(this.#generation)
    if (snaps.length === 0) return
    let base = snaps[0]!
    for (const s of snaps) if (s.createdAt.getTime() <= cutoff && s.index >= base.index) base = s
    for (const s of snaps) if (s.index < base.index) await client.deleteSnapshot(this.#generation, s.index)
    const segs = await client.walSegments(this.#generation)
    const old = segs.filter((s) => s.index < base.index)
    if (old.length > 0) await client.deleteWalSegments(this.#generation, old)
    if (snaps[0]!.createdAt.getTime() <= cutoff) {
      for (const g of await client.generations()) {
        if (g !== this.#generation) {
          await client.deleteGeneration(g)
          this.#log.info({ generation: g }, 'generation deleted by retention')
        }
      }
    }
  }

  /**
   * saveState records the shipped position. Routine updates are not fsynced: after a power loss a stale file only
   * fails the replica check on restart and costs a new generation. Clean-flag changes are durable.
   */
  #saveState(clean: boolean, dbStatAfterClose: PersistedState['dbStatAfterClose'] = null, durable = false): void {
    if (this.#generation === '') return
    saveState(
      this.#metaDir,
      {
        version: 1,
        generation: this.#generation,
        index: this.#index,
        offset: this.#shipped.offset,
        header: this.#shipped.header ? this.#shipped.header.bytes.toString('base64') : null,
        checksum: this.#shipped.checksum,
        pageSize: this.#pageSize,
        lastSegment: this.#lastSegment,
        lastSnapshotAt: this.#lastSnapshotAtMs === null ? null : new Date(this.#lastSnapshotAtMs).toISOString(),
        dbIno: this.#dbIdentity(),
        clean,
        dbStatAfterClose,
      },
      durable,
    )
  }

  /** publish replaces the status (one frozen object per call, so a pass publishes as few times as it can). */
  #publish(patch: Partial<ReplicatorStatus>): void {
    const lagMs = this.#dirtySince === null ? 0 : this.#opts.now() - this.#dirtySince
    this.#status = Object.freeze({ ...this.#status, ...patch, lagMs, bytesShipped: this.#bytesShipped, objectsWritten: this.#objectsWritten })
    this.#opts.onStatus?.(this.#status)
  }

  /**
   * close stops the loop, ships everything committed (bounded by timeoutMs), records a clean state and closes the
   * connection. Idempotent and memoized. Rejects if the final sync failed: the caller decides the exit code.
   */
  close(opts: { readonly timeoutMs?: number } = {}): Promise<void> {
    this.#closing ??= this.#close(opts.timeoutMs ?? 30_000)
    return this.#closing
  }

  async #close(timeoutMs: number): Promise<void> {
    const deadline = this.#opts.now() + timeoutMs
    this.#loopAbort.abort()
    // A pass stuck on a hung request must not hold shutdown past its bound.
    await withTimeout(this.#loop ?? Promise.resolve(), timeoutMs, 'replication loop').catch(() => {})
    this.#started.resolve()
    let failure: unknown
    // The final sync holds what a pass holds, so it takes a pass slot too (a process closing a thousand replicators
    // at once would otherwise hold a thousand passes' memory), waiting at most half the time left: shipping what was
    // committed comes first, so after that it goes ahead without one.
    const slots = this.#opts.passSlots
    let timer: NodeJS.Timeout | undefined
    const halfTime = new Promise((resolve) => (timer = setTimeout(resolve, Math.max(0, (deadline - this.#opts.now()) / 2))))
    const slot = slots !== undefined && (await slots.acquireBefore(halfTime))
    clearTimeout(timer)
    try {
      if (fs.existsSync(this.#opts.dbPath)) {
        // Keep trying (S3 throttling, a brief outage) until the shutdown deadline: nothing committed is left behind
        // while there is time to ship it.
        for (let backoffMs = 250; ; backoffMs = Math.min(backoffMs * 2, 5000)) {
          try {
            await withTimeout(this.sync(), Math.max(1, deadline - this.#opts.now()), 'final sync')
            break
          } catch (err) {
            if (this.#opts.now() + backoffMs >= deadline) throw err
            this.#log.warn({ err: errorMessage(err), backoffMs }, 'final sync failed; retrying until the shutdown deadline')
            await new Promise((r) => setTimeout(r, backoffMs))
          }
        }
      }
    } catch (err) {
      failure = err
      this.#log.error({ err: errorMessage(err) }, 'final sync failed')
    } finally {
      if (slot) slots.release()
    }
    // A pass that timed out above may still wait for a hand-off worker, which uses our descriptors: never close
    // them under it (it returns within its window and one checkpoint).
    if (this.#handOffJob !== null) await this.#handOffJob
    const wasOpen = this.#handle !== null
    if (this.#advanceTimer !== null) clearTimeout(this.#advanceTimer)
    this.#advanceTimer = null
    this.#closeHandle()
    if (wasOpen && failure === undefined && this.#generation !== '') {
      try {
        const st = fs.statSync(this.#opts.dbPath, { bigint: true })
        this.#saveState(true, { ino: `${st.dev}:${st.ino}`, size: String(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs) }, true)
      } catch (err) {
        this.#log.warn({ err: errorMessage(err) }, 'cannot record clean close')
      }
    }
    this.#publish({ state: 'stopped' })
    if (failure !== undefined) throw failure
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void
  const promise = new Promise<void>((r) => (resolve = r))
  return { promise, resolve }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms)
  })
  return Promise.race([p, t]).finally(() => clearTimeout(timer))
}

/**
 * Reusable WAL read buffers, each MAX_SEGMENT_BYTES plus a WAL header. A fresh multi-MiB Buffer costs a page fault
 * per 4 KiB page when first written and again when first read: reading 64 MiB of WAL into a fresh Buffer and checking
 * it cost ~380 ms of CPU on the benchmark host against ~20 ms with memory already mapped, and was the largest cost of
 * shipping. A pooled buffer that is never handed back (a plan not shipped, a failed upload) is garbage-collected as
 * usual; idle buffers are dropped POOL_IDLE_MS after the last hand-back, so a quiet process gives the memory back.
 */
const POOL_BUFFER_BYTES = MAX_SEGMENT_BYTES + WAL_HEADER_SIZE
/** Reads shorter than this allocate a Buffer of their own: cheap enough, and the pool is kept for big ones. */
const POOL_MIN_BYTES = 1 << 20
const POOL_MAX_IDLE = 2
const POOL_IDLE_MS = 10_000
const readPool: Buffer[] = []
const pooledMemory = new WeakSet<object>()
let poolTimer: NodeJS.Timeout | undefined

/**
 * releaseReadBuffer hands back a buffer that readAt returned with pooled = true (a no-op for any other buffer).
 * The caller must not use it, or any view of it, afterwards: the next pooled read overwrites it.
 */
function releaseReadBuffer(buf: Buffer): void {
  const mem = buf.buffer
  if (!pooledMemory.has(mem) || readPool.length >= POOL_MAX_IDLE || readPool.some((b) => b.buffer === mem)) return
  readPool.push(Buffer.from(mem, 0, mem.byteLength))
  if (poolTimer) poolTimer.refresh()
  else {
    poolTimer = setTimeout(() => {
      readPool.length = 0
      poolTimer = undefined
    }, POOL_IDLE_MS)
    poolTimer.unref()
  }
}

/**
 * readAt reads exactly length bytes at position of file (a path, or a descriptor it leaves open; -1 reads nothing),
 * or returns null. With pooled, a read of POOL_MIN_BYTES or more
 * goes into a pooled buffer, which the caller hands back with releaseReadBuffer once done with it.
 */
function readAt(file: string | number, position: number, length: number, pooled = false): Buffer | null {
  let fd: number
  if (typeof file === 'number') {
    if (file < 0) return null
    fd = file
  } else {
    try {
      fd = fs.openSync(file, 'r')
    } catch {
      return null
    }
  }
  try {
    let buf: Buffer
    if (pooled && length >= POOL_MIN_BYTES && length <= POOL_BUFFER_BYTES) {
      buf = readPool.pop() ?? Buffer.allocUnsafeSlow(POOL_BUFFER_BYTES)
      pooledMemory.add(buf.buffer)
    } else buf = Buffer.allocUnsafe(length)
    let got = 0
    while (got < length) {
      const n = fs.readSync(fd, buf, got, length - got, position + got)
      if (n === 0) break
      got += n
    }
    if (got === length) return buf.subarray(0, length)
    releaseReadBuffer(buf)
    return null
  } finally {
    if (typeof file !== 'number') fs.closeSync(fd)
  }
}

/**
 * readCommitted reads one incarnation's bytes [from, end) (from 0: its WAL header first), found at position pos of fd
 * (the WAL, or a held file), at most about MAX_SEGMENT_BYTES of them (more only to reach a first commit frame), into a
 * pooled buffer; validates them against header and the checksum seed; and keeps the whole committed frames, which the
 * caller hands back with releaseReadBuffer (uploadRun does). A string says why they do not validate.
 */
function readCommitted(fd: number, pos: number, header: WalHeader, seed: readonly [number, number], from: number, end: number, fsz: number): CommittedRun | string {
  const skip = from === 0 ? WAL_HEADER_SIZE : 0
  const start = from + skip
  if (end <= start) return 'no frames'
  let len = Math.min(end - start, Math.floor(MAX_SEGMENT_BYTES / fsz) * fsz)
  let bytes = readAt(fd, pos, skip + len, true)
  if (!bytes) return 'shorter than expected'
  let run = checkFrames(header, seed, bytes, skip, bytes.length, Infinity)
  if (run.frames * fsz === len && run.commitFrames === 0 && len < end - start) {
    // One transaction larger than a segment: read up to its commit frame, whatever it takes.
    releaseReadBuffer(bytes)
    len = end - start
    bytes = readAt(fd, pos, skip + len, true)
    if (!bytes) return 'shorter than expected'
    run = checkFrames(header, seed, bytes, skip, bytes.length, Infinity)
  }
  const complete = len === end - start ? run.commitFrames * fsz === len : run.frames * fsz === len && run.commitFrames > 0
  if (!complete || (skip > 0 && !bytes.subarray(0, skip).equals(header.bytes))) {
    releaseReadBuffer(bytes)
    return complete ? 'wal header differs' : `${run.stop} at frame ${run.frames + 1}`
  }
  return { bytes: bytes.subarray(0, skip + run.commitFrames * fsz), commits: run.commits, checksum: run.checksum }
}

/**
 * scanCommits counts the commit frames of an incarnation held from its WAL header in file fd ([0, end)), reading frame
 * headers in bounded chunks: each must carry the incarnation's salts, the file must start with its header and end on a
 * commit frame. The checksum chain is not checked here: readCommitted checks it as each chunk ships.
 */
function scanCommits(fd: number, header: WalHeader, end: number, fsz: number): number | string {
  const head = readAt(fd, 0, WAL_HEADER_SIZE)
  if (!head || !head.equals(header.bytes)) return 'wal header differs'
  if ((end - WAL_HEADER_SIZE) % fsz !== 0) return 'not whole frames'
  const chunk = Math.floor(POOL_BUFFER_BYTES / fsz) * fsz
  let commits = 0
  let lastIsCommit = false
  for (let p = WAL_HEADER_SIZE; p < end; p += chunk) {
    const len = Math.min(chunk, end - p)
    const buf = readAt(fd, p, len, true)
    if (!buf) return 'shorter than expected'
    try {
      for (let f = 0; f < len; f += fsz) {
        if (buf.readUInt32BE(f + 8) !== header.salt1 || buf.readUInt32BE(f + 12) !== header.salt2) return `salt at frame ${(p + f - WAL_HEADER_SIZE) / fsz + 1}`
        lastIsCommit = buf.readUInt32BE(f + 4) !== 0
        if (lastIsCommit) commits++
      }
    } finally {
      releaseReadBuffer(buf)
    }
  }
  return lastIsCommit ? commits : 'does not end on a commit frame'
}

/** sameSalts: two WAL headers of one incarnation. */
function sameSalts(a: WalHeader, b: WalHeader): boolean {
  return a.salt1 === b.salt1 && a.salt2 === b.salt2
}

function countCommits(walBytes: Buffer, fsz: number): number {
  let n = 0
  for (let f = WAL_HEADER_SIZE; f + fsz <= walBytes.length; f += fsz) if (walBytes.readUInt32BE(f + 4) !== 0) n++
  return n
}

function sameStat(file: string, want: NonNullable<PersistedState['dbStatAfterClose']>): boolean {
  try {
    const st = fs.statSync(file, { bigint: true })
    return `${st.dev}:${st.ino}` === want.ino && String(st.size) === want.size && String(st.mtimeNs) === want.mtimeNs && String(st.ctimeNs) === want.ctimeNs
  } catch {
    return false
  }
}
