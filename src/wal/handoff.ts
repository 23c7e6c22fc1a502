/**
 * Hand-off jobs (matrix B2) run in worker threads (handoff-worker.ts), because the moment they must catch lasts
 * microseconds: between the application's checkpoint letting go of READ(0) and its next transaction's commit,
 * which restarts the WAL only if no read-mark slot is held. A change notification on the event loop arrives
 * milliseconds late (session 4). A worker blocked in F_OFD_SETLKW wakes as the lock is released.
 *
 * Workers are created on demand, at most MAX_WORKERS, and terminated after IDLE_MS without a job, so an idle service
 * has no thread and no wake-up for this. A job beyond MAX_WORKERS waits for a free worker.
 * @module
 */
import { Worker } from 'node:worker_threads'
import type { WalHeader } from './format.js'
import type { PinState } from './pin.js'

/** HandOffJob is what a worker needs; the descriptors and the pin's locks are the replicator's. */
export interface HandOffJob {
  readonly dbPath: string
  readonly walPath: string
  readonly dbFd: number
  readonly shmFd: number
  readonly pin: PinState
  readonly header: Pick<WalHeader, 'bigEndian' | 'pageSize' | 'salt1' | 'salt2' | 'checkpointSeq'>
  /**
   * offset: where the copy starts in the current incarnation: the shipped position, the end of what is already held
   * of it, or 0 (its WAL header first) for an incarnation nothing of which is shipped or held.
   */
  readonly offset: number
  /** heldFd: a file (unlinked, the replicator's) that receives WAL bytes [offset, end) at [fileBase, fileBase + end - offset). */
  readonly heldFd: number
  /** fileBase: where byte `offset` goes in heldFd (the bytes already held of this incarnation, or 0). */
  readonly fileBase: number
  /** windowMs: how long the raised mark may wait for a checkpoint that lands the hand-off. */
  readonly windowMs: number
  /** maxBytes bounds the bytes this job may copy (end - offset). */
  readonly maxBytes: number
}

/** HandOffResult: whether the slot was dropped with READ(0) held, the pin state, and the end of the frames held. */
export interface HandOffResult {
  readonly handed: boolean
  readonly reason: string
  readonly pin: PinState
  /** end: the held file has the WAL's bytes [job.offset, end), whole committed frames. */
  readonly end: number
  /**
   * endIChange: when handed, the index's commit counter read in the same header as the end (mxFrame) at which the slot
   * was dropped, so it is iChange at `end`; the replicator checks its commit count against it across WAL restarts.
   */
  readonly endIChange: number
  /** checkpoints: how many checkpoints the worker woke for. */
  readonly checkpoints: number
  /** lost: drops that an application transaction raced (it appended), after which the slot was raised again. */
  readonly lost: number
  readonly ms: number
  /** phases: reading ahead (before the raise), raise to the first checkpoint woken for, raise to the end. */
  readonly phases: { readonly readAheadMs: number; readonly firstCheckpointMs: number; readonly raisedMs: number }
}

/** WorkerRequest and WorkerReply are the messages between the pool and a worker. */
export interface WorkerRequest {
  readonly id: number
  readonly job: HandOffJob
}
export interface WorkerReply {
  readonly id: number
  readonly result: HandOffResult
}

const MAX_WORKERS = 2
const IDLE_MS = 5_000

interface Slot {
  readonly worker: Worker
  busy: ((r: HandOffResult | Error) => void) | null
  idleTimer: NodeJS.Timeout | null
}

const pool: Slot[] = []
const queue: { job: HandOffJob; done: (r: HandOffResult | Error) => void }[] = []
let nextId = 1

function spawnWorker(): Worker {
  const here = import.meta.url
  if (here.endsWith('.ts')) {
    // Running from TypeScript sources (tests under tsx): the worker's module loader does not inherit tsx's hooks
    // on Node 20, so the worker registers them before importing its entry.
    const entry = new URL('./handoff-worker.ts', here).href
    const api = import.meta.resolve('tsx/esm/api')
    return new Worker(`import(${JSON.stringify(api)}).then((m) => m.register()).then(() => import(${JSON.stringify(entry)}))`, { eval: true })
  }
  return new Worker(new URL('./handoff-worker.js', here))
}

function addWorker(): Slot {
  const worker = spawnWorker()
  const slot: Slot = { worker, busy: null, idleTimer: null }
  worker.on('message', (m: WorkerReply) => {
    const done = slot.busy
    slot.busy = null
    done?.(m.result)
    next(slot)
  })
  const fail = (err: Error): void => {
    const i = pool.indexOf(slot)
    if (i >= 0) pool.splice(i, 1)
    if (slot.idleTimer) clearTimeout(slot.idleTimer)
    const done = slot.busy
    slot.busy = null
    done?.(err)
    const q = queue.shift()
    if (q) run(q.job, q.done)
  }
  worker.on('error', fail)
  worker.on('exit', (code) => fail(new Error(`hand-off worker exited (${code})`)))
  pool.push(slot)
  return slot
}

function next(slot: Slot): void {
  const q = queue.shift()
  if (q) return dispatch(slot, q.job, q.done)
  slot.worker.unref()
  slot.idleTimer = setTimeout(() => {
    const i = pool.indexOf(slot)
    if (i >= 0 && slot.busy === null) {
      pool.splice(i, 1)
      void slot.worker.terminate()
    }
  }, IDLE_MS)
  slot.idleTimer.unref()
}

function dispatch(slot: Slot, job: HandOffJob, done: (r: HandOffResult | Error) => void): void {
  if (slot.idleTimer) clearTimeout(slot.idleTimer)
  slot.idleTimer = null
  slot.busy = done
  slot.worker.ref()
  const req: WorkerRequest = { id: nextId++, job }
  slot.worker.postMessage(req)
}

function run(job: HandOffJob, done: (r: HandOffResult | Error) => void): void {
  const free = pool.find((s) => s.busy === null)
  if (free) return dispatch(free, job, done)
  if (pool.length < MAX_WORKERS) return dispatch(addWorker(), job, done)
  queue.push({ job, done })
}

/**
 * handOff runs a job on a worker. It rejects only if the worker died, in which case the pin's state is unknown:
 * the caller must let go of every read lock it may hold (WalPin.forget) and prove continuity as after any release.
 */
export function handOff(job: HandOffJob): Promise<HandOffResult> {
  return new Promise((resolve, reject) => run(job, (r) => (r instanceof Error ? reject(r) : resolve(r))))
}

/** workersRunning is the number of hand-off threads alive (for tests and metrics). */
export function workersRunning(): number {
  return pool.length
}
