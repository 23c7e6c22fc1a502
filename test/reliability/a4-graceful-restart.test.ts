/**
 * A4 Graceful restart, same generation: SIGTERM mid-load, the application keeps writing while the service is down,
 * restart. Must hold: I1–I8 and no new generation.
 *
 * The application runs with `wal_autocheckpoint=0` (what Litestream's docs recommend to applications, K9), so
 * nobody checkpoints while the service is down and continuity is provable. The second test is the boundary:
 * with SQLite's default autocheckpoint the application checkpoints and restarts the WAL during the downtime, so
 * the frames between the shipped position and that checkpoint are gone from the WAL; a new generation is then
 * required (matrix B3/K7) and everything acknowledged must still restore.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { test } from 'node:test'
import { isSnapshotPut, succeeded } from '../helpers/fault-proxy.js'
import { setupScenario, sigterm, stopWriter, verify, waitDurableSeq, waitReplicating } from './harness.js'

function walHeader(db: string): Buffer {
  const fd = fs.openSync(`${db}-wal`, 'r')
  try {
    const b = Buffer.alloc(32)
    fs.readSync(fd, b, 0, 32, 0)
    return b
  } finally {
    fs.closeSync(fd)
  }
}

test('A4 SIGTERM mid-load, app keeps writing, restart: same generation, nothing acked lost', async (t) => {
  const sc = await setupScenario(t, 'a4')
  const w = await sc.writer({ opsPerSec: 150, walAutocheckpoint: 0, startPaused: true })
  const p1 = sc.cli()
  await waitReplicating(p1)
  await sc.proxy.waitFor((r) => isSnapshotPut(r) && succeeded(r))
  w.resume()
  await waitDurableSeq(sc, w, 150)

  // SIGTERM while the writer keeps going: everything committed before the signal must be shipped.
  const ackedAtSignal = w.acked()
  const stop1 = await sigterm(p1)
  assert.equal(stop1.code, 0, `first SIGTERM exit code\n${p1.output().slice(-3000)}`)
  const headerAtStop = walHeader(sc.dbPath)

  // The application keeps writing while the service is down (~2 s at 150 ops/s).
  await w.waitForSeq(w.acked() + 300)
  assert.ok(walHeader(sc.dbPath).equals(headerAtStop), 'precondition: no checkpoint restarted the WAL while the service was down')

  const p2 = sc.cli()
  await p2.waitFor(/"msg":"resuming generation"/)
  const seqAtRestart = w.acked()
  await waitDurableSeq(sc, w, seqAtRestart + 100)
  const acked = await w.pause()
  const stop2 = await sigterm(p2)
  assert.equal(stop2.code, 0, `second SIGTERM exit code\n${p2.output().slice(-3000)}`)
  await stopWriter(w)
  assert.doesNotMatch(p2.output(), /"msg":"new generation"/, 'the restart resumed; no new generation')
  Object.assign(sc.figures, { shutdownMs: [stop1.ms, stop2.ms], ackedAtSignal, seqAtRestart })
  await verify(t, sc, { ackedSeq: acked, writer: w, expectGenerations: 1 })
})

test('A4/B3 boundary: the app checkpoints and restarts the WAL while the service is down: exactly one new generation, nothing acked lost', async (t) => {
  const sc = await setupScenario(t, 'a4b')
  const w = await sc.writer({ opsPerSec: 150, startPaused: true }) // SQLite's default wal_autocheckpoint (1000 pages)
  const p1 = sc.cli()
  await waitReplicating(p1)
  await sc.proxy.waitFor((r) => isSnapshotPut(r) && succeeded(r))
  w.resume()
  await waitDurableSeq(sc, w, 150)
  const stop1 = await sigterm(p1)
  assert.equal(stop1.code, 0, `first SIGTERM exit code\n${p1.output().slice(-3000)}`)
  const headerAtStop = walHeader(sc.dbPath)

  // Write until SQLite's autocheckpoint restarted the WAL (observable: the WAL header's salts change).
  const restarted = await w.pause().then(async () => {
    w.resume()
    const deadline = Date.now() + 30_000
    while (Date.now() < deadline) {
      await w.waitForSeq(w.acked() + 50)
      if (!walHeader(sc.dbPath).equals(headerAtStop)) return true
    }
    return false
  })
  assert.ok(restarted, 'precondition: the application checkpoint restarted the WAL while the service was down')

  const p2 = sc.cli()
  await p2.waitFor(/"msg":"new generation"/)
  await waitDurableSeq(sc, w, w.acked() + 100)
  const acked = await w.pause()
  const stop2 = await sigterm(p2)
  assert.equal(stop2.code, 0, `second SIGTERM exit code\n${p2.output().slice(-3000)}`)
  await stopWriter(w)
  Object.assign(sc.figures, { shutdownMs: [stop1.ms, stop2.ms] })
  await verify(t, sc, { ackedSeq: acked, writer: w, expectGenerations: 2 })
})
