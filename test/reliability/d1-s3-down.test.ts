/**
 * D1 S3 down: the proxy closes its listener (ECONNREFUSED; open connections reset) for 10 s while the application
 * writes. Must hold: the application is unaffected (no errors, commit latency far below its busy timeout), no new
 * generation, the service catches up on its own once S3 is back, I1–I8. Figures: catch-up time (outage end → the
 * last commit made during the outage durable), lag max, requests refused.
 *
 * The matrix row says 30 s; the PR tier uses 10 s (the nightly runner's blackhole D2 covers the long outage).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isSnapshotPut, succeeded } from '../helpers/fault-proxy.js'
import { setupScenario, sigterm, stopWriter, verify, waitDurableSeq, waitReplicating } from './harness.js'

const OUTAGE_MS = 10_000

test('D1 S3 refused for 10 s during load: app unaffected, no new generation, catch-up, I1–I8', async (t) => {
  const sc = await setupScenario(t, 'd1')
  const w = await sc.writer({ opsPerSec: 100, startPaused: true })
  const cli = sc.cli()
  await waitReplicating(cli)
  await sc.proxy.waitFor((r) => isSnapshotPut(r) && succeeded(r))
  w.resume()
  await waitDurableSeq(sc, w, 100)

  const latBefore = w.latency().n
  const seqAtOutage = w.acked()
  const outageStart = Date.now()
  const rule = sc.proxy.addRule({ label: 's3-down', forMs: OUTAGE_MS, action: { type: 'refuse', mode: 'listener' } })
  // The outage is the scenario: wait it out while the application keeps writing.
  await new Promise((r) => setTimeout(r, OUTAGE_MS))
  rule.remove()
  const outageEnd = Date.now()
  const seqAtEnd = w.acked()
  assert.ok(seqAtEnd > seqAtOutage + 200, `the application kept committing during the outage (${seqAtOutage} → ${seqAtEnd})`)

  // Catch-up barrier: the last commit made during the outage becomes durable.
  const durableAt = await waitDurableSeq(sc, w, seqAtEnd, 60_000)
  const catchUpMs = durableAt - outageEnd
  const acked = await w.pause()
  const stop = await sigterm(cli)
  assert.equal(stop.code, 0, `exit code after SIGTERM\n${cli.output().slice(-3000)}`)
  await stopWriter(w)

  const lat = w.latency()
  const refused = sc.proxy.requests().filter((r) => r.startedAt >= outageStart && r.startedAt < outageEnd).length
  Object.assign(sc.figures, { outageMs: outageEnd - outageStart, catchUpMs, seqAtOutage, seqAtEnd, shutdownMs: stop.ms, requestsDuringOutage: refused, appCommitsDuringOutage: lat.n - latBefore })
  assert.ok(lat.max < 1000, `application commit latency max ${lat.max.toFixed(1)} ms stays far below its 5 s busy timeout`)
  assert.equal((cli.output().match(/"msg":"new generation"/g) ?? []).length, 1, 'only the initial generation was started')
  await verify(t, sc, { ackedSeq: acked, writer: w, expectGenerations: 1 })
})
