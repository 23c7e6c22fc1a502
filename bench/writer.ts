/**
 * Benchmark writer: a child process (forked by bench/run.ts) that owns a set of client databases and commits
 * small transactions at a fixed rate per database, like an application would, separate from the system under test.
 *
 * Each transaction inserts one 64-byte payload row and one `bench_ledger` row (seq, at, tag). For the sampled
 * databases it records (seq, commit time) after COMMIT returns; commit time is epoch ms with sub-ms resolution.
 * Commits are spread evenly: with m databases at r tx/s each, commit j goes to database j % m at start + j/(m*r) s.
 *
 * Protocol (IPC): parent sends `init`, child answers `ready`; parent sends `start`, child sends `progress` every
 * second and `done` at the end; parent sends `exit`.
 * @module
 */
import crypto from 'node:crypto'
import Database from 'better-sqlite3'
import { ledgerTag, SCHEMA } from './lib/dbs.js'
import { nowMs, percentile, sleep } from './lib/stats.js'

/** WriterInit is the parent's first message. */
export interface WriterInit {
  readonly type: 'init'
  readonly dbs: readonly string[]
  /** sampled lists the database paths whose commit times are recorded. */
  readonly sampled: readonly string[]
  /** rate is transactions per second per database. */
  readonly rate: number
}

/** WriterDone is the child's final report. */
export interface WriterDone {
  readonly type: 'done'
  readonly commits: number
  readonly errors: number
  readonly firstError: string | null
  readonly commitMsP50: number
  readonly commitMsP99: number
  readonly commitMsMax: number
  /** lateMsP99 is how far behind schedule commits started (the writer's own ability to keep up). */
  readonly lateMsP99: number
  readonly lateMsMax: number
  /** ledgers maps a sampled database path to [seq, committedAtMs] pairs. */
  readonly ledgers: Record<string, [number, number][]>
}

/** WriterMessage is anything the child sends. */
export type WriterMessage = { readonly type: 'ready' } | { readonly type: 'progress'; readonly commits: number } | WriterDone

/** ParentMessage is anything the parent sends. */
export type ParentMessage = WriterInit | { readonly type: 'start'; readonly durationMs: number } | { readonly type: 'exit' }

interface Conn {
  readonly path: string
  readonly db: Database.Database
  readonly tx: (seq: number, at: number) => void
  seq: number
  readonly ledger: [number, number][] | null
}

function send(m: WriterMessage): void {
  process.send?.(m)
}

let conns: Conn[] = []
let rate = 1

function open(init: WriterInit): void {
  rate = init.rate
  const sampled = new Set(init.sampled)
  conns = init.dbs.map((p) => {
    const db = new Database(p, { timeout: 5000 })
    db.pragma('journal_mode = wal')
    db.pragma('synchronous = normal')
    db.exec(SCHEMA)
    const insT = db.prepare('INSERT INTO t (v) VALUES (?)')
    const insL = db.prepare('INSERT INTO bench_ledger (seq, at, tag) VALUES (?, ?, ?)')
    const last = (db.prepare('SELECT coalesce(max(seq), 0) FROM bench_ledger').pluck().get() as number) ?? 0
    const tx = db.transaction((seq: number, at: number) => {
      insT.run(crypto.randomBytes(64))
      insL.run(seq, at, ledgerTag(seq))
    })
    return { path: p, db, tx, seq: last, ledger: sampled.has(p) ? [] : null }
  })
  send({ type: 'ready' })
}

async function run(durationMs: number): Promise<void> {
  const m = conns.length
  const stepMs = 1000 / (m * rate)
  const start = nowMs()
  const end = start + durationMs
  const commitMs: number[] = []
  const lateMs: number[] = []
  let errors = 0
  let firstError: string | null = null
  let commits = 0
  const progress = setInterval(() => send({ type: 'progress', commits }), 1000)
  for (let j = 0; ; j++) {
    const due = start + j * stepMs
    if (due >= end) break
    let now = nowMs()
    if (due - now > 1) {
      await sleep(due - now)
      now = nowMs()
    }
    const c = conns[j % m]!
    const seq = c.seq + 1
    try {
      c.tx(seq, now)
      const at = nowMs()
      c.seq = seq
      commits++
      commitMs.push(at - now)
      lateMs.push(Math.max(0, now - due))
      c.ledger?.push([seq, at])
    } catch (err) {
      errors++
      firstError ??= err instanceof Error ? err.message : String(err)
    }
  }
  clearInterval(progress)
  const ledgers: Record<string, [number, number][]> = {}
  for (const c of conns) if (c.ledger) ledgers[c.path] = c.ledger
  let commitMax = 0
  for (const v of commitMs) if (v > commitMax) commitMax = v
  let lateMax = 0
  for (const v of lateMs) if (v > lateMax) lateMax = v
  send({
    type: 'done',
    commits,
    errors,
    firstError,
    commitMsP50: percentile(commitMs, 50) ?? 0,
    commitMsP99: percentile(commitMs, 99) ?? 0,
    commitMsMax: commitMax,
    lateMsP99: percentile(lateMs, 99) ?? 0,
    lateMsMax: lateMax,
    ledgers,
  })
}

process.on('message', (msg: ParentMessage) => {
  switch (msg.type) {
    case 'init':
      open(msg)
      break
    case 'start':
      void run(msg.durationMs)
      break
    case 'exit':
      for (const c of conns) c.db.close()
      process.exit(0)
      break
    default:
      msg satisfies never
  }
})
process.on('disconnect', () => process.exit(0))
