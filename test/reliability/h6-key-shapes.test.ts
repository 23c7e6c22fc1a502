/**
 * H6 S3 key injection / key shapes: every key the service writes (PUT, multipart POST) must match
 * `^<prefix>/generations/[0-9a-f]{16}/(snapshots/[0-9a-f]{8}\.snapshot\.lz4|wal/[0-9a-f]{8}_[0-9a-f]{8}\.wal\.lz4)$`.
 * The scenario makes several WAL indexes (the application TRUNCATEs the WAL after everything was shipped, so the
 * service proves continuity and moves to the next index) and a second generation (meta directory deleted between
 * runs). Every other scenario runs the same check in verify(); the first test proves the check
 * itself rejects what it must.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { test } from 'node:test'
import type { RecordedRequest } from '../helpers/fault-proxy.js'
import { checkKeyShapes, keyShapeRegex } from '../helpers/invariants.js'
import { setupScenario, sigterm, stopWriter, verify, waitDurableSeq, waitReplicating } from './harness.js'

test('H6 the key-shape check rejects foreign, long-offset, uppercase and traversal keys', () => {
  const p = 'h6-x/databases/0b1c2d3e-0000-4000-8000-000000000000'
  const good = [`${p}/generations/0123456789abcdef/snapshots/00000000.snapshot.lz4`, `${p}/generations/0123456789abcdef/wal/00000001_00001020.wal.lz4`]
  const bad = [
    `${p}/generations/0123456789abcdef/wal/00000001_100001020.wal.lz4`, // 9-hex offset (K2)
    `${p}/generations/0123456789ABCDEF/snapshots/00000000.snapshot.lz4`,
    `${p}/generations/0123456789abcdef/snapshots/00000000.snapshot.lz4.tmp`,
    `${p}/generations/0123456789abcdef/../snapshots/00000000.snapshot.lz4`,
    `${p}/../other/generations/0123456789abcdef/snapshots/00000000.snapshot.lz4`,
    `${p}/state.json`,
    `${p}x/generations/0123456789abcdef/snapshots/00000000.snapshot.lz4`,
  ]
  const rec = (key: string): RecordedRequest => ({ id: 1, method: 'PUT', url: '/', bucket: 'b', key, query: {}, reqHeaders: {}, startedAt: 0, action: 'forward', rules: [], reqBytes: 0, resBytes: 0, delivered: true, done: true })
  for (const k of good) assert.ok(keyShapeRegex(p).test(k), k)
  assert.deepEqual(checkKeyShapes(good.map(rec), p), [])
  assert.equal(checkKeyShapes(bad.map(rec), p).length, bad.length)
})

test('H6 every key written across WAL restarts, a restart and a new generation matches the v0.3 shape', async (t) => {
  const sc = await setupScenario(t, 'h6')
  const w = await sc.writer({ opsPerSec: 200, startPaused: true })
  const p1 = sc.cli()
  await waitReplicating(p1)
  const truncates: unknown[] = []
  for (let round = 0; round < 3; round++) {
    w.resume()
    await w.waitForSeq(w.acked() + 100)
    await waitDurableSeq(sc, w, await w.pause())
    truncates.push(await w.checkpoint('TRUNCATE'))
  }
  w.resume()
  await waitDurableSeq(sc, w, w.acked() + 50)
  const stop1 = await sigterm(p1)
  assert.equal(stop1.code, 0, `first SIGTERM exit code\n${p1.output().slice(-3000)}`)
  fs.rmSync(sc.metaDir, { recursive: true, force: true }) // lost local state: the next run must start a new generation
  const p2 = sc.cli()
  await p2.waitFor(/"msg":"new generation"/)
  await waitDurableSeq(sc, w, w.acked() + 200)
  const acked = await w.pause()
  const stop2 = await sigterm(p2)
  assert.equal(stop2.code, 0, `second SIGTERM exit code\n${p2.output().slice(-3000)}`)
  await stopWriter(w)

  const writes = sc.proxy.requests().filter((r) => r.method === 'PUT' || r.method === 'POST')
  const walIndexes = new Set(writes.map((r) => /\/wal\/([0-9a-f]{8})_/.exec(r.key)?.[1]).filter(Boolean))
  const generations = new Set(writes.map((r) => /\/generations\/([^/]+)\//.exec(r.key)?.[1]).filter(Boolean))
  Object.assign(sc.figures, { appTruncates: truncates, keysChecked: writes.length, walIndexes: walIndexes.size, generationsWritten: generations.size })
  assert.ok(walIndexes.size >= 2, `precondition: several WAL indexes were written (${[...walIndexes].join(', ')})`)
  assert.ok(generations.size >= 2, `precondition: two generations were written (${[...generations].join(', ')})`)
  assert.deepEqual(checkKeyShapes(writes, sc.prefix), [], 'every written key matches the v0.3 layout')
  await verify(t, sc, { ackedSeq: acked, writer: w, maxGenerations: generations.size })
})
