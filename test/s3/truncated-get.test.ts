/**
 * Reliability matrix D7 (K25, K31) at the S3 client: a GET whose body breaks off after the headers (full
 * Content-Length, part of the body, then a reset) is fetched again with backoff, a bounded number of times, and a
 * short body is never returned. Through test/helpers/fault-proxy.ts in front of s3rver, plus a stub S3Client for
 * a body that ends cleanly but short of its Content-Length.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import type { S3Client } from '@aws-sdk/client-s3'
import { errorMessage, hasCode } from '../../src/errors.js'
import { snapshotKey, walSegmentKey } from '../../src/keys.js'
import { S3ReplicaClient, type S3ReplicaClientOptions } from '../../src/s3/replica-client.js'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js'
import { s3rverCredentials, startS3rver, type S3rverInstance } from '../helpers/s3rver.js'

const GEN = '0123456789abcdef'

let s3: S3rverInstance
let proxy: FaultProxy

before(async () => {
  s3 = await startS3rver()
  proxy = await startFaultProxy({ target: s3.endpoint, seed: 7 })
})

after(async () => {
  await proxy?.stop()
  await s3?.stop()
})

/** clients returns a writer straight to s3rver and a reader through the proxy, on one random prefix. */
function clients(t: { after: (fn: () => void) => void }, opts: Partial<S3ReplicaClientOptions> = {}): { direct: S3ReplicaClient; viaProxy: S3ReplicaClient } {
  const prefix = `t-${randomBytes(6).toString('hex')}`
  const base = { bucket: s3.bucket, prefix, credentials: s3rverCredentials(), retryBaseDelayMs: 5 }
  const direct = new S3ReplicaClient({ ...base, endpoint: s3.endpoint })
  const viaProxy = new S3ReplicaClient({ ...base, endpoint: proxy.endpoint, ...opts })
  t.after(() => {
    direct.close()
    viaProxy.close()
  })
  return { direct, viaProxy }
}

/** gets counts the GET requests the proxy saw for key, from request id `since` on. */
function gets(key: string, since: number): number {
  return proxy.requests().filter((r) => r.id > since && r.method === 'GET' && r.key === key).length
}

function lastRequestId(): number {
  return proxy.requests().at(-1)?.id ?? 0
}

describe('s3: truncated GET bodies (D7)', () => {
  test('a wal segment whose body is cut in half twice is read again and returned whole', async (t) => {
    const { direct, viaProxy } = clients(t)
    const body = randomBytes(300_000)
    await direct.writeWalSegment(GEN, 3, 0x1038, body)
    const key = walSegmentKey(viaProxy.prefix, GEN, 3, 0x1038)
    const since = lastRequestId()
    const rule = proxy.addRule({ method: 'GET', keyRe: /\.wal\.lz4$/, count: 2, action: { type: 'truncate-body', keepFraction: 0.5 } })
    t.after(() => rule.remove())

    const got = await viaProxy.readWalSegment(GEN, 3, 0x1038)
    assert.equal(rule.hits, 2, 'truncated responses')
    assert.equal(got.length, body.length, 'bytes returned')
    assert.ok(got.equals(body), 'content equals what was written')
    assert.equal(gets(key, since), 3, 'GETs: two cut short, one whole')
  })

  test('a snapshot whose body breaks off right after the headers, or one byte short, is read again', async (t) => {
    const { direct, viaProxy } = clients(t)
    const body = randomBytes(100_000)
    await direct.writeSnapshot(GEN, 1, body)
    const key = snapshotKey(viaProxy.prefix, GEN, 1)
    for (const keep of [{ keepBytes: 0 }, { keepBytes: body.length - 1 }]) {
      const since = lastRequestId()
      const rule = proxy.addRule({ method: 'GET', keyRe: /\.snapshot\.lz4$/, count: 1, action: { type: 'truncate-body', ...keep } })
      try {
        const got = await viaProxy.readSnapshot(GEN, 1)
        assert.equal(rule.hits, 1, `${JSON.stringify(keep)}: truncated responses`)
        assert.ok(got.equals(body), `${JSON.stringify(keep)}: content equals what was written`)
        assert.equal(gets(key, since), 2, `${JSON.stringify(keep)}: GETs`)
      } finally {
        rule.remove()
      }
    }
  })

  test('gives up after maxAttempts GETs with an error naming the object, never a short body', async (t) => {
    const { direct, viaProxy } = clients(t, { maxAttempts: 3 })
    await direct.writeWalSegment(GEN, 0, 0, randomBytes(50_000))
    const key = walSegmentKey(viaProxy.prefix, GEN, 0, 0)
    const since = lastRequestId()
    const rule = proxy.addRule({ method: 'GET', keyRe: /\.wal\.lz4$/, action: { type: 'truncate-body', keepFraction: 0.5 } })
    t.after(() => rule.remove())

    await assert.rejects(viaProxy.readWalSegment(GEN, 0, 0), (err: unknown) => {
      const msg = errorMessage(err)
      assert.match(msg, new RegExp(`^get wal segment ${key}: gave up after 3 attempt\\(s\\): response body cut short \\(Content-Length 50000\\)`), msg)
      assert.equal(hasCode(err, 'NOT_FOUND'), false, 'not NOT_FOUND')
      return true
    })
    assert.equal(gets(key, since), 3, 'GETs = maxAttempts')
  })
})

/** stubClient answers every GetObject with the next of bodies (Content-Length 20), counting sends. */
function stubClient(bodies: Array<() => Promise<Uint8Array>>): { client: S3Client; sends: () => number } {
  let sends = 0
  const client = {
    send: async () => {
      const body = bodies[Math.min(sends, bodies.length - 1)]!
      sends++
      return { ContentLength: 20, Body: { transformToByteArray: body } }
    },
    destroy: () => {},
  }
  return { client: client as unknown as S3Client, sends: () => sends }
}

describe('s3: GET body length check (stub S3Client)', () => {
  const short = async (): Promise<Uint8Array> => new Uint8Array(10).fill(1)
  const whole = async (): Promise<Uint8Array> => new Uint8Array(20).fill(2)

  test('a body that ends cleanly short of Content-Length is read again', async () => {
    const stub = stubClient([short, short, whole])
    const c = new S3ReplicaClient({ bucket: 'b', client: stub.client, retryBaseDelayMs: 1 })
    const got = await c.readSnapshot(GEN, 0)
    assert.deepEqual([...got], new Array(20).fill(2), 'the whole body')
    assert.equal(stub.sends(), 3, 'GETs')
  })

  test('a short body is an error once attempts run out; child clients keep the limit', async () => {
    const stub = stubClient([short])
    const root = new S3ReplicaClient({ bucket: 'b', prefix: 'root', client: stub.client, maxAttempts: 2, retryBaseDelayMs: 1 })
    await assert.rejects(root.child('databases/x').readWalSegment(GEN, 0, 0), (err: unknown) => {
      assert.match(errorMessage(err), /gave up after 2 attempt\(s\): response body truncated: received 10 of 20 bytes$/)
      return true
    })
    assert.equal(stub.sends(), 2, 'GETs = maxAttempts')
  })

  test('an aborted read is not retried', async () => {
    const ac = new AbortController()
    const stub = stubClient([
      async () => {
        ac.abort(new Error('stop'))
        throw new Error('socket closed')
      },
    ])
    const c = new S3ReplicaClient({ bucket: 'b', client: stub.client, retryBaseDelayMs: 1 })
    await assert.rejects(c.readSnapshot(GEN, 0, { signal: ac.signal }), (err: unknown) => {
      assert.match(errorMessage(err), /^get snapshot \S+: stop$/, 'the abort reason, not a retry')
      return true
    })
    assert.equal(stub.sends(), 1, 'GETs')
  })
})
