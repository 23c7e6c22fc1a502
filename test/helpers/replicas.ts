/** Test replicas (file and s3rver) with the stock litestream v0.3.13 restore as the oracle. */
import { execFile } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import type { TestContext } from 'node:test'
import { loadS3Backend, parseReplicaUrl } from '../../src/replica-url.js'
await loadS3Backend() // s3:// URLs below need it
import type { ReplicaClient } from '../../src/replica-client.js'
import { litestreamBin } from './litestream.js'
import { startS3rver } from './s3rver.js'

/** S3_ENV is what our CLI needs to sign requests to s3rver. */
export const S3_ENV = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' }

/** TestReplica is a replica location both our CLI and stock litestream can use. */
export interface TestReplica {
  readonly kind: 'file' | 's3'
  /** url is what our CLI takes. */
  readonly url: string
  readonly env: Record<string, string>
  readonly client: ReplicaClient
  /** stockRestore runs `litestream restore` into out and returns its exit code and output. */
  stockRestore(out: string, extra?: readonly string[]): Promise<{ code: number; output: string }>
}

/** fileReplica is a local directory replica. */
export function fileReplica(dir: string): TestReplica {
  const root = path.join(dir, 'replica')
  const url = `file://${root}`
  return {
    kind: 'file',
    url,
    env: {},
    client: parseReplicaUrl(url, {}),
    stockRestore: (out, extra = []) => runStock(['restore', ...extra, '-o', out, url]),
  }
}

/** S3Server is one s3rver shared by the tests of a file. */
export type S3Server = Awaited<ReturnType<typeof startS3rver>>

/** s3Replica is a random prefix in the shared s3rver bucket. */
export function s3Replica(s3: S3Server, dir: string, prefix = `t-${crypto.randomBytes(4).toString('hex')}`): TestReplica {
  const url = `s3://${s3.bucket}/${prefix}?endpoint=${encodeURIComponent(s3.endpoint)}&region=us-east-1&forcePathStyle=true`
  const cfg = path.join(dir, `litestream-${prefix}.yml`)
  const fakeDb = path.join(dir, `${prefix}.db`)
  fs.writeFileSync(
    cfg,
    [
      'dbs:',
      `  - path: ${fakeDb}`,
      '    replicas:',
      '      - type: s3',
      `        bucket: ${s3.bucket}`,
      `        path: ${prefix}`,
      `        endpoint: ${s3.endpoint}`,
      '        region: us-east-1',
      '        force-path-style: true',
      '        access-key-id: S3RVER',
      '        secret-access-key: S3RVER',
      '',
    ].join('\n'),
  )
  return {
    kind: 's3',
    url,
    env: S3_ENV,
    client: parseReplicaUrl(url, S3_ENV),
    stockRestore: (out, extra = []) => runStock(['restore', '-config', cfg, ...extra, '-o', out, fakeDb]),
  }
}

function runStock(args: readonly string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(litestreamBin(), args, { env: { ...process.env, ...S3_ENV } }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0
      resolve({ code, output: stdout + stderr })
    })
  })
}

/** withS3 starts s3rver for the file's tests and stops it after them. */
export async function withS3(t: { after: (fn: () => Promise<void>) => void }): Promise<S3Server> {
  const s3 = await startS3rver()
  t.after(() => s3.stop())
  return s3
}

export type { TestContext }
