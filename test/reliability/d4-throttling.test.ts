/**
 * D4 Throttling (K25): every request answered 503 SlowDown + Retry-After: 1, then 429, then 408 RequestTimeout,
 * 4 s each, while the application writes. Must hold: backoff keeps the request rate bounded during each throttle
 * window, no new generation, catch-up afterwards, I1–I8. Figures: requests/s per window (average and busiest
 * second), catch-up time.
 *
 * Bound: one database may send at most RATE_MAX_PER_S requests in any one-second window and RATE_AVG_MAX_PER_S on
 * average over a throttle window. Without backoff, a 100 ms sync interval alone would issue ~10 PUT/s plus the
 * SDK's immediate retries.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isSnapshotPut, succeeded, type FaultAction } from '../helpers/fault-proxy.js'
import { setupScenario, sigterm, stopWriter, verify, waitDurableSeq, waitReplicating } from './harness.js'

const WINDOW_MS = 4000
const RATE_MAX_PER_S = 10
const RATE_AVG_MAX_PER_S = 5

const PHASES: readonly { readonly name: string; readonly action: FaultAction }[] = [
  { name: '503 SlowDown', action: { type: 'status', status: 503, code: 'SlowDown', retryAfterS: 1 } },
  { name: '429 TooManyRequests', action: { type: 'status', status: 429, code: 'TooManyRequests' } },
  { name: '408 RequestTimeout', action: { type: 'status', status: 408, code: 'RequestTimeout' } },
]

test('D4 503 SlowDown / 429 / 408 throttling: bounded request rate, no new generation, catch-up, I1–I8', async (t) => {
  const sc = await setupScenario(t, 'd4')
  const w = await sc.writer({ opsPerSec: 100, startPaused: true })
  const cli = sc.cli()
  await waitReplicating(cli)
  await sc.proxy.waitFor((r) => isSnapshotPut(r) && succeeded(r))
  w.resume()
  await waitDurableSeq(sc, w, 100)

  const t0 = Date.now()
  const windows = PHASES.map((p, i) => ({ ...p, from: t0 + i * WINDOW_MS, until: t0 + (i + 1) * WINDOW_MS }))
  const rules = windows.map((p) => sc.proxy.addRule({ label: p.name, from: p.from, until: p.until, action: p.action }))
  const end = windows.at(-1)!.until
  // The throttle windows are the scenario: wait them out while the application keeps writing.
  await new Promise((r) => setTimeout(r, end - Date.now()))
  for (const r of rules) r.remove()
  const seqAtEnd = w.acked()
  const durableAt = await waitDurableSeq(sc, w, seqAtEnd, 60_000)
  const acked = await w.pause()
  const stop = await sigterm(cli)
  assert.equal(stop.code, 0, `exit code after SIGTERM\n${cli.output().slice(-3000)}`)
  await stopWriter(w)

  const rates = windows.map((p) => {
    const n = sc.proxy.requests().filter((r) => r.startedAt >= p.from && r.startedAt < p.until).length
    return { phase: p.name, requests: n, avgPerS: n / (WINDOW_MS / 1000), maxPerS: sc.proxy.maxRate({ from: p.from, to: p.until, windowMs: 1000 }), throttled: rules[windows.indexOf(p)]!.hits }
  })
  Object.assign(sc.figures, { throttleRates: rates, catchUpMs: durableAt - end, shutdownMs: stop.ms })
  for (const r of rates) {
    assert.ok(r.throttled > 0, `${r.phase}: the service met the throttle`)
    assert.ok(r.maxPerS <= RATE_MAX_PER_S, `${r.phase}: ${r.maxPerS} requests in the busiest second (bound ${RATE_MAX_PER_S})`)
    assert.ok(r.avgPerS <= RATE_AVG_MAX_PER_S, `${r.phase}: ${r.avgPerS} requests/s on average (bound ${RATE_AVG_MAX_PER_S})`)
  }
  await verify(t, sc, { ackedSeq: acked, writer: w, expectGenerations: 1 })
})
