/**
 * The hand-off worker: a worker thread that hands a continuously written WAL to the application for a restart
 * (matrix B2), in the few microseconds between the application's checkpoint and its next write. Started by
 * handoff.ts; see there and decision 0003 (addendum) for why a thread and not the event loop.
 *
 * One job at a time, on the replicator's own descriptors (the locks belong to the open file description, so the
 * worker's fcntl calls act on the replicator's pin):
 * 1. watch the database file for IN_MODIFY (a checkpointer's backfill writes it), before anything else, so no
 *    checkpoint after step 2 goes unseen;
 * 2. raise the pin: a slot whose mark is above every frame, so the application's autocheckpoint backfills the
 *    whole WAL, while the slot still keeps the WAL from restarting;
 * 3. copy the frames past the shipped position into the held file (safe: the slot holds them), then block until the
 *    database file is written, read what was committed meanwhile, and block on READ(0) shared (F_OFD_SETLKW): the
 *    checkpointer holds it exclusively while it backfills, and lets go right after it set nBackfill and synced;
 * 4. woken with READ(0): if nBackfill == mxFrame (everything backfilled), the application committed since the
 *    raise, no other connection reads through a slot, and every frame up to mxFrame is in memory, drop the slot.
 *    Backfill is frozen while READ(0) is held, so the WAL can restart at most once, exactly at that end, which
 *    the application's next transaction does. Otherwise let READ(0) go and wait for the next checkpoint.
 * Until the window closes; then the raised slot is handed back as it is.
 * @module
 */
import fs from 'node:fs'
import { parentPort } from 'node:worker_threads'
import { frameSize, WAL_HEADER_SIZE } from './format.js'
import type { HandOffJob, HandOffResult, WorkerReply, WorkerRequest } from './handoff.js'
import { closeWatch, copyRange, drain, waitReadable, watchModify } from './ofd-lock.js'
import { WalPin } from './pin.js'
import { readShmHeader } from './shm.js'

/** SETTLE_MS bounds how long the worker watches for the transaction that may have raced the drop. */
const SETTLE_MS = 5
/** READ_AHEAD_DONE_BYTES: copying ahead stops once a round copied less than this. */
const READ_AHEAD_DONE_BYTES = 1 << 20

const hex8 = (n: number): string => (n >>> 0).toString(16).padStart(8, '0')

/** runJob performs one hand-off attempt; it never leaves READ(0) held without having dropped the slot. */
export function runJob(job: HandOffJob): HandOffResult {
  const t0 = performance.now()
  let deadline = t0 + job.windowMs
  const pin = WalPin.borrow(job.dbFd, job.shmFd, job.pin)
  const header = job.header
  const salts = hex8(header.salt1) + hex8(header.salt2)
  const fsz = frameSize(header.pageSize)
  let end = job.offset
  let endIChange = 0
  let checkpoints = 0
  let lost = 0
  let raisedAt = 0
  let firstWakeAt = 0
  let ino = -1
  let wal = -1
  const result = (handed: boolean, reason: string): HandOffResult => ({
    handed,
    reason,
    pin: pin.state(),
    end,
    endIChange,
    checkpoints,
    lost,
    ms: performance.now() - t0,
    phases: { readAheadMs: raisedAt > 0 ? raisedAt - t0 : -1, firstCheckpointMs: firstWakeAt > 0 ? firstWakeAt - raisedAt : -1, raisedMs: raisedAt > 0 ? performance.now() - raisedAt : -1 },
  })
  /**
   * readTo copies the committed frames up to mxFrame into the held file (job.heldFd, at their offset minus
   * job.offset plus job.fileBase), in the kernel; false if they are not there or past the bound. The replicator validates them (salts,
   * checksum chain) when it ships them, as it does frames it reads from the WAL.
   */
  const readTo = (mxFrame: number): boolean => {
    const target = WAL_HEADER_SIZE + mxFrame * fsz
    if (target <= end) return target === end
    if (target - job.offset > job.maxBytes) return false
    if (copyRange(wal, end, job.heldFd, job.fileBase + end - job.offset, target - end) !== target - end) return false
    end = target
    return true
  }
  try {
    return attempt()
  } catch (err) {
    // The pin's state is still exact (each lock call updates it or throws before changing anything).
    return result(false, `error: ${err instanceof Error ? err.message : String(err)}`)
  } finally {
    if (ino >= 0) closeWatch(ino)
    if (wal >= 0) fs.closeSync(wal)
  }

  function attempt(): HandOffResult {
    ino = watchModify(job.dbPath)
    wal = fs.openSync(job.walPath, 'r')
    // Read what the replica lacks while our slot still has its own mark (it keeps these frames in place just the
    // same): a backlog of tens of MiB takes tens of milliseconds to read, which must not come out of the window
    // during which every application commit backfills and syncs.
    for (let round = 0; round < 4; round++) {
      const before = end
      const h1 = readShmHeader(job.shmFd)
      if (!h1 || h1.salt1 !== header.salt1 || h1.salt2 !== header.salt2) return result(false, 'the wal restarted')
      if (!readTo(h1.mxFrame)) return result(false, 'frames not as the index says, or past the bound')
      if (end - before < READ_AHEAD_DONE_BYTES) break // what is left to copy after the raise is small
    }
    raisedAt = performance.now()
    deadline = raisedAt + job.windowMs
    if (!pin.raise()) return result(false, 'no read-mark slot free')
    const h0 = readShmHeader(job.shmFd)
    if (!h0 || h0.salt1 !== header.salt1 || h0.salt2 !== header.salt2) return result(false, 'the wal restarted')
    let iChange0 = h0.iChange
    for (;;) {
      const h = readShmHeader(job.shmFd)
      if (!h || h.salt1 !== header.salt1 || h.salt2 !== header.salt2) return result(false, 'the wal restarted')
      if (!readTo(h.mxFrame)) return result(false, 'frames not as the index says, or past the bound')
      const left = deadline - performance.now()
      if (left <= 0) return result(false, 'window closed')
      if (!waitReadable(ino, left)) continue
      drain(ino)
      // A checkpointer is writing the database file. It committed what it backfills before it began: read that
      // now, while it syncs, so that the moment after it lets go of READ(0) is a header read and one fcntl.
      const mid = readShmHeader(job.shmFd)
      if (mid && mid.salt1 === header.salt1 && mid.salt2 === header.salt2 && !readTo(mid.mxFrame)) return result(false, 'frames not as the index says, or past the bound')
      const z = pin.holdZeroWait()
      if (!z) continue
      checkpoints++
      if (firstWakeAt === 0) firstWakeAt = performance.now()
      let handed = false
      try {
        if (z.salts !== salts) return result(false, 'the wal restarted')
        if (z.nBackfill === z.mxFrame && z.iChange !== iChange0 && !pin.othersInWal() && readTo(z.mxFrame)) {
          pin.dropSlot()
          handed = true
          endIChange = z.iChange
        }
      } finally {
        if (!handed) pin.dropZero()
      }
      if (!handed) continue
      // The application's transaction may have passed its restart point (and been refused by our slot) between our
      // lock and the drop: then it appends, and READ(0) keeps that WAL from ever restarting. It holds the write
      // lock until it has published its commit, so once the write lock is seen free, an index end still at the
      // hand-off's means no such transaction: the next one restarts the WAL.
      const spinUntil = performance.now() + SETTLE_MS
      for (;;) {
        const free = !pin.writerActive()
        const s2 = readShmHeader(job.shmFd)
        if (s2 && (s2.salt1 !== header.salt1 || s2.salt2 !== header.salt2)) return result(true, 'handed; restarted')
        if (s2 && s2.mxFrame > z.mxFrame) break // lost the race: raise again below
        if (free && s2 && s2.mxFrame === z.mxFrame) return result(true, 'handed')
        if (performance.now() > spinUntil) return result(true, 'handed; not settled')
      }
      // Take a raised slot again before letting READ(0) go (raise does both, in that order), and wait for the next
      // commit and its checkpoint.
      if (!pin.raise()) return result(false, 'no read-mark slot free to raise again')
      lost++
      iChange0 = readShmHeader(job.shmFd)?.iChange ?? iChange0
    }
  }
}

parentPort?.on('message', (m: WorkerRequest) => {
  const reply: WorkerReply = { id: m.id, result: runJob(m.job) }
  parentPort!.postMessage(reply)
})
