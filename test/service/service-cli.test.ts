/**
 * The service end to end through its CLI, as an operator runs it: two watched directories, valid and invalid
 * files, clients created, written, deleted and replaced, then SIGTERM. Every valid client must restore with stock
 * litestream v0.3.13 to exactly its source; no object may exist for an invalid name; no invalid file may change.
 */
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { describe, test } from 'node:test'
import type Database from 'better-sqlite3'
import { runCli, startCli } from '../helpers/cli.js'
import { digest, insertRows, integrity, openApp, tmpDir } from '../helpers/db.js'
import { litestreamBin } from '../helpers/litestream.js'
import { execFileSync } from 'node:child_process'

async function until<T>(what: string, fn: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const start = Date.now()
  for (;;) {
    const v = fn()
    if (v) return v
    if (Date.now() - start > timeoutMs) throw new Error(`timed out: ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('service CLI', () => {
  test('usage: -h exits 0; a missing required flag prints usage and exits 2; bad values are all reported', async () => {
    const h = await runCli(['-h'])
    assert.equal(h.code, 0)
    assert.match(h.output, /-watch-dir/)
    const missing = await runCli(['-watch-dir', '/tmp/x'])
    assert.equal(missing.code, 2)
    assert.match(missing.output, /missing required flag -bucket/)
    assert.match(missing.output, /Usage:/)
    const bad = await runCli(['--watch-dir=/tmp/x', '--bucket', 'b', '-sync-interval', 'soon', '-port', '99999', '-listen', '0.0.0.0'])
    assert.equal(bad.code, 2)
    assert.match(bad.output, /invalid duration "soon" for -sync-interval/)
    assert.match(bad.output, /invalid -port/)
    assert.match(bad.output, /not loopback: set -token/)
  })

  test('two watched directories: create, write, delete, replace, bad inputs, SIGTERM; stock restore of every client', async (t) => {
    const dir = tmpDir(t)
    const a = path.join(dir, 'a')
    const b = path.join(dir, 'b')
    fs.mkdirSync(a)
    const replica = path.join(dir, 'replica')
    const apps = new Map<string, Database.Database>()
    const app = (d: string, id: string): Database.Database => {
      const db = openApp(path.join(d, `${id}.db`))
      apps.set(id, db)
      return db
    }
    // Before start: one valid client, and bad inputs.
    const early = crypto.randomUUID()
    insertRows(app(a, early), 10)
    const junkId = crypto.randomUUID()
    const emptyId = crypto.randomUUID()
    fs.writeFileSync(path.join(a, `${junkId}.db`), crypto.randomBytes(5000))
    fs.writeFileSync(path.join(a, `${emptyId}.db`), '')
    fs.writeFileSync(path.join(a, 'notes.db'), 'x')
    fs.writeFileSync(path.join(a, `${crypto.randomUUID().toUpperCase()}.db`), 'x')
    const invalid = fs.readdirSync(a).filter((n) => n !== `${early}.db` && !n.startsWith(`${early}.db-`)).map((n) => path.join(a, n))
    const before = new Map(invalid.map((f) => [f, fs.readFileSync(f)]))

    const p = startCli(['-watch-dir', `${a},${b}`, '-bucket', `file://${replica}`, '-port', '0', '-sync-interval', '100ms'])
    t.after(() => p.stop('SIGKILL'))
    await p.waitFor(/"msg":"service started"/)
    assert.ok(fs.existsSync(b), 'a missing watch directory is created')
    // After start: clients in both directories.
    const late = crypto.randomUUID()
    insertRows(app(b, late), 5)
    const doomed = crypto.randomUUID()
    insertRows(app(b, doomed), 5)
    const replaced = crypto.randomUUID()
    insertRows(app(a, replaced), 5)
    for (const id of [late, doomed, replaced]) await p.waitFor(new RegExp(`"id":"${id}".*"msg":"client detected"`))
    await until('replicas exist', () => [early, late, doomed, replaced].every((id) => fs.existsSync(path.join(replica, 'databases', id, 'generations'))))
    // Delete one client; replace another by rename; keep writing the rest.
    apps.get(doomed)!.close()
    for (const s of ['', '-wal', '-shm']) fs.rmSync(path.join(b, `${doomed}.db${s}`), { force: true })
    await p.waitFor(new RegExp(`"id":"${doomed}".*"msg":"client stopped; its backups stay"`))
    const tmp = path.join(dir, 'replacement.db')
    const rep = openApp(tmp)
    insertRows(rep, 33)
    rep.close()
    apps.get(replaced)!.close()
    for (const s of ['-wal', '-shm']) fs.rmSync(path.join(a, `${replaced}.db${s}`), { force: true })
    fs.renameSync(tmp, path.join(a, `${replaced}.db`))
    apps.set(replaced, openApp(path.join(a, `${replaced}.db`)))
    insertRows(apps.get(early)!, 20, 800)
    insertRows(apps.get(late)!, 20, 800)
    insertRows(apps.get(replaced)!, 2)
    const code = await p.stop('SIGTERM')
    assert.equal(code, 0, p.output().slice(-3000))

    for (const id of [early, late, replaced]) {
      const out = path.join(dir, `${id}.restored.db`)
      execFileSync(litestreamBin(), ['restore', '-o', out, `file://${path.join(replica, 'databases', id)}`], { stdio: 'pipe' })
      assert.equal(integrity(out), 'ok')
      assert.deepEqual(digest(out), digest(apps.get(id)!), `${id} restores to exactly its source`)
    }
    assert.equal(digest(path.join(dir, `${replaced}.restored.db`)).tables.t, 35, 'the replaced client restores to the new file')
    assert.ok(fs.existsSync(path.join(replica, 'databases', doomed, 'generations')), "a deleted client's backups stay")
    assert.deepEqual(fs.readdirSync(path.join(replica, 'databases')).sort(), [early, late, doomed, replaced].sort(), 'no objects for invalid names')
    for (const [f, bytes] of before) assert.ok(fs.readFileSync(f).equals(bytes), `${path.basename(f)} untouched`)
    assert.equal(fs.existsSync(path.join(a, `${junkId}.db-wal`)), false)
    for (const db of apps.values()) if (db.open) db.close()
  })
})

describe('dashboard host allow-list', () => {
  test('H2 a wildcard bind answers to this machine\'s names and addresses; -allowed-host adds more', async () => {
    const os = await import('node:os')
    const { dashboardHosts } = await import('../../src/cli/serve.js')
    const loop = dashboardHosts('127.0.0.1', '')
    assert.ok(loop.includes('localhost') && loop.includes('127.0.0.1'))
    assert.ok(!loop.includes(os.hostname()), 'a loopback bind answers to loopback names only')
    const wild = dashboardHosts('0.0.0.0', 'backups.example.com, Other.Example')
    assert.ok(wild.includes(os.hostname()))
    for (const a of Object.values(os.networkInterfaces()).flat()) if (a && a.family === 'IPv4') assert.ok(wild.includes(a.address), a.address)
    assert.ok(wild.includes('backups.example.com') && wild.includes('other.example'))
  })
})
