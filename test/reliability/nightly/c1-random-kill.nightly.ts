/**
 * C1 Random kill -9 (nightly: 20 iterations; RELIABILITY_C1_ITERATIONS overrides). The writer runs throughout; each
 * iteration starts `replicate`, kills it with SIGKILL at a uniform 0–3 s, and checks I1–I6 against the replica as
 * left by the kill. The acknowledged seq of a kill is the highest seq contained in an upload whose success response
 * the service received (found in the proxy's recorded bodies); a kill before the first snapshot landed leaves an empty
 * replica, which is correct only while nothing was acknowledged. A final run ends with SIGTERM and the full verify.
 * Figures: iterations, acked lost (must be 0), generations per kill.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { checkInvariants, durableSeqs } from '../../helpers/invariants.js'
import { chainOf, setupScenario, sigkill, sigterm, stopWriter, verify, waitDurableSeq, waitReplicating } from '../harness.js'

const ITERATIONS = Number(process.env.RELIABILITY_C1_ITERATIONS ?? 20)

test(`C1 random kill -9 × ${ITERATIONS}: every iteration restores every acknowledged seq (I1–I6)`, { timeout: 60_000 + ITERATIONS * 30_000 }, async (t) => {
  const sc = await setupScenario(t, 'c1')
  const w = await sc.writer({ opsPerSec: 100 })
  const chain = chainOf(w)
  const perIteration: { killAfterMs: number; acked: number; restored: number; generations: number }[] = []
  const failures: string[] = []
  let maxAcked = 0
  for (let i = 0; i < ITERATIONS; i++) {
    const p = sc.cli()
    await waitReplicating(p)
    const killAfterMs = Math.floor(Math.random() * 3000)
    await new Promise((r) => setTimeout(r, killAfterMs))
    await sigkill(p)
    const d = durableSeqs(sc.proxy.requests(), (s) => chain.hash(s), w.acked())
    maxAcked = Math.max(maxAcked, d.maxDelivered)
    if ((await sc.oracle.client.generations()).length === 0) {
      // Killed before the first snapshot landed: nothing can be restored, which is right only if nothing was acked.
      if (maxAcked > 0) failures.push(`iteration ${i} (kill after ${killAfterMs} ms): the replica is empty but seq ${maxAcked} was acknowledged`)
      perIteration.push({ killAfterMs, acked: maxAcked, restored: 0, generations: 0 })
      continue
    }
    const r = await checkInvariants({ replica: sc.oracle, sourceDb: sc.dbPath, ackedSeq: maxAcked, outDir: sc.dir, label: `c1-${i}` })
    perIteration.push({ killAfterMs, acked: maxAcked, restored: r.restoredSeq, generations: r.generations })
    failures.push(...r.failures.map((f) => `iteration ${i} (kill after ${killAfterMs} ms): ${f}`))
  }
  const p = sc.cli()
  await waitReplicating(p)
  await waitDurableSeq(sc, w, w.acked(), 60_000)
  const acked = await w.pause()
  const stop = await sigterm(p)
  assert.equal(stop.code, 0, `final exit code\n${p.output().slice(-3000)}`)
  await stopWriter(w)
  Object.assign(sc.figures, { iterations: ITERATIONS, iterationFailures: failures.length, perIteration })
  assert.deepEqual(failures, [], failures.join('\n'))
  await verify(t, sc, { ackedSeq: acked, writer: w })
})
