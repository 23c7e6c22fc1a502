/**
 * C3 SIGTERM flush (P4): SIGTERM during load must ship every commit made before the signal and exit 0 within the
 * shutdown timeout (30 s, Replicator.close's default; the CLI has no flag for it). Variants throttle the PUTs of
 * the final sync with 503 SlowDown (Retry-After) and 429:
 *
 * - briefly (4 throttled PUTs: within the S3 client's own retry budget of 5 attempts);
 * - for 15 s, longer than that retry budget but well inside the 30 s shutdown timeout: the service must keep
 *   trying until the store recovers and still exit 0 having shipped everything.
 *
 * Throttling past the shutdown timeout (the CLI must then exit 1) runs in the nightly tier (run-nightly.ts), as it
 * needs more than 30 s.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isSnapshotPut, isWalPut, succeeded } from '../helpers/fault-proxy.js'
import { setupScenario, sigterm, stopWriter, verify, waitDurableSeq, waitReplicating } from './harness.js'

/** SHUTDOWN_TIMEOUT_MS is Replicator.close()'s default timeout, which the replicate CLI uses. */
const SHUTDOWN_TIMEOUT_MS = 30_000

test('C3 SIGTERM during load: every commit before the signal restores; exit 0', async (t) => {
  const sc = await setupScenario(t, 'c3')
  const w = await sc.writer({ opsPerSec: 300, startPaused: true })
  const cli = sc.cli()
  await waitReplicating(cli)
  await sc.proxy.waitFor((r) => isSnapshotPut(r) && succeeded(r))
  w.resume()
  await waitDurableSeq(sc, w, 300)
  const acked = w.acked()
  const stop = await sigterm(cli) // the writer keeps committing during the shutdown
  assert.equal(stop.code, 0, `exit code after SIGTERM\n${cli.output().slice(-3000)}`)
  assert.ok(stop.ms < SHUTDOWN_TIMEOUT_MS, `shutdown took ${stop.ms} ms`)
  await stopWriter(w)
  sc.figures.shutdownMs = stop.ms
  await verify(t, sc, { ackedSeq: acked, writer: w, expectGenerations: 1 })
})

test('C3 SIGTERM while PUTs get 503 SlowDown / 429 (4 throttled, then OK): exit 0, everything before the signal restores', async (t) => {
  const sc = await setupScenario(t, 'c3t')
  const w = await sc.writer({ opsPerSec: 300, startPaused: true })
  const cli = sc.cli()
  await waitReplicating(cli)
  await sc.proxy.waitFor((r) => isSnapshotPut(r) && succeeded(r))
  w.resume()
  await waitDurableSeq(sc, w, 300)
  // Everything the final sync uploads is throttled first.
  sc.proxy.addRule({ label: 'slowdown', method: 'PUT', count: 2, action: { type: 'status', status: 503, code: 'SlowDown', retryAfterS: 1 } })
  sc.proxy.addRule({ label: 'too-many', method: 'PUT', count: 2, action: { type: 'status', status: 429, code: 'TooManyRequests' } })
  const acked = w.acked() // the writer keeps committing through the shutdown
  const since = sc.proxy.requests().length
  const stop = await sigterm(cli)
  await stopWriter(w)
  const throttled = sc.proxy.requests().slice(since).filter((r) => r.action === 'status').length
  Object.assign(sc.figures, { shutdownMs: stop.ms, throttledPuts: throttled })
  assert.equal(stop.code, 0, `exit code after SIGTERM with throttled PUTs\n${cli.output().slice(-3000)}`)
  assert.equal(throttled, 4, 'the final sync met all 4 throttled PUTs')
  assert.ok(stop.ms < SHUTDOWN_TIMEOUT_MS, `shutdown took ${stop.ms} ms`)
  await verify(t, sc, { ackedSeq: acked, writer: w, expectGenerations: 1 })
})

test('C3 SIGTERM while PUTs are throttled for 15 s (past the S3 client retry budget, inside the 30 s shutdown timeout): keeps trying, exit 0', async (t) => {
  const sc = await setupScenario(t, 'c3l')
  const w = await sc.writer({ opsPerSec: 300, startPaused: true })
  const cli = sc.cli()
  await waitReplicating(cli)
  await sc.proxy.waitFor((r) => isSnapshotPut(r) && succeeded(r))
  w.resume()
  await waitDurableSeq(sc, w, 300)
  const throttleMs = 15_000
  sc.proxy.addRule({ label: 'slowdown', method: 'PUT', percent: 50, forMs: throttleMs, action: { type: 'status', status: 503, code: 'SlowDown', retryAfterS: 1 } })
  sc.proxy.addRule({ label: 'too-many', method: 'PUT', forMs: throttleMs, action: { type: 'status', status: 429, code: 'TooManyRequests' } })
  const acked = w.acked()
  const since = sc.proxy.requests().length
  const stop = await sigterm(cli)
  await stopWriter(w)
  const after = sc.proxy.requests().slice(since)
  Object.assign(sc.figures, {
    shutdownMs: stop.ms,
    throttledPuts: after.filter((r) => r.action === 'status').length,
    putsAfterThrottle: after.filter((r) => isWalPut(r) && succeeded(r)).length,
  })
  assert.equal(stop.code, 0, `exit code after SIGTERM with PUTs throttled for ${throttleMs} ms (shutdown timeout ${SHUTDOWN_TIMEOUT_MS} ms), after ${stop.ms} ms\n${cli.output().slice(-3000)}`)
  assert.ok(stop.ms < SHUTDOWN_TIMEOUT_MS + 2000, `shutdown took ${stop.ms} ms`)
  await verify(t, sc, { ackedSeq: acked, writer: w, expectGenerations: 1 })
})
