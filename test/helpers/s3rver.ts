/**
 * In-process s3rver for tests: 127.0.0.1, a random free port, a temp data dir, one bucket, credentials S3RVER/S3RVER.
 * s3rver 3.7.1 is patched (patches/s3rver+3.7.1.patch) so delimiter listings find deep common prefixes.
 * @module
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * s3rverCredentials returns the only credentials s3rver accepts for signed requests. A fresh object each
 * call: the AWS SDK writes a `$source` field into the credentials object it is given (a frozen one throws).
 */
export function s3rverCredentials(): { accessKeyId: string; secretAccessKey: string } {
  return { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }
}

/** S3rverInstance is a running s3rver; stop() closes it and removes its data dir. */
export interface S3rverInstance {
  /** endpoint is `http://127.0.0.1:<port>`. */
  readonly endpoint: string
  readonly bucket: string
  /** dir is the data directory; an object lives at `<dir>/<bucket>/<key>._S3rver_object`. */
  readonly dir: string
  stop(): Promise<void>
}

/** The subset of s3rver's (untyped, CommonJS) API we use. */
interface S3rverServer {
  run(): Promise<AddressInfo>
  close(): Promise<void>
  httpServer?: Server
}
type S3rverConstructor = new (opts: Record<string, unknown>) => S3rverServer

/** startS3rver starts s3rver in this process with a fresh data dir and bucket `test-bucket`. */
export async function startS3rver(opts: { bucket?: string } = {}): Promise<S3rverInstance> {
  const bucket = opts.bucket ?? 'test-bucket'
  const dir = await mkdtemp(join(tmpdir(), 's3rver-'))
  const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: dir,
    configureBuckets: [{ name: bucket }],
  })
  let addr: AddressInfo
  try {
    addr = await server.run()
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw new Error('start s3rver', { cause: err })
  }
  let stopped: Promise<void> | undefined
  return {
    endpoint: `http://127.0.0.1:${addr.port}`,
    bucket,
    dir,
    stop() {
      stopped ??= (async () => {
        server.httpServer?.closeAllConnections()
        await server.close()
        await rm(dir, { recursive: true, force: true })
      })()
      return stopped
    },
  }
}

/** s3rverObjectPath is where s3rver stores the bytes of key on disk. */
export function s3rverObjectPath(s3: Pick<S3rverInstance, 'dir' | 'bucket'>, key: string): string {
  return join(s3.dir, s3.bucket, ...key.split('/').slice(0, -1), `${key.split('/').pop()}._S3rver_object`)
}
