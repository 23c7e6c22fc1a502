// The stock litestream v0.3.13 binary is our oracle: it must be the right version, and it must find and restore
// what our ReplicaClients write (file replica, and s3rver through both a config file and a v0.3 URL).
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { FileReplicaClient } from '../src/file/replica-client.js'
import { encodeFrame } from '../src/lz4.js'
import type { ReplicaClient } from '../src/replica-client.js'
import { S3ReplicaClient } from '../src/s3/replica-client.js'
import {
  LITESTREAM_S3RVER_ENV,
  litestreamBin,
  runLitestream,
  runLitestreamRestore,
  s3RestoreUrl,
  writeLitestreamS3Config,
} from './helpers/litestream.js'
import { s3rverCredentials, startS3rver, type S3rverInstance } from './helpers/s3rver.js'

const GEN = '85704629b1e96dd5'

let dir: string
let dbBytes: Buffer

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oracle-'))
  // A small database in rollback-journal mode, so the file alone is the whole database: a valid snapshot.
  const src = join(dir, 'src.db')
  const db = new Database(src)
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)')
  const ins = db.prepare('INSERT INTO t (v) VALUES (?)')
  db.transaction(() => {
    for (let i = 0; i < 50; i++) ins.run(`row ${i}`)
  })()
  db.close()
  dbBytes = await readFile(src)
})

after(() => rm(dir, { recursive: true, force: true }))

/** writeSnapshotOnlyReplica stores the database as snapshot 0 of GEN; litestream restores a snapshot-only replica. */
async function writeSnapshotOnlyReplica(client: ReplicaClient): Promise<void> {
  await client.writeSnapshot(GEN, 0, encodeFrame(dbBytes))
}

function rowCount(path: string): number {
  const db = new Database(path, { readonly: true })
  try {
    assert.equal(db.pragma('integrity_check', { simple: true }), 'ok', 'integrity_check')
    return (db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n
  } finally {
    db.close()
  }
}

test('the oracle binary is litestream v0.3.13', async () => {
  assert.match(litestreamBin(), /\/node_modules\/@flydotio\/litestream-linux-x64\/litestream$/)
  const { code, stdout } = await runLitestream(['version'])
  assert.equal(code, 0, 'exit code')
  assert.equal(stdout.trim(), 'v0.3.13', 'version')
})

test('litestream restores a file replica written by FileReplicaClient', async () => {
  const root = join(dir, 'file-replica')
  await writeSnapshotOnlyReplica(new FileReplicaClient(root))
  const out = join(dir, 'restored-file.db')
  const res = await runLitestreamRestore(['-o', out, `file://${root}`])
  assert.equal(res.code, 0, `restore: ${res.stdout}${res.stderr}`)
  assert.equal(rowCount(out), 50, 'rows')
})

describe('s3rver', () => {
  let s3: S3rverInstance
  before(async () => {
    s3 = await startS3rver()
  })
  after(() => s3?.stop())

  test('litestream lists and restores an S3 replica written by S3ReplicaClient (config file)', async () => {
    const prefix = 'backups/oracle-cfg'
    const client = new S3ReplicaClient({ bucket: s3.bucket, prefix, endpoint: s3.endpoint, credentials: s3rverCredentials() })
    try {
      await writeSnapshotOnlyReplica(client)
    } finally {
      client.close()
    }
    const cfgDir = await mkdtemp(join(dir, 'cfg-'))
    const { configPath, dbPath } = await writeLitestreamS3Config(cfgDir, { endpoint: s3.endpoint, bucket: s3.bucket, path: prefix })

    // `generations -config` stats the local database, so list through the URL form instead.
    const gens = await runLitestream(['generations', s3RestoreUrl(s3.endpoint, s3.bucket, prefix)], LITESTREAM_S3RVER_ENV)
    assert.equal(gens.code, 0, `generations: ${gens.stdout}${gens.stderr}`)
    assert.match(gens.stdout, new RegExp(`\\b${GEN}\\b`), 'generation listed (needs the s3rver delimiter patch)')

    const out = join(cfgDir, 'restored.db')
    const res = await runLitestreamRestore(['-config', configPath, '-o', out, dbPath])
    assert.equal(res.code, 0, `restore: ${res.stdout}${res.stderr}`)
    assert.equal(rowCount(out), 50, 'rows')
  })

  test('litestream restores an S3 replica through a v0.3 URL (s3://bucket.localhost:port/prefix)', async () => {
    const prefix = 'backups/oracle-url'
    const client = new S3ReplicaClient({ bucket: s3.bucket, prefix, endpoint: s3.endpoint, credentials: s3rverCredentials() })
    try {
      await writeSnapshotOnlyReplica(client)
    } finally {
      client.close()
    }
    const url = s3RestoreUrl(s3.endpoint, s3.bucket, prefix)
    assert.match(url, /^s3:\/\/test-bucket\.localhost:\d+\/backups\/oracle-url$/)
    const out = join(dir, 'restored-url.db')
    const res = await runLitestreamRestore(['-o', out, url], LITESTREAM_S3RVER_ENV)
    assert.equal(res.code, 0, `restore: ${res.stdout}${res.stderr}`)
    assert.equal(rowCount(out), 50, 'rows')
  })

  test('a missing replica is a non-zero exit, not a rejection', async () => {
    const url = s3RestoreUrl(s3.endpoint, s3.bucket, 'nothing/here')
    const res = await runLitestreamRestore(['-o', join(dir, 'never.db'), url], LITESTREAM_S3RVER_ENV)
    assert.notEqual(res.code, 0, 'exit code')
    assert.match(res.stderr + res.stdout, /no matching backups found/)
  })
})
