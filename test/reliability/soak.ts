/**
 * Soak (W-tier, matrix G1/G5 style), bounded by --hours: several `<guid>.db` databases, each with a writer child and
 * its own `replicate` process, all talking to one s3rver through the fault proxy, while a random fault is injected
 * every --fault-every-s seconds (kill -9 + restart, SIGTERM + restart, S3 refused, blackhole, 503/429 throttling,
 * 20 % 500s, responses dropped after forwarding, an application TRUNCATE checkpoint).
 *
 * Every --check-every-min minutes all faults are lifted and every database is checkpointed: writer paused, SIGTERM
 * (must exit 0: everything committed is now acknowledged), I1–I6 against the replica (invariants.ts, with a model
 * per database that only moves forward), restart, resume. The recorder is cleared after each checkpoint so memory
 * stays bounded. A summary (faults, checkpoints, hard gates, failures) is written to --out/soak-summary.json.
 *
 *   node --import tsx test/reliability/soak.ts --hours 8 [--dbs 4] [--ops-per-sec 20] [--check-every-min 5]
 *                                              [--fault-every-s 120] [--out DIR] [--seed N]
 * @module
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { startCli, type CliProcess } from '../helpers/cli.js'
import { mulberry32, startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js'
import { checkInvariants, countSecrets, type InvariantCounts } from '../helpers/invariants.js'
import { S3_ENV, type TestReplica } from '../helpers/replicas.js'
import { startS3rver } from '../helpers/s3rver.js'
import { startWriter, WriterModel, type Writer } from '../helpers/writer.js'
import { s3ReplicaAt, s3Url } from './harness.js'
import { buildCli, DEFAULT_RESULTS_DIR } from './runner.js'

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : def
}

const hours = Number(arg('hours', '1'))
const nDbs = Number(arg('dbs', '4'))
const opsPerSec = Number(arg('ops-per-sec', '20'))
const checkEveryMs = Number(arg('check-every-min', '5')) * 60_000
const faultEveryMs = Number(arg('fault-every-s', '120')) * 1000
const outDir = path.resolve(arg('out', DEFAULT_RESULTS_DIR))
const seed = Number(arg('seed', String(crypto.randomInt(2 ** 31))))
if (!(hours > 0) || !(nDbs >= 1) || !(checkEveryMs > 0) || !(faultEveryMs > 0)) {
  process.stderr.write('usage: soak.ts --hours H [--dbs N] [--ops-per-sec R] [--check-every-min M] [--fault-every-s S] [--out DIR] [--seed N]\n')
  process.exit(2)
}
const rand = mulberry32(seed)
const log = (msg: string): void => void process.stdout.write(`${new Date().toISOString()} ${msg}\n`)

interface Db {
  readonly i: number
  readonly guid: string
  readonly dbPath: string
  readonly prefix: string
  readonly cliUrl: string
  readonly oracle: TestReplica
  writer: Writer
  model?: WriterModel
  cli: CliProcess | null
  outputs: string[]
  acked: number
  errorsSeen: number
}

interface CheckpointResult {
  readonly at: string
  readonly db: string
  readonly acked: number
  readonly restored: number
  readonly generations: number
  readonly failures: string[]
  readonly counts: InvariantCounts
  readonly shutdownMs: number
  readonly exitCode: number | null
}

const startedAt = new Date()
const deadline = startedAt.getTime() + hours * 3600_000
fs.mkdirSync(outDir, { recursive: true })
buildCli(log)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rel-soak-'))
const s3 = await startS3rver()
const proxy: FaultProxy = await startFaultProxy({ target: s3.endpoint, recordBodies: false, seed })
const sentinel = `SENTINEL${crypto.randomBytes(12).toString('hex')}`
const cliEnv = { ...S3_ENV, AWS_SESSION_TOKEN: sentinel, LOG_LEVEL: 'info' }
const dbs: Db[] = []
const faults: { at: string; kind: string; db?: number; detail?: string }[] = []
const checkpoints: CheckpointResult[] = []
const failures: string[] = []
let stopping = false
process.on('SIGINT', () => {
  log('SIGINT: finishing with a last checkpoint')
  stopping = true
})

function startDbCli(db: Db): void {
  db.cli = startCli(['replicate', '-sync-interval', '200ms', db.dbPath, db.cliUrl], cliEnv)
}

async function stopDbCli(db: Db, signal: 'SIGTERM' | 'SIGKILL'): Promise<{ code: number | null; ms: number }> {
  const p = db.cli
  if (!p) return { code: 0, ms: 0 }
  const t0 = Date.now()
  const code = await p.stop(signal)
  db.outputs.push(p.output().slice(-200_000))
  db.cli = null
  return { code, ms: Date.now() - t0 }
}

for (let i = 0; i < nDbs; i++) {
  const guid = crypto.randomUUID()
  const prefix = `soak-${seed}/databases/${guid}`
  const dbPath = path.join(dir, `${guid}.db`)
  const writer = await startWriter({ dbPath, seed: seed + i, opsPerSec, noteChars: 100 })
  const db: Db = { i, guid, dbPath, prefix, cliUrl: s3Url(proxy.endpoint, s3.bucket, prefix), oracle: s3ReplicaAt(s3.endpoint, s3.bucket, prefix, path.join(dir, `${guid}.yml`)), writer, cli: null, outputs: [], acked: 0, errorsSeen: 0 }
  startDbCli(db)
  dbs.push(db)
}
log(`soak: ${nDbs} databases, ${opsPerSec} ops/s each, ${hours} h, checkpoints every ${checkEveryMs / 60_000} min, a fault every ${faultEveryMs / 1000} s, seed ${seed}, dir ${dir}`)

const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** injectFault applies one random fault and resolves when it is over (bounded, at most ~30 s). */
async function injectFault(): Promise<void> {
  const kind = pick(['kill9', 'sigterm-restart', 'refuse', 'blackhole', 'throttle', 'err500', 'drop', 'app-truncate'] as const)
  const db = pick(dbs)
  faults.push({ at: new Date().toISOString(), kind, ...(kind === 'kill9' || kind === 'sigterm-restart' || kind === 'app-truncate' ? { db: db.i } : {}) })
  log(`fault: ${kind}${kind === 'kill9' || kind === 'sigterm-restart' || kind === 'app-truncate' ? ` (db ${db.i})` : ''}`)
  switch (kind) {
    case 'kill9':
      await stopDbCli(db, 'SIGKILL')
      await sleep(Math.floor(rand() * 2000))
      startDbCli(db)
      return
    case 'sigterm-restart': {
      const r = await stopDbCli(db, 'SIGTERM')
      if (r.code !== 0) failures.push(`db ${db.i}: SIGTERM restart exited ${r.code}`)
      startDbCli(db)
      return
    }
    case 'refuse': {
      const rule = proxy.addRule({ label: 'soak-refuse', forMs: 10_000, action: { type: 'refuse', mode: 'listener' } })
      await sleep(10_000)
      rule.remove()
      return
    }
    case 'blackhole': {
      const rule = proxy.addRule({ label: 'soak-blackhole', forMs: 15_000, action: { type: 'blackhole' } })
      await sleep(15_000)
      rule.remove()
      proxy.releaseBlackholed()
      return
    }
    case 'throttle': {
      const a = proxy.addRule({ label: 'soak-503', percent: 50, forMs: 10_000, action: { type: 'status', status: 503, code: 'SlowDown', retryAfterS: 1 } })
      const b = proxy.addRule({ label: 'soak-429', forMs: 10_000, action: { type: 'status', status: 429, code: 'TooManyRequests' } })
      await sleep(10_000)
      a.remove()
      b.remove()
      return
    }
    case 'err500': {
      const rule = proxy.addRule({ label: 'soak-500', percent: 20, forMs: 30_000, action: { type: 'status', status: 500, code: 'InternalError' } })
      await sleep(30_000)
      rule.remove()
      return
    }
    case 'drop': {
      proxy.addRule({ label: 'soak-drop', method: 'PUT', count: 3, forMs: 30_000, action: { type: 'drop-response' } })
      return
    }
    case 'app-truncate':
      await db.writer.checkpoint('TRUNCATE')
      return
    default:
      kind satisfies never
  }
}

/** checkpoint lifts every fault, acknowledges everything with SIGTERM and checks I1–I6 for every database. */
async function checkpointAll(final: boolean): Promise<void> {
  proxy.clearRules()
  proxy.releaseBlackholed()
  for (const db of dbs) {
    const acked = await db.writer.pause()
    if (!db.cli) startDbCli(db)
    const stop = await stopDbCli(db, 'SIGTERM')
    if (stop.code !== 0) failures.push(`db ${db.i}: SIGTERM at checkpoint exited ${stop.code}`)
    db.acked = stop.code === 0 ? acked : db.acked
    db.model ??= new WriterModel(db.writer.seed, db.writer.noteChars)
    const r = await checkInvariants({ replica: db.oracle, sourceDb: db.dbPath, ackedSeq: db.acked, outDir: dir, model: db.model, sourceStopped: true, label: `soak-${db.i}` })
    checkpoints.push({ at: new Date().toISOString(), db: db.guid, acked: db.acked, restored: r.restoredSeq, generations: r.generations, failures: r.failures, counts: r.counts, shutdownMs: stop.ms, exitCode: stop.code })
    failures.push(...r.failures.map((f) => `db ${db.i} checkpoint ${checkpoints.length}: ${f}`))
    log(`checkpoint db ${db.i}: acked ${db.acked}, restored ${r.restoredSeq}, ${r.generations} generation(s), ${r.failures.length} failure(s)`)
    for (const f of fs.readdirSync(dir)) if (f.startsWith(`soak-${db.i}-`)) fs.rmSync(path.join(dir, f), { recursive: true, force: true })
    if (!final) {
      startDbCli(db)
      db.writer.resume()
    }
  }
  proxy.clearRecords()
}

let nextCheck = Date.now() + checkEveryMs
let nextFault = Date.now() + faultEveryMs * (0.5 + rand())
try {
  while (!stopping && Date.now() < deadline) {
    const now = Date.now()
    if (now >= nextCheck) {
      await checkpointAll(false)
      nextCheck = Date.now() + checkEveryMs
    } else if (now >= nextFault) {
      await injectFault()
      nextFault = Date.now() + faultEveryMs * (0.5 + rand())
    } else {
      await sleep(Math.min(1000, nextCheck - now, nextFault - now))
    }
    for (const db of dbs) {
      const errs = db.writer.errors()
      for (const e of errs.slice(db.errorsSeen)) failures.push(`db ${db.i}: application error: ${e}`)
      db.errorsSeen = errs.length
    }
  }
  await checkpointAll(true)
} finally {
  for (const db of dbs) {
    await stopDbCli(db, 'SIGKILL').catch(() => {})
    await db.writer.stop().catch(() => {})
    db.model?.close()
  }
  await proxy.stop()
  await s3.stop()
}

const appErrors = dbs.reduce((n, db) => n + db.writer.errors().length, 0)
const secrets = countSecrets(dbs.flatMap((db) => db.outputs).join('\n'), [sentinel])
if (secrets > 0) failures.push(`H3: ${secrets} secret occurrence(s) in CLI output`)
const gates = {
  ackedLost: checkpoints.reduce((n, c) => n + c.counts.ackedLost, 0),
  corruptions: checkpoints.reduce((n, c) => n + c.counts.corruptions, 0),
  stockRestoreFailures: checkpoints.reduce((n, c) => n + c.counts.stockRestoreFailures, 0),
  auditorViolations: checkpoints.reduce((n, c) => n + c.counts.auditorViolations, 0),
  restoreMismatches: checkpoints.reduce((n, c) => n + c.counts.restoreMismatches, 0),
  secretOccurrences: secrets,
  appErrors,
}
const summary = {
  tier: 'W',
  command: `node --import tsx test/reliability/soak.ts ${process.argv.slice(2).join(' ')}`,
  startedAt: startedAt.toISOString(),
  durationMs: Date.now() - startedAt.getTime(),
  seed,
  dbs: nDbs,
  opsPerSec,
  faults,
  checkpoints: checkpoints.length,
  checkpointsFailed: checkpoints.filter((c) => c.failures.length > 0).length,
  totalAcked: dbs.reduce((n, db) => n + db.acked, 0),
  gates,
  failures: [...new Set(failures)].slice(0, 200),
}
fs.writeFileSync(path.join(outDir, 'soak-summary.json'), JSON.stringify(summary, null, 2))
if (failures.length === 0) fs.rmSync(dir, { recursive: true, force: true })
else log(`kept ${dir} for inspection`)
log(`soak: ${faults.length} faults, ${checkpoints.length} checkpoints (${summary.checkpointsFailed} failed), gates ${JSON.stringify(gates)}; summary in ${path.join(outDir, 'soak-summary.json')}`)
process.exit(failures.length === 0 ? 0 : 1)
