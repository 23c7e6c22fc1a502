/**
 * D3 500 InternalError (K32), nightly: 20 % of requests fail with 500 InternalError for 3 minutes, then 100 % for
 * 60 s, while the application writes. Must hold: retries, the position is never advanced on a failed upload and is
 * recomputed from the replica, no new generation, catch-up, I1–I8. Figures: errors injected, catch-up, lag.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isSnapshotPut, succeeded } from '../../helpers/fault-proxy.js'
import { setupScenario, sigterm, stopWriter, verify, waitDurableSeq, waitReplicating } from '../harness.js'

const PARTIAL_MS = Number(process.env.D3_PARTIAL_MS ?? 180_000)
const FULL_MS = 60_000

test('D3 500 InternalError (20 % for 3 min, then 100 % for 60 s): retries, no new generation, catch-up, I1–I8', { timeout: 600_000 }, async (t) => {
  const sc = await setupScenario(t, 'd3')
  const w = await sc.writer({ opsPerSec: 50, startPaused: true })
  const cli = sc.cli()
  await waitReplicating(cli)
  await sc.proxy.waitFor((r) => isSnapshotPut(r) && succeeded(r))
  w.resume()
  await waitDurableSeq(sc, w, 100)
  const t0 = Date.now()
  const partial = sc.proxy.addRule({ label: '500-20pct', percent: 20, from: t0, until: t0 + PARTIAL_MS, action: { type: 'status', status: 500, code: 'InternalError' } })
  const full = sc.proxy.addRule({ label: '500-all', from: t0 + PARTIAL_MS, until: t0 + PARTIAL_MS + FULL_MS, action: { type: 'status', status: 500, code: 'InternalError' } })
  const seqBeforeFull = await (async () => {
    await new Promise((r) => setTimeout(r, PARTIAL_MS))
    return w.acked()
  })()
  // During the partial phase the service keeps up despite the errors.
  const durableBeforeFull = await waitDurableSeq(sc, w, seqBeforeFull - 100, 30_000).then(() => true, () => false)
  await new Promise((r) => setTimeout(r, t0 + PARTIAL_MS + FULL_MS - Date.now()))
  partial.remove()
  full.remove()
  const end = Date.now()
  const seqAtEnd = w.acked()
  const durableAt = await waitDurableSeq(sc, w, seqAtEnd, 120_000)
  const acked = await w.pause()
  const stop = await sigterm(cli)
  assert.equal(stop.code, 0, `exit code after SIGTERM\n${cli.output().slice(-3000)}`)
  await stopWriter(w)
  Object.assign(sc.figures, { errors500: partial.hits + full.hits, partialHits: partial.hits, fullHits: full.hits, catchUpMs: durableAt - end, keptUpDuringPartial: durableBeforeFull, shutdownMs: stop.ms })
  assert.ok(durableBeforeFull, 'replication kept up (within 100 ops) while 20 % of requests failed')
  await verify(t, sc, { ackedSeq: acked, writer: w, expectGenerations: 1 })
})
