/**
 * Group commit for the file replica: one `syncfs(2)` makes everything written, created and renamed on a filesystem
 * durable, for every write that waits on it. A WAL segment needs its data durable before the rename that
 * publishes it, and the rename durable before it is acknowledged; with a thousand busy databases that was two
 * fsyncs per segment, and those fsyncs were most of the service's CPU (docs/decisions/0005). Called through koffi
 * because Node has no syncfs; Linux only, with the caller falling back to fsync elsewhere.
 * @module
 */
import fs from 'node:fs'
import koffi from 'koffi'

/** SyncfsFn is libc syncfs as koffi binds it: a synchronous call and .async(fd, callback) on a pool thread. */
export interface SyncfsFn {
  (fd: number): number
  async(fd: number, cb: (err: unknown, res: number) => void): void
}

let syncfsFn: SyncfsFn | null | undefined

function bind(): SyncfsFn | null {
  if (syncfsFn !== undefined) return syncfsFn
  syncfsFn = null
  if (process.platform !== 'linux') return null
  try {
    // The running process already links libc: no library path to guess.
    syncfsFn = koffi.load(null).func('int syncfs(int fd)') as unknown as SyncfsFn
  } catch {
    syncfsFn = null
  }
  return syncfsFn
}

interface Waiters {
  readonly promise: Promise<void>
  resolve(): void
  reject(err: Error): void
}

function waiters(): Waiters {
  let resolve!: () => void
  let reject!: (err: Error) => void
  const promise = new Promise<void>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/**
 * SYNCFS_MIN_GAP_MS is the least time between the starts of two syncfs calls of one barrier, so that each call
 * covers more writes: at 1,000 busy clients back-to-back calls ran about 370 times a second, each covering about
 * three objects' worth of stages (decision 0005, addendum). It adds at most this much to a write's latency per
 * wait, and nothing when calls are rarer than that.
 */
export const SYNCFS_MIN_GAP_MS = 10

let defaultGapMs = SYNCFS_MIN_GAP_MS

/**
 * setSyncfsMinGapMs changes the gap of barriers made from now on: main.ts sets it from LSM_SYNCFS_GAP_MS, for the
 * benchmark's A/B runs only (decision 0005, addendum).
 */
export function setSyncfsMinGapMs(ms: number): void {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`syncfs gap must be a non-negative number of ms, got ${ms}`)
  defaultGapMs = ms
}

/**
 * SyncBarrier runs at most one syncfs at a time on one filesystem, and starts them at least minGapMs apart. flush()
 * resolves after a syncfs that started after the call returned successfully; callers arriving while one runs, or
 * during the gap after it started, share the next.
 */
export class SyncBarrier {
  readonly #fd: number
  readonly #fn: SyncfsFn
  readonly #what: string
  readonly #minGapMs: number
  #running = false
  #next: Waiters | null = null
  #lastStart = -Infinity
  #timer: NodeJS.Timeout | null = null

  constructor(fd: number, fn: SyncfsFn, what: string, minGapMs = defaultGapMs) {
    this.#fd = fd
    this.#fn = fn
    this.#what = what
    this.#minGapMs = minGapMs
  }

  /** flush makes everything written on the filesystem before the call durable, or rejects. */
  flush(): Promise<void> {
    const w = (this.#next ??= waiters())
    this.#pump()
    return w.promise
  }

  #pump(): void {
    if (this.#running || this.#next === null || this.#timer !== null) return
    // A timer may fire a little early by this clock (the loop's time is cached): then it is set again.
    const wait = this.#lastStart + this.#minGapMs - performance.now()
    if (wait > 0) {
      this.#timer = setTimeout(() => {
        this.#timer = null
        this.#pump()
      }, Math.ceil(wait))
      return
    }
    const w = this.#next
    this.#next = null
    this.#running = true
    this.#lastStart = performance.now()
    this.#fn.async(this.#fd, (err, res) => {
      this.#running = false
      // syncfs reports a writeback error on the filesystem since our last call: every waiter retries its write.
      if (err !== null && err !== undefined) w.reject(new Error(`syncfs ${this.#what}`, { cause: err }))
      else if (res !== 0) w.reject(new Error(`syncfs ${this.#what}: failed (writeback error or I/O error)`))
      else w.resolve()
      this.#pump()
    })
  }
}

/** One barrier per filesystem (device), each on a directory descriptor kept for the life of the process. */
const barriers = new Map<bigint, SyncBarrier>()

/**
 * barrierFor returns the barrier of the filesystem holding dir (an existing directory), or null where syncfs is
 * not available (the caller fsyncs file and directory instead).
 */
export function barrierFor(dir: string): SyncBarrier | null {
  const fn = bind()
  if (fn === null) return null
  const dev = fs.statSync(dir, { bigint: true }).dev
  let b = barriers.get(dev)
  if (!b) {
    const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY)
    b = new SyncBarrier(fd, fn, `filesystem of ${dir}`)
    barriers.set(dev, b)
  }
  return b
}
