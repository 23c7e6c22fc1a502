/**
 * A1 Fresh DB: a new `<guid>.db`, 1 000 ops from a writer child while `replicate` runs through the fault proxy (no
 * faults), then SIGTERM as the barrier. Must hold: I1–I8, one generation. Figure: replication lag p50/p99 (commit →
 * the upload holding it acknowledged), from the proxy's recorded bodies.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isWalPut, isSnapshotPut, succeeded } from '../helpers/fault-proxy.js'
import { setupScenario, sigterm, stopWriter, verify, waitReplicating } from './harness.js'

test('A1 fresh database, 1 000 ops, SIGTERM barrier: I1–I8, one generation', async (t) => {
  const sc = await setupScenario(t, 'a1')
  const w = await sc.writer({ opsPerSec: 250, startPaused: true })
  const cli = sc.cli()
  await waitReplicating(cli)
  await sc.proxy.waitFor((r) => isSnapshotPut(r) && succeeded(r))
  w.resume({ maxSeq: 1000 })
  await w.done()
  const acked = await w.pause()
  assert.equal(acked, 1000, 'writer committed 1 000 ops')
  const stop = await sigterm(cli)
  assert.equal(stop.code, 0, `exit code after SIGTERM\n${cli.output().slice(-3000)}`)
  await stopWriter(w)
  sc.figures.shutdownMs = stop.ms
  sc.figures.walPuts = sc.proxy.requests().filter((r) => isWalPut(r) && succeeded(r)).length
  const v = await verify(t, sc, { ackedSeq: acked, writer: w, expectGenerations: 1 })
  assert.ok(v.lag && v.lag.n > 0, 'lag measured')
})
