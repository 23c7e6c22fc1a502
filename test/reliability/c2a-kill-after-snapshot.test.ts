/**
 * C2(a) Kill after the snapshot PUT, before the first WAL PUT (R1, K4, K5).
 *
 * 1. Replicate with load, SIGTERM: everything committed is acknowledged (generation 1).
 * 2. An application read transaction is held open (so the WAL cannot be checkpointed past it) while the
 *    application keeps writing; the meta directory `<dir>/.<name>-litestream` is deleted, so the restart must start
 *    generation 2. The proxy holds (blackholes) every WAL PUT; the service is killed with SIGKILL the moment the
 *    proxy has delivered generation 2's snapshot PUT response. Generation 2 is now snapshot-only and the newest.
 * 3. Stock v0.3.13 restore picks generation 2: it must not panic (K4) and must contain every seq acknowledged in
 *    generation 1 and, since a snapshot is a page image of a commit, every commit made before the restart.
 * 4. A third run (WAL PUTs allowed again) recovers; I1–I8 at the end.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { test } from 'node:test'
import Database from 'better-sqlite3'
import { isSnapshotPut, isWalPut, succeeded } from '../helpers/fault-proxy.js'
import { checkInvariants } from '../helpers/invariants.js'
import { generationsIn, setupScenario, sigkill, sigterm, stopWriter, verify, waitDurableSeq, waitReplicating } from './harness.js'

test('C2a kill -9 right after a new generation\'s snapshot PUT (meta dir deleted, app read tx open): restore keeps every acked seq', async (t) => {
  const sc = await setupScenario(t, 'c2a')
  const w = await sc.writer({ opsPerSec: 200, startPaused: true })

  // 1. Generation 1, acknowledged by a clean SIGTERM.
  const p1 = sc.cli()
  await waitReplicating(p1)
  w.resume()
  await waitDurableSeq(sc, w, 300)
  const acked1 = await w.pause()
  const stop1 = await sigterm(p1)
  assert.equal(stop1.code, 0, `first SIGTERM exit code\n${p1.output().slice(-3000)}`)
  const [gen1] = await generationsIn(sc)
  assert.ok(gen1, 'generation 1 exists')

  // 2. App read transaction pins the WAL; the app keeps writing; local state is lost.
  const reader = new Database(sc.dbPath, { timeout: 5000 })
  t.after(() => reader.open && reader.close())
  reader.exec('BEGIN')
  reader.prepare('SELECT count(*) FROM ledger').get()
  w.resume()
  await w.waitForSeq(acked1 + 400)
  const seqBeforeRestart = await w.pause()
  fs.rmSync(sc.metaDir, { recursive: true, force: true })
  const hold = sc.proxy.addRule({ label: 'hold-wal', method: 'PUT', keyRe: /\/wal\//, action: { type: 'blackhole' } })
  const since = sc.proxy.requests().at(-1)?.id ?? 0
  const p2 = sc.cli()
  const snap = await sc.proxy.waitFor((r) => isSnapshotPut(r) && succeeded(r), { since, timeoutMs: 30_000 })
  await sigkill(p2)
  const gen2 = /\/generations\/([0-9a-f]{16})\//.exec(snap.key)![1]!
  assert.notEqual(gen2, gen1, 'the restart started a new generation')
  const heldWal = sc.proxy.requests().filter((r) => r.id > since && isWalPut(r))
  assert.ok(heldWal.every((r) => r.action === 'blackhole'), 'no WAL PUT of generation 2 reached the store')
  assert.deepEqual(await sc.oracle.client.walSegments(gen2), [], 'generation 2 is snapshot-only')
  hold.remove()
  sc.proxy.releaseBlackholed()

  // 3. The snapshot-only newest generation restores with everything acknowledged (and everything committed).
  const mid = await checkInvariants({ replica: sc.oracle, sourceDb: sc.dbPath, ackedSeq: acked1, outDir: sc.dir, label: 'c2a-mid' })
  Object.assign(sc.figures, { acked1, seqBeforeRestart, restoredFromSnapshotOnly: mid.restoredSeq, heldWalPuts: heldWal.length })
  assert.deepEqual(mid.failures, [], `snapshot-only generation 2 restores cleanly\n${mid.failures.join('\n')}`)
  assert.equal(mid.restoredSeq, seqBeforeRestart, 'the snapshot holds every commit made before the restart (page image incl. the pinned WAL)')

  // 4. Recovery run.
  reader.exec('COMMIT')
  reader.close()
  const p3 = sc.cli()
  await waitReplicating(p3)
  w.resume()
  await waitDurableSeq(sc, w, seqBeforeRestart + 200)
  const acked = await w.pause()
  const stop3 = await sigterm(p3)
  assert.equal(stop3.code, 0, `third SIGTERM exit code\n${p3.output().slice(-3000)}`)
  await stopWriter(w)
  await verify(t, sc, { ackedSeq: acked, writer: w, maxGenerations: 3 })
})
