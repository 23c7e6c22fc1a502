/**
 * `npm run bench -- --clients N --duration S [--rate TX_PER_S] [--replica file|s3] [--out FILE]
 *   [--peers ours,litestreamSingleProcess,litestreamPerProcess] [--per-process-max K]`
 *
 * Runs the same synthetic workload against each peer in turn (never two at once), each on a fresh set of
 * `<guid>.db` files and a fresh replica:
 *
 *   create dbs -> start writers (idle) -> start peer -> cold start -> steady (writers commit; discovery for ours)
 *   -> drain -> /api/clients latency (ours) -> rest (--idle-settle) -> idle window -> SIGTERM -> read the replica
 *   back -> report
 *
 * Method notes live in docs/benchmarks.md (bench/doc.ts writes them from METHOD below).
 * @module
 */
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { createClientDb, guidOf, maxLedgerSeq } from './lib/dbs.js'
import { readDiskWrittenBytes, readSystemCpu, Sampler, systemBusyPercent } from './lib/proc.js'
import { countObjects, decodeObject, fileLayout, hasSnapshot, listObjects, s3rverLayout, type ReplicaLayout } from './lib/replica-scan.js'
import { mean, nowMs, percentile, round, sleep, summarize } from './lib/stats.js'
import {
  LITESTREAM_BIN,
  MAIN_JS,
  PEERS,
  REPO,
  startLitestreamPerProcess,
  startLitestreamSingle,
  startOurs,
  summarizeLogs,
  track,
  type PeerName,
  type ReplicaTarget,
  type Sut,
} from './lib/sut.js'
import type { ParentMessage, WriterDone, WriterMessage } from './writer.js'

// ---------------------------------------------------------------------------------------------------------------
// Options

/** BenchOptions are the command-line options, validated. */
interface BenchOptions {
  readonly clients: number
  readonly durationS: number
  readonly rate: number
  readonly replica: 'file' | 's3'
  readonly out: string
  readonly peers: readonly PeerName[]
  readonly perProcessMax: number
  /** sample is how many databases per peer have their commits timed for replication lag. */
  readonly sample: number
  /** discovery is how many new databases ours must discover during the steady phase (0 = skip). */
  readonly discovery: number
  readonly idleS: number
  /** idleSettleS is how long the peer rests after the load (and ours after the /api/clients requests) before the
   *  idle window opens, so the window measures an idle service, not the tail of the work before it. */
  readonly idleSettleS: number
  readonly syncInterval: string
  readonly syncIntervalMs: number
  readonly writers: number
  readonly keep: boolean
  readonly coldStartTimeoutS: number
  /** oursEnv overrides the environment of our service's launch line (to measure what a setting there buys). */
  readonly oursEnv: Readonly<Record<string, string>>
}

const USAGE = `usage: npm run bench -- --clients N --duration S [--rate TX_PER_S] [--replica file|s3] [--out FILE]
       [--peers ours,litestreamSingleProcess,litestreamPerProcess] [--per-process-max K] [--sample 50]
       [--discovery 20] [--idle 30] [--idle-settle 10] [--sync-interval 1s] [--writers 2] [--cold-start-timeout 300] [--keep]
       [--ours-env NAME=VALUE ...] (overrides the environment our executable's first line sets)`

function parseDurationMs(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(s)
  if (!m) return undefined
  return Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 's' ? 1000 : 60_000)
}

/** parseOptions validates argv, reporting every problem at once. */
function parseOptions(argv: readonly string[]): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      clients: { type: 'string', default: '100' },
      duration: { type: 'string', default: '60' },
      rate: { type: 'string', default: '1' },
      replica: { type: 'string', default: 'file' },
      out: { type: 'string' },
      peers: { type: 'string', default: PEERS.join(',') },
      'per-process-max': { type: 'string', default: '50' },
      sample: { type: 'string', default: '50' },
      discovery: { type: 'string', default: '20' },
      // 30 s: one whole period of the service's reconcile scan, so every idle window holds exactly one.
      idle: { type: 'string', default: '30' },
      'idle-settle': { type: 'string', default: '10' },
      'sync-interval': { type: 'string', default: '1s' },
      writers: { type: 'string', default: '2' },
      'cold-start-timeout': { type: 'string', default: '300' },
      keep: { type: 'boolean', default: false },
      'ours-env': { type: 'string', multiple: true, default: [] },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  })
  if (values.help) {
    process.stdout.write(`${USAGE}\n`)
    process.exit(0)
  }
  const errors: string[] = []
  const num = (name: string, raw: string | undefined, min: number): number => {
    const n = Number(raw)
    if (!Number.isFinite(n) || n < min) errors.push(`--${name} must be a number >= ${min}, got ${JSON.stringify(raw)}`)
    return n
  }
  const clients = num('clients', values.clients, 1)
  const durationS = num('duration', values.duration, 1)
  const rate = num('rate', values.rate, 0.01)
  const perProcessMax = num('per-process-max', values['per-process-max'], 1)
  const sample = num('sample', values.sample, 1)
  const discovery = num('discovery', values.discovery, 0)
  const idleS = num('idle', values.idle, 1)
  const idleSettleS = num('idle-settle', values['idle-settle'], 0)
  const writers = num('writers', values.writers, 1)
  const coldStartTimeoutS = num('cold-start-timeout', values['cold-start-timeout'], 1)
  const oursEnv: Record<string, string> = {}
  for (const kv of values['ours-env'] ?? []) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(kv)
    if (m) oursEnv[m[1]!] = m[2]!
    else errors.push(`--ours-env must look like NAME=VALUE, got ${JSON.stringify(kv)}`)
  }
  const replica = values.replica
  if (replica !== 'file' && replica !== 's3') errors.push(`--replica must be file or s3, got ${JSON.stringify(replica)}`)
  const peers = String(values.peers)
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')
  for (const p of peers) if (!PEERS.includes(p as PeerName)) errors.push(`unknown peer ${JSON.stringify(p)} (known: ${PEERS.join(', ')})`)
  if (peers.length === 0) errors.push('--peers names no peer')
  const syncInterval = String(values['sync-interval'])
  const syncIntervalMs = parseDurationMs(syncInterval)
  if (syncIntervalMs === undefined || syncIntervalMs <= 0) errors.push(`--sync-interval must look like 1s or 500ms, got ${JSON.stringify(syncInterval)}`)
  if (peers.includes('litestreamPerProcess') && replica === 'file' && syncIntervalMs !== 1000) {
    errors.push('litestreamPerProcess with a file replica uses the URL form, whose sync-interval is fixed at 1s: use --sync-interval 1s')
  }
  if (errors.length > 0) {
    process.stderr.write(`${errors.map((e) => `error: ${e}`).join('\n')}\n${USAGE}\n`)
    process.exit(2)
  }
  const date = new Date().toISOString().replace(/[:]/g, '').replace(/\..*$/, '')
  return {
    clients: Math.floor(clients),
    durationS,
    rate,
    replica: replica as 'file' | 's3',
    out: path.resolve(values.out ?? path.join(REPO, 'bench', 'out', `result-${date}.json`)),
    peers: PEERS.filter((p) => peers.includes(p)),
    perProcessMax: Math.floor(perProcessMax),
    sample: Math.floor(sample),
    discovery: Math.floor(discovery),
    idleS,
    idleSettleS,
    syncInterval,
    syncIntervalMs: syncIntervalMs!,
    writers: Math.floor(writers),
    keep: values.keep ?? false,
    oursEnv,
    coldStartTimeoutS,
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Progress line

class Progress {
  peer = ''
  phase = 'setup'
  phaseStart = Date.now()
  up = 0
  n = 0
  commits = 0
  /** phases lists when each phase began (epoch ms), so a peak can be placed in one. */
  readonly phases: { readonly phase: string; readonly at: number }[] = []
  readonly #start = Date.now()
  readonly #tty = process.stderr.isTTY
  #timer: NodeJS.Timeout | null = null
  #ticks = 0

  start(): void {
    this.#timer = setInterval(() => this.#print(), 1000)
    this.#timer.unref()
  }

  set(phase: string): void {
    this.phase = phase
    this.phaseStart = Date.now()
    this.phases.push({ phase, at: this.phaseStart })
    this.#print(true)
  }

  #print(force = false): void {
    this.#ticks++
    const line =
      `[bench ${((Date.now() - this.#start) / 1000).toFixed(0)}s] ${this.peer || '-'} ${this.phase} ` +
      `${((Date.now() - this.phaseStart) / 1000).toFixed(1)}s clients up ${this.up}/${this.n} commits ${this.commits}`
    if (this.#tty) process.stderr.write(`\r\x1b[K${line}`)
    else if (force || this.#ticks % 5 === 0) process.stderr.write(`${line}\n`)
  }

  note(msg: string): void {
    process.stderr.write(`${this.#tty ? '\r\x1b[K' : ''}[bench] ${msg}\n`)
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer)
    if (this.#tty) process.stderr.write('\n')
  }
}

const progress = new Progress()

/** phaseAt names the benchmark phase running at epoch ms t. */
function phaseAt(t: number | undefined): string | undefined {
  if (t === undefined) return undefined
  let name: string | undefined
  for (const p of progress.phases) if (p.at <= t) name = p.phase
  return name
}

// ---------------------------------------------------------------------------------------------------------------
// S3 (s3rver + counting proxy in a child process)

interface S3Env {
  readonly s3Endpoint: string
  readonly proxyEndpoint: string
  readonly dir: string
  readonly bucket: string
  readonly proc: ChildProcess
}

async function startS3(): Promise<S3Env> {
  const proc = track(spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'bench', 's3-server.ts')], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] }))
  const line = await new Promise<string>((resolve, reject) => {
    let buf = ''
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString()
      const i = buf.indexOf('\n')
      if (i >= 0) resolve(buf.slice(0, i))
    })
    proc.on('exit', (code) => reject(new Error(`s3 server exited early (code ${code})`)))
  })
  const info = JSON.parse(line) as Omit<S3Env, 'proc'>
  return { ...info, proc }
}

type Counts = Record<'PUT' | 'GET' | 'LIST' | 'DELETE' | 'HEAD' | 'POST' | 'OTHER', number>

async function proxyCounts(s3: S3Env): Promise<Counts> {
  return (await (await fetch(`${s3.proxyEndpoint}/__bench/counts`)).json()) as Counts
}

function countsDelta(a: Counts, b: Counts): Counts {
  const out = { ...b }
  for (const k of Object.keys(out) as (keyof Counts)[]) out[k] = b[k] - a[k]
  return out
}

/** s3rverPutCeiling measures PUT/s of 1 KiB objects straight to s3rver with 16 concurrent requests for 5 s. */
async function s3rverPutCeiling(s3: S3Env, seconds = 5, concurrency = 16): Promise<number> {
  const http = await import('node:http')
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency })
  const u = new URL(s3.s3Endpoint)
  const body = crypto.randomBytes(1024)
  const end = Date.now() + seconds * 1000
  let ok = 0
  let seq = 0
  const put = (key: string): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = http.request(
        { host: u.hostname, port: u.port, method: 'PUT', path: `/${s3.bucket}/ceiling/${key}`, agent, headers: { 'content-length': body.length } },
        (res) => {
          res.resume()
          res.on('end', () => resolve(res.statusCode ?? 0))
        },
      )
      req.on('error', reject)
      req.end(body)
    })
  const start = Date.now()
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) if ((await put(`o${seq++}`)) < 300) ok++
    }),
  )
  agent.destroy()
  return ok / ((Date.now() - start) / 1000)
}

// ---------------------------------------------------------------------------------------------------------------
// Writers

interface Writer {
  readonly proc: ChildProcess
  commits: number
  done: Promise<WriterDone>
  send(m: ParentMessage): void
}

async function startWriters(dbs: readonly string[], sampled: readonly string[], opts: BenchOptions): Promise<Writer[]> {
  const k = Math.min(opts.writers, dbs.length)
  const writers: Writer[] = []
  for (let w = 0; w < k; w++) {
    const mine = dbs.filter((_, i) => i % k === w)
    const proc = track(fork(path.join(REPO, 'bench', 'writer.ts'), [], { execArgv: ['--import', 'tsx'], cwd: REPO, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
    let ready!: () => void
    const readyP = new Promise<void>((r) => (ready = r))
    let finish!: (d: WriterDone) => void
    const writer: Writer = {
      proc,
      commits: 0,
      done: new Promise<WriterDone>((r) => (finish = r)),
      send: (m) => proc.send(m),
    }
    proc.on('message', (m: WriterMessage) => {
      if (m.type === 'ready') ready()
      else if (m.type === 'progress') writer.commits = m.commits
      else if (m.type === 'done') {
        writer.commits = m.commits
        finish(m)
      }
    })
    proc.on('exit', (code) => {
      if (code !== 0) progress.note(`writer ${w} exited with code ${code}`)
    })
    writer.send({ type: 'init', dbs: mine, sampled: sampled.filter((s) => mine.includes(s)), rate: opts.rate })
    await readyP
    writers.push(writer)
  }
  return writers
}

// ---------------------------------------------------------------------------------------------------------------
// Our dashboard API

interface ApiClient {
  readonly id: string
  readonly generation?: string
  readonly replicator?: { readonly generation?: string } | null
}

async function apiClients(port: number): Promise<ApiClient[] | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/api/clients`)
    if (!res.ok) return undefined
    return (await res.json()) as ApiClient[]
  } catch {
    return undefined
  }
}

function generationOf(c: ApiClient): string {
  return c.generation ?? c.replicator?.generation ?? ''
}

/** eventLoopP99Ms reads prom-client's `nodejs_eventloop_lag_p99_seconds` (reset by each scrape), if exposed. */
async function eventLoopP99Ms(port: number): Promise<number | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`)
    if (!res.ok) return undefined
    const text = await res.text()
    const read = (name: string): number | undefined => {
      const m = new RegExp(`^nodejs_eventloop_lag_${name}_seconds(?:\\{[^}]*\\})?\\s+([0-9.eE+-]+)`, 'm').exec(text)
      return m ? Number(m[1]) * 1000 : undefined
    }
    // Node's histogram records the whole interval between its samples, so an idle loop reads the sampling interval
    // (the histogram's min): report what the loop added on top of it.
    const p99 = read('p99')
    const min = read('min')
    return p99 === undefined || min === undefined ? undefined : Math.max(0, p99 - min)
  } catch {
    return undefined
  }
}

/** probePerIdEndpoint reports whether `GET /api/clients/:id` answers 200 for a known id (cheaper discovery polling). */
async function probePerIdEndpoint(port: number, id: string): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/api/clients/${id}`)
    await res.arrayBuffer()
    if (res.status !== 200) return false
    const res2 = await fetch(`http://127.0.0.1:${port}/api/clients/${crypto.randomUUID()}`)
    await res2.arrayBuffer()
    return res2.status === 404
  } catch {
    return false
  }
}

/** COLD_START_API_POLL_MS is how often /api/clients is read during cold start (each read costs ours ~20 ms at 1000 rows). */
const COLD_START_API_POLL_MS = 500

/** DISCOVERY_SPACING_MS separates the creation of two discovery databases. */
const DISCOVERY_SPACING_MS = 500

interface DiscoverySample {
  readonly seenMs: number | null
  readonly snapshotMs: number | null
}

async function discoverOne(port: number, perId: boolean, dir: string, layout: ReplicaLayout, timeoutMs = 10_000): Promise<DiscoverySample> {
  const guid = crypto.randomUUID()
  const t0 = nowMs()
  createClientDb(dir, guid, 1)
  let seenMs: number | null = null
  let snapshotMs: number | null = null
  const deadline = t0 + timeoutMs
  while (nowMs() < deadline && (seenMs === null || snapshotMs === null)) {
    if (seenMs === null) {
      if (perId) {
        const res = await fetch(`http://127.0.0.1:${port}/api/clients/${guid}`).catch(() => undefined)
        await res?.arrayBuffer()
        if (res?.status === 200) seenMs = nowMs() - t0
      } else {
        const list = await apiClients(port)
        if (list?.some((c) => c.id === guid)) seenMs = nowMs() - t0
      }
    }
    if (snapshotMs === null && hasSnapshot(layout, guid)) {
      // ctime of the snapshot object is when it became durable; the poll only tells us it has.
      const snaps = listObjects(layout, guid, 'snapshots')
      const first = Math.min(...snaps.map((s) => s.ctimeMs))
      snapshotMs = Math.max(0, (Number.isFinite(first) ? first : nowMs()) - t0)
    }
    await sleep(10)
  }
  return { seenMs, snapshotMs }
}

// ---------------------------------------------------------------------------------------------------------------
// Lag analysis

interface ObjMark {
  readonly durableAt: number
  readonly maxSeq: number
}

/**
 * lagsFor computes, for each sampled commit of one database, the time from COMMIT returning in the writer to the
 * first replica object (snapshot or WAL segment) that contains the commit's ledger marker or a later one.
 */
function lagsFor(objs: readonly ObjMark[], ledger: readonly [number, number][]): { lags: number[]; missing: number; negative: number; minRaw: number } {
  const sorted = [...objs].sort((a, b) => a.durableAt - b.durableAt)
  const prefixMax: number[] = []
  let m = 0
  for (const o of sorted) prefixMax.push((m = Math.max(m, o.maxSeq)))
  const lags: number[] = []
  let missing = 0
  let negative = 0
  let minRaw = Infinity
  for (const [seq, at] of ledger) {
    // binary search: first index with prefixMax >= seq (prefixMax is non-decreasing)
    let lo = 0
    let hi = sorted.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (prefixMax[mid]! >= seq) hi = mid
      else lo = mid + 1
    }
    if (lo === sorted.length) {
      missing++
      continue
    }
    const lag = sorted[lo]!.durableAt - at
    if (lag < minRaw) minRaw = lag
    if (lag < 0) negative++
    lags.push(Math.max(0, lag))
  }
  return { lags, missing, negative, minRaw }
}

// ---------------------------------------------------------------------------------------------------------------
// One peer

/** PeerResult is one peer's section of the result JSON (fields documented in docs/benchmarks.md). */
type PeerResult = Record<string, unknown>

async function runPeer(peer: PeerName, opts: BenchOptions, s3: S3Env | undefined): Promise<PeerResult> {
  const n = peer === 'litestreamPerProcess' ? Math.min(opts.clients, opts.perProcessMax) : opts.clients
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `lm-bench-${peer}-`))
  const clientsDir = path.join(work, 'clients')
  fs.mkdirSync(clientsDir)
  const prefix = `${peer}-${crypto.randomBytes(4).toString('hex')}`
  const replica: ReplicaTarget = s3
    ? { kind: 's3', proxyEndpoint: s3.proxyEndpoint, bucket: s3.bucket, prefix }
    : { kind: 'file', root: path.join(work, 'replica') }
  const layout = s3 ? s3rverLayout(s3.dir, s3.bucket, prefix) : fileLayout(path.join(work, 'replica'))
  progress.peer = peer
  progress.n = n
  progress.up = 0
  progress.commits = 0

  // 1. Databases and writers (connected, not yet writing).
  progress.set('create dbs')
  const dbs: string[] = []
  for (let i = 0; i < n; i++) dbs.push(createClientDb(clientsDir))
  const guids = dbs.map(guidOf)
  const sampled = dbs.slice(0, Math.min(opts.sample, n))
  progress.set('start writers')
  const writers = await startWriters(dbs, sampled, opts)

  // 2. Start the peer; cold start = spawn until every database has a snapshot object in the replica.
  progress.set('cold start')
  const spawnAt = Date.now()
  const sut: Sut =
    peer === 'ours'
      ? await startOurs({ workDir: work, clientsDir, replica, syncInterval: opts.syncInterval, env: opts.oursEnv })
      : peer === 'litestreamSingleProcess'
        ? startLitestreamSingle({ workDir: work, dbs, replica, syncInterval: opts.syncInterval })
        : startLitestreamPerProcess({ workDir: work, dbs, replica, syncInterval: opts.syncInterval })
  const sampler = new Sampler(() => sut.pids())
  sampler.start(250)
  const writerSampler = new Sampler(() => writers.map((w) => w.proc.pid).filter((p): p is number => p !== undefined))
  const counts0 = s3 ? await proxyCounts(s3) : undefined
  let coldStartApiS: number | undefined
  const apiWatch =
    peer === 'ours' && sut.port
      ? (async () => {
          const want = new Set(guids)
          const deadline = spawnAt + opts.coldStartTimeoutS * 1000
          while (Date.now() < deadline && sut.anyAlive()) {
            const list = await apiClients(sut.port!)
            if (list && list.filter((c) => want.has(c.id) && generationOf(c) !== '').length === want.size) {
              coldStartApiS = (Date.now() - spawnAt) / 1000
              return
            }
            await sleep(COLD_START_API_POLL_MS)
          }
        })()
      : Promise.resolve()
  let coldStartS: number | undefined
  {
    const pending = new Set(guids)
    const deadline = spawnAt + opts.coldStartTimeoutS * 1000
    while (pending.size > 0 && Date.now() < deadline && sut.anyAlive()) {
      for (const g of [...pending]) if (hasSnapshot(layout, g)) pending.delete(g)
      progress.up = n - pending.size
      if (pending.size > 0) await sleep(100)
    }
    if (pending.size === 0) coldStartS = (Date.now() - spawnAt) / 1000
    else progress.note(`${peer}: cold start incomplete: ${pending.size}/${n} databases without a snapshot`)
  }
  await apiWatch
  if (!sut.anyAlive()) {
    // Nothing left to measure: say why instead of timing every later phase against a dead peer.
    const tail = sut.logFiles.length > 0 ? fs.readFileSync(sut.logFiles[0]!, 'utf8').slice(-2000) : ''
    for (const w of writers) w.send({ type: 'exit' })
    sampler.stop()
    throw new Error(`${peer}: every process exited during cold start (${JSON.stringify(sut.exits)}); log tail:\n${tail}`)
  }
  const coldCpu = sampler.cpuNow()

  // 3. Load: writers commit for durationS, the measured window. For ours the writers then keep going through a
  //    discovery window, so the discovery polling of /api/clients is not billed to the measured CPU.
  progress.set('load')
  if (peer === 'ours' && sut.port) await eventLoopP99Ms(sut.port) // scrape resets the histogram
  const countsSteady0 = s3 ? await proxyCounts(s3) : undefined
  const discoveryN = peer === 'ours' && sut.port ? opts.discovery : 0
  const discoveryWindowMs = discoveryN > 0 ? discoveryN * DISCOVERY_SPACING_MS + 2000 : 0
  const steadyStart = Date.now()
  const cpu0 = sampler.cpuNow()
  const writerCpu0 = writerSampler.cpuNow()
  const harnessCpu0 = process.cpuUsage()
  const sys0 = readSystemCpu()
  const disk0 = readDiskWrittenBytes(work)
  for (const w of writers) w.send({ type: 'start', durationMs: opts.durationS * 1000 + discoveryWindowMs })
  const progressTimer = setInterval(() => (progress.commits = writers.reduce((s, w) => s + w.commits, 0)), 500)
  await sleep(steadyStart + opts.durationS * 1000 - Date.now())
  const steadyEnd = Date.now()
  const cpu1 = sampler.cpuNow()
  const writerCpu1 = writerSampler.cpuNow()
  const harnessCpu = process.cpuUsage(harnessCpu0)
  const sys1 = readSystemCpu()
  const disk1 = readDiskWrittenBytes(work)
  const countsSteady1 = s3 ? await proxyCounts(s3) : undefined
  const eventLoopDelayMsP99 = peer === 'ours' && sut.port ? await eventLoopP99Ms(sut.port) : undefined
  const discovery: DiscoverySample[] = []
  let perIdDiscovery = false
  if (discoveryN > 0) {
    progress.set('discovery (writers still running)')
    perIdDiscovery = await probePerIdEndpoint(sut.port!, guids[0]!)
    for (let i = 0; i < discoveryN; i++) {
      const at = steadyEnd + i * DISCOVERY_SPACING_MS
      if (at > Date.now()) await sleep(at - Date.now())
      discovery.push(await discoverOne(sut.port!, perIdDiscovery, clientsDir, layout))
    }
  }
  const writerTimeout = sleep(opts.durationS * 1000 + discoveryWindowMs + 120_000).then(() => undefined)
  const done = await Promise.all(writers.map((w) => Promise.race([w.done, writerTimeout])))
  const writersStopped = Date.now()
  clearInterval(progressTimer)
  progress.commits = writers.reduce((s, w) => s + w.commits, 0)

  // 4. Drain: every sampled database's last commit durable, and object count still for 2 s (max 60 s).
  progress.set('drain')
  const lastSeq = new Map<string, number>()
  for (const d of done) if (d) for (const [p, l] of Object.entries(d.ledgers)) lastSeq.set(guidOf(p), l.length > 0 ? l[l.length - 1]![0] : 0)
  const decoded = new Map<string, number>() // object file -> max ledger seq
  const maxSeqOf = (file: string): number => {
    let v = decoded.get(file)
    if (v === undefined) {
      try {
        v = maxLedgerSeq(decodeObject(file))
      } catch {
        v = 0
      }
      decoded.set(file, v)
    }
    return v
  }
  let drainS: number | undefined
  {
    const deadline = Date.now() + 60_000
    let lastCount = -1
    let stableSince = Date.now()
    while (Date.now() < deadline) {
      const caughtUp = [...lastSeq].every(([g, seq]) => listObjects(layout, g).some((o) => maxSeqOf(o.file) >= seq))
      const count = s3 ? (await proxyCounts(s3)).PUT : countObjects(layout, guids)
      if (count !== lastCount) {
        lastCount = count
        stableSince = Date.now()
      }
      if (caughtUp && Date.now() - stableSince >= 2000) {
        drainS = (stableSince - writersStopped) / 1000
        break
      }
      await sleep(250)
    }
    if (drainS === undefined) progress.note(`${peer}: did not drain within 60 s of the writers stopping`)
  }

  // 5. /api/clients latency (ours): 200 sequential requests with the writers stopped.
  let apiClientsMs: ReturnType<typeof summarize> | undefined
  if (peer === 'ours' && sut.port) {
    progress.set('api latency')
    const times: number[] = []
    for (let i = 0; i < 200; i++) {
      const t = nowMs()
      const res = await fetch(`http://127.0.0.1:${sut.port}/api/clients`).catch(() => undefined)
      if (res) await res.arrayBuffer()
      if (res?.ok) times.push(nowMs() - t)
    }
    apiClientsMs = summarize(times)
  }

  // 6. Idle window, after a rest: the load's and the API requests' garbage is collected in the rest, not billed to idle.
  progress.set('idle settle')
  await sleep(opts.idleSettleS * 1000)
  progress.set('idle')
  const countsIdle0 = s3 ? await proxyCounts(s3) : undefined
  const idleStart = Date.now()
  const idleCpu0 = sampler.cpuNow()
  await sleep(opts.idleS * 1000)
  const idleCpu1 = sampler.cpuNow()
  const idleEnd = Date.now()
  const countsIdle1 = s3 ? await proxyCounts(s3) : undefined

  // 7. Stop (SIGTERM: final sync), then the writers.
  progress.set('stop')
  const unexpected = sut.exits.map((e) => ({ ...e }))
  const stopAt = Date.now()
  const exits = await sut.stop(60_000)
  const stopS = (Date.now() - stopAt) / 1000
  sampler.stop()
  for (const w of writers) w.send({ type: 'exit' })

  // 8. Read the replica back.
  progress.set('analyze')
  const putTimes = new Map<string, number>()
  if (s3) {
    const puts = (await (await fetch(`${s3.proxyEndpoint}/__bench/puts`)).json()) as [string, number][]
    for (const [k, t] of puts) if (k.startsWith(`${prefix}/`) && !putTimes.has(k)) putTimes.set(k, t)
  }
  const lags: number[] = []
  let lagMissing = 0
  let lagNegative = 0
  let lagMinRaw = Infinity
  for (const d of done) {
    if (!d) continue
    for (const [p, ledger] of Object.entries(d.ledgers)) {
      const g = guidOf(p)
      const objs = listObjects(layout, g).map((o) => ({
        durableAt: putTimes.get(layout.keyFor(g, o.generation, o.sub, o.name)) ?? o.ctimeMs,
        maxSeq: maxSeqOf(o.file),
      }))
      const r = lagsFor(objs, ledger)
      lags.push(...r.lags)
      lagMissing += r.missing
      lagNegative += r.negative
      lagMinRaw = Math.min(lagMinRaw, r.minRaw)
    }
  }
  const lag = summarize(lags)

  // Objects written per phase (file replica: by ctime of every object of the n databases plus discovered ones).
  let objectsWritten: Record<string, number> | undefined
  let replicaMiBSteady: number | undefined
  if (!s3) {
    objectsWritten = { coldStart: 0, steady: 0, idle: 0, total: 0 }
    let bytes = 0
    for (const g of fs.readdirSync(path.join(work, 'replica', 'databases'))) {
      for (const o of listObjects(layout, g)) {
        objectsWritten.total!++
        if (o.ctimeMs < steadyStart) objectsWritten.coldStart!++
        else if (o.ctimeMs <= steadyEnd) {
          objectsWritten.steady!++
          bytes += o.size
        } else if (o.ctimeMs >= idleStart && o.ctimeMs <= idleEnd) objectsWritten.idle!++
      }
    }
    replicaMiBSteady = bytes / 1048576
  }
  // Generations beyond the first per database: a replicator that restarts generations re-uploads snapshots.
  let extraGenerations = 0
  for (const g of guids) extraGenerations += Math.max(0, new Set(listObjects(layout, g).map((o) => o.generation)).size - 1)
  const requests = s3
    ? {
        coldStart: countsDelta(counts0!, countsSteady0!),
        steady: countsDelta(countsSteady0!, countsSteady1!),
        idle: countsDelta(countsIdle0!, countsIdle1!),
      }
    : undefined

  // Resource figures.
  const steadySamples = sampler.between(steadyStart + ((steadyEnd - steadyStart) * 1) / 2, steadyEnd)
  const rssSteady = mean(steadySamples.map((s) => s.rssMiB))
  const idleSamples = sampler.between(idleStart, idleEnd)
  const rssGrowth = slopePerMin(sampler.between(steadyStart, steadyEnd).map((s) => [s.t, s.rssMiB]))
  const writerStats = done.filter((d): d is WriterDone => d !== undefined)
  const logs = summarizeLogs(sut.logFiles)
  const peak = sampler.peak()
  const result: PeerResult = {
    clientsReplicated: n,
    rssMiBPeak: round(peak?.rssMiB ?? 0),
    rssPeakPhase: phaseAt(peak?.t),
    rssMiBSteady: round(rssSteady),
    cpuSeconds: round(cpu1 - cpu0, 2),
    cpuPercentOfOneCore: round(((cpu1 - cpu0) / ((steadyEnd - steadyStart) / 1000)) * 100),
    diskWrittenMiB: disk0 === undefined || disk1 === undefined ? undefined : round((disk1 - disk0) / 2 ** 20),
    lagMsP50: round(lag.p50),
    lagMsP99: round(lag.p99),
    lagMsMax: round(lag.max),
    lagSamples: lag.n,
    lagMissing,
    lagNegativeClampedToZero: lagNegative,
    lagMsMinRaw: round(lagMinRaw, 2),
    puts: s3 ? requests!.steady.PUT : objectsWritten!.steady,
    idleCpuSeconds: round(idleCpu1 - idleCpu0, 2),
    idleRssMiB: round(mean(idleSamples.map((s) => s.rssMiB))),
    idlePuts: s3 ? requests!.idle.PUT : objectsWritten!.idle,
    idleS: round((idleEnd - idleStart) / 1000),
    coldStartS: round(coldStartS, 2) ?? null,
    coldStartCpuSeconds: round(coldCpu, 2),
    drainS: round(drainS, 2) ?? null,
    stopS: round(stopS, 2),
    rssGrowthMiBPerMin: round(rssGrowth, 2),
    extraGenerations,
    ...(s3 ? { requests } : { objectsWritten, replicaMiBWrittenSteady: round(replicaMiBSteady, 2) }),
    writer: {
      commits: writerStats.reduce((s, d) => s + d.commits, 0),
      errors: writerStats.reduce((s, d) => s + d.errors, 0),
      firstError: writerStats.find((d) => d.firstError)?.firstError ?? null,
      commitMsP99: round(Math.max(0, ...writerStats.map((d) => d.commitMsP99)), 2),
      commitMsMax: round(Math.max(0, ...writerStats.map((d) => d.commitMsMax)), 2),
      lateMsP99: round(Math.max(0, ...writerStats.map((d) => d.lateMsP99)), 2),
      timedOut: done.length - writerStats.length,
      cpuSeconds: round(writerCpu1 - writerCpu0, 2),
    },
    harnessCpuSeconds: round((harnessCpu.user + harnessCpu.system) / 1e6, 2),
    // Share of the whole machine's CPU used by the peer, the writers and the harness during the load window.
    // Share of the whole machine busy with anyone's work (/proc/stat); well above machineCpuBusyPercent means
    // something outside the benchmark competed for the CPUs.
    systemCpuBusyPercent: round(systemBusyPercent(sys0, sys1)),
    machineCpuBusyPercent: round(
      ((cpu1 - cpu0 + (writerCpu1 - writerCpu0) + (harnessCpu.user + harnessCpu.system) / 1e6) / (os.cpus().length * ((steadyEnd - steadyStart) / 1000))) * 100,
    ),
    exits: exits.map((e) => ({ code: e.code, signal: e.signal })).slice(0, 5),
    nonZeroExits: exits.filter((e) => e.code !== 0).length,
    exitedBeforeStop: unexpected.length,
    log: logs,
  }
  if (peer === 'ours') {
    const seen = discovery.map((d) => d.seenMs).filter((v): v is number => v !== null)
    const snap = discovery.map((d) => d.snapshotMs).filter((v): v is number => v !== null)
    Object.assign(result, {
      coldStartApiS: round(coldStartApiS, 2) ?? null,
      discoveryMsP50: round(percentile(seen, 50)),
      discoveryMsP99: round(percentile(seen, 99)),
      discoveryMsMax: round(seen.length > 0 ? Math.max(...seen) : undefined),
      firstSnapshotMsP50: round(percentile(snap, 50)),
      firstSnapshotMsP99: round(percentile(snap, 99)),
      discoverySamples: discovery.length,
      discoveryMissed: discovery.length - seen.length,
      discoveryPolledPerId: perIdDiscovery,
      apiClientsMsP50: round(apiClientsMs?.p50, 2),
      apiClientsMsP99: round(apiClientsMs?.p99, 2),
      apiClientsRequests: apiClientsMs?.n ?? 0,
      ...(eventLoopDelayMsP99 !== undefined ? { eventLoopDelayMsP99: round(eventLoopDelayMsP99, 2) } : {}),
    })
  }
  if (peer === 'litestreamPerProcess') {
    const f = opts.clients / n
    const measured = {
      processes: n,
      rssMiBPeak: result.rssMiBPeak,
      rssMiBSteady: result.rssMiBSteady,
      cpuSeconds: result.cpuSeconds,
      diskWrittenMiB: result.diskWrittenMiB,
      puts: result.puts,
      idleCpuSeconds: result.idleCpuSeconds,
      idleRssMiB: result.idleRssMiB,
      idlePuts: result.idlePuts,
    }
    const x = (v: unknown, d = 1): number | undefined => (typeof v === 'number' ? round(v * f, d) : undefined)
    Object.assign(result, {
      extrapolated: true,
      extrapolatedTo: opts.clients,
      perProcessCount: n,
      perProcessRssMiB: round((rssSteady ?? 0) / n, 2),
      perProcessCpuSeconds: round((cpu1 - cpu0) / n, 3),
      measured,
      rssMiBPeak: x(result.rssMiBPeak),
      rssMiBSteady: x(result.rssMiBSteady),
      cpuSeconds: x(result.cpuSeconds, 2),
      cpuPercentOfOneCore: x(result.cpuPercentOfOneCore),
      diskWrittenMiB: x(result.diskWrittenMiB),
      puts: x(result.puts, 0),
      idleCpuSeconds: x(result.idleCpuSeconds, 2),
      idleRssMiB: x(result.idleRssMiB),
      idlePuts: x(result.idlePuts, 0),
    })
  }
  if (!opts.keep) fs.rmSync(work, { recursive: true, force: true })
  else progress.note(`${peer}: kept ${work}`)
  return result
}

function slopePerMin(points: readonly [number, number][]): number | undefined {
  if (points.length < 3) return undefined
  const mx = mean(points.map((p) => p[0]))!
  const my = mean(points.map((p) => p[1]))!
  let num = 0
  let den = 0
  for (const [x, y] of points) {
    num += (x - mx) * (y - my)
    den += (x - mx) ** 2
  }
  return den === 0 ? undefined : (num / den) * 60_000
}

// ---------------------------------------------------------------------------------------------------------------
// Main

function litestreamVersion(): string {
  try {
    return execFileSync(LITESTREAM_BIN, ['version']).toString().trim()
  } catch {
    return 'unknown'
  }
}

/** machine describes the host the way the result JSON reports it. */
function machine(): Record<string, unknown> {
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memGiB: round(os.totalmem() / 2 ** 30, 1),
    node: process.version,
    kernel: os.release(),
    litestream: litestreamVersion(),
    loadAvg1mAtStart: round(os.loadavg()[0], 2),
  }
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2))
  if (!fs.existsSync(MAIN_JS)) throw new Error(`${MAIN_JS} missing: run npm run build`)
  if (!fs.existsSync(LITESTREAM_BIN)) throw new Error(`${LITESTREAM_BIN} missing: run npm ci`)
  fs.mkdirSync(path.dirname(opts.out), { recursive: true })
  progress.start()
  const started = new Date()
  let s3: S3Env | undefined
  let s3rverPutCeilingPerS: number | undefined
  if (opts.replica === 's3') {
    progress.set('s3rver ceiling')
    s3 = await startS3()
    s3rverPutCeilingPerS = await s3rverPutCeiling(s3)
    progress.note(`s3rver PUT ceiling: ${s3rverPutCeilingPerS.toFixed(0)}/s (1 KiB objects, 16 concurrent, 5 s)`)
  }
  const result: Record<string, unknown> = {
    kind: 'many-clients',
    schema: 1,
    date: started.toISOString(),
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
    clients: opts.clients,
    durationS: opts.durationS,
    rate: opts.rate,
    replica: opts.replica,
    syncInterval: opts.syncInterval,
    syncIntervalMs: opts.syncIntervalMs,
    sampleDbs: Math.min(opts.sample, opts.clients),
    discoveryDbs: opts.peers.includes('ours') ? opts.discovery : 0,
    idleWindowS: opts.idleS,
    idleSettleS: opts.idleSettleS,
    writers: opts.writers,
    perProcessMax: opts.perProcessMax,
    peers: opts.peers,
    machine: machine(),
  }
  if (s3rverPutCeilingPerS !== undefined) result.s3rverPutCeilingPerS = round(s3rverPutCeilingPerS, 0)
  try {
    for (const peer of opts.peers) {
      result[peer] = await runPeer(peer, opts, s3)
      fs.writeFileSync(opts.out, `${JSON.stringify(result, null, 2)}\n`) // partial results survive a later failure
      progress.note(`${peer}: ${headline(result[peer] as PeerResult)}`)
    }
  } finally {
    if (s3) {
      s3.proc.kill('SIGTERM')
      await new Promise((r) => s3!.proc.once('exit', r))
    }
    progress.stop()
  }
  result.finishedAt = new Date().toISOString()
  result.loadAvg1mAtEnd = round(os.loadavg()[0], 2)
  fs.writeFileSync(opts.out, `${JSON.stringify(result, null, 2)}\n`)
  process.stderr.write(`[bench] wrote ${opts.out}\n`)
}

function headline(r: PeerResult): string {
  return (
    `rss peak ${r.rssMiBPeak} MiB steady ${r.rssMiBSteady} MiB, cpu ${r.cpuSeconds} s, lag p50/p99/max ${r.lagMsP50}/${r.lagMsP99}/${r.lagMsMax} ms, ` +
    `puts ${r.puts}, idle cpu ${r.idleCpuSeconds} s, idle puts ${r.idlePuts}, cold start ${r.coldStartS} s`
  )
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    progress.stop()
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  },
)
