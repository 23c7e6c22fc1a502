/**
 * Replica URLs -> ReplicaClient. Accepted forms:
 *
 *   /abs/dir, rel/dir                 file replica (a plain path)
 *   file:///abs/dir, file://rel/dir   file replica
 *   s3://bucket/prefix                S3; credentials and AWS_ENDPOINT_URL_S3 from env (s3ClientConfigFromEnv)
 *   s3://bucket/prefix?endpoint=http://host:port&region=r&forcePathStyle=true   Litestream v0.5's form
 *   s3://bucket.localhost:port/prefix Litestream v0.3's form for a local S3 (http, us-east-1, path style)
 *
 * @module
 */
import { ReplicaError } from './errors.js'
import { FileReplicaClient } from './file/replica-client.js'
import type { ReplicaClient } from './replica-client.js'
import type { S3ConnectionOptions, S3ReplicaClient } from './s3/replica-client.js'

/** The S3 backend, loaded on demand: the AWS SDK costs about 20 MiB of memory that a file replica never needs. */
let s3Backend: typeof import('./s3/replica-client.js') | undefined

/** loadS3Backend loads the S3 backend; parseReplicaUrl needs it for s3:// URLs. Idempotent. */
export async function loadS3Backend(): Promise<void> {
  s3Backend ??= await import('./s3/replica-client.js')
}

/** loadBackendFor loads what parseReplicaUrl needs for url (the S3 backend for s3:// URLs, nothing otherwise). */
export async function loadBackendFor(url: string): Promise<void> {
  if (/^s3:\/\//i.test(url.trim())) await loadS3Backend()
}

/** S3_URL_PARAMS are the query parameters an s3:// replica URL may carry. */
const S3_URL_PARAMS: readonly string[] = ['endpoint', 'region', 'forcePathStyle', 'force-path-style']

/** ChildReplicaClient is a ReplicaClient that can derive a client for a sub path of its root. */
export interface ChildReplicaClient extends ReplicaClient {
  child(subPath: string): ReplicaClient
}

/**
 * parseReplicaUrl returns a client for a replica URL or plain path; env supplies S3 credentials and endpoint
 * defaults. An s3:// URL needs the S3 backend loaded first (loadBackendFor).
 */
export function parseReplicaUrl(url: string, env: Readonly<Record<string, string | undefined>>): ReplicaClient {
  const raw = url.trim()
  if (raw === '') throw invalid('replica url is empty')
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(raw)?.[1]?.toLowerCase()
  if (scheme === undefined) return new FileReplicaClient(raw)
  switch (scheme) {
    case 'file':
      return parseFileUrl(raw)
    case 's3':
      return parseS3Url(raw, env)
    default:
      throw invalid(`unsupported replica url scheme ${JSON.stringify(scheme)} in ${redact(raw)}: want file:// or s3://`)
  }
}

/** childClient returns a client of the same backend rooted at `<root>/<subPath>`; S3 children share one S3Client. */
export function childClient(client: ReplicaClient, subPath: string): ReplicaClient {
  if (!isChildReplicaClient(client)) throw invalid(`replica client type ${JSON.stringify(client.type)} has no child clients`)
  return client.child(subPath)
}

function isChildReplicaClient(client: ReplicaClient): client is ChildReplicaClient {
  return typeof (client as Partial<ChildReplicaClient>).child === 'function'
}

function parseFileUrl(raw: string): FileReplicaClient {
  const rest = raw.slice('file://'.length)
  if (/[?#]/.test(rest)) throw invalid(`file replica url takes no query or fragment: ${raw}`)
  let path: string
  try {
    path = decodeURIComponent(rest)
  } catch {
    throw invalid(`file replica url has a malformed %-escape: ${raw}`)
  }
  if (path === '' || path === '/') throw invalid(`file replica url needs a directory: ${raw}`)
  return new FileReplicaClient(path) // 'file:///abs' -> '/abs'; 'file://rel/dir' -> 'rel/dir' from the cwd
}

function parseS3Url(raw: string, env: Readonly<Record<string, string | undefined>>): S3ReplicaClient {
  if (!s3Backend) throw new Error('internal: the S3 backend is not loaded (await loadBackendFor(url) first)')
  const { S3ReplicaClient, s3ClientConfigFromEnv } = s3Backend
  let u: URL
  try {
    u = new URL(raw)
  } catch (err) {
    throw invalid(`malformed s3 replica url: ${redact(raw)}`, err)
  }
  if (u.username || u.password) {
    throw invalid('s3 replica url must not carry credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY')
  }
  const shown = `s3://${u.host}${u.pathname}` // no user info, no query: nothing secret
  for (const key of u.searchParams.keys()) {
    if (!S3_URL_PARAMS.includes(key)) throw invalid(`unknown s3 replica url parameter ${JSON.stringify(key)} in ${shown}: want one of ${S3_URL_PARAMS.join(', ')}`)
  }
  let prefix: string
  try {
    prefix = decodeURIComponent(u.pathname)
  } catch (err) {
    throw invalid(`s3 replica url has a malformed %-escape: ${shown}`, err)
  }

  // Connection options: env first, then the host form, then query parameters.
  let conn: S3ConnectionOptions = s3ClientConfigFromEnv(env)
  let bucket = u.hostname
  const local = /^(.+)\.localhost$/.exec(bucket)
  if (local) {
    bucket = local[1]!
    conn = { ...conn, endpoint: `http://localhost${u.port ? `:${u.port}` : ''}`, region: conn.region ?? 'us-east-1' }
  } else if (u.port) {
    throw invalid(`s3 replica url host must be a bucket name, got ${JSON.stringify(u.host)}: pass the store as ?endpoint=`)
  }
  if (!/^[a-z0-9][a-z0-9.\-_]{0,254}$/i.test(bucket)) throw invalid(`invalid s3 bucket name ${JSON.stringify(bucket)} in ${shown}`)

  const endpoint = u.searchParams.get('endpoint')
  if (endpoint !== null) conn = { ...conn, endpoint: parseEndpoint(endpoint, shown) }
  const region = u.searchParams.get('region')
  if (region !== null) {
    if (!/^[a-z0-9-]+$/i.test(region)) throw invalid(`invalid region ${JSON.stringify(region)} in ${shown}`)
    conn = { ...conn, region }
  }
  const pathStyle = u.searchParams.get('forcePathStyle') ?? u.searchParams.get('force-path-style')
  if (pathStyle !== null) {
    if (pathStyle !== 'true' && pathStyle !== 'false') throw invalid(`forcePathStyle must be true or false in ${shown}`)
    conn = { ...conn, forcePathStyle: pathStyle === 'true' }
  }
  return new S3ReplicaClient({ ...conn, bucket, prefix })
}

/** parseEndpoint checks an endpoint and adds http:// when it has no scheme, as Litestream v0.5 does. */
function parseEndpoint(value: string, shown: string): string {
  const withScheme = /^https?:\/\//i.test(value) ? value : `http://${value}`
  try {
    const e = new URL(withScheme)
    if (e.username || e.password) throw invalid(`endpoint in ${shown} must not carry credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`)
    return withScheme.replace(/\/+$/, '')
  } catch (err) {
    if (err instanceof ReplicaError) throw err
    throw invalid(`invalid endpoint ${JSON.stringify(value)} in ${shown}`)
  }
}

/** redact drops a URL's user info and query so messages never carry credentials. */
function redact(url: string): string {
  return url.replace(/[?#].*$/, '').replace(/^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)[^/@]*@/, '$1***@')
}

function invalid(message: string, cause?: unknown): ReplicaError {
  return new ReplicaError('CONFIG_INVALID', message, cause === undefined ? undefined : { cause })
}
