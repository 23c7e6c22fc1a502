/**
 * Reliability matrix D7 (K25, K31), fast tier: restore, verify, audit and the restore command read an S3 replica
 * through test/helpers/fault-proxy.ts while GET bodies are cut short (full Content-Length, part of the body, then
 * a reset). Transient truncation is retried per object and the result equals the source; truncation that outlasts
 * the retries fails with a clear error, a non-zero exit and no output file. A short body is never decoded.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { test, type TestContext } from 'node:test'
import { restoreCommand } from '../../src/cli/restore.js'
import type { CliIo } from '../../src/cli/replicate.js'
import { errorMessage } from '../../src/errors.js'
import { NOOP_LOGGER } from '../../src/log.js'
import { auditReplica } from '../../src/restore/audit.js'
import { restore } from '../../src/restore/restore.js'
import { verifyReplica } from '../../src/restore/verify.js'
import { S3ReplicaClient, type S3ReplicaClientOptions } from '../../src/s3/replica-client.js'
import { digest } from '../helpers/db.js'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js'
import { S3_ENV, withS3, type S3Server } from '../helpers/replicas.js'
import { s3rverCredentials } from '../helpers/s3rver.js'
import { buildReplica, type Built } from './fixture.js'

/** Setup is a replica built by our Replicator, copied to s3rver, with a fault proxy in front. */
interface Setup {
  readonly b: Built
  readonly s3: S3Server
  readonly proxy: FaultProxy
  readonly prefix: string
  /** objects is the number of objects a full restore reads. */
  readonly objects: number
  /** client reads the replica through the proxy. */
  client(opts?: Partial<S3ReplicaClientOptions>): S3ReplicaClient
}

async function setup(t: TestContext): Promise<Setup> {
  const b = await buildReplica(t)
  const s3 = await withS3(t)
  const proxy = await startFaultProxy({ target: s3.endpoint, seed: 42 })
  t.after(() => proxy.stop())
  const prefix = `d7-${randomBytes(4).toString('hex')}`
  const base = { bucket: s3.bucket, prefix, credentials: s3rverCredentials() }
  const direct = new S3ReplicaClient({ ...base, endpoint: s3.endpoint })
  let objects = 0
  try {
    for (const s of await b.client.snapshots(b.generation)) {
      await direct.writeSnapshot(b.generation, s.index, await b.client.readSnapshot(b.generation, s.index))
      objects++
    }
    for (const s of await b.client.walSegments(b.generation)) {
      await direct.writeWalSegment(b.generation, s.index, s.offset, await b.client.readWalSegment(b.generation, s.index, s.offset))
      objects++
    }
  } finally {
    direct.close()
  }
  return {
    b,
    s3,
    proxy,
    prefix,
    objects,
    client(opts = {}) {
      const c = new S3ReplicaClient({ ...base, endpoint: proxy.endpoint, retryBaseDelayMs: 5, ...opts })
      t.after(() => c.close())
      return c
    },
  }
}

function objectGets(proxy: FaultProxy, since: number): number {
  return proxy.requests().filter((r) => r.id > since && r.method === 'GET' && r.key.endsWith('.lz4')).length
}

function lastRequestId(proxy: FaultProxy): number {
  return proxy.requests().at(-1)?.id ?? 0
}

test('D7 restore, verify and audit retry GET bodies cut short and equal the source', async (t) => {
  const sc = await setup(t)
  const want = sc.b.points.at(-1)!
  assert.ok(sc.objects >= 6, `objects in the replica: ${sc.objects}`)
  const client = sc.client()

  // The first 4 object GETs (the first wave of the parallel download) lose half their body.
  let since = lastRequestId(sc.proxy)
  let rule = sc.proxy.addRule({ method: 'GET', keyRe: /\.lz4$/, count: 4, action: { type: 'truncate-body', keepFraction: 0.5 } })
  const out = path.join(sc.b.dir, 'ours.db')
  const got = await restore(client, { outPath: out })
  rule.remove()
  assert.equal(rule.hits, 4, 'truncated GETs during restore')
  assert.equal(objectGets(sc.proxy, since), sc.objects + 4, 'object GETs: one per object plus one per truncation')
  assert.deepEqual({ generation: got.generation, index: got.index, offset: got.offset }, want.pos, 'restored position')
  assert.deepEqual(digest(out), want.digest, 'restored equals the source')

  // Verify: every third object GET breaks off right after its headers.
  since = lastRequestId(sc.proxy)
  rule = sc.proxy.addRule({ method: 'GET', keyRe: /\.lz4$/, count: 3, action: { type: 'truncate-body', keepBytes: 0 } })
  const verified = await verifyReplica(client)
  rule.remove()
  assert.equal(rule.hits, 3, 'truncated GETs during verify')
  assert.deepEqual({ generation: verified.generation, index: verified.index, offset: verified.offset }, want.pos, 'verified position')

  // Audit reads every object: truncation must not show up as an unreadable or undecodable object.
  rule = sc.proxy.addRule({ method: 'GET', keyRe: /\.lz4$/, count: 4, action: { type: 'truncate-body', keepFraction: 0.9 } })
  const violations = await auditReplica(client)
  rule.remove()
  assert.equal(rule.hits, 4, 'truncated GETs during audit')
  assert.deepEqual(violations, [], 'audit through truncated GETs')
})

test('D7 truncation that outlasts the retries: clear error, non-zero exit, no output file, nothing decoded', async (t) => {
  const sc = await setup(t)
  const rule = sc.proxy.addRule({ method: 'GET', keyRe: /\.lz4$/, action: { type: 'truncate-body', keepFraction: 0.5 } })
  t.after(() => rule.remove())
  const client = sc.client({ maxAttempts: 3 })

  // restore(): rejects naming the object and the cause; nothing named ours.db* is left.
  const since = lastRequestId(sc.proxy)
  const out = path.join(sc.b.dir, 'ours.db')
  await assert.rejects(restore(client, { outPath: out, parallelism: 1 }), (err: unknown) => {
    const msg = errorMessage(err)
    assert.match(msg, /snapshots\/00000000\.snapshot\.lz4 cannot be read: get snapshot \S+: gave up after 3 attempt\(s\): response body cut short/, msg)
    return true
  })
  assert.deepEqual(fs.readdirSync(sc.b.dir).filter((n) => n.startsWith('ours.db')), [], 'no output or temporary file')
  assert.equal(objectGets(sc.proxy, since), 3, 'GETs of the snapshot = maxAttempts, then restore stops')

  // audit: every object is unreadable; a truncated body never reaches the LZ4 decoder or the WAL checks.
  const violations = await auditReplica(client)
  assert.equal(violations.length, sc.objects, 'one violation per object')
  assert.deepEqual([...new Set(violations.map((v) => v.rule))], ['unreadable'], 'only unreadable objects')

  // The restore command: exit 1 with the reason on stderr, no output file.
  let stderr = ''
  const io: CliIo = { env: S3_ENV, stdout: () => {}, stderr: (s) => void (stderr += s), log: NOOP_LOGGER, onSignal: () => {} }
  const cliOut = path.join(sc.b.dir, 'cli.db')
  const code = await restoreCommand(['-o', cliOut, `s3://${sc.s3.bucket}/${sc.prefix}?endpoint=${encodeURIComponent(sc.proxy.endpoint)}&region=us-east-1&forcePathStyle=true`], io)
  assert.equal(code, 1, `exit code; stderr: ${stderr}`)
  assert.match(stderr, /cannot be read: .*gave up after 5 attempt\(s\): response body cut short/, 'stderr names the cause')
  assert.deepEqual(fs.readdirSync(sc.b.dir).filter((n) => n.startsWith('cli.db')), [], 'no output or temporary file from the command')
})
