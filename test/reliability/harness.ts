/**
 * Scenario harness for the reliability suite: one s3rver behind a FaultProxy, a `<guid>.db` in a temp dir, the real
 * `litestream-manager replicate` CLI in its own process (talking to S3 only through the proxy), writer children,
 * and the oracles (stock v0.3.13 restore, our restore, the auditor) reading s3rver directly, around the faults.
 *
 *   writer child ─► <dir>/<guid>.db ◄─ CLI (replicate) ─► FaultProxy ─► s3rver ◄─ stock restore / our restore / audit
 *
 * Each scenario ends in `verify()`: I1–I6 (invariants.ts), H6 key shapes, D11 byte-exactness of every object, and
 * a secret scan of the CLI's output and local state; it reports figures through `t.diagnostic('figure {json}')`
 * (and RELIABILITY_FIGURES, a JSON-lines file, when set) for scripts/scorecard.ts.
 *
 * Set RELIABILITY_KEEP=1 to keep a failed scenario's directory (databases, restores, logs).
 * @module
 */
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { TestContext } from 'node:test'
import { GetObjectCommand } from '@aws-sdk/client-s3'
import type { S3ReplicaClient } from '../../src/s3/replica-client.js'
import { startCli, type CliProcess } from '../helpers/cli.js'
import { startFaultProxy, type FaultProxy, type RecordedRequest } from '../helpers/fault-proxy.js'
import {
  checkInvariants,
  checkKeyShapes,
  checkUploadBytes,
  countSecrets,
  durableSeqs,
  lagFigures,
  type InvariantCounts,
  type InvariantReport,
  type LagFigures,
  waitForDurable,
} from '../helpers/invariants.js'
import { S3_ENV, type TestReplica } from '../helpers/replicas.js'
import { runLitestreamRestore } from '../helpers/litestream.js'
import { loadS3Backend, parseReplicaUrl } from '../../src/replica-url.js'
await loadS3Backend() // s3:// URLs below need it
import { startS3rver, type S3rverInstance } from '../helpers/s3rver.js'
import { LedgerChain, startWriter, type Writer, type WriterOptions } from '../helpers/writer.js'

/** Scenario is one prepared environment. */
export interface Scenario {
  readonly id: string
  readonly dir: string
  readonly s3: S3rverInstance
  readonly proxy: FaultProxy
  readonly prefix: string
  readonly guid: string
  readonly dbPath: string
  /** metaDir is Litestream's meta directory of dbPath, holding our state file. */
  readonly metaDir: string
  /** cliUrl is the replica URL the CLI gets (through the proxy). */
  readonly cliUrl: string
  readonly cliEnv: Record<string, string>
  /** oracle reads the replica straight from s3rver. */
  readonly oracle: TestReplica
  /** sentinel is a unique fake session token: it must never show up in logs or local state. */
  readonly sentinel: string
  /** cli starts `replicate` (100 ms sync interval unless extra overrides). */
  cli(extra?: readonly string[]): CliProcess
  /** clis lists every CLI process started so far. */
  readonly clis: CliProcess[]
  writer(opts?: Omit<WriterOptions, 'dbPath'>): Promise<Writer>
  readonly writers: Writer[]
  /** figures collects the scenario's figures for the scorecard. */
  readonly figures: Record<string, unknown>
}

/** ScenarioOptions configure setupScenario. */
export interface ScenarioOptions {
  /** recordBodies keeps upload bodies for D11, lag figures and durable-seq barriers. Default true. */
  readonly recordBodies?: boolean
}

/** newGuid returns a lowercase v4 GUID. */
export function newGuid(): string {
  return crypto.randomUUID().toLowerCase()
}

/** setupScenario starts s3rver and the proxy and prepares the directory; everything is torn down after the test. */
export async function setupScenario(t: TestContext, id: string, opts: ScenarioOptions = {}): Promise<Scenario> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `rel-${id}-`))
  const clis: CliProcess[] = []
  const writers: Writer[] = []
  let s3: S3rverInstance | undefined
  let proxy: FaultProxy | undefined
  let oracle: TestReplica | undefined
  t.after(async () => {
    for (const p of clis) if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL')
    await Promise.all(clis.map((p) => p.exited))
    await Promise.all(writers.map((w) => w.stop().catch(() => {})))
    await proxy?.stop()
    if (oracle) (oracle.client as S3ReplicaClient).close()
    await s3?.stop()
    if (process.env.RELIABILITY_KEEP) {
      fs.writeFileSync(path.join(dir, 'cli-output.log'), clis.map((p) => p.output()).join('\n----\n'))
      process.stderr.write(`kept ${dir}\n`)
    } else {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
  s3 = await startS3rver()
  proxy = await startFaultProxy({ target: s3.endpoint, recordBodies: opts.recordBodies ?? true })
  const guid = newGuid()
  const prefix = `${id}-${crypto.randomBytes(3).toString('hex')}/databases/${guid}`
  const dbPath = path.join(dir, `${guid}.db`)
  oracle = s3ReplicaAt(s3.endpoint, s3.bucket, prefix, path.join(dir, 'oracle.yml'))
  const cliUrl = s3Url(proxy.endpoint, s3.bucket, prefix)
  const sentinel = `SENTINEL${crypto.randomBytes(12).toString('hex')}`
  const cliEnv = { ...S3_ENV, AWS_SESSION_TOKEN: sentinel }
  return {
    id,
    dir,
    s3,
    proxy,
    prefix,
    guid,
    dbPath,
    metaDir: path.join(dir, `.${guid}.db-litestream`),
    cliUrl,
    cliEnv,
    oracle,
    sentinel,
    clis,
    writers,
    figures: {},
    cli(extra = []) {
      const p = startCli(['replicate', '-sync-interval', '100ms', ...extra, dbPath, cliUrl], cliEnv)
      clis.push(p)
      return p
    },
    async writer(o = {}) {
      const w = await startWriter({ dbPath, ...o })
      writers.push(w)
      return w
    },
  }
}

/** s3Url is our CLI's replica URL for a prefix on an S3 endpoint. */
export function s3Url(endpoint: string, bucket: string, prefix: string): string {
  return `s3://${bucket}/${prefix}?endpoint=${encodeURIComponent(endpoint)}&region=us-east-1&forcePathStyle=true`
}

/**
 * s3ReplicaAt is a TestReplica for `prefix` on an S3 endpoint; stock restore reads it through a litestream config
 * file written to configPath (v0.3.13 URLs ignore ?endpoint=).
 */
export function s3ReplicaAt(endpoint: string, bucket: string, prefix: string, configPath: string): TestReplica {
  const fakeDb = configPath.replace(/\.yml$/, '.db')
  fs.writeFileSync(
    configPath,
    [
      'dbs:',
      `  - path: ${JSON.stringify(fakeDb)}`,
      '    replicas:',
      '      - type: s3',
      `        bucket: ${JSON.stringify(bucket)}`,
      `        path: ${JSON.stringify(prefix)}`,
      `        endpoint: ${JSON.stringify(endpoint)}`,
      '        region: us-east-1',
      '        force-path-style: true',
      '        access-key-id: S3RVER',
      '        secret-access-key: S3RVER',
      '',
    ].join('\n'),
    { mode: 0o600 },
  )
  const url = s3Url(endpoint, bucket, prefix)
  return {
    kind: 's3',
    url,
    env: S3_ENV,
    client: parseReplicaUrl(url, S3_ENV),
    async stockRestore(out, extra = []) {
      const r = await runLitestreamRestore(['-config', configPath, ...extra, '-o', out, fakeDb], S3_ENV)
      return { code: r.code, output: r.stdout + r.stderr }
    },
  }
}

/** waitReplicating resolves when the CLI logged that it started replicating. */
export async function waitReplicating(p: CliProcess): Promise<void> {
  await p.waitFor(/"msg":"replicating"/)
}

/** sigterm stops the CLI gracefully; resolves with its exit code and how long shutdown took. */
export async function sigterm(p: CliProcess): Promise<{ code: number | null; ms: number }> {
  const t0 = Date.now()
  const code = await p.stop('SIGTERM')
  return { code, ms: Date.now() - t0 }
}

/** sigkill kills the CLI at once. */
export async function sigkill(p: CliProcess): Promise<void> {
  await p.stop('SIGKILL')
}

/** generationsIn returns the generation ids the replica holds (straight from s3rver). */
export async function generationsIn(sc: Scenario): Promise<string[]> {
  return sc.oracle.client.generations()
}

/** getObject reads a key straight from s3rver (undefined when missing). */
export async function getObject(sc: Scenario, key: string): Promise<Buffer | undefined> {
  const s3 = (sc.oracle.client as S3ReplicaClient).client
  try {
    const out = await s3.send(new GetObjectCommand({ Bucket: sc.s3.bucket, Key: key }))
    return Buffer.from(await out.Body!.transformToByteArray())
  } catch (err) {
    if ((err as { name?: string }).name === 'NoSuchKey') return undefined
    throw err
  }
}

/** VerifyOptions say what the scenario expects. */
export interface VerifyOptions {
  /** ackedSeq: every seq up to it must be restorable. */
  readonly ackedSeq: number
  /** writer of the scenario (for lag figures and I7); the source is compared when it is stopped. */
  readonly writer?: Writer
  /** expectGenerations asserts the generation count (e.g. 1: "no new generation"). */
  readonly expectGenerations?: number
  /** maxGenerations bounds it instead. */
  readonly maxGenerations?: number
  /** sourceStopped: no writer runs any more (compare source content). Default: writer stopped or absent. */
  readonly sourceStopped?: boolean
}

/** VerifyResult is what verify measured. */
export interface VerifyResult {
  readonly report: InvariantReport
  readonly failures: string[]
  readonly lag: LagFigures | undefined
  readonly gates: HardGates
}

/** HardGates are the scorecard's must-be-zero counters. */
export interface HardGates extends InvariantCounts {
  uploadByteMismatches: number
  secretOccurrences: number
  keyShapeViolations: number
  appErrors: number
}

function stateFilesText(sc: Scenario): string {
  try {
    return fs
      .readdirSync(sc.metaDir)
      .map((f) => fs.readFileSync(path.join(sc.metaDir, f), 'latin1'))
      .join('\n')
  } catch {
    return ''
  }
}

/**
 * verify checks I1–I6, H6, D11, secrets and I7 (app errors), records figures and hard gates, and asserts that
 * nothing failed (one assertion listing every failure).
 */
export async function verify(t: TestContext, sc: Scenario, o: VerifyOptions): Promise<VerifyResult> {
  const records = sc.proxy.requests()
  const report = await checkInvariants({
    replica: sc.oracle,
    sourceDb: sc.dbPath,
    ackedSeq: o.ackedSeq,
    outDir: sc.dir,
    sourceStopped: o.sourceStopped ?? sc.writers.every((w) => w === undefined || isStopped(w)),
    label: sc.id,
  })
  const failures = [...report.failures]
  failures.push(...checkKeyShapes(records, sc.prefix))
  const upload = await checkUploadBytes(records, (key) => getObject(sc, key))
  failures.push(...upload.mismatches.map((m) => `D11: ${m}`), ...upload.headerProblems.map((m) => `D11: ${m}`))
  const logs = sc.clis.map((p) => p.output()).join('\n')
  const secrets = countSecrets(`${logs}\n${stateFilesText(sc)}`, [sc.sentinel])
  if (secrets > 0) failures.push(`H3: ${secrets} secret occurrence(s) in CLI output or local state`)
  const appErrors = sc.writers.reduce((n, w) => n + w.errors().length, 0)
  if (appErrors > 0) failures.push(`I7: the application saw ${appErrors} error(s): ${sc.writers.flatMap((w) => w.errors()).slice(0, 3).join('; ')}`)
  if (o.expectGenerations !== undefined && report.generations !== o.expectGenerations) {
    failures.push(`generations: want ${o.expectGenerations}, replica has ${report.generations}`)
  }
  if (o.maxGenerations !== undefined && report.generations > o.maxGenerations) {
    failures.push(`generations: want at most ${o.maxGenerations}, replica has ${report.generations}`)
  }
  let lag: LagFigures | undefined
  if (o.writer && report.restoredSeq > 0) {
    const chain = chainOf(o.writer)
    const d = durableSeqs(records, (i) => chain.hash(i), Math.max(report.restoredSeq, o.writer.acked()))
    lag = lagFigures(d, (s) => o.writer!.commitTime(s))
  }
  const gates: HardGates = {
    ...report.counts,
    uploadByteMismatches: upload.mismatches.length,
    secretOccurrences: secrets,
    keyShapeViolations: failures.filter((f) => f.startsWith('H6')).length,
    appErrors,
  }
  Object.assign(sc.figures, {
    ackedSeq: o.ackedSeq,
    restoredSeq: report.restoredSeq,
    generations: report.generations,
    objects: upload.objects,
    uploadedBytes: upload.bytes,
    requests: countRequests(records),
    stockRestoreMs: report.stockRestoreMs,
    ourRestoreMs: report.ourRestoreMs,
    ...(lag ? { lagMs: lag } : {}),
    ...(o.writer ? { appCommitLatencyMs: o.writer.latency() } : {}),
    ...(o.writer && o.writer.checkpoints().n > 0 ? { appCheckpoints: o.writer.checkpoints() } : {}),
  })
  emitFigures(t, sc, gates, failures)
  assert.deepEqual(failures, [], `${sc.id}: invariants\n${failures.join('\n')}\n--- cli output (tail) ---\n${logs.slice(-3000)}`)
  return { report, failures, lag, gates }
}

const stoppedWriters = new WeakSet<Writer>()

/** stopWriter stops a writer and remembers that it is stopped (so verify compares the source). */
export async function stopWriter(w: Writer): Promise<number> {
  const seq = await w.stop()
  stoppedWriters.add(w)
  return seq
}

function isStopped(w: Writer): boolean {
  return stoppedWriters.has(w)
}

/** countRequests tallies requests by method and by outcome. */
export function countRequests(records: readonly RecordedRequest[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const r of records) {
    const kind = r.method === 'GET' && r.key === '' ? 'LIST' : r.method
    out[kind] = (out[kind] ?? 0) + 1
    if (r.action !== 'forward') out[`fault:${r.action}`] = (out[`fault:${r.action}`] ?? 0) + 1
  }
  return out
}

/** emitFigures writes `figure {json}` as a test diagnostic and to RELIABILITY_FIGURES (JSON lines) when set. */
export function emitFigures(t: TestContext, sc: Scenario, gates: HardGates, failures: readonly string[]): void {
  const line = { scenario: sc.id, test: t.name, at: new Date().toISOString(), gates, failures: failures.length, figures: sc.figures }
  t.diagnostic(`figure ${JSON.stringify(line)}`)
  const file = process.env.RELIABILITY_FIGURES
  if (file) fs.appendFileSync(file, `${JSON.stringify(line)}\n`)
}

/** waitDurableSeq resolves once an acknowledged upload holds writer seq `seq`; returns when (epoch ms). */
export async function waitDurableSeq(sc: Scenario, w: Writer, seq: number, timeoutMs = 30_000, since = 0): Promise<number> {
  const r = await waitForDurable(sc.proxy, chainOf(w).hash(seq), { timeoutMs, since })
  return r.endedAt!
}

const chains = new WeakMap<Writer, LedgerChain>()
/** chainOf returns the (memoised) ledger hash chain of a writer. */
export function chainOf(w: Writer): LedgerChain {
  let c = chains.get(w)
  if (!c) chains.set(w, (c = new LedgerChain(w.seed, w.noteChars)))
  return c
}

/** until polls an observable condition, bounded (never a sleep until work is done). */
export async function until<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000, everyMs = 25): Promise<T> {
  const start = Date.now()
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms: ${what}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}
