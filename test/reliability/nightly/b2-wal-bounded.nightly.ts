/**
 * RED ON MAIN, GREEN ON BRANCH b2-queue (session 6, below; tracking: issue 7 closing notes, docs/reliability.md); the
 * bound is unchanged. Why it is red on main: a writer restarts the WAL only when it is fully backfilled and it can
 * lock READ(1..4) exclusively. The service's pin always holds one
 * of those slots (that is what keeps unshipped frames from being overwritten), and the application's autocheckpoint
 * never backfills the commit it has just made past our mark, so under continuous writes the WAL only grows (941 MiB
 * in 60 s at 3,675 tx/s; no data lost). Litestream v0.3.13 behaves the same (matrix K12). Rejected fix: holding the
 * WAL write lock for a checkpoint makes an application's deferred read-then-write transaction fail with SQLITE_BUSY
 * at once (no busy handler on an upgrade), which breaks I7. Tried and reverted (session 3, commits e8f2d0d..a1396d0):
 * pin with a read mark above mxFrame (checkpointers backfill everything, a restart is still blocked), then once
 * nBackfill == mxFrame take READ(0), read the unshipped frames into memory and drop the slot, so the application's
 * next transaction restarts the WAL. It made this scenario pass (max WAL 15.4 MB, 158 restarts, 1 generation, every
 * gate 0) but cost bench:single two thirds of its throughput (152 -> 44-65 MB/s): while we hold a slot over a WAL
 * past 1000 pages, the application's autocheckpoint backfills and fsyncs on every commit until the hand-off, which
 * came only at the end of a pass. Next: hand off from the 'db' event right after the application's checkpoint (a
 * larger held-tail bound), and keep the high mark only for that moment.
 * Session 4 built that (branch b2-handoff, commit message has the figures): a slot raised above every frame for at
 * most 250 ms, then on a change notification at which the WAL is fully backfilled and nobody else reads through a
 * slot, READ(0) + unshipped frames read into memory + slot dropped, so the application's next transaction restarts
 * the WAL exactly once. This scenario went from 941 MiB to 80-95 MiB (1 generation, ~120-200 restarts, gates 0):
 * still red whenever the replica falls more than the 32 MiB the hand-off may hold behind. And it cost bench:single
 * 18-50 % of the application's tx/s (128 MiB to 1,000-frame thresholds): the notification that completes a
 * hand-off arrives after the application's next transaction has already passed its restart point, so it keeps
 * committing with an autocheckpoint that backfills and fsyncs until a later try lands in the gap. Not merged. Next:
 * complete the hand-off from a worker blocked on READ(0) (F_OFD_SETLKW on the same open file description), which
 * wakes in the microseconds between the application's checkpoint and its next write.
 * Session 5 built that (branch b2-worker, not merged; its decision 0003 addendum has the details): a worker thread
 * raises the mark, blocks on inotify and then F_OFD_SETLKW READ(0), and drops the slot right after the application's
 * checkpoint; the unshipped frames go to an unlinked file (copy_file_range). It lands: hand-offs take 10-70 ms, usually
 * at the first checkpoint, 1 generation, gates 0, WAL ~17 MiB while the replica keeps up. Still red: max WAL 137 and
 * 296 MiB in two 60 s runs. Here the application writes ~55 MB/s of WAL and the replica ships 60-80 MB/s, so it runs
 * an incarnation (40-60 MB) behind; a hand-off waits until the frames the previous one holds are shipped while the new
 * incarnation grows, and in the first 4 s the backlog passed the 64 MiB a hand-off may hold. Cost, bench:single in the
 * same sitting: application 6,439 tx/s against main's 7,009-7,314 (a run under outside load: 3,825), peak RSS 232-265
 * MiB against 140. Next: let a hand-off proceed while earlier held frames are unshipped (a queue of held incarnations,
 * each shipped as its own index, iChange counted across them).
 * Session 6 built that (branch b2-queue, on main 24a84f0; decision 0003, addendum of session 6): held incarnations in
 * a queue of unlinked files (1 GiB in all at most), each shipped as its own index in chunks of one segment, its
 * commits checked against iChange at its held end (the worker reads it with the end) before its first segment. GREEN
 * in 6 runs of 60 s: max WAL 27.8, 31.1, 34.4 MiB, then after the last change (a restart no longer reads 16 MiB of
 * the old incarnation blindly) 23.9, 45.2, 52.4 MiB; 117-142 incarnations; 1 generation each; 3,131-3,697 tx/s;
 * every gate 0; 107-136 hand-offs a run, all landed (p50 9-12 ms, max 34-212 ms). The queue was used when the
 * replica fell behind: up to 3 earlier incarnations held at a hand-off and 82.2 MiB held in one run (more than the 64
 * MiB session 5 could hold), up to 1 in two others, none in three. Margin: the last run peaked at 52.4 of 64 MiB;
 * most likely because a pass checks for a hand-off only between segment uploads (and waits for the worker), so a
 * slow upload lets the WAL grow meanwhile (not verified).
 * Two runs before a fix (#caughtUp was true while frames were held, when the index showed mxFrame 0 right after a
 * restart, so the iChange base jumped) were red: 90.9 and 100.5 MiB, 2 and 7 generations, gates 0. Cost,
 * bench:single, same sittings: application 7,053-7,382 tx/s against main's 7,465-7,944, peak RSS 130-160 MiB against
 * 144-145 (decision 0003 has every run). Next: let the pass hand off while a segment uploads (the worker holds the pin;
 * an upload needs it only for frames not yet read), and a test of MAX_HELD_BYTES.
 * Later in session 6, branch b2-queue-rebased (b2-queue with main 5d3364f merged in; the branch's pin kept, main's
 * readIndex added as a plain read): npm test 247/247, this scenario green twice (max WAL 22.7 and 24.2 MiB, 126 and 140
 * incarnations, 1 generation, 3,097 and 3,465 tx/s, gates 0), B1 green (15 TRUNCATEs won, 0 busy, max 59 ms);
 * bench:single ours-only in one sitting: 7,215 tx/s, 122.9 MB/s shipped, peak RSS 150.5 MiB, commit p99 1.53 ms, 10/10
 * TRUNCATEs (p50 50 ms), against main's 6,588 tx/s, 112.4 MB/s, 148.6 MiB, 0.87 ms, 10/10 (p50 78 ms). Not merged
 * for want of a review of its ~1,300 lines of lock choreography; that review and a fast-forward are the next step.
 *
 * B2 Application autocheckpoint at a high write rate (K9, K12), nightly: SQLite's default wal_autocheckpoint (1000
 * pages), the writer as fast as it can go for 60 s. Must hold: I1–I8 and the WAL stays bounded. Bound: 64 MiB, 16×
 * what the application's own autocheckpoint would keep (1000 pages of 4 KiB), far below the service's 1 GiB
 * TRUNCATE backstop. Figures: max WAL size, WAL restarts seen, generations, tx/s.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { test } from 'node:test'
import { isSnapshotPut, succeeded } from '../../helpers/fault-proxy.js'
import { setupScenario, sigterm, stopWriter, verify, waitDurableSeq, waitReplicating } from '../harness.js'

const RUN_MS = Number(process.env.B2_RUN_MS ?? 60_000)
const WAL_BOUND_BYTES = 64 << 20

test('B2 default autocheckpoint at full write rate for 60 s: WAL bounded, I1–I8', { timeout: 300_000 }, async (t) => {
  const sc = await setupScenario(t, 'b2', { recordBodies: true })
  const w = await sc.writer({ opsPerSec: 0, noteChars: 50, startPaused: true })
  const cli = sc.cli()
  await waitReplicating(cli)
  await sc.proxy.waitFor((r) => isSnapshotPut(r) && succeeded(r))
  const seq0 = w.acked()
  const t0 = Date.now()
  w.resume()
  let maxWal = 0
  const salts = new Set<string>()
  while (Date.now() - t0 < RUN_MS) {
    await new Promise((r) => setTimeout(r, 250))
    try {
      maxWal = Math.max(maxWal, fs.statSync(`${sc.dbPath}-wal`).size)
      const fd = fs.openSync(`${sc.dbPath}-wal`, 'r')
      const h = Buffer.alloc(32)
      fs.readSync(fd, h, 0, 32, 0)
      fs.closeSync(fd)
      salts.add(h.subarray(16, 24).toString('hex'))
    } catch {
      // WAL momentarily absent
    }
  }
  const seqEnd = await w.pause()
  await waitDurableSeq(sc, w, seqEnd, 120_000)
  const stop = await sigterm(cli)
  assert.equal(stop.code, 0, `exit code after SIGTERM\n${cli.output().slice(-3000)}`)
  await stopWriter(w)
  Object.assign(sc.figures, { maxWalBytes: maxWal, walIncarnationsSeen: salts.size, txPerSec: Math.round(((seqEnd - seq0) * 1000) / RUN_MS) })
  const inv = await verify(t, sc, { ackedSeq: seqEnd, writer: w }).then(() => undefined, (e: unknown) => e)
  assert.ok(maxWal <= WAL_BOUND_BYTES, `WAL grew to ${(maxWal / 2 ** 20).toFixed(1)} MiB (bound ${WAL_BOUND_BYTES / 2 ** 20} MiB); ${salts.size} WAL incarnation(s) seen`)
  if (inv) throw inv
})
