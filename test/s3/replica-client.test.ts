import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { DeleteObjectsCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3'
import { errorMessage, hasCode } from '../../src/errors.js'
import { walSegmentKey, snapshotKey } from '../../src/keys.js'
import {
  createS3Client,
  isRetryableS3Error,
  s3ClientConfigFromEnv,
  S3ReplicaClient,
  type S3ReplicaClientOptions,
} from '../../src/s3/replica-client.js'
import { replicaClientSuite } from '../conformance/replica-client.js'
import { s3rverCredentials, s3rverObjectPath, startS3rver, type S3rverInstance } from '../helpers/s3rver.js'

const GEN = '0123456789abcdef'

let s3: S3rverInstance
let raw: S3Client

before(async () => {
  s3 = await startS3rver()
  raw = createS3Client({ endpoint: s3.endpoint, credentials: s3rverCredentials() })
})

after(async () => {
  raw?.destroy()
  await s3?.stop()
})

function randomPrefix(): string {
  return `t-${randomBytes(6).toString('hex')}`
}

/** deleteAll removes every object under prefix (Litestream's MustDeleteAll). */
async function deleteAll(prefix: string): Promise<void> {
  for (;;) {
    const page = await raw.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `${prefix}/` }))
    const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key! }))
    if (keys.length === 0) return
    await raw.send(new DeleteObjectsCommand({ Bucket: s3.bucket, Delete: { Objects: keys, Quiet: true } }))
  }
}

function newClient(opts: Partial<S3ReplicaClientOptions> = {}): S3ReplicaClient {
  return new S3ReplicaClient({
    bucket: s3.bucket,
    prefix: randomPrefix(),
    endpoint: s3.endpoint,
    credentials: s3rverCredentials(),
    retryBaseDelayMs: 10,
    ...opts,
  })
}

replicaClientSuite('s3 (s3rver)', async () => {
  const client = newClient()
  return {
    client,
    async cleanup() {
      await deleteAll(client.prefix)
      client.close()
    },
    async writeRaw(key, body) {
      await raw.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${client.prefix}/${key}`, Body: body }))
    },
  }
})

describe('s3: bytes on the server', () => {
  test('uploads are byte-exact in s3rver data dir (no aws-chunked framing, no trailers)', async (t) => {
    const client = newClient()
    t.after(() => deleteAll(client.prefix))
    const segment = randomBytes(50_000)
    const snapshot = randomBytes((9 << 20) + 1)
    await client.writeWalSegment(GEN, 0, 0x1038, segment)
    await client.writeSnapshot(GEN, 0, Readable.from(chunks(snapshot, 64 << 10)))
    const small = randomBytes(777)
    await client.writeSnapshot(GEN, 1, Readable.from(chunks(small, 100)))

    const onDisk = (key: string) => readFile(s3rverObjectPath(s3, key))
    assert.ok(segment.equals(await onDisk(walSegmentKey(client.prefix, GEN, 0, 0x1038))), 'wal segment bytes on disk')
    assert.ok(snapshot.equals(await onDisk(snapshotKey(client.prefix, GEN, 0))), 'multipart snapshot bytes on disk')
    assert.ok(small.equals(await onDisk(snapshotKey(client.prefix, GEN, 1))), 'single-part stream snapshot bytes on disk')
  })

  test('keys follow the Litestream layout under the prefix', async (t) => {
    const client = newClient({ prefix: `/${randomPrefix()}/db/` })
    t.after(() => deleteAll(client.prefix))
    assert.doesNotMatch(client.prefix, /^\/|\/$/, 'prefix is stripped')
    await client.writeWalSegment(GEN, 2, 0x4080, Buffer.from('x'))
    await client.writeSnapshot(GEN, 2, Buffer.from('y'))
    const page = await raw.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `${client.prefix}/` }))
    assert.deepEqual(
      (page.Contents ?? []).map((o) => o.Key).sort(),
      [
        `${client.prefix}/generations/${GEN}/snapshots/00000002.snapshot.lz4`,
        `${client.prefix}/generations/${GEN}/wal/00000002_00004080.wal.lz4`,
      ],
    )
  })
})

describe('s3: client wiring', () => {
  test('describe, child clients share one S3Client', () => {
    const root = new S3ReplicaClient({ bucket: 'b', prefix: '/backups/', endpoint: 'http://127.0.0.1:1', credentials: s3rverCredentials() })
    t_after(() => root.close())
    assert.equal(root.describe(), 's3://b/backups')
    const child = root.child('databases/0000-1111')
    assert.equal(child.describe(), 's3://b/backups/databases/0000-1111')
    assert.equal(child.client, root.client, 'shared S3Client')
    assert.equal(new S3ReplicaClient({ bucket: 'b', client: root.client }).describe(), 's3://b')
    assert.throws(() => root.child('../x'), (err: unknown) => hasCode(err, 'CONFIG_INVALID'))
    assert.throws(() => new S3ReplicaClient({ bucket: '' }), (err: unknown) => hasCode(err, 'CONFIG_INVALID'))
  })

  test('a custom endpoint gets path style and WHEN_REQUIRED checksums', async () => {
    const c = createS3Client({ endpoint: 'http://127.0.0.1:1' })
    try {
      assert.equal(c.config.forcePathStyle, true, 'forcePathStyle')
      assert.equal(await c.config.requestChecksumCalculation(), 'WHEN_REQUIRED', 'requestChecksumCalculation')
      assert.equal(await c.config.responseChecksumValidation(), 'WHEN_REQUIRED', 'responseChecksumValidation')
      assert.equal(await c.config.region(), 'us-east-1', 'region default')
    } finally {
      c.destroy()
    }
    const d = createS3Client({ endpoint: 'http://127.0.0.1:1', forcePathStyle: false, region: 'eu-west-1' })
    try {
      assert.equal(d.config.forcePathStyle, false, 'explicit forcePathStyle wins')
      assert.equal(await d.config.region(), 'eu-west-1', 'region')
    } finally {
      d.destroy()
    }
  })

  test('s3ClientConfigFromEnv reads endpoint, region and keys from the given env only', () => {
    assert.deepEqual(s3ClientConfigFromEnv({}), { endpoint: undefined, region: undefined, credentials: undefined })
    assert.deepEqual(
      s3ClientConfigFromEnv({
        AWS_ENDPOINT_URL_S3: 'http://minio:9000',
        AWS_ENDPOINT_URL: 'http://other:1',
        AWS_REGION: 'eu-central-1',
        AWS_ACCESS_KEY_ID: 'AK',
        AWS_SECRET_ACCESS_KEY: 'SK',
        AWS_SESSION_TOKEN: 'TOK',
      }),
      { endpoint: 'http://minio:9000', region: 'eu-central-1', credentials: { accessKeyId: 'AK', secretAccessKey: 'SK', sessionToken: 'TOK' } },
    )
    assert.deepEqual(
      s3ClientConfigFromEnv({ AWS_ENDPOINT_URL: 'http://other:1', AWS_DEFAULT_REGION: 'r', LITESTREAM_ACCESS_KEY_ID: 'L', LITESTREAM_SECRET_ACCESS_KEY: 'S' }),
      { endpoint: 'http://other:1', region: 'r', credentials: { accessKeyId: 'L', secretAccessKey: 'S' } },
    )
  })

  test('isRetryableS3Error classification', () => {
    const sdk = (name: string, status: number) => Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status } })
    for (const e of [sdk('SlowDown', 503), sdk('Unknown', 408), sdk('RequestTimeout', 400), sdk('RequestCanceled', 400), sdk('Unknown', 429), sdk('InternalError', 500), sdk('Unknown', 502), Object.assign(new Error('reset'), { code: 'ECONNRESET' })]) {
      assert.equal(isRetryableS3Error(e), true, `${e.name} ${errorMessage(e)}`)
    }
    for (const e of [sdk('AccessDenied', 403), sdk('NoSuchKey', 404), sdk('NotImplemented', 501), Object.assign(new Error('a'), { name: 'AbortError' })]) {
      assert.equal(isRetryableS3Error(e), false, e.name)
    }
    assert.equal(isRetryableS3Error(new Error('wrapped', { cause: sdk('SlowDown', 503) })), true, 'cause chain')
  })

  test('a missing bucket is not NOT_FOUND', async () => {
    const client = newClient({ bucket: 'no-such-bucket' })
    t_after(() => client.close())
    await assert.rejects(client.readSnapshot(GEN, 0), (err: unknown) => {
      assert.equal(hasCode(err, 'NOT_FOUND'), false, errorMessage(err))
      assert.match(errorMessage(err), /^get snapshot /)
      return true
    })
  })
})

// ---- retries, through a fault-injecting proxy in front of s3rver ----

type Fault = { readonly status: number; readonly code?: string } | 'reset'

interface FaultProxy {
  readonly endpoint: string
  /** requests lists `METHOD /path?query` of every request received, faulted or not. */
  readonly requests: string[]
  close(): Promise<void>
}

/** startFaultProxy forwards to target, except that requests for which fault() returns a Fault fail. */
async function startFaultProxy(target: string, fault: (req: http.IncomingMessage) => Fault | undefined): Promise<FaultProxy> {
  const requests: string[] = []
  const upstream = new URL(target)
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`)
    const f = fault(req)
    if (f) {
      req.resume() // read the whole body, then fail
      req.on('end', () => {
        if (f === 'reset') return req.socket.destroy()
        const body = f.code ? `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${f.code}</Code><Message>injected</Message></Error>` : ''
        res.writeHead(f.status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) })
        res.end(body)
      })
      return
    }
    const headers = { ...req.headers }
    delete headers.expect
    const up = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers)
        upRes.pipe(res)
      },
    )
    up.on('error', () => res.destroy())
    req.pipe(up)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** failFirst fails the first n requests that match, with fault. */
function failFirst(n: number, match: (req: http.IncomingMessage) => boolean, fault: Fault): (req: http.IncomingMessage) => Fault | undefined {
  let left = n
  return (req) => {
    if (left > 0 && match(req)) {
      left--
      return fault
    }
    return undefined
  }
}

const isPut = (req: http.IncomingMessage) => req.method === 'PUT'

async function withProxy(t: { after(fn: () => Promise<void>): void }, fault: (req: http.IncomingMessage) => Fault | undefined, opts: Partial<S3ReplicaClientOptions> = {}) {
  const proxy = await startFaultProxy(s3.endpoint, fault)
  const client = newClient({ endpoint: proxy.endpoint, ...opts })
  t.after(async () => {
    client.close()
    await proxy.close()
    await deleteAll(client.prefix)
  })
  return { proxy, client }
}

function chunks(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size))
  return out
}

/** t_after registers cleanup for synchronous tests via the file-level after hook. */
function t_after(fn: () => void): void {
  after(fn)
}

describe('s3: retries', () => {
  const cases: Array<[string, Fault]> = [
    ['503 SlowDown', { status: 503, code: 'SlowDown' }],
    ['408 RequestTimeout', { status: 408, code: 'RequestTimeout' }],
    ['408 without an error body', { status: 408 }],
    ['400 RequestTimeout (what S3 really sends)', { status: 400, code: 'RequestTimeout' }],
    ['429 without an error body', { status: 429 }],
    ['500 InternalError', { status: 500, code: 'InternalError' }],
    ['a reset connection', 'reset'],
  ]
  for (const [name, fault] of cases) {
    test(`PutObject is retried after ${name}`, async (t) => {
      const { proxy, client } = await withProxy(t, failFirst(2, isPut, fault))
      const body = randomBytes(10_000)
      await client.writeWalSegment(GEN, 0, 0, body)
      const key = walSegmentKey(client.prefix, GEN, 0, 0)
      assert.equal(proxy.requests.filter((r) => r === `PUT /${s3.bucket}/${key}` || r.startsWith(`PUT /${s3.bucket}/${key}?`)).length, 3, 'attempts')
      assert.ok(body.equals(await readFile(s3rverObjectPath(s3, key))), 'bytes on disk after retries')
    })
  }

  test('multipart upload parts are retried (503 SlowDown on the first two parts)', async (t) => {
    const { proxy, client } = await withProxy(t, failFirst(2, (r) => isPut(r) && /[?&]partNumber=/.test(r.url ?? ''), { status: 503, code: 'SlowDown' }))
    const body = randomBytes((8 << 20) * 2 + 5)
    await client.writeSnapshot(GEN, 0, Readable.from(chunks(body, 1 << 20)))
    assert.equal(proxy.requests.filter((r) => r.startsWith('PUT ') && r.includes('partNumber=')).length, 5, 'part attempts: 3 parts + 2 retries')
    assert.ok(body.equals(await readFile(s3rverObjectPath(s3, snapshotKey(client.prefix, GEN, 0)))), 'bytes on disk')
  })

  test('GetObject is retried after 503', async (t) => {
    const { proxy, client } = await withProxy(t, failFirst(1, (r) => r.method === 'GET' && !(r.url ?? '').includes('list-type'), { status: 503, code: 'ServiceUnavailable' }))
    await client.writeWalSegment(GEN, 0, 0, Buffer.from('hello'))
    assert.equal((await client.readWalSegment(GEN, 0, 0)).toString(), 'hello')
    assert.equal(proxy.requests.filter((r) => r.startsWith('GET ') && !r.includes('list-type')).length, 2, 'get attempts')
  })

  test('gives up after maxAttempts and wraps the error with context', async (t) => {
    const { proxy, client } = await withProxy(t, () => ({ status: 503, code: 'SlowDown' }), { maxAttempts: 3 })
    const key = walSegmentKey(client.prefix, GEN, 0, 0)
    await assert.rejects(client.writeWalSegment(GEN, 0, 0, Buffer.from('x')), (err: unknown) => {
      assert.ok(err instanceof Error)
      assert.equal(err.message, `put wal segment ${key}`)
      assert.equal((err.cause as Error).name, 'SlowDown', 'cause is the SDK error')
      return true
    })
    assert.equal(proxy.requests.length, 3, 'attempts')
  })

  test('client errors are not retried and messages carry no credentials', async (t) => {
    // s3rver does not verify SigV4 signatures, only the access key id: an unknown one gets 403 InvalidAccessKeyId.
    const secret = 'sEcReT-never-print-me'
    const { proxy, client } = await withProxy(t, () => undefined, { credentials: { accessKeyId: 'UNKNOWNKEY', secretAccessKey: secret } })
    await assert.rejects(client.writeWalSegment(GEN, 0, 0, Buffer.from('x')), (err: unknown) => {
      const text = `${errorMessage(err)} ${JSON.stringify(err, Object.getOwnPropertyNames(err as object))} ${String((err as Error).stack)}`
      assert.match(errorMessage(err), /^put wal segment .*: /)
      assert.ok(!text.includes(secret), `secret leaked: ${text}`)
      return true
    })
    assert.equal(proxy.requests.length, 1, 'one attempt for a 403')
  })
})
