/**
 * Replicas written by stock `litestream replicate` v0.3.13 against a writing better-sqlite3 application: our
 * restore equals the source and stock restore, at the end and at every WAL index and several timestamps, and
 * the auditor finds nothing wrong with what stock Litestream writes.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { auditReplica } from '../../src/restore/audit.js'
import { listReplica, restore } from '../../src/restore/restore.js'
import { digest, integrity, openApp, tmpDir } from '../helpers/db.js'
import { litestreamBin } from '../helpers/litestream.js'
import { fileReplica } from '../helpers/replicas.js'

test('stock litestream replicate: our restore equals the source and stock restore, at every index and several times', async (t) => {
  const dir = tmpDir(t, 'lm-stock-')
  const dbPath = path.join(dir, 'app.db')
  const rep = fileReplica(dir)
  const root = path.join(dir, 'replica')
  const app = openApp(dbPath)
  app.exec('CREATE TABLE u (k TEXT PRIMARY KEY, n INTEGER)')
  const ins = app.prepare('INSERT INTO t (v) VALUES (?)')
  const up = app.prepare('INSERT INTO u (k, n) VALUES (?, 1) ON CONFLICT (k) DO UPDATE SET n = n + 1')
  const write = (i: number): void => {
    app.transaction(() => {
      ins.run(crypto.randomBytes(1500))
      up.run(`k${i % 7}`)
    })()
  }
  for (let i = 0; i < 5; i++) write(i)

  // Small checkpoint thresholds force several WAL restarts, so the replica spans several indexes.
  const cfg = path.join(dir, 'litestream.yml')
  fs.writeFileSync(
    cfg,
    [
      'dbs:',
      `  - path: ${dbPath}`,
      '    monitor-interval: 100ms',
      '    checkpoint-interval: 1s',
      '    min-checkpoint-page-count: 20',
      '    replicas:',
      '      - type: file',
      `        path: ${root}`,
      '        sync-interval: 100ms',
      '',
    ].join('\n'),
  )
  const proc = spawn(litestreamBin(), ['replicate', '-config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  proc.stdout.on('data', (d: Buffer) => (log += d.toString()))
  proc.stderr.on('data', (d: Buffer) => (log += d.toString()))
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  t.after(async () => {
    if (proc.exitCode === null) proc.kill('SIGKILL')
    await exited
    app.close()
  })

  for (let i = 0; i < 100 && !fs.existsSync(path.join(root, 'generations')); i++) await sleep(100)
  assert.ok(fs.existsSync(path.join(root, 'generations')), `litestream started replicating:\n${log}`)
  for (let i = 5; i < 80; i++) {
    write(i)
    await sleep(25)
  }
  await sleep(1500)
  proc.kill('SIGTERM')
  assert.equal(await exited, 0, `litestream exits 0 on SIGTERM:\n${log}`)
  const source = digest(app)

  const [g] = await listReplica(rep.client)
  assert.ok(g, 'one generation')
  const indexes = [...new Set(g.segments.map((s) => s.index))]
  assert.ok(indexes.length >= 3, `several WAL indexes: ${indexes.join(',')}`)

  // Newest state.
  const out = path.join(dir, 'ours.db')
  const got = await restore(rep.client, { outPath: out })
  assert.equal(integrity(out), 'ok')
  assert.deepEqual(digest(out), source, 'ours equals the source (the _litestream_* tables are ignored)')
  const stockOut = path.join(dir, 'stock.db')
  const stock = await rep.stockRestore(stockOut)
  assert.equal(stock.code, 0, stock.output)
  assert.deepEqual(digest(stockOut), digest(out), 'ours equals stock')
  assert.equal(got.index, indexes.at(-1))

  // Every index, ours against stock.
  for (const index of indexes) {
    const o = path.join(dir, `i${index}.db`)
    const s = path.join(dir, `i${index}-stock.db`)
    await restore(rep.client, { outPath: o, index })
    const st = await rep.stockRestore(s, ['-index', index.toString(16)])
    assert.equal(st.code, 0, st.output)
    assert.deepEqual(digest(o), digest(s), `index ${index}: ours equals stock`)
  }

  // Several timestamps inside the generation, each strictly between two objects' times: file mtimes have
  // nanoseconds for stock Litestream but only milliseconds in a Date, so a time equal to a truncated mtime differs.
  const times = [...new Set([...g.snapshots, ...g.segments].map((s) => s.createdAt.getTime()))].sort((a, b) => a - b)
  const between = times.slice(0, -1).flatMap((ms, i) => (times[i + 1]! - ms >= 3 ? [ms + 1] : []))
  assert.ok(between.length >= 3, `enough distinct object times: ${times.join(',')}`)
  for (const ms of [between[0]!, between[Math.floor(between.length / 2)]!, between.at(-1)!]) {
    const ts = new Date(ms)
    const o = path.join(dir, `t${ms}.db`)
    const s = path.join(dir, `t${ms}-stock.db`)
    await restore(rep.client, { outPath: o, timestamp: ts })
    const st = await rep.stockRestore(s, ['-timestamp', ts.toISOString()])
    assert.equal(st.code, 0, st.output)
    assert.deepEqual(digest(o), digest(s), `timestamp ${ts.toISOString()}: ours equals stock`)
  }

  assert.deepEqual(await auditReplica(rep.client), [], 'stock replicas pass the audit')
})
