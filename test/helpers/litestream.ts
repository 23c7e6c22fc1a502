/**
 * The stock Litestream v0.3.13 binary (@flydotio/litestream-linux-x64) as a test oracle. Run it directly with
 * execFile, never through npx. Its `s3://` URLs ignore `?endpoint=`, so S3 tests point it at s3rver through a
 * config file (writeLitestreamS3Config) or the `s3://bucket.localhost:port/prefix` host form (s3RestoreUrl).
 * @module
 */
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** LITESTREAM_S3RVER_ENV signs the binary's requests to s3rver when it uses a URL instead of a config file. */
export const LITESTREAM_S3RVER_ENV: Readonly<Record<string, string>> = Object.freeze({
  AWS_ACCESS_KEY_ID: 'S3RVER',
  AWS_SECRET_ACCESS_KEY: 'S3RVER',
})

/** litestreamBin returns the absolute path of the litestream binary, or throws if it is not installed. */
export function litestreamBin(): string {
  const bin = fileURLToPath(new URL('../../node_modules/@flydotio/litestream-linux-x64/litestream', import.meta.url))
  if (!existsSync(bin)) {
    throw new Error(`litestream binary missing at ${bin}: run npm ci (needs linux-x64; package @flydotio/litestream-linux-x64)`)
  }
  return bin
}

/** LitestreamResult is the outcome of one litestream run; a non-zero exit is a result, not a rejection. */
export interface LitestreamResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** runLitestream runs `litestream <args>` with process.env plus env, and resolves with its exit code and output. */
export function runLitestream(args: readonly string[], env: Readonly<Record<string, string>> = {}): Promise<LitestreamResult> {
  const bin = litestreamBin()
  return new Promise((resolve, reject) => {
    execFile(bin, args, { env: { ...process.env, ...env }, timeout: 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        reject(new Error(`run litestream ${args.join(' ')}`, { cause: err })) // spawn failure or timeout
        return
      }
      resolve({ code: err ? (err.code as number) : 0, stdout, stderr })
    })
  })
}

/** runLitestreamRestore runs `litestream restore <args>`. */
export function runLitestreamRestore(args: readonly string[], env: Readonly<Record<string, string>> = {}): Promise<LitestreamResult> {
  return runLitestream(['restore', ...args], env)
}

/** s3RestoreUrl is the v0.3.13 URL for a replica on a local s3rver: `s3://<bucket>.localhost:<port>/<prefix>`. */
export function s3RestoreUrl(endpoint: string, bucket: string, prefix: string): string {
  const u = new URL(endpoint)
  if (u.hostname !== '127.0.0.1' && u.hostname !== 'localhost') {
    throw new Error(`s3RestoreUrl: litestream v0.3.13 URLs only reach localhost, got endpoint ${endpoint}: use writeLitestreamS3Config`)
  }
  return `s3://${bucket}.localhost:${u.port}/${prefix.replace(/^\/+|\/+$/g, '')}`
}

/** LitestreamS3Config says where a replica lives; dbPath (default `<dir>/db.sqlite`) names the database in the config. */
export interface LitestreamS3ConfigOptions {
  readonly endpoint: string
  readonly bucket: string
  /** path is the key prefix, used verbatim by litestream (no leading slash). */
  readonly path: string
  readonly dbPath?: string
}

/**
 * writeLitestreamS3Config writes `<dir>/litestream.yml` with one database and one s3rver replica, for
 * `litestream restore -config <configPath> -o <out> <dbPath>`.
 */
export async function writeLitestreamS3Config(
  dir: string,
  opts: LitestreamS3ConfigOptions,
): Promise<{ configPath: string; dbPath: string }> {
  const configPath = join(dir, 'litestream.yml')
  const dbPath = opts.dbPath ?? join(dir, 'db.sqlite')
  const yaml = [
    'dbs:',
    `  - path: ${JSON.stringify(dbPath)}`,
    '    replicas:',
    '      - type: s3',
    `        bucket: ${JSON.stringify(opts.bucket)}`,
    `        path: ${JSON.stringify(opts.path)}`,
    `        endpoint: ${JSON.stringify(opts.endpoint)}`,
    '        region: us-east-1',
    '        force-path-style: true',
    '        access-key-id: S3RVER',
    '        secret-access-key: S3RVER',
    '',
  ].join('\n')
  await writeFile(configPath, yaml, { mode: 0o600 })
  return { configPath, dbPath }
}
