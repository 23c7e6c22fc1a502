import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { hasCode } from '../src/errors.js'
import { FileReplicaClient } from '../src/file/replica-client.js'
import type { ReplicaClient } from '../src/replica-client.js'
import { childClient, loadS3Backend, parseReplicaUrl } from '../src/replica-url.js'
await loadS3Backend() // s3:// URLs below need it
import { S3ReplicaClient } from '../src/s3/replica-client.js'

function s3(url: string, env: Record<string, string | undefined> = {}): S3ReplicaClient {
  const c = parseReplicaUrl(url, env)
  assert.ok(c instanceof S3ReplicaClient, `${url} -> S3ReplicaClient`)
  return c
}

function closeLater(t: { after(fn: () => void): void }, c: ReplicaClient): void {
  if (c instanceof S3ReplicaClient) t.after(() => c.close())
}

test('file URLs and plain paths', () => {
  const cases: Array<[string, string]> = [
    ['file:///var/backups/replica', '/var/backups/replica'],
    ['file://relative/dir', join(process.cwd(), 'relative/dir')],
    ['/abs/plain', '/abs/plain'],
    ['rel/plain', join(process.cwd(), 'rel/plain')],
    ['./dot', join(process.cwd(), 'dot')],
    ['file:///with%20space', '/with space'],
  ]
  for (const [url, want] of cases) {
    const c = parseReplicaUrl(url, {})
    assert.ok(c instanceof FileReplicaClient, url)
    assert.equal(c.root, want, url)
    assert.equal(c.describe(), `file://${want}`, url)
  }
})

test('s3 URL, Litestream v0.5 form with endpoint, region and forcePathStyle', async (t) => {
  const c = s3('s3://my-bucket/backups/app?endpoint=http://127.0.0.1:9000&region=eu-west-1&forcePathStyle=true', {
    AWS_ACCESS_KEY_ID: 'AK',
    AWS_SECRET_ACCESS_KEY: 'SK',
  })
  closeLater(t, c)
  assert.equal(c.bucket, 'my-bucket')
  assert.equal(c.prefix, 'backups/app')
  assert.equal(c.describe(), 's3://my-bucket/backups/app')
  assert.equal(await c.client.config.region(), 'eu-west-1')
  assert.equal(c.client.config.forcePathStyle, true)
  assert.equal(await c.client.config.requestChecksumCalculation(), 'WHEN_REQUIRED')
  const creds = await c.client.config.credentials()
  assert.equal(creds.accessKeyId, 'AK')
  const ep = await c.client.config.endpoint?.()
  assert.equal(`${ep?.protocol}//${ep?.hostname}:${ep?.port}`, 'http://127.0.0.1:9000')
})

test('s3 URL details: endpoint without scheme, forcePathStyle=false, env endpoint, v0.3 localhost host form', async (t) => {
  const a = s3('s3://b/p?endpoint=minio:9000&forcePathStyle=false')
  closeLater(t, a)
  assert.equal((await a.client.config.endpoint?.())?.protocol, 'http:', 'scheme added')
  assert.equal(a.client.config.forcePathStyle, false, 'explicit false wins')

  const b = s3('s3://b/p', { AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:4569' })
  closeLater(t, b)
  assert.equal(String((await b.client.config.endpoint?.())?.port), '4569', 'AWS_ENDPOINT_URL_S3 from env')
  assert.equal(b.client.config.forcePathStyle, true)

  const c = s3('s3://b/p?endpoint=http://127.0.0.1:1', { AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:4569' })
  closeLater(t, c)
  assert.equal(String((await c.client.config.endpoint?.())?.port), '1', 'query endpoint beats env')

  const d = s3('s3://mybucket.localhost:4569/backups/app')
  closeLater(t, d)
  assert.equal(d.bucket, 'mybucket')
  assert.equal(d.prefix, 'backups/app')
  const ep = await d.client.config.endpoint?.()
  assert.equal(`${ep?.protocol}//${ep?.hostname}:${ep?.port}`, 'http://localhost:4569')

  const e = s3('s3://bucket-only')
  closeLater(t, e)
  assert.equal(e.prefix, '')
  assert.equal(e.describe(), 's3://bucket-only')
  const f = s3('s3://b//a//b/?region=us-west-2')
  closeLater(t, f)
  assert.equal(f.prefix, 'a/b', 'slashes cleaned')
})

test('bad URLs are CONFIG_INVALID with a clear message and no credentials', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['   ', /empty/],
    ['gs://bucket/x', /unsupported replica url scheme "gs"/],
    ['file://', /needs a directory/],
    ['file:///x?y=1', /no query/],
    ['s3:///prefix', /invalid s3 bucket name/],
    ['s3://b/p?skipVerify=true', /unknown s3 replica url parameter "skipVerify"/],
    ['s3://b/p?forcePathStyle=yes', /forcePathStyle must be true or false/],
    ['s3://b:9000/p', /host must be a bucket name/],
    ['s3://AKIA:supersecret@b/p', /must not carry credentials/],
    ['s3://b/p?endpoint=http://u:pw@host:1', /endpoint in s3:\/\/b\/p must not carry credentials/],
    ['s3://b/p?endpoint=http://[bad', /invalid endpoint/],
    ['s3://b/p?region=bad%20region', /invalid region/],
  ]
  for (const [url, want] of cases) {
    assert.throws(
      () => parseReplicaUrl(url, {}),
      (err: unknown) => {
        assert.ok(hasCode(err, 'CONFIG_INVALID'), `${url}: ${String(err)}`)
        assert.match((err as Error).message, want, url)
        assert.doesNotMatch((err as Error).message, /supersecret|pw@/, `${url}: message leaks credentials`)
        return true
      },
      url,
    )
  }
})

test('childClient roots a client of the same backend at a sub path', (t) => {
  const f = childClient(parseReplicaUrl('/srv/replica', {}), 'databases/abc')
  assert.ok(f instanceof FileReplicaClient)
  assert.equal(f.describe(), 'file:///srv/replica/databases/abc')

  const root = s3('s3://b/root?endpoint=http://127.0.0.1:1')
  closeLater(t, root)
  const c = childClient(root, 'databases/abc')
  assert.ok(c instanceof S3ReplicaClient)
  assert.equal(c.describe(), 's3://b/root/databases/abc')
  assert.equal(c.client, root.client, 'one S3Client for all databases')

  const plain = { type: 'memory' } as unknown as ReplicaClient
  assert.throws(() => childClient(plain, 'x'), (err: unknown) => hasCode(err, 'CONFIG_INVALID'))
})

test('a file replica never loads the AWS SDK (about 20 MiB of memory it does not need)', async (t) => {
  const { spawnSync } = await import('node:child_process')
  const fs = await import('node:fs')
  const os = await import('node:os')
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'no-sdk-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  // A resolve hook that refuses every @aws-sdk/* module: the CLI must load without one.
  fs.writeFileSync(join(dir, 'hooks.mjs'), `export async function resolve(s, c, next) { if (s.startsWith('@aws-sdk/')) throw new Error('AWS SDK loaded: ' + s); return next(s, c) }\n`)
  fs.writeFileSync(join(dir, 'register.mjs'), `import { register } from 'node:module'\nregister(${JSON.stringify(`file://${join(dir, 'hooks.mjs')}`)})\n`)
  const run = (args: string[]) => spawnSync(process.execPath, ['--import', join(dir, 'register.mjs'), 'dist/src/main.js', ...args], { encoding: 'utf8', timeout: 30_000 })
  const clients = join(dir, 'clients')
  fs.mkdirSync(clients)
  // An unknown flag exits 2 after the whole CLI, every static import included, has loaded.
  const usage = run(['-watch-dir', clients, '-bucket', `file://${join(dir, 'replica')}`, '-no-such-flag'])
  assert.equal(usage.status, 2, usage.stderr)
  assert.doesNotMatch(usage.stderr, /AWS SDK loaded/)
  // The hook itself works: an s3:// replica does load the SDK, and the hook refuses it.
  const { default: Database } = await import('better-sqlite3')
  const app = new Database(join(dir, 'app.db'))
  app.exec('CREATE TABLE t (x)')
  app.close()
  const s3 = run(['replicate', join(dir, 'app.db'), 's3://bucket/x'])
  assert.notEqual(s3.status, 0)
  assert.match(s3.stderr, /AWS SDK loaded/)
})
