/**
 * Single-database throughput: `node --import tsx bench/single-db.ts [--duration 20] [--row-bytes 4096]
 *   [--checkpoints 10] [--burst 200] [--peers ours,litestream] [--out FILE]`
 *
 * For each replicator (ours: `litestream-manager replicate -sync-interval 1s DB file:///replica`; stock:
 * `litestream replicate DB file:///replica`, whose CLI form syncs every 1 s), on a fresh database:
 *
 *  1. throughput: this process commits one ~4 KiB random row per transaction as fast as it can for --duration
 *     seconds, then waits until the replica holds the last commit. Shipped MB/s = decompressed bytes of the WAL
 *     segments written from writer start to catch-up / (catch-up time - writer start).
 *  2. checkpoint stall: --checkpoints times, a burst of --burst rows, then the application's own
 *     `PRAGMA wal_checkpoint(TRUNCATE)` with busy_timeout 5000 ms, timed; truncated means result busy == 0.
 *  3. SIGTERM, then a stock `litestream restore` of the replica, compared with the source (rows, max seq).
 * @module
 */
import { execFileSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import Database from 'better-sqlite3'
import { ledgerTag, maxLedgerSeq, SCHEMA } from './lib/dbs.js'
import { readHwmKiB, readSystemCpu, Sampler, systemBusyPercent } from './lib/proc.js'
import { decodeObject, fileLayout, hasSnapshot, listObjects } from './lib/replica-scan.js'
import { nowMs, percentile, round, sleep } from './lib/stats.js'
import { LITESTREAM_BIN, MAIN_JS, REPO, track } from './lib/sut.js'
import { spawn, type ChildProcess } from 'node:child_process'

type Replicator = 'ours' | 'litestream'
const REPLICATORS: readonly Replicator[] = ['ours', 'litestream']

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '20' },
    'row-bytes': { type: 'string', default: '4096' },
    checkpoints: { type: 'string', default: '10' },
    burst: { type: 'string', default: '200' },
    peers: { type: 'string', default: REPLICATORS.join(',') },
    out: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
})
const durationS = Number(values.duration)
const rowBytes = Number(values['row-bytes'])
const checkpoints = Number(values.checkpoints)
const burst = Number(values.burst)
const peers = String(values.peers)
  .split(',')
  .filter((p): p is Replicator => (REPLICATORS as readonly string[]).includes(p))
if (!(durationS > 0) || !(rowBytes > 0) || !(checkpoints > 0) || !(burst > 0) || peers.length === 0) {
  process.stderr.write('usage: node --import tsx bench/single-db.ts [--duration 20] [--row-bytes 4096] [--checkpoints 10] [--burst 200] [--peers ours,litestream] [--out FILE]\n')
  process.exit(2)
}
const date = new Date().toISOString().replace(/[:]/g, '').replace(/\..*$/, '')
const out = path.resolve(values.out ?? path.join(REPO, 'bench', 'out', `single-db-${date}.json`))

function note(msg: string): void {
  process.stderr.write(`[single-db] ${msg}\n`)
}

function startReplicator(which: Replicator, db: string, replicaRoot: string, logFile: string): ChildProcess {
  const fd = fs.openSync(logFile, 'a')
  try {
    const url = `file://${replicaRoot}`
    return which === 'ours'
      ? track(spawn(process.execPath, [MAIN_JS, 'replicate', '-sync-interval', '1s', db, url], { env: { ...process.env, LOG_LEVEL: 'info' }, stdio: ['ignore', fd, fd] }))
      : track(spawn(LITESTREAM_BIN, ['replicate', db, url], { stdio: ['ignore', fd, fd] }))
  } finally {
    fs.closeSync(fd)
  }
}

async function runOne(which: Replicator): Promise<Record<string, unknown>> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `lm-single-${which}-`))
  const dbPath = path.join(work, `${crypto.randomUUID()}.db`)
  const replicaRoot = path.join(work, 'replica')
  // The replica URL points at the database's own prefix; fileLayout expects `<root>/databases/<guid>`.
  const layout = { ...fileLayout(work), dbDir: () => replicaRoot }
  const db = new Database(dbPath, { timeout: 5000 })
  db.pragma('journal_mode = wal')
  db.pragma('synchronous = normal')
  db.exec(SCHEMA)
  const insT = db.prepare('INSERT INTO t (v) VALUES (?)')
  const insL = db.prepare('INSERT INTO bench_ledger (seq, at, tag) VALUES (?, ?, ?)')
  let seq = 0
  const tx = db.transaction((s: number) => {
    insT.run(crypto.randomBytes(rowBytes))
    insL.run(s, Date.now(), ledgerTag(s))
  })
  tx(++seq)

  const log = path.join(work, `${which}.log`)
  const proc = startReplicator(which, dbPath, replicaRoot, log)
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  const sampler = new Sampler(() => (proc.pid !== undefined ? [proc.pid] : []))
  sampler.start(250)
  const upDeadline = Date.now() + 30_000
  while (!hasSnapshot(layout, '') && Date.now() < upDeadline) await sleep(20)
  if (!hasSnapshot(layout, '')) throw new Error(`${which}: no snapshot within 30 s; see ${log}`)

  // 1. Throughput.
  note(`${which}: writing for ${durationS} s`)
  const decoded = new Map<string, { len: number; maxSeq: number }>()
  const inspect = (file: string): { len: number; maxSeq: number } => {
    let v = decoded.get(file)
    if (!v) {
      const buf = decodeObject(file)
      v = { len: buf.length, maxSeq: maxLedgerSeq(buf) }
      decoded.set(file, v)
    }
    return v
  }
  const cpu0 = sampler.cpuNow()
  const sys0 = readSystemCpu()
  const harness0 = process.cpuUsage()
  const tStart = nowMs()
  const tEnd = tStart + durationS * 1000
  const commitMs: number[] = []
  let commits = 0
  // A replicator that holds the write lock past the 5 s busy timeout fails a commit: count it (the
  // application would see the same error), keep writing.
  let busyErrors = 0
  while (nowMs() < tEnd) {
    const slice = nowMs() + 20
    while (nowMs() < slice) {
      const t = nowMs()
      try {
        tx(seq + 1)
        seq++
      } catch (err) {
        if ((err as { code?: string }).code !== 'SQLITE_BUSY') throw err
        busyErrors++
        continue
      }
      commitMs.push(nowMs() - t)
      commits++
    }
    await new Promise((r) => setImmediate(r)) // let the sampler run
  }
  const writerStop = nowMs()
  const lastSeq = seq
  let caughtUpAt: number | undefined
  const catchDeadline = Date.now() + 180_000
  while (caughtUpAt === undefined && Date.now() < catchDeadline) {
    for (const o of listObjects(layout, '')) {
      if (o.sub === 'wal' && inspect(o.file).maxSeq >= lastSeq) caughtUpAt = Math.min(caughtUpAt ?? Infinity, o.ctimeMs)
      if (o.sub === 'snapshots' && o.ctimeMs >= tStart && inspect(o.file).maxSeq >= lastSeq) caughtUpAt = Math.min(caughtUpAt ?? Infinity, o.ctimeMs)
    }
    if (caughtUpAt === undefined) await sleep(20)
  }
  const cpu1 = sampler.cpuNow()
  const sys1 = readSystemCpu()
  const harness = process.cpuUsage(harness0)
  const windowS = (nowMs() - tStart) / 1000
  let walBytes = 0
  let segments = 0
  if (caughtUpAt !== undefined) {
    for (const o of listObjects(layout, '')) {
      if (o.sub === 'wal' && o.ctimeMs >= tStart && o.ctimeMs <= caughtUpAt) {
        walBytes += inspect(o.file).len
        segments++
      }
    }
  }
  const shipS = caughtUpAt !== undefined ? (caughtUpAt - tStart) / 1000 : undefined
  const throughput = {
    commits,
    busyErrors,
    appTxPerS: round(commits / ((writerStop - tStart) / 1000), 0),
    appPayloadMBPerS: round((commits * rowBytes) / 1e6 / ((writerStop - tStart) / 1000), 2),
    commitMsP50: round(percentile(commitMs, 50), 3),
    commitMsP99: round(percentile(commitMs, 99), 3),
    commitMsMax: round(commitMs.reduce((m, v) => (v > m ? v : m), 0), 1),
    walMBShipped: round(walBytes / 1e6, 1),
    walSegments: segments,
    shippedMBPerS: shipS ? round(walBytes / 1e6 / shipS, 2) : null,
    catchUpMsAfterWriterStop: caughtUpAt !== undefined ? round(caughtUpAt - writerStop, 0) : null,
    cpuSeconds: round(cpu1 - cpu0, 2),
    rssMiBPeak: round(sampler.peak()?.rssMiB ?? 0, 1),
    // Replicator + this process vs everything on the machine, as % of all CPUs: a gap means outside load.
    benchCpuBusyPercent: round(((cpu1 - cpu0 + (harness.user + harness.system) / 1e6) / (os.cpus().length * windowS)) * 100),
    systemCpuBusyPercent: round(systemBusyPercent(sys0, sys1)),
  }
  note(`${which}: ${JSON.stringify(throughput)}`)

  // 2. Checkpoint stall: burst, then the application's TRUNCATE checkpoint.
  const stalls: number[] = []
  let truncated = 0
  const results: string[] = []
  for (let i = 0; i < checkpoints; i++) {
    for (let j = 0; j < burst; j++) tx(++seq)
    const t = nowMs()
    const row = db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number; log: number; checkpointed: number }[]
    stalls.push(nowMs() - t)
    const r = row[0]!
    if (r.busy === 0) truncated++
    results.push(`${r.busy},${r.log},${r.checkpointed}`)
    await sleep(1000)
  }
  const checkpoint = {
    count: checkpoints,
    burstRows: burst,
    stallMsP50: round(percentile(stalls, 50), 1),
    stallMsMax: round(Math.max(...stalls), 1),
    truncated,
    results,
  }
  note(`${which}: checkpoint ${JSON.stringify(checkpoint)}`)

  // 3. Stop, then a stock restore compared with the source.
  const finalSeq = seq
  const rows = db.prepare('SELECT count(*) FROM t').pluck().get() as number
  proc.kill('SIGTERM')
  const code = await exited
  sampler.stop()
  db.close()
  const generations = new Set(listObjects(layout, '').map((o) => o.generation)).size
  let restore: Record<string, unknown>
  try {
    const restored = path.join(work, 'restored.db')
    execFileSync(LITESTREAM_BIN, ['restore', '-o', restored, `file://${replicaRoot}`], { stdio: 'pipe' })
    const r = new Database(restored, { readonly: true })
    const got = { rows: r.prepare('SELECT count(*) FROM t').pluck().get() as number, maxSeq: r.prepare('SELECT max(seq) FROM bench_ledger').pluck().get() as number }
    r.close()
    restore = { ok: got.rows === rows && got.maxSeq === finalSeq, rows: got.rows, wantRows: rows, maxSeq: got.maxSeq, wantMaxSeq: finalSeq }
  } catch (err) {
    restore = { ok: false, error: err instanceof Error ? err.message.slice(0, 300) : String(err) }
  }
  const result = { throughput, checkpoint, exitCode: code, generations, restore, rssMiBHwm: round((readHwmKiB(proc.pid ?? -1) ?? 0) / 1024, 1) || undefined }
  if (!values.keep) fs.rmSync(work, { recursive: true, force: true })
  else note(`${which}: kept ${work}`)
  return result
}

const result: Record<string, unknown> = {
  kind: 'single-db',
  schema: 1,
  date: new Date().toISOString(),
  command: `node --import tsx bench/single-db.ts ${process.argv.slice(2).join(' ')}`.trim(),
  durationS,
  rowBytes,
  checkpoints,
  burstRows: burst,
  syncInterval: '1s',
  replica: 'file',
  machine: {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memGiB: round(os.totalmem() / 2 ** 30, 1),
    node: process.version,
    kernel: os.release(),
    litestream: execFileSync(LITESTREAM_BIN, ['version']).toString().trim(),
    loadAvg1mAtStart: round(os.loadavg()[0], 2),
  },
}
if (!fs.existsSync(MAIN_JS)) throw new Error(`${MAIN_JS} missing: run npm run build`)
fs.mkdirSync(path.dirname(out), { recursive: true })
for (const p of peers) {
  result[p] = await runOne(p)
  fs.writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`)
}
process.stderr.write(`[single-db] wrote ${out}\n`)
process.exit(0)
