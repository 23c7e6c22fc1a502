/**
 * C3 SIGTERM flush past the shutdown timeout (nightly): every PUT is throttled (503 SlowDown / 429) for 45 s, longer
 * than the 30 s shutdown timeout. The CLI must exit 1 ("final sync failed") no later than the timeout (plus a 5 s
 * margin), having lost nothing durable: a restart without the fault ships everything committed before the signal.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isSnapshotPut, succeeded } from '../../helpers/fault-proxy.js'
import { setupScenario, sigterm, stopWriter, verify, waitDurableSeq, waitReplicating } from '../harness.js'

const SHUTDOWN_TIMEOUT_MS = 30_000
const THROTTLE_MS = 45_000

test('C3 SIGTERM while PUTs are throttled past the shutdown timeout: exit 1 within the timeout; a restart ships everything', { timeout: 180_000 }, async (t) => {
  const sc = await setupScenario(t, 'c3x')
  const w = await sc.writer({ opsPerSec: 200, startPaused: true })
  const p1 = sc.cli()
  await waitReplicating(p1)
  await sc.proxy.waitFor((r) => isSnapshotPut(r) && succeeded(r))
  w.resume()
  await waitDurableSeq(sc, w, 200)
  const slow = sc.proxy.addRule({ label: 'slowdown', method: 'PUT', percent: 50, forMs: THROTTLE_MS, action: { type: 'status', status: 503, code: 'SlowDown', retryAfterS: 1 } })
  const many = sc.proxy.addRule({ label: 'too-many', method: 'PUT', forMs: THROTTLE_MS, action: { type: 'status', status: 429, code: 'TooManyRequests' } })
  const ackedAtSignal = w.acked()
  const stop1 = await sigterm(p1)
  Object.assign(sc.figures, { shutdownMs: stop1.ms, exitCode: stop1.code })
  assert.equal(stop1.code, 1, `exit code when the final sync cannot finish within the shutdown timeout\n${p1.output().slice(-3000)}`)
  assert.match(p1.output(), /final sync failed/)
  assert.ok(stop1.ms <= SHUTDOWN_TIMEOUT_MS + 5000, `exited after ${stop1.ms} ms (timeout ${SHUTDOWN_TIMEOUT_MS} ms)`)
  slow.remove()
  many.remove()
  const p2 = sc.cli()
  await waitReplicating(p2)
  await waitDurableSeq(sc, w, ackedAtSignal, 60_000)
  const acked = await w.pause()
  const stop2 = await sigterm(p2)
  assert.equal(stop2.code, 0, `exit code of the recovery run\n${p2.output().slice(-3000)}`)
  await stopWriter(w)
  await verify(t, sc, { ackedSeq: acked, writer: w })
})

test('C3 SIGTERM while an upload hangs (blackholed S3): the CLI still exits within the shutdown timeout', { timeout: 120_000 }, async (t) => {
  const sc = await setupScenario(t, 'c3h')
  const w = await sc.writer({ opsPerSec: 100, startPaused: true })
  const cli = sc.cli()
  await waitReplicating(cli)
  await sc.proxy.waitFor((r) => isSnapshotPut(r) && succeeded(r))
  w.resume()
  await waitDurableSeq(sc, w, 100)
  sc.proxy.addRule({ label: 'hang', action: { type: 'blackhole' } })
  await sc.proxy.waitFor((r) => r.action === 'blackhole', { started: true })
  const t0 = Date.now()
  cli.proc.kill('SIGTERM')
  const code = await Promise.race([cli.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), SHUTDOWN_TIMEOUT_MS + 5000))])
  const ms = Date.now() - t0
  await stopWriter(w)
  Object.assign(sc.figures, { shutdownMs: ms, exitCode: code })
  assert.notEqual(code, 'hung', `no exit ${ms} ms after SIGTERM while an upload hangs (shutdown timeout ${SHUTDOWN_TIMEOUT_MS} ms)\n${cli.output().slice(-2000)}`)
  assert.equal(code, 1, 'the final sync could not ship: exit 1')
})
