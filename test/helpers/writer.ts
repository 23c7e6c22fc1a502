/**
 * Writers for the reliability suite (matrix "Oracles 4: ledger + model"): a child process runs a deterministic op
 * stream op(seed, i) against one database, INSERT/UPDATE/DELETE over two tables with indexes and a foreign key,
 * and appends ledger(seq = i, hash = H(hash[i-1], op)) in the same transaction.
 *
 *   parent (test)                       child (writer-child.ts, own process and SQLite connection)
 *   startWriter(opts) ── fork ────────► init schema, resume after max(ledger.seq)
 *                      ◄── ready ──────
 *                      ◄── commit{seq,at,latMs} after every COMMIT returned
 *   pause()/resume()/checkpoint()/stop() ─► acknowledged with the last committed seq
 *
 * Everything about a seq is a pure function of (seed, noteChars, i) and the state after i - 1 ops, so the expected
 * database after N ops is `new WriterModel(...).advanceTo(N)`: a replay into an in-memory database.
 * @module
 */
import { fork, type ChildProcess } from 'node:child_process'
import crypto from 'node:crypto'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'

/** WRITER_SCHEMA is the application schema; `writer_meta` records the parameters that make the op stream replayable. */
export const WRITER_SCHEMA = `
CREATE TABLE IF NOT EXISTS writer_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS customers_name ON customers (name);
CREATE TABLE IF NOT EXISTS orders (
  id INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customers (id),
  amount INTEGER NOT NULL,
  note TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_customer ON orders (customer_id);
CREATE TABLE IF NOT EXISTS ledger (seq INTEGER PRIMARY KEY, hash TEXT NOT NULL);
`

/** DEFAULT_NOTE_CHARS is the size of each order's note (hex text), the knob for bytes per transaction. */
export const DEFAULT_NOTE_CHARS = 200

/** Op is one step of the stream, derived from (seed, i) alone. */
export interface Op {
  readonly kind: 'customer' | 'order' | 'update' | 'delete'
  readonly r: number
  readonly amount: number
  readonly note: string
}

/** opFor derives op i of the stream for seed. */
export function opFor(seed: number, i: number, noteChars: number): Op {
  const h = crypto.createHash('sha256').update(`${seed}:${i}`).digest()
  const k = h.readUInt32BE(0) % 100
  const kind: Op['kind'] = k < 20 ? 'customer' : k < 60 ? 'order' : k < 85 ? 'update' : 'delete'
  const r = h.readUInt32BE(4)
  const amount = (h.readUInt32BE(8) % 10_000) - 2_000
  const note =
    kind === 'order' && noteChars > 0
      ? crypto.createHash('shake256', { outputLength: Math.ceil(noteChars / 2) }).update(`${seed}:${i}:note`).digest('hex').slice(0, noteChars)
      : ''
  return { kind, r, amount, note }
}

/** opString is the canonical text of an op that the ledger hash covers. */
export function opString(i: number, op: Op): string {
  return `${i}|${op.kind}|${op.r}|${op.amount}|${op.note}`
}

/** genesisHash is hash[0] of a seed's ledger chain. */
export function genesisHash(seed: number): string {
  return crypto.createHash('sha256').update(`ledger-genesis|${seed}`).digest('hex')
}

/** nextHash is hash[i] = sha256(hash[i-1] | opString(i)). */
export function nextHash(prev: string, i: number, op: Op): string {
  return crypto.createHash('sha256').update(`${prev}|${opString(i, op)}`).digest('hex')
}

/** LedgerChain computes hash[i] of a seed's ledger (pure: it does not depend on database state), memoised. */
export class LedgerChain {
  readonly #hashes: string[]
  constructor(
    readonly seed: number,
    readonly noteChars: number,
  ) {
    this.#hashes = [genesisHash(seed)]
  }

  /** hash returns hash[i]. */
  hash(i: number): string {
    for (let j = this.#hashes.length; j <= i; j++) this.#hashes[j] = nextHash(this.#hashes[j - 1]!, j, opFor(this.seed, j, this.noteChars))
    return this.#hashes[i]!
  }
}

/** Statements is the prepared SQL an op stream needs on one connection. */
export interface Statements {
  readonly countCustomers: Database.Statement
  readonly pickCustomer: Database.Statement
  readonly countOrders: Database.Statement
  readonly pickOrder: Database.Statement
  readonly insCustomer: Database.Statement
  readonly insOrder: Database.Statement
  readonly updCustomer: Database.Statement
  readonly delOrder: Database.Statement
  readonly insLedger: Database.Statement
}

/** prepareStatements prepares the op stream's SQL on db (schema must exist). */
export function prepareStatements(db: Database.Database): Statements {
  return {
    countCustomers: db.prepare('SELECT count(*) FROM customers').pluck(),
    pickCustomer: db.prepare('SELECT id FROM customers ORDER BY id LIMIT 1 OFFSET ?').pluck(),
    countOrders: db.prepare('SELECT count(*) FROM orders').pluck(),
    pickOrder: db.prepare('SELECT id FROM orders ORDER BY id LIMIT 1 OFFSET ?').pluck(),
    insCustomer: db.prepare('INSERT INTO customers (name, balance) VALUES (?, ?)'),
    insOrder: db.prepare('INSERT INTO orders (customer_id, amount, note) VALUES (?, ?, ?)'),
    updCustomer: db.prepare('UPDATE customers SET balance = balance + ? WHERE id = ?'),
    delOrder: db.prepare('DELETE FROM orders WHERE id = ?'),
    insLedger: db.prepare('INSERT INTO ledger (seq, hash) VALUES (?, ?)'),
  }
}

/** applyOp runs op i (the caller wraps it in a transaction) and appends its ledger row; returns hash[i]. */
export function applyOp(st: Statements, i: number, op: Op, prevHash: string): string {
  const customers = st.countCustomers.get() as number
  switch (op.kind) {
    case 'customer':
      st.insCustomer.run(`c${i}`, op.amount)
      break
    case 'order':
      if (customers === 0) st.insCustomer.run(`c${i}`, op.amount)
      else st.insOrder.run(st.pickCustomer.get(op.r % customers) as number, op.amount, op.note)
      break
    case 'update':
      if (customers === 0) st.insCustomer.run(`c${i}`, op.amount)
      else st.updCustomer.run(op.amount, st.pickCustomer.get(op.r % customers) as number)
      break
    case 'delete': {
      const orders = st.countOrders.get() as number
      if (orders === 0) st.insCustomer.run(`c${i}`, op.amount)
      else st.delOrder.run(st.pickOrder.get(op.r % orders) as number)
      break
    }
    default:
      op.kind satisfies never
  }
  const hash = nextHash(prevHash, i, op)
  st.insLedger.run(i, hash)
  return hash
}

/** initWriterDb creates the schema and meta rows (idempotent); returns the last committed seq and its hash. */
export function initWriterDb(db: Database.Database, seed: number, noteChars: number): { seq: number; hash: string } {
  db.exec(WRITER_SCHEMA)
  db.transaction(() => {
    const meta = db.prepare('SELECT v FROM writer_meta WHERE k = ?').pluck()
    const have = meta.get('seed') as string | undefined
    if (have === undefined) {
      db.prepare('INSERT INTO writer_meta (k, v) VALUES (?, ?)').run('seed', String(seed))
      db.prepare('INSERT INTO writer_meta (k, v) VALUES (?, ?)').run('note_chars', String(noteChars))
    } else if (have !== String(seed) || meta.get('note_chars') !== String(noteChars)) {
      throw new Error(`database was written with seed ${have}, note_chars ${String(meta.get('note_chars'))}; asked for ${seed}, ${noteChars}`)
    }
  })()
  const last = db.prepare('SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: string } | undefined
  return last ?? { seq: 0, hash: genesisHash(seed) }
}

/**
 * WriterModel replays an op stream into an in-memory database: the expected content after N ops. It only moves
 * forward; hashes[i] is kept for every seq seen.
 */
export class WriterModel {
  readonly seed: number
  readonly noteChars: number
  readonly db: Database.Database
  readonly #st: Statements
  #seq = 0
  readonly #hashes: string[]

  constructor(seed: number, noteChars: number) {
    this.seed = seed
    this.noteChars = noteChars
    this.db = new Database(':memory:')
    this.db.pragma('foreign_keys = ON')
    initWriterDb(this.db, seed, noteChars)
    this.#st = prepareStatements(this.db)
    this.#hashes = [genesisHash(seed)]
  }

  /** seq is how many ops the model has applied. */
  get seq(): number {
    return this.#seq
  }

  /** advanceTo applies ops up to n (no-op when already there); throws when asked to go back. */
  advanceTo(n: number): this {
    if (n < this.#seq) throw new Error(`WriterModel moves forward only: at ${this.#seq}, asked for ${n}`)
    const step = this.db.transaction((to: number) => {
      for (let i = this.#seq + 1; i <= to; i++) {
        this.#hashes[i] = applyOp(this.#st, i, opFor(this.seed, i, this.noteChars), this.#hashes[i - 1]!)
      }
    })
    // Bounded transactions keep the statement journal small for long soaks.
    for (let at = this.#seq; at < n; at = Math.min(n, at + 5000)) {
      step(Math.min(n, at + 5000))
      this.#seq = Math.min(n, at + 5000)
    }
    return this
  }

  /** hash returns hash[i] (advancing the model if needed). */
  hash(i: number): string {
    if (i > this.#seq) this.advanceTo(i)
    return this.#hashes[i]!
  }

  close(): void {
    this.db.close()
  }
}

/** WriterOptions configures one writer child. */
export interface WriterOptions {
  readonly dbPath: string
  /** seed of the op stream. Default: random. */
  readonly seed?: number
  /** noteChars is the note size of order rows. Default DEFAULT_NOTE_CHARS. */
  readonly noteChars?: number
  /** opsPerSec paces the stream (one op per transaction); 0 = as fast as possible (yielding between ops). Default 100. */
  readonly opsPerSec?: number
  /** maxSeq stops the stream (paused, still alive) after this seq; the `done()` promise resolves then. */
  readonly maxSeq?: number
  /** startPaused: initialise the database, then wait for resume(). */
  readonly startPaused?: boolean
  /** busyTimeoutMs for the application connection. Default 5000. */
  readonly busyTimeoutMs?: number
  /** walAutocheckpoint in pages; undefined keeps SQLite's default (1000); 0 disables. */
  readonly walAutocheckpoint?: number
  /** pageSize for a new database. */
  readonly pageSize?: number
  /** checkpointEvery runs an application checkpoint every n ops (e.g. B1's TRUNCATE every 100 writes). */
  readonly checkpointEvery?: { readonly ops: number; readonly mode: 'PASSIVE' | 'FULL' | 'RESTART' | 'TRUNCATE' }
}

/** Message types between parent and child. */
export type ToChild =
  | { readonly type: 'init'; readonly opts: Required<Omit<WriterOptions, 'maxSeq' | 'walAutocheckpoint' | 'pageSize' | 'checkpointEvery'>> & Pick<WriterOptions, 'maxSeq' | 'walAutocheckpoint' | 'pageSize' | 'checkpointEvery'> }
  | { readonly type: 'pause' }
  | { readonly type: 'resume'; readonly maxSeq?: number }
  | { readonly type: 'checkpoint'; readonly mode: 'PASSIVE' | 'FULL' | 'RESTART' | 'TRUNCATE' }
  | { readonly type: 'stop' }
export type FromChild =
  | { readonly type: 'ready'; readonly seq: number }
  | { readonly type: 'commit'; readonly seq: number; readonly at: number; readonly latMs: number }
  | { readonly type: 'paused'; readonly seq: number }
  | { readonly type: 'done'; readonly seq: number }
  | { readonly type: 'checkpointed'; readonly result: unknown }
  | { readonly type: 'checkpoint-result'; readonly mode: string; readonly ms: number; readonly busy: number; readonly log: number; readonly checkpointed: number }
  | { readonly type: 'error'; readonly message: string; readonly code?: string }
  | { readonly type: 'stopped'; readonly seq: number }

/** Writer is the parent's handle on a running writer child. */
export interface Writer {
  readonly dbPath: string
  readonly seed: number
  readonly noteChars: number
  readonly pid: number
  /** acked is the highest seq whose COMMIT returned in the child (as reported so far). */
  acked(): number
  /** commitTime returns when seq committed (epoch ms), if this writer saw it. */
  commitTime(seq: number): number | undefined
  /** errors lists SQLite errors the application saw (busy beyond its timeout, corruption…); I7 wants none. */
  errors(): readonly string[]
  /** latency summarises COMMIT latencies seen by the application (ms). */
  latency(): { readonly n: number; readonly p50: number; readonly p99: number; readonly max: number }
  /** checkpoints summarises the application's periodic checkpoints (checkpointEvery): count, busy results, duration. */
  checkpoints(): { readonly n: number; readonly busy: number; readonly maxMs: number; readonly totalMs: number }
  /** waitForSeq resolves once seq has committed. */
  waitForSeq(seq: number, timeoutMs?: number): Promise<void>
  /** pause stops issuing ops and resolves with the last committed seq (nothing commits after it until resume). */
  pause(): Promise<number>
  resume(opts?: { readonly maxSeq?: number }): void
  /** done resolves when maxSeq is reached. */
  done(): Promise<number>
  checkpoint(mode: 'PASSIVE' | 'FULL' | 'RESTART' | 'TRUNCATE'): Promise<unknown>
  /** stop closes the connection and ends the child; resolves with the last committed seq. Idempotent. */
  stop(): Promise<number>
  /** kill sends SIGKILL (an application crash). */
  kill(): Promise<void>
}

const CHILD = fileURLToPath(new URL('./writer-child.ts', import.meta.url))

/** startWriter forks a writer child; resolves once its database is initialised (schema committed, WAL mode). */
export async function startWriter(opts: WriterOptions): Promise<Writer> {
  const seed = opts.seed ?? crypto.randomInt(1, 2 ** 31)
  const noteChars = opts.noteChars ?? DEFAULT_NOTE_CHARS
  const child: ChildProcess = fork(CHILD, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' })
  let acked = 0
  const times = new Map<number, number>()
  const lats: number[] = []
  const errors: string[] = []
  const ckpt = { n: 0, busy: 0, maxMs: 0, totalMs: 0 }
  const seqWaiters: { seq: number; resolve: () => void }[] = []
  const once = new Map<string, ((m: FromChild) => void)[]>()
  let doneResolve: ((seq: number) => void) | undefined
  let donePromise = new Promise<number>((r) => (doneResolve = r))
  let exitCode: number | null | undefined
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code, signal) => {
      exitCode = code ?? (signal ? -1 : null)
      for (const [, ws] of once) for (const w of ws) w({ type: 'error', message: `writer exited (${code ?? signal})` })
      once.clear()
      resolve(exitCode)
    }),
  )
  child.on('message', (m: FromChild) => {
    switch (m.type) {
      case 'commit':
        acked = m.seq
        times.set(m.seq, m.at)
        lats.push(m.latMs)
        for (const w of [...seqWaiters]) if (acked >= w.seq) (seqWaiters.splice(seqWaiters.indexOf(w), 1), w.resolve())
        return
      case 'checkpoint-result':
        ckpt.n++
        if (m.busy !== 0) ckpt.busy++
        ckpt.maxMs = Math.max(ckpt.maxMs, m.ms)
        ckpt.totalMs += m.ms
        return
      case 'error':
        errors.push(m.code ? `${m.code}: ${m.message}` : m.message)
        return
      case 'done':
        doneResolve?.(m.seq)
        break
      default:
        break
    }
    const ws = once.get(m.type)
    if (ws && ws.length > 0) ws.shift()!(m)
  })
  const next = <T extends FromChild['type']>(type: T): Promise<Extract<FromChild, { type: T }>> =>
    new Promise((resolve, reject) => {
      if (exitCode !== undefined) return reject(new Error(`writer ${opts.dbPath} already exited`))
      const list = once.get(type) ?? []
      list.push((m) => (m.type === type ? resolve(m as Extract<FromChild, { type: T }>) : reject(new Error(`writer: ${'message' in m ? m.message : m.type}`))))
      once.set(type, list)
    })
  const send = (m: ToChild): void => {
    if (exitCode === undefined) child.send(m)
  }
  const ready = next('ready')
  send({
    type: 'init',
    opts: {
      dbPath: opts.dbPath,
      seed,
      noteChars,
      opsPerSec: opts.opsPerSec ?? 100,
      startPaused: opts.startPaused ?? false,
      busyTimeoutMs: opts.busyTimeoutMs ?? 5000,
      maxSeq: opts.maxSeq,
      walAutocheckpoint: opts.walAutocheckpoint,
      pageSize: opts.pageSize,
      checkpointEvery: opts.checkpointEvery,
    },
  })
  const r = await Promise.race([ready, exited.then((c) => Promise.reject(new Error(`writer child exited with ${c} before ready`)))])
  acked = r.seq
  let stopping: Promise<number> | undefined
  return {
    dbPath: opts.dbPath,
    seed,
    noteChars,
    pid: child.pid!,
    acked: () => acked,
    commitTime: (seq) => times.get(seq),
    errors: () => errors,
    latency() {
      const s = [...lats].sort((a, b) => a - b)
      const q = (p: number): number => (s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.floor(p * s.length))]!)
      return { n: s.length, p50: q(0.5), p99: q(0.99), max: s.at(-1) ?? 0 }
    },
    checkpoints: () => ({ ...ckpt }),
    waitForSeq(seq, timeoutMs = 30_000) {
      if (acked >= seq) return Promise.resolve()
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`writer: seq ${seq} not committed within ${timeoutMs} ms (at ${acked})`)), timeoutMs)
        seqWaiters.push({ seq, resolve: () => (clearTimeout(timer), resolve()) })
      })
    },
    async pause() {
      const p = next('paused')
      send({ type: 'pause' })
      const m = await p
      acked = Math.max(acked, m.seq)
      return m.seq
    },
    resume(o = {}) {
      if (o.maxSeq !== undefined) donePromise = new Promise<number>((r) => (doneResolve = r))
      send({ type: 'resume', maxSeq: o.maxSeq })
    },
    done: () => donePromise,
    async checkpoint(mode) {
      const p = next('checkpointed')
      send({ type: 'checkpoint', mode })
      return (await p).result
    },
    stop() {
      stopping ??= (async () => {
        if (exitCode !== undefined) return acked
        const p = next('stopped').catch(() => ({ seq: acked }))
        send({ type: 'stop' })
        const m = await p
        await exited
        acked = Math.max(acked, m.seq)
        return acked
      })()
      return stopping
    },
    async kill() {
      if (exitCode === undefined) child.kill('SIGKILL')
      await exited
    },
  }
}
