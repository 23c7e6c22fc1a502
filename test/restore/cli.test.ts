/** The restore, verify, audit and list commands, run in-process with a fake CliIo. */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { auditCommand, listCommand, restoreCommand, verifyCommand } from '../../src/cli/restore.js'
import type { CliIo } from '../../src/cli/replicate.js'
import { NOOP_LOGGER } from '../../src/log.js'
import { childClient } from '../../src/replica-url.js'
import { digest, openApp, tmpDir } from '../helpers/db.js'
import { s3Replica, withS3 } from '../helpers/replicas.js'
import { buildHistory, buildReplica, copyReplica, rewrite } from './fixture.js'

interface Captured {
  io: CliIo
  out: () => string
  err: () => string
}

function fakeIo(env: Record<string, string> = {}): Captured {
  let out = ''
  let err = ''
  return {
    io: { env, stdout: (s) => void (out += s), stderr: (s) => void (err += s), log: NOOP_LOGGER, onSignal: () => {} },
    out: () => out,
    err: () => err,
  }
}

const GUID = '5f0e8c4a-1b2d-4e3f-8a9b-0c1d2e3f4a5b'

test('restore command: replica URL, GUID under -bucket, -index/-timestamp/-generation, -f, and exit codes', async (t) => {
  const b = await buildReplica(t)
  const url = `file://${b.root}`
  const last = b.points.at(-1)!

  // URL form.
  const out = path.join(b.dir, 'cli.db')
  let c = fakeIo()
  assert.equal(await restoreCommand(['-o', out, url], c.io), 0, c.err())
  assert.match(c.out(), new RegExp(`^restored ${b.generation}/00000002:${last.pos.offset} from ${url} to ${out} `))
  assert.deepEqual(digest(out), last.digest)

  // Existing output: failure (1) without -f, success with -f.
  c = fakeIo()
  assert.equal(await restoreCommand(['-o', out, url], c.io), 1)
  assert.match(c.err(), /^error: cannot restore: .*cli\.db already exists \(use force to replace it\)\n$/)
  c = fakeIo()
  assert.equal(await restoreCommand(['-f', '-o', out, '-index', '1', url], c.io), 0, c.err())
  assert.deepEqual(digest(out), b.points[4]!.digest, '-index 1')

  // -timestamp and -generation.
  const ts = path.join(b.dir, 'ts.db')
  c = fakeIo()
  assert.equal(await restoreCommand(['-o', ts, '-timestamp', b.points[1]!.at.toISOString(), '-generation', b.generation, url], c.io), 0, c.err())
  assert.deepEqual(digest(ts), b.points[1]!.digest)

  // GUID under -bucket: <root>/databases/<guid>; default output ./<guid>.db is not used here (-o given).
  const bucket = path.join(b.dir, 'bucket')
  fs.cpSync(b.root, path.join(bucket, 'databases', GUID), { recursive: true })
  const g = path.join(b.dir, 'guid.db')
  c = fakeIo()
  assert.equal(await restoreCommand(['-bucket', `file://${bucket}`, '-o', g, GUID], c.io), 0, c.err())
  assert.deepEqual(digest(g), last.digest)

  // Damaged replica: exit 1 with the object named.
  const d = copyReplica(b, 'damaged')
  rewrite(d.seg(2, 0), (x) => x.subarray(0, x.length - 4120))
  c = fakeIo()
  assert.equal(await restoreCommand(['-o', path.join(b.dir, 'bad.db'), `file://${d.root}`], c.io), 1)
  assert.match(c.err(), /^error: generations\/[0-9a-f]{16}\/wal\/00000002_00000000\.wal\.lz4: ends with \d+ frame\(s\) after its last commit frame/)
  assert.equal(fs.existsSync(path.join(b.dir, 'bad.db')), false)

  // Usage errors: exit 2 with the reason and the usage text.
  const usage: [string[], RegExp][] = [
    [[], /missing <guid \| replica-url> argument/],
    [[url], /missing -o <out\.db>: required when restoring from a replica URL/],
    [[GUID], /a database GUID needs -bucket/],
    [['-bucket', `file://${bucket}`, '-o', 'x.db', url], /-bucket applies to a database GUID/],
    [['-o', 'x.db', '-index', 'zz', url], /invalid -index "zz"/],
    [['-o', 'x.db', '-timestamp', 'yesterday', url], /invalid -timestamp "yesterday": want RFC3339/],
    [['-o', 'x.db', '-generation', 'ABC', url], /invalid -generation "ABC"/],
    [['-o', 'x.db', '-nope', url], /flag provided but not defined: -nope/],
    [['-o', 'x.db', 'ftp://x/y'], /unsupported replica url scheme "ftp"/],
    [['-o', 'x.db', url, 'extra'], /unexpected argument "extra"/],
  ]
  for (const [argv, re] of usage) {
    c = fakeIo()
    assert.equal(await restoreCommand(argv, c.io), 2, `${argv.join(' ')}: ${c.err()}`)
    assert.match(c.err(), re)
    assert.match(c.err(), /Usage: litestream-manager restore/)
  }
  c = fakeIo()
  assert.equal(await restoreCommand(['-h'], c.io), 0)
  assert.match(c.out(), /-timestamp string/)
})

test('verify, audit and list commands', async (t) => {
  const b = await buildReplica(t)
  const url = `file://${b.root}`
  let c = fakeIo()
  assert.equal(await verifyCommand([url], c.io), 0, c.err())
  assert.match(c.out(), new RegExp(`^verified    ${url}\ngeneration  ${b.generation}\nposition    00000002:${b.points.at(-1)!.pos.offset} \\(snapshot index 00000000\\)\n`))
  assert.match(c.out(), /\nintegrity   ok /)
  assert.match(c.out(), new RegExp(`\ntables      t=${b.points.at(-1)!.digest.tables.t}\n`))
  c = fakeIo()
  assert.equal(await verifyCommand(['-json', '-index', '0', url], c.io), 0, c.err())
  const j = JSON.parse(c.out()) as { ok: boolean; index: number; tables: Record<string, number>; timeRange: { from: string; to: string } }
  assert.equal(j.ok, true)
  assert.equal(j.index, 0)
  assert.deepEqual(j.tables, b.points[2]!.digest.tables)
  assert.ok(Date.parse(j.timeRange.from) <= Date.parse(j.timeRange.to))

  c = fakeIo()
  assert.equal(await auditCommand([url], c.io), 0, c.err())
  assert.equal(c.out(), 'audit: no violations in 1 replica(s)\n')

  const d = copyReplica(b, 'damaged')
  fs.rmSync(d.seg(1, 0))
  fs.writeFileSync(path.join(d.root, 'junk'), '')
  c = fakeIo()
  assert.equal(await verifyCommand([`file://${d.root}`], c.io), 1)
  assert.match(c.err(), /^error: missing initial wal segment/)
  c = fakeIo()
  assert.equal(await auditCommand([`file://${d.root}`], c.io), 1)
  assert.match(c.out(), /^\[foreign-key\] junk: /m)
  assert.match(c.out(), /^\[missing-initial-segment\] generations\//m)
  assert.match(c.out(), /audit: 2 violation\(s\) in 1 replica\(s\)\n$/)
  c = fakeIo()
  assert.equal(await auditCommand(['-json', `file://${d.root}`], c.io), 1)
  assert.deepEqual(
    (JSON.parse(c.out()) as { violations: { rule: string }[] }).violations.map((v) => v.rule),
    ['foreign-key', 'missing-initial-segment'],
  )

  // Bucket-wide: every database under -bucket.
  const bucket = path.join(b.dir, 'bucket')
  fs.cpSync(b.root, path.join(bucket, 'databases', GUID), { recursive: true })
  const other = '00000000-0000-4000-8000-000000000001'
  fs.cpSync(d.root, path.join(bucket, 'databases', other), { recursive: true })
  c = fakeIo()
  assert.equal(await auditCommand(['-bucket', `file://${bucket}`], c.io), 1)
  assert.match(c.out(), new RegExp(`^${other} \\[missing-initial-segment\\]`, 'm'))
  assert.match(c.out(), /audit: 2 violation\(s\) in 2 replica\(s\)\n$/)
  c = fakeIo()
  assert.equal(await auditCommand([GUID, '-bucket', `file://${bucket}`], c.io), 0, c.err())

  c = fakeIo()
  assert.equal(await listCommand(['-bucket', `file://${bucket}`], c.io), 0, c.err())
  assert.match(c.out(), new RegExp(`: 2 database\\(s\\)\n${other}\n  ${b.generation}  snapshots 00000000  last index 00000002 `))
  assert.match(c.out(), new RegExp(`\n${GUID}\n  ${b.generation}  `))
  c = fakeIo()
  assert.equal(await listCommand(['-json', url], c.io), 0, c.err())
  const l = JSON.parse(c.out()) as { generations: { generation: string; segments: number }[] }
  assert.deepEqual(
    l.generations.map((g) => [g.generation, g.segments]),
    [[b.generation, 6]],
  )
  c = fakeIo()
  assert.equal(await listCommand([], c.io), 2)
  assert.match(c.err(), /missing -bucket/)
})

test('restore command over S3: GUID under -bucket s3://bucket/prefix with -endpoint', async (t) => {
  const s3 = await withS3(t)
  const dir = tmpDir(t)
  const env = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' }
  const root = s3Replica(s3, dir, 'svc').client
  const dbPath = path.join(dir, `${GUID}.db`)
  const app = openApp(dbPath)
  t.after(() => app.close())
  app.pragma('wal_autocheckpoint = 0')
  await buildHistory(dbPath, childClient(root, `databases/${GUID}`), app)
  const out = path.join(dir, 'out.db')
  const flags = ['-bucket', `s3://${s3.bucket}/svc`, '-endpoint', s3.endpoint, '-force-path-style']
  let c = fakeIo(env)
  assert.equal(await restoreCommand([...flags, '-o', out, GUID], c.io), 0, c.err())
  assert.deepEqual(digest(out), digest(app))
  c = fakeIo(env)
  assert.equal(await auditCommand([...flags, GUID], c.io), 0, c.out() + c.err())
  c = fakeIo(env)
  const code = await listCommand(flags, c.io)
  // Enumerating guids needs a delimiter listing the S3 client does not offer (yet): a clear failure.
  if (code !== 0) assert.match(c.err(), /has no listPrefixes\(\)/)
  else assert.match(c.out(), new RegExp(`\n${GUID}\n`))
})
