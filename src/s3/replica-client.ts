/**
 * S3ReplicaClient stores a replica under a key prefix of an S3 (or S3-compatible) bucket, with the key layout
 * of Litestream v0.3.13 (s3/replica_client.go). AWS errors stop here: NoSuchKey/404 becomes ReplicaError
 * NOT_FOUND, anything else is wrapped with lowercase context. A GET whose body breaks off or ends short of its
 * Content-Length is fetched again (the SDK's retries end when the headers arrive); a short body is never returned.
 * @module
 */
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type GetObjectCommandOutput,
  type ListObjectsV2CommandOutput,
  type S3ClientConfig,
} from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { ReplicaError } from '../errors.js'
import {
  generationsPath,
  isGenerationName,
  joinKey,
  parseSnapshotName,
  parseWalSegmentName,
  snapshotKey,
  snapshotsPath,
  walPath,
  walSegmentKey,
} from '../keys.js'
import type { OpOptions, ReplicaClient } from '../replica-client.js'
import type { SnapshotInfo, WalSegmentInfo } from '../types.js'

/** DEFAULT_S3_MAX_ATTEMPTS is the number of tries per request, first one included. */
export const DEFAULT_S3_MAX_ATTEMPTS = 5
/** DEFAULT_S3_RETRY_BASE_DELAY_MS is the backoff cap of the first retry; throttling errors use 5x. */
export const DEFAULT_S3_RETRY_BASE_DELAY_MS = 100
/** DEFAULT_S3_RETRY_MAX_DELAY_MS caps any one backoff. */
export const DEFAULT_S3_RETRY_MAX_DELAY_MS = 20_000
/** DEFAULT_S3_CONNECTION_TIMEOUT_MS bounds TCP/TLS connection setup. */
export const DEFAULT_S3_CONNECTION_TIMEOUT_MS = 10_000
/** DEFAULT_S3_REQUEST_TIMEOUT_MS bounds socket inactivity during one request (a timeout is retried). */
export const DEFAULT_S3_REQUEST_TIMEOUT_MS = 60_000
/** S3_PART_BYTES is the multipart part size for stream (snapshot) uploads. */
export const S3_PART_BYTES = 8 << 20
/** S3_UPLOAD_QUEUE_SIZE is the number of parts in flight per stream upload (memory: parts x part size). */
export const S3_UPLOAD_QUEUE_SIZE = 2
/** S3_MAX_DELETE_KEYS is the most keys one DeleteObjects call accepts. */
export const S3_MAX_DELETE_KEYS = 1000

/** S3Credentials are static credentials. Without them the SDK's default provider chain is used. */
export interface S3Credentials {
  readonly accessKeyId: string
  readonly secretAccessKey: string
  readonly sessionToken?: string
}

/** S3ConnectionOptions configure the S3Client that createS3Client builds. */
export interface S3ConnectionOptions {
  /** endpoint is the URL of an S3-compatible store. If set, path-style addressing and WHEN_REQUIRED checksums are used. */
  readonly endpoint?: string
  /** region; if undefined: us-east-1, following the bucket's region redirect when no endpoint is set. */
  readonly region?: string
  /** forcePathStyle; if undefined: true with an endpoint, else the SDK default (virtual-hosted). */
  readonly forcePathStyle?: boolean
  readonly credentials?: S3Credentials
  /**
   * maxAttempts per request, first one included; if undefined or 0: DEFAULT_S3_MAX_ATTEMPTS. 1 disables retries.
   * It also bounds the GETs of one object read whose response body breaks off or ends short.
   */
  readonly maxAttempts?: number
  /** retryBaseDelayMs; if undefined: DEFAULT_S3_RETRY_BASE_DELAY_MS. */
  readonly retryBaseDelayMs?: number
}

/**
 * S3ReplicaClientOptions locate a replica; `client` (shared, not closed by us) wins over the connection options.
 * maxAttempts and retryBaseDelayMs still apply to re-reading truncated GET bodies when `client` is given.
 */
export interface S3ReplicaClientOptions extends S3ConnectionOptions {
  readonly bucket: string
  /** prefix is the key root of the replica; leading, trailing and doubled slashes are removed. '' is the bucket root. */
  readonly prefix?: string
  readonly client?: S3Client
}

/** s3ClientConfigFromEnv reads AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL), region and static keys from env. */
export function s3ClientConfigFromEnv(env: Readonly<Record<string, string | undefined>>): S3ConnectionOptions {
  const endpoint = env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined
  const region = env.AWS_REGION || env.AWS_DEFAULT_REGION || undefined
  let credentials: S3Credentials | undefined
  if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
    credentials = {
      accessKeyId: env.AWS_ACCESS_KEY_ID,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
      ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
    }
  } else if (env.LITESTREAM_ACCESS_KEY_ID && env.LITESTREAM_SECRET_ACCESS_KEY) {
    credentials = { accessKeyId: env.LITESTREAM_ACCESS_KEY_ID, secretAccessKey: env.LITESTREAM_SECRET_ACCESS_KEY }
  }
  return { endpoint, region, credentials }
}

/** createS3Client builds an S3Client with our retry strategy and, for custom endpoints, S3-compatible defaults. */
export function createS3Client(opts: S3ConnectionOptions = {}): S3Client {
  const maxAttempts = opts.maxAttempts || DEFAULT_S3_MAX_ATTEMPTS
  const config: S3ClientConfig = {
    region: opts.region || 'us-east-1',
    maxAttempts,
    retryStrategy: new S3RetryStrategy(maxAttempts, opts.retryBaseDelayMs ?? DEFAULT_S3_RETRY_BASE_DELAY_MS),
    // throwOnRequestTimeout: without it the handler only warns, and a blackholed request hangs the replicator forever.
    requestHandler: { connectionTimeout: DEFAULT_S3_CONNECTION_TIMEOUT_MS, requestTimeout: DEFAULT_S3_REQUEST_TIMEOUT_MS, throwOnRequestTimeout: true },
  }
  if (opts.credentials) config.credentials = { ...opts.credentials } // the SDK writes into this object
  if (opts.forcePathStyle !== undefined) config.forcePathStyle = opts.forcePathStyle
  if (opts.endpoint) {
    // S3-compatible stores: path style, and no default CRC32 checksums (SDK >= 3.729; aws/aws-sdk-js-v3#6810).
    config.endpoint = opts.endpoint
    config.forcePathStyle = opts.forcePathStyle ?? true
    config.requestChecksumCalculation = 'WHEN_REQUIRED'
    config.responseChecksumValidation = 'WHEN_REQUIRED'
  } else if (!opts.region) {
    config.followRegionRedirects = true
  }
  return new S3Client(config)
}

/** S3ReplicaClient implements ReplicaClient over one bucket and key prefix. */
export class S3ReplicaClient implements ReplicaClient {
  readonly type = 's3'
  readonly #bucket: string
  readonly #prefix: string
  readonly #client: S3Client
  readonly #ownsClient: boolean
  readonly #maxAttempts: number
  readonly #retryBaseDelayMs: number

  constructor(opts: S3ReplicaClientOptions) {
    if (!opts.bucket || opts.bucket.includes('/')) {
      throw new ReplicaError('CONFIG_INVALID', `invalid s3 bucket name: ${JSON.stringify(opts.bucket)}`)
    }
    this.#bucket = opts.bucket
    this.#prefix = joinKey(...(opts.prefix ?? '').split('/')) // like Go's path.Join: no empty segments
    this.#ownsClient = !opts.client
    this.#client = opts.client ?? createS3Client(opts)
    this.#maxAttempts = opts.maxAttempts || DEFAULT_S3_MAX_ATTEMPTS
    this.#retryBaseDelayMs = opts.retryBaseDelayMs ?? DEFAULT_S3_RETRY_BASE_DELAY_MS
  }

  /** bucket is the bucket name. */
  get bucket(): string {
    return this.#bucket
  }

  /** prefix is the key root of the replica, without leading or trailing slashes. */
  get prefix(): string {
    return this.#prefix
  }

  /** client is the underlying S3Client. */
  get client(): S3Client {
    return this.#client
  }

  /** child returns a client for `<prefix>/<subPath>` in the same bucket that shares this client's S3Client. */
  child(subPath: string): S3ReplicaClient {
    const parts = subPath.split('/').filter((p) => p !== '' && p !== '.')
    if (parts.length === 0 || parts.includes('..')) {
      throw new ReplicaError('CONFIG_INVALID', `invalid replica sub path: ${JSON.stringify(subPath)}`)
    }
    return new S3ReplicaClient({
      bucket: this.#bucket,
      prefix: joinKey(this.#prefix, ...parts),
      client: this.#client,
      maxAttempts: this.#maxAttempts,
      retryBaseDelayMs: this.#retryBaseDelayMs,
    })
  }

  /** close destroys the S3Client if this client created it. Idempotent. Children share it: close the root last. */
  close(): void {
    if (this.#ownsClient) this.#client.destroy()
  }

  describe(): string {
    return this.#prefix ? `s3://${this.#bucket}/${this.#prefix}` : `s3://${this.#bucket}`
  }

  async generations(opts: OpOptions = {}): Promise<string[]> {
    const dir = `${generationsPath(this.#prefix)}/`
    const generations: string[] = []
    try {
      for await (const page of this.#list(dir, '/', opts)) {
        for (const p of page.CommonPrefixes ?? []) {
          const name = (p.Prefix ?? '').slice(dir.length).replace(/\/$/, '')
          if (isGenerationName(name)) generations.push(name)
        }
      }
    } catch (err) {
      throw wrapError(err, 'list generations', dir)
    }
    return generations.sort()
  }

  async listPrefixes(subPath: string, opts: OpOptions = {}): Promise<string[]> {
    const base = joinKey(this.#prefix, ...subPath.split('/').filter((x) => x !== ''))
    const dir = base === '' ? '' : `${base}/`
    const names: string[] = []
    try {
      for await (const page of this.#list(dir, '/', opts)) {
        for (const p of page.CommonPrefixes ?? []) names.push((p.Prefix ?? '').slice(dir.length).replace(/\/$/, ''))
      }
    } catch (err) {
      throw wrapError(err, 'list prefixes', dir)
    }
    return names.filter((n) => n !== '').sort()
  }

  async listKeys(opts: OpOptions = {}): Promise<string[]> {
    const dir = this.#prefix === '' ? '' : `${this.#prefix}/`
    const keys: string[] = []
    try {
      for await (const page of this.#list(dir, undefined, opts)) {
        for (const o of page.Contents ?? []) if (o.Key) keys.push(o.Key.slice(dir.length))
      }
    } catch (err) {
      throw wrapError(err, 'list keys', dir)
    }
    return keys.sort()
  }

  async deleteGeneration(generation: string, opts: OpOptions = {}): Promise<void> {
    checkGeneration(generation)
    const dir = `${joinKey(generationsPath(this.#prefix), generation)}/`
    try {
      const keys: string[] = []
      for await (const page of this.#list(dir, undefined, opts)) {
        for (const obj of page.Contents ?? []) if (obj.Key) keys.push(obj.Key)
      }
      await this.#deleteKeys(keys, opts)
    } catch (err) {
      throw wrapError(err, 'delete generation', dir)
    }
  }

  async snapshots(generation: string, opts: OpOptions = {}): Promise<SnapshotInfo[]> {
    checkGeneration(generation)
    const dir = `${snapshotsPath(this.#prefix, generation)}/`
    const infos: SnapshotInfo[] = []
    try {
      for await (const page of this.#list(dir, undefined, opts)) {
        for (const obj of page.Contents ?? []) {
          const index = parseSnapshotName((obj.Key ?? '').slice(dir.length))
          if (index === undefined) continue // includes deeper keys: their rest holds a '/'
          infos.push({ generation, index, size: obj.Size ?? 0, createdAt: obj.LastModified ?? new Date(0) })
        }
      }
    } catch (err) {
      throw wrapError(err, 'list snapshots', dir)
    }
    return infos.sort((a, b) => a.index - b.index)
  }

  async writeSnapshot(generation: string, index: number, body: Buffer | Readable, opts: OpOptions = {}): Promise<SnapshotInfo> {
    checkGeneration(generation)
    const key = snapshotKey(this.#prefix, generation, index)
    const createdAt = new Date() // upload start, as Litestream reports it; listings give LastModified
    try {
      const size = Buffer.isBuffer(body) ? await this.#putBuffer(key, body, opts) : await this.#putStream(key, body, opts)
      return { generation, index, size, createdAt }
    } catch (err) {
      throw wrapError(err, 'put snapshot', key)
    }
  }

  async readSnapshot(generation: string, index: number, opts: OpOptions = {}): Promise<Buffer> {
    checkGeneration(generation)
    const key = snapshotKey(this.#prefix, generation, index)
    try {
      return await this.#get(key, opts)
    } catch (err) {
      throw wrapError(err, 'get snapshot', key)
    }
  }

  async deleteSnapshot(generation: string, index: number, opts: OpOptions = {}): Promise<void> {
    checkGeneration(generation)
    const key = snapshotKey(this.#prefix, generation, index)
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: key }), { abortSignal: opts.signal })
    } catch (err) {
      if (isNotFound(err)) return
      throw wrapError(err, 'delete snapshot', key)
    }
  }

  async walSegments(generation: string, opts: OpOptions = {}): Promise<WalSegmentInfo[]> {
    checkGeneration(generation)
    const dir = `${walPath(this.#prefix, generation)}/`
    const infos: WalSegmentInfo[] = []
    try {
      for await (const page of this.#list(dir, undefined, opts)) {
        for (const obj of page.Contents ?? []) {
          const pos = parseWalSegmentName((obj.Key ?? '').slice(dir.length))
          if (pos === undefined) continue
          infos.push({
            generation,
            index: pos.index,
            offset: pos.offset,
            size: obj.Size ?? 0,
            createdAt: obj.LastModified ?? new Date(0),
          })
        }
      }
    } catch (err) {
      throw wrapError(err, 'list wal segments', dir)
    }
    return infos.sort((a, b) => a.index - b.index || a.offset - b.offset)
  }

  async writeWalSegment(generation: string, index: number, offset: number, body: Buffer, opts: OpOptions = {}): Promise<WalSegmentInfo> {
    checkGeneration(generation)
    const key = walSegmentKey(this.#prefix, generation, index, offset)
    const createdAt = new Date()
    try {
      const size = await this.#putBuffer(key, body, opts)
      return { generation, index, offset, size, createdAt }
    } catch (err) {
      throw wrapError(err, 'put wal segment', key)
    }
  }

  async readWalSegment(generation: string, index: number, offset: number, opts: OpOptions = {}): Promise<Buffer> {
    checkGeneration(generation)
    const key = walSegmentKey(this.#prefix, generation, index, offset)
    try {
      return await this.#get(key, opts)
    } catch (err) {
      throw wrapError(err, 'get wal segment', key)
    }
  }

  async deleteWalSegments(
    generation: string,
    segments: ReadonlyArray<{ index: number; offset: number }>,
    opts: OpOptions = {},
  ): Promise<void> {
    checkGeneration(generation)
    const keys = segments.map((s) => walSegmentKey(this.#prefix, generation, s.index, s.offset))
    try {
      await this.#deleteKeys(keys, opts)
    } catch (err) {
      throw wrapError(err, 'delete wal segments', `${walPath(this.#prefix, generation)}/`)
    }
  }

  /** #list yields ListObjectsV2 pages under prefix until the listing is complete. */
  async *#list(prefix: string, delimiter: string | undefined, opts: OpOptions): AsyncGenerator<ListObjectsV2CommandOutput> {
    let token: string | undefined
    do {
      const page = await this.#client.send(
        new ListObjectsV2Command({ Bucket: this.#bucket, Prefix: prefix, Delimiter: delimiter, ContinuationToken: token }),
        { abortSignal: opts.signal },
      )
      yield page
      token = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (token)
  }

  /** #putBuffer uploads a known-length body with one PutObject; it is retried as a whole. */
  async #putBuffer(key: string, body: Buffer, opts: OpOptions): Promise<number> {
    await this.#client.send(new PutObjectCommand({ Bucket: this.#bucket, Key: key, Body: body, ContentLength: body.length }), {
      abortSignal: opts.signal,
    })
    return body.length
  }

  /** #putStream uploads a stream in S3_PART_BYTES parts (one PutObject if it is smaller); a failed upload is aborted. */
  async #putStream(key: string, body: Readable, opts: OpOptions): Promise<number> {
    let size = 0
    const counted = Readable.from(
      (async function* () {
        for await (const chunk of body) {
          const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string)
          size += buf.length
          yield buf
        }
      })(),
      { objectMode: false },
    )
    const ac = new AbortController()
    const onAbort = () => ac.abort(opts.signal?.reason)
    opts.signal?.addEventListener('abort', onAbort, { once: true })
    try {
      opts.signal?.throwIfAborted()
      const upload = new Upload({
        client: this.#client,
        params: { Bucket: this.#bucket, Key: key, Body: counted },
        partSize: S3_PART_BYTES,
        queueSize: S3_UPLOAD_QUEUE_SIZE,
        leavePartsOnError: false,
        abortController: ac,
      })
      await upload.done()
      return size
    } catch (err) {
      body.destroy()
      throw err
    } finally {
      opts.signal?.removeEventListener('abort', onAbort)
    }
  }

  /**
   * #get downloads one object whole. The SDK retries the request until headers arrive, not the body after them:
   * a body that breaks off (reset, premature close, stream error) or ends short of Content-Length is requested
   * again, up to maxAttempts GETs with backoff. Errors of the request itself (after the SDK's retries) and aborts
   * are not retried here.
   */
  async #get(key: string, opts: OpOptions): Promise<Buffer> {
    for (let attempt = 1; ; attempt++) {
      const out = await this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: key }), { abortSignal: opts.signal })
      try {
        return await readBody(out)
      } catch (err) {
        opts.signal?.throwIfAborted()
        if (attempt >= this.#maxAttempts) throw new Error(`gave up after ${attempt} attempt(s)`, { cause: err })
        await sleep(retryDelayMs(this.#retryBaseDelayMs, attempt, false), undefined, { signal: opts.signal })
      }
    }
  }

  /** #deleteKeys deletes keys with DeleteObjects in batches of S3_MAX_DELETE_KEYS; missing keys are fine. */
  async #deleteKeys(keys: readonly string[], opts: OpOptions): Promise<void> {
    for (let i = 0; i < keys.length; i += S3_MAX_DELETE_KEYS) {
      const batch = keys.slice(i, i + S3_MAX_DELETE_KEYS)
      const out = await this.#client.send(
        new DeleteObjectsCommand({ Bucket: this.#bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }),
        { abortSignal: opts.signal },
      )
      const failed = (out.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey')
      if (failed.length > 0) {
        const first = failed[0]!
        throw new Error(`delete ${failed.length} of ${batch.length} objects failed, first ${first.Key}: ${first.Code} ${first.Message ?? ''}`.trim())
      }
    }
  }
}

/** checkGeneration rejects names that are not 16 lowercase hex: '' would widen a delete to every generation. */
function checkGeneration(generation: string): void {
  if (!isGenerationName(generation)) throw new RangeError(`invalid generation name: ${JSON.stringify(generation)}`)
}

/**
 * readBody reads a GetObject response body whole. It rejects, never returns fewer bytes, when the body stream
 * fails (ECONNRESET, premature close) or delivers a length other than the response's Content-Length.
 */
async function readBody(out: GetObjectCommandOutput): Promise<Buffer> {
  if (!out.Body) throw new Error('empty response body')
  let bytes: Uint8Array
  try {
    bytes = await out.Body.transformToByteArray()
  } catch (err) {
    throw new Error(`response body cut short (Content-Length ${out.ContentLength ?? 'unknown'})`, { cause: err })
  }
  if (out.ContentLength !== undefined && bytes.byteLength !== out.ContentLength) {
    throw new Error(`response body truncated: received ${bytes.byteLength} of ${out.ContentLength} bytes`)
  }
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** retryDelayMs is the full-jitter backoff before retry number `retry` (1-based); throttling errors use 5x the base. */
function retryDelayMs(baseDelayMs: number, retry: number, throttled: boolean): number {
  const capMs = Math.min(DEFAULT_S3_RETRY_MAX_DELAY_MS, baseDelayMs * (throttled ? 5 : 1) * 2 ** (retry - 1))
  return Math.floor(Math.random() * capMs)
}

interface SdkErrorLike {
  name?: string
  code?: string
  $metadata?: { httpStatusCode?: number }
  cause?: unknown
}

/** isNotFound reports whether err means the object does not exist (Litestream isNotExists), not a missing bucket. */
function isNotFound(err: unknown): boolean {
  const e = err as SdkErrorLike | undefined
  if (e?.name === 'NoSuchKey' || e?.name === 'NotFound') return true
  return e?.$metadata?.httpStatusCode === 404 && e.name !== 'NoSuchBucket'
}

/** wrapError turns an SDK error into NOT_FOUND or a contextual Error; it never copies request details or credentials. */
function wrapError(err: unknown, what: string, key: string): Error {
  if (err instanceof RangeError || err instanceof ReplicaError) return err
  if (isNotFound(err)) return new ReplicaError('NOT_FOUND', `${what} ${key}: not found`, { cause: err })
  return new Error(`${what} ${key}`, { cause: err })
}

const RETRYABLE_ERROR_NAMES: ReadonlySet<string> = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'RequestLimitExceeded',
  'TooManyRequestsException',
  'BandwidthLimitExceeded',
  'PriorRequestNotComplete',
  'RequestTimeout',
  'RequestTimeoutException',
  'RequestCanceled',
  'TimeoutError',
  'InternalError',
  'ServiceUnavailable',
])
const THROTTLING_ERROR_NAMES: ReadonlySet<string> = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'TooManyRequestsException'])
const NETWORK_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ERR_HTTP2_STREAM_ERROR',
])

/** isRetryableS3Error reports whether another attempt may succeed: throttling, 408, 429, 5xx but 501, timeouts, network errors. */
export function isRetryableS3Error(err: unknown): boolean {
  for (let e = err as SdkErrorLike | undefined, depth = 0; e && depth < 8; e = e.cause as SdkErrorLike | undefined, depth++) {
    if (e.name === 'AbortError') return false
    if (e.name && RETRYABLE_ERROR_NAMES.has(e.name)) return true
    if (e.code && NETWORK_ERROR_CODES.has(e.code)) return true
    const status = e.$metadata?.httpStatusCode ?? 0
    if (status === 408 || status === 429 || (status >= 500 && status !== 501)) return true
  }
  return false
}

type RetryStrategyV2 = Extract<NonNullable<S3ClientConfig['retryStrategy']>, { acquireInitialRetryToken: unknown }>
type RetryToken = Awaited<ReturnType<RetryStrategyV2['acquireInitialRetryToken']>>
type RetryErrorInfo = Parameters<RetryStrategyV2['refreshRetryTokenForRetry']>[1]

function retryToken(count: number, delayMs: number): RetryToken {
  return { getRetryCount: () => count, getRetryDelay: () => delayMs }
}

/**
 * S3RetryStrategy retries what isRetryableS3Error (or the SDK's own classification) calls transient, with
 * exponential backoff and full jitter. It has no retry quota: the replicator loop already backs off on failure.
 * Streaming request bodies are never retried by the SDK, which is why stream uploads go through lib-storage parts.
 */
class S3RetryStrategy implements RetryStrategyV2 {
  readonly mode = 'standard'
  readonly #maxAttempts: number
  readonly #baseDelayMs: number

  constructor(maxAttempts: number, baseDelayMs: number) {
    this.#maxAttempts = maxAttempts
    this.#baseDelayMs = baseDelayMs
  }

  async acquireInitialRetryToken(): Promise<RetryToken> {
    return retryToken(0, 0)
  }

  async refreshRetryTokenForRetry(token: RetryToken, info: RetryErrorInfo): Promise<RetryToken> {
    const retry = token.getRetryCount() + 1
    const retryable = info.errorType === 'THROTTLING' || info.errorType === 'TRANSIENT' || isRetryableS3Error(info.error)
    if (retry >= this.#maxAttempts || !retryable) throw info.error ?? new Error('no retry')
    const throttled = info.errorType === 'THROTTLING' || THROTTLING_ERROR_NAMES.has(info.error?.name ?? '')
    let delayMs = retryDelayMs(this.#baseDelayMs, retry, throttled)
    if (info.retryAfterHint) delayMs = Math.max(delayMs, Math.min(info.retryAfterHint.getTime() - Date.now(), DEFAULT_S3_RETRY_MAX_DELAY_MS))
    return retryToken(retry, delayMs)
  }

  recordSuccess(): void {}
}
