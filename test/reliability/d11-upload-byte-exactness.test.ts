/**
 * D11 Upload byte-exactness (R2): the proxy records every upload body; afterwards every object is read back
 * (GET, straight from s3rver) and must equal, byte for byte, the last body s3rver accepted for its key; every body
 * is one complete LZ4 frame; no aws-chunked encoding or flexible checksums on the wire (checksum mode pinned to
 * WHEN_REQUIRED); a WAL key is never written with two different bodies.
 *
 * The scenario includes a streamed multipart snapshot (database > 32 MiB, 8 MiB parts) and responses dropped after
 * s3rver stored the object (two WAL PUTs and one snapshot part): ambiguous failures the client must retry without
 * changing a byte. The bodies sent are what our encoder produced (the SDK adds no framing: checked by the headers),
 * so equality with GET-back closes the loop encoder → wire → store.
 */
import assert from 'node:assert/strict'
import Database from 'better-sqlite3'
import fs from 'node:fs'
import { test } from 'node:test'
import { isSnapshotPut, isWalPut, succeeded } from '../helpers/fault-proxy.js'
import { checkUploadBytes } from '../helpers/invariants.js'
import { getObject, setupScenario, sigterm, stopWriter, verify, waitDurableSeq, waitReplicating } from './harness.js'

test('D11 every stored object equals the bytes uploaded (multipart snapshot, dropped responses)', async (t) => {
  const sc = await setupScenario(t, 'd11')
  // A > 32 MiB database before the service starts, so the first snapshot is streamed in 8 MiB parts.
  const w = await sc.writer({ opsPerSec: 0, noteChars: 20_000, maxSeq: 7_500 })
  await w.done()
  const dbBytes = fs.statSync(sc.dbPath).size + fs.statSync(`${sc.dbPath}-wal`).size
  // The snapshot is the database as SQLite sees it (file plus WAL), not the file, whose share depends on checkpoints.
  const probe = new Database(sc.dbPath, { readonly: true })
  const logical = Number(probe.pragma('page_count', { simple: true })) * Number(probe.pragma('page_size', { simple: true }))
  probe.close()
  assert.ok(logical > 33 << 20, `precondition: the database is larger than 33 MiB (${logical} bytes)`)

  const dropPart = sc.proxy.addRule({ label: 'drop-part', method: 'PUT', queryHas: ['partNumber'], count: 1, action: { type: 'drop-response' } })
  const dropWal = sc.proxy.addRule({ label: 'drop-wal', method: 'PUT', keyRe: /\/wal\//, count: 2, action: { type: 'drop-response' } })
  const cli = sc.cli()
  await waitReplicating(cli)
  await sc.proxy.waitFor((r) => isSnapshotPut(r) && succeeded(r), { timeoutMs: 60_000 })
  w.resume({ maxSeq: 7_900 })
  await w.done()
  await waitDurableSeq(sc, w, 7_900)
  const acked = await w.pause()
  const stop = await sigterm(cli)
  assert.equal(stop.code, 0, `exit code after SIGTERM\n${cli.output().slice(-3000)}`)
  await stopWriter(w)

  const records = sc.proxy.requests()
  assert.ok(records.some((r) => r.method === 'POST' && 'uploads' in r.query), 'precondition: the snapshot went up as a multipart upload')
  assert.equal(dropPart.hits, 1, 'one snapshot part response was dropped after s3rver stored it')
  assert.equal(dropWal.hits, 2, 'two WAL segment responses were dropped after s3rver stored them')
  const check = await checkUploadBytes(records, (key) => getObject(sc, key))
  Object.assign(sc.figures, {
    dbBytes,
    objectsChecked: check.objects,
    bytesChecked: check.bytes,
    byteMismatches: check.mismatches.length,
    parts: records.filter((r) => r.method === 'PUT' && 'partNumber' in r.query).length,
    walPuts: records.filter(isWalPut).length,
    droppedResponses: dropPart.hits + dropWal.hits,
  })
  assert.deepEqual(check.mismatches, [], 'stored bytes == uploaded bytes')
  assert.deepEqual(check.headerProblems, [], 'no aws-chunked framing or flexible checksums on the wire')
  assert.ok(check.objects >= 3, `objects checked: ${check.objects}`)
  await verify(t, sc, { ackedSeq: acked, writer: w, expectGenerations: 1 })
})
