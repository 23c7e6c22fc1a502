/**
 * D2 Blackhole 30 s (nightly): the proxy accepts every request and never answers for 30 s while the application
 * writes. Must hold: per-request timeouts fire (the sync loop is not hung forever), the service recovers on its
 * own, no new generation, I1–I8. Figures: catch-up time after the blackhole ends (bounded by the S3 client's 60 s
 * socket timeout, DEFAULT_S3_REQUEST_TIMEOUT_MS, plus backoff), requests held.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isSnapshotPut, succeeded } from '../../helpers/fault-proxy.js'
import { setupScenario, sigterm, stopWriter, verify, waitDurableSeq, waitReplicating } from '../harness.js'

const BLACKHOLE_MS = 30_000
const REQUEST_TIMEOUT_MS = 60_000 // src/s3/replica-client.ts DEFAULT_S3_REQUEST_TIMEOUT_MS

test('D2 S3 blackholed for 30 s during load: recovers after per-request timeouts, no new generation, I1–I8', { timeout: 300_000 }, async (t) => {
  const sc = await setupScenario(t, 'd2')
  const w = await sc.writer({ opsPerSec: 50, startPaused: true })
  const cli = sc.cli()
  await waitReplicating(cli)
  await sc.proxy.waitFor((r) => isSnapshotPut(r) && succeeded(r))
  w.resume()
  await waitDurableSeq(sc, w, 100)
  const rule = sc.proxy.addRule({ label: 'blackhole', forMs: BLACKHOLE_MS, action: { type: 'blackhole' } })
  await new Promise((r) => setTimeout(r, BLACKHOLE_MS))
  rule.remove()
  const end = Date.now()
  const seqAtEnd = w.acked()
  const durableAt = await waitDurableSeq(sc, w, seqAtEnd, REQUEST_TIMEOUT_MS + 60_000)
  const acked = await w.pause()
  const stop = await sigterm(cli)
  assert.equal(stop.code, 0, `exit code after SIGTERM\n${cli.output().slice(-3000)}`)
  await stopWriter(w)
  Object.assign(sc.figures, { blackholeMs: BLACKHOLE_MS, catchUpMs: durableAt - end, requestsHeld: rule.hits, shutdownMs: stop.ms })
  assert.ok(durableAt - end < REQUEST_TIMEOUT_MS + 30_000, `caught up ${durableAt - end} ms after the blackhole ended`)
  await verify(t, sc, { ackedSeq: acked, writer: w, expectGenerations: 1 })
})
