/**
 * End to end through `litestream-manager replicate DB URL` in its own process, restored by stock litestream
 * v0.3.13, for both a file replica and s3rver. Every scenario ends with SIGTERM, which must exit 0 having shipped
 * everything committed before the signal.
 */
import assert from 'node:assert/strict'
import path from 'node:path'
import { after, before, describe, test, type TestContext } from 'node:test'
import type Database from 'better-sqlite3'
import { startCli, type CliProcess } from '../helpers/cli.js'
import { digest, insertRows, integrity, openApp, tmpDir } from '../helpers/db.js'
import { fileReplica, s3Replica, type S3Server, type TestReplica } from '../helpers/replicas.js'
import { startS3rver } from '../helpers/s3rver.js'

async function assertRestores(replica: TestReplica, src: Database.Database, dir: string, label: string): Promise<void> {
  const out = path.join(dir, `restored-${label}.db`)
  const r = await replica.stockRestore(out)
  assert.equal(r.code, 0, `stock restore exit code (${label}):\n${r.output}`)
  assert.equal(integrity(out), 'ok', `integrity_check (${label})`)
  assert.deepEqual(digest(out), digest(src), `restored content equals the source (${label})`)
}

function replicate(db: string, replica: TestReplica, extra: readonly string[] = []): CliProcess {
  return startCli(['replicate', '-sync-interval', '100ms', ...extra, db, replica.url], replica.env)
}

/** waitUntil polls fn (every 20 ms, at most 20 s) until it returns a value other than undefined or false. */
async function waitUntil<T>(fn: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + 20_000
  for (;;) {
    const v = await fn()
    if (v !== undefined && v !== false) return v
    if (Date.now() > deadline) throw new Error('timed out waiting for the replica')
    await new Promise((r) => setTimeout(r, 20))
  }
}

async function stop(p: CliProcess): Promise<void> {
  const code = await p.stop('SIGTERM')
  assert.equal(code, 0, `exit code after SIGTERM:\n${p.output().slice(-4000)}`)
}

for (const kind of ['file', 's3'] as const) {
  describe(`replicate CLI → stock restore (${kind})`, () => {
    let s3: S3Server | undefined
    before(async () => {
      if (kind === 's3') s3 = await startS3rver()
    })
    after(async () => {
      await s3?.stop()
    })
    const setup = (t: TestContext): { dir: string; db: string; replica: TestReplica } => {
      const dir = tmpDir(t)
      return { dir, db: path.join(dir, 'app.db'), replica: kind === 'file' ? fileReplica(dir) : s3Replica(s3!, dir) }
    }

    test('A1 writes while running, then SIGTERM: everything committed is restorable', async (t) => {
      const { dir, db, replica } = setup(t)
      const app = openApp(db)
      insertRows(app, 20)
      const p = replicate(db, replica)
      await p.waitFor(/"msg":"replicating"/)
      for (let i = 0; i < 10; i++) {
        insertRows(app, 20, 500)
        await new Promise((r) => setTimeout(r, 20))
      }
      await stop(p)
      await assertRestores(replica, app, dir, 'a1')
      app.close()
    })

    test('application wal_checkpoint(TRUNCATE) while replicating', async (t) => {
      const { dir, db, replica } = setup(t)
      const app = openApp(db)
      const p = replicate(db, replica)
      await p.waitFor(/"msg":"replicating"/)
      for (let round = 0; round < 5; round++) {
        insertRows(app, 30, 1000)
        await new Promise((r) => setTimeout(r, 50))
        const res = app.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[]
        assert.equal(res.length, 1)
      }
      insertRows(app, 5)
      await stop(p)
      await assertRestores(replica, app, dir, 'truncate')
      app.close()
    })

    test('A6 a transaction larger than 5 MiB', async (t) => {
      const { dir, db, replica } = setup(t)
      const app = openApp(db)
      const p = replicate(db, replica)
      await p.waitFor(/"msg":"replicating"/)
      insertRows(app, 1800, 4000, true) // ~7 MiB in one transaction
      insertRows(app, 3)
      await stop(p)
      await assertRestores(replica, app, dir, 'bigtx')
      app.close()
    })

    test('A4 stop and restart resumes the same generation', async (t) => {
      const { dir, db, replica } = setup(t)
      const app = openApp(db)
      insertRows(app, 10)
      const p1 = replicate(db, replica)
      await p1.waitFor(/"msg":"replicating"/)
      insertRows(app, 10)
      await stop(p1)
      insertRows(app, 25, 300) // written while the replicator is down
      const p2 = replicate(db, replica)
      await p2.waitFor(/"msg":"resuming generation"/)
      insertRows(app, 10)
      await stop(p2)
      assert.equal((await replica.client.generations()).length, 1, 'one generation across the restart')
      await assertRestores(replica, app, dir, 'resume')
      app.close()
    })

    test('C1 kill -9 after shipping: the restart takes its position from the replica and keeps the generation', async (t) => {
      const { dir, db, replica } = setup(t)
      const app = openApp(db)
      insertRows(app, 10)
      const p1 = replicate(db, replica)
      await p1.waitFor(/"msg":"replicating"/)
      const gen = await waitUntil(async () => (await replica.client.generations())[0])
      // Ship past the generation's first segments: the state file (written at generation start) is now stale.
      for (let i = 0; i < 4; i++) {
        const n = (await replica.client.walSegments(gen)).length
        insertRows(app, 10, 300)
        await waitUntil(async () => (await replica.client.walSegments(gen)).length > n)
      }
      const segsBefore = await replica.client.walSegments(gen)
      assert.ok(segsBefore.length >= 3, `several segments shipped (${segsBefore.length})`)
      assert.equal(await p1.stop('SIGKILL'), null)
      insertRows(app, 10, 300) // written while the replicator is down
      const p2 = replicate(db, replica)
      await p2.waitFor(/"fromReplica":true.*"msg":"resuming generation"/)
      insertRows(app, 5)
      await stop(p2)
      assert.deepEqual(await replica.client.generations(), [gen], 'one generation across the kill')
      await assertRestores(replica, app, dir, 'kill9')
      app.close()
    })

    test('B3 application checkpoint while the replicator is down starts a new generation', async (t) => {
      const { dir, db, replica } = setup(t)
      const app = openApp(db)
      insertRows(app, 10)
      const p1 = replicate(db, replica)
      await p1.waitFor(/"msg":"replicating"/)
      insertRows(app, 10)
      await stop(p1)
      insertRows(app, 10)
      app.pragma('wal_checkpoint(TRUNCATE)')
      insertRows(app, 10)
      const p2 = replicate(db, replica)
      await p2.waitFor(/"msg":"new generation"/)
      insertRows(app, 10)
      await stop(p2)
      assert.equal((await replica.client.generations()).length, 2, 'continuity could not be proven: a new generation')
      await assertRestores(replica, app, dir, 'down-ckpt')
      app.close()
    })

    test('B4 VACUUM while replicating', async (t) => {
      const { dir, db, replica } = setup(t)
      const app = openApp(db)
      insertRows(app, 400, 2000, true)
      const p = replicate(db, replica)
      await p.waitFor(/"msg":"replicating"/)
      app.exec('DELETE FROM t WHERE id % 3 = 0')
      app.exec('VACUUM')
      insertRows(app, 5)
      await stop(p)
      await assertRestores(replica, app, dir, 'vacuum')
      app.close()
    })

    test('A3 64 KiB pages', async (t) => {
      const { dir, db, replica } = setup(t)
      const app = openApp(db, { pageSize: 65536 })
      assert.equal(app.pragma('page_size', { simple: true }), 65536)
      insertRows(app, 50, 30_000)
      const p = replicate(db, replica)
      await p.waitFor(/"msg":"replicating"/)
      insertRows(app, 50, 30_000)
      await stop(p)
      await assertRestores(replica, app, dir, '64k')
      app.close()
    })

    test('C3 SIGTERM right after a restart ships what was written while down', async (t) => {
      const { dir, db, replica } = setup(t)
      const app = openApp(db)
      insertRows(app, 10)
      const p1 = replicate(db, replica)
      await p1.waitFor(/"msg":"replicating"/)
      await stop(p1)
      insertRows(app, 50, 700)
      const p2 = replicate(db, replica)
      await p2.waitFor(/"msg":"replicating"/)
      await stop(p2)
      await assertRestores(replica, app, dir, 'sigterm-after-restart')
      app.close()
    })
  })
}

describe('replicate CLI input errors', () => {
  test('not SQLite, missing, or a directory: exit 1 with a clear message, file untouched', async (t) => {
    const { runCli } = await import('../helpers/cli.js')
    const fs = await import('node:fs')
    const dir = tmpDir(t)
    const junk = path.join(dir, 'junk.db')
    fs.writeFileSync(junk, 'this is not a database, just text'.repeat(10))
    const before = fs.readFileSync(junk)
    const url = `file://${path.join(dir, 'replica')}`
    const r1 = await runCli(['replicate', junk, url])
    assert.equal(r1.code, 1)
    assert.match(r1.output, /no SQLite header magic/)
    assert.ok(fs.readFileSync(junk).equals(before), 'non-SQLite file untouched')
    assert.equal(fs.existsSync(`${junk}-wal`), false)
    const r2 = await runCli(['replicate', path.join(dir, 'missing.db'), url])
    assert.equal(r2.code, 1)
    assert.match(r2.output, /does not exist/)
    const r3 = await runCli(['replicate', dir, url])
    assert.equal(r3.code, 1)
    assert.match(r3.output, /is a directory/)
    const r4 = await runCli(['replicate', junk])
    assert.equal(r4.code, 2)
    assert.match(r4.output, /Usage: litestream-manager replicate/)
    assert.equal(fs.existsSync(path.join(dir, 'replica')), false, 'nothing written to the replica')
  })
})

describe('replicate CLI holds the WAL across processes', () => {
  test('K16 the WAL stays pinned while a snapshot uploads: an application checkpoint cannot backfill past it', async (t) => {
    // Regression: reading -shm through a second descriptor and closing it dropped SQLite's POSIX read-mark lock
    // (locks belong to the process), so the WAL could be checkpointed and restarted mid-pass.
    const dir = tmpDir(t)
    const db = path.join(dir, 'app.db')
    const app = openApp(db)
    app.pragma('wal_autocheckpoint = 0')
    insertRows(app, 8000, 4000, true) // a ~32 MiB snapshot keeps the first pass busy for a while
    const replica = fileReplica(dir)
    const p = replicate(db, replica)
    await p.waitFor(/"msg":"new generation"/)
    insertRows(app, 10)
    const [res] = app.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[]
    assert.ok(res!.checkpointed < res!.log, `checkpoint limited by the replicator's read mark (${res!.checkpointed} of ${res!.log})`)
    await stop(p)
    await assertRestores(replica, app, dir, 'pinned')
    app.close()
  })
})
