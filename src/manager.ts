/**
 * Manager discovers `<guid>.db` files in the watched directories and runs one Replicator per database.
 *
 * Watcher events are hints; a periodic reconcile scan is the guarantee (the watcher coalesces and can drop
 * events, and goes silent when a watched directory is deleted and recreated). Every decision about a file is
 * made by `#reconcileFile`, whichever of the two noticed it.
 * @module
 */
import fs from 'node:fs'
import path from 'node:path'
import { errorMessage } from './errors.js'
import { NOOP_LOGGER, type Logger } from './log.js'
import type { ReplicaClient } from './replica-client.js'
import { PassSlots, Replicator, type ReplicatorOptions } from './replicator.js'
import type { ClientInfo, ClientState, DrillStatus, Pos, ReplicatorStatus, StatusSource } from './types.js'
export type { ClientInfo, ClientState } from './types.js'
import { runDrill } from './restore/drill.js'
import { checkDbFile } from './wal/sqlite-handle.js'
import { watchDir, type DirWatch, type FsEvent } from './watch.js'

/** GUID_DB_RE matches the only file names the manager replicates: canonical lowercase GUIDs. */
export const GUID_DB_RE = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.db$/
const GUID_WAL_RE = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.db-wal$/
/** GUID_RE matches a canonical lowercase GUID. */
export const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** DEFAULT_RECONCILE_INTERVAL_MS is how often every watched directory is rescanned. */
export const DEFAULT_RECONCILE_INTERVAL_MS = 30_000
/** DEFAULT_DRILL_INTERVAL_MS is how often each changed client is restored and checked: 6 hours. */
export const DEFAULT_DRILL_INTERVAL_MS = 6 * 3600_000
/** DEFAULT_MAX_CONCURRENT_STARTS bounds how many databases open and take their first snapshot at once. */
export const DEFAULT_MAX_CONCURRENT_STARTS = 8
/**
 * DEFAULT_MAX_CONCURRENT_PASSES bounds how many replicators run a pass at once (PassSlots). Enough for 1,000 clients
 * a second on a replica that takes 100 ms an object.
 */
export const DEFAULT_MAX_CONCURRENT_PASSES = 128
/** START_JITTER_MS spreads the starts of a backlog (start-up, a burst of new files) so they do not move in lockstep. */
export const START_JITTER_MS = 20

/** ManagerOptions configures a Manager. */
export interface ManagerOptions {
  readonly watchDirs: readonly string[]
  /** clientFor returns the replica client for a database id (its `databases/<id>` prefix). */
  readonly clientFor: (id: string) => ReplicaClient
  readonly log?: Logger
  readonly replicatorOptions?: Partial<Omit<ReplicatorOptions, 'dbPath' | 'client' | 'log' | 'onStatus'>>
  /** reconcileIntervalMs is the period of the safety scan. Default 30 s. */
  readonly reconcileIntervalMs?: number
  readonly maxConcurrentStarts?: number
  /** maxConcurrentPasses bounds how many replicators run a pass at once. Default DEFAULT_MAX_CONCURRENT_PASSES. */
  readonly maxConcurrentPasses?: number
  /** drillIntervalMs: restore each changed client from its replica this often and check it. 0 disables. Default 6 h. */
  readonly drillIntervalMs?: number
  /** drillMaxBytes skips drills of databases larger than this (local disk bound). Default 1 GiB. */
  readonly drillMaxBytes?: number
  /** drillTmpDir is where drills restore. Default: the OS temp dir. */
  readonly drillTmpDir?: string
  /** webhookUrl receives a JSON POST when a drill fails. */
  readonly webhookUrl?: string
  /** onChange is called with a client id whenever anything about it changed. */
  readonly onChange?: (id: string) => void
}

interface Entry {
  id: string
  dir: string
  path: string
  state: ClientState
  dbSizeBytes: number
  walSizeBytes: number
  walSig: string
  /**
   * stale says which sizes the next read of this client's info stats first: 'wal' after a watcher event on the WAL
   * (the database file's own events read its size), 'all' after the safety check found a change the watcher missed.
   * Read when asked for, not per pass: a stat per pass was one system call in every twenty of a busy client's.
   */
  stale: 'wal' | 'all' | null
  detectedAt: number
  lastError: string | null
  replicator: Replicator | null
  replica: string
  client: ReplicaClient | null
  drill: DrillStatus | null
  /** nextDrillAt staggers drills: the first one lands at a random point of the first interval. */
  nextDrillAt: number
}

/** Manager owns every replicator of the process. It is the dashboard's StatusSource. */
export class Manager implements StatusSource {
  readonly #listeners = new Set<(id: string) => void>()
  readonly #opts: ManagerOptions
  readonly #log: Logger
  readonly #entries = new Map<string, Entry>()
  readonly #conflicts = new Map<string, string>() // path -> reason
  readonly #ignoredLogged = new Set<string>()
  readonly #watches = new Map<string, { watch: DirWatch; ino: string }>()
  #reconcileTimer: NodeJS.Timeout | null = null
  #drillTimer: NodeJS.Timeout | null = null
  #drilling = false
  #startQueue: Entry[] = []
  /** Entries taken off the queue and waiting out their jitter. */
  readonly #jittering = new Set<Entry>()
  readonly #passSlots: PassSlots
  #starting = 0
  #closed = false

  constructor(opts: ManagerOptions) {
    this.#opts = opts
    this.#log = opts.log ?? NOOP_LOGGER
    this.#passSlots = new PassSlots(opts.maxConcurrentPasses ?? DEFAULT_MAX_CONCURRENT_PASSES)
  }

  /** start creates missing watch directories, scans them, and follows their events. */
  async start(): Promise<void> {
    for (const dir of this.#opts.watchDirs) {
      fs.mkdirSync(dir, { recursive: true })
      await this.#subscribe(dir)
    }
    this.reconcile()
    this.#reconcileTimer = setInterval(() => this.reconcile(), this.#opts.reconcileIntervalMs ?? 30_000)
    this.#reconcileTimer.unref()
    const drillMs = this.#opts.drillIntervalMs ?? DEFAULT_DRILL_INTERVAL_MS
    if (drillMs > 0) {
      this.#drillTimer = setInterval(() => void this.#drillDue(), Math.max(1000, Math.min(60_000, Math.floor(drillMs / 10))))
      this.#drillTimer.unref()
    }
  }

  async #subscribe(dir: string): Promise<void> {
    const ino = dirIno(dir)
    try {
      const watch = await watchDir(
        dir,
        (events) => this.#onEvents(dir, events),
        (err) => this.#log.warn({ dir, err: err.message }, 'watcher error'),
      )
      this.#watches.set(dir, { watch, ino })
    } catch (err) {
      this.#log.error({ dir, err: errorMessage(err) }, 'cannot watch directory; relying on the reconcile scan')
    }
  }

  #onEvents(dir: string, events: readonly FsEvent[]): void {
    if (this.#closed) return
    for (const e of events) {
      const name = e.name
      const wal = GUID_WAL_RE.exec(name)
      if (wal) {
        const entry = this.#entries.get(wal[1]!)
        if (entry && entry.dir === dir && entry.replicator) {
          entry.replicator.notify('wal')
          entry.stale ??= 'wal' // read when asked for (#info): stats per WAL write were a hot path
        }
        continue
      }
      this.#reconcileFile(dir, name, e.type)
    }
  }

  /** reconcile rescans every watched directory, starting, stopping and re-watching as needed. */
  reconcile(): void {
    if (this.#closed) return
    const seen = new Set<string>()
    for (const dir of this.#opts.watchDirs) {
      let names: string[]
      try {
        names = fs.readdirSync(dir)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          this.#log.warn({ dir }, 'watched directory missing; recreating')
          fs.mkdirSync(dir, { recursive: true })
          names = []
        } else {
          this.#log.error({ dir, err: errorMessage(err) }, 'cannot scan directory')
          continue
        }
      }
      const w = this.#watches.get(dir)
      if (!w || w.ino !== dirIno(dir)) {
        // Deleted and recreated (or never watched): the old subscription is silent now.
        void (async () => {
          await w?.watch.close().catch(() => {})
          this.#watches.delete(dir)
          if (!this.#closed) await this.#subscribe(dir)
        })()
      }
      for (const name of names) {
        const m = GUID_DB_RE.exec(name)
        if (m) seen.add(path.join(dir, name))
        this.#reconcileFile(dir, name, 'scan')
      }
    }
    for (const e of this.#entries.values()) {
      if (e.state !== 'stopped' && !seen.has(e.path)) this.#reconcileFile(e.dir, path.basename(e.path), 'delete')
      else if (e.replicator) this.#safetyCheck(e)
    }
  }

  /**
   * safetyCheck notices WAL changes the watcher missed, with one stat of the WAL and no replica request; the pass it
   * starts reads the sizes. It runs for every client every reconcile, so it does nothing else (at 1,000 idle clients
   * the scan was most of the idle CPU).
   */
  #safetyCheck(e: Entry): void {
    const before = e.walSig
    const st = walStat(e.path)
    if (!st) return // no WAL: nothing to ship, and the signature stays for when it comes back
    e.walSig = sigOf(st)
    if (before !== '' && e.walSig !== before) {
      e.stale = 'all'
      e.replicator?.notify('wal')
    }
  }

  #logIgnored(file: string, reason: string): void {
    if (this.#ignoredLogged.has(file)) return
    if (this.#ignoredLogged.size > 10_000) this.#ignoredLogged.clear()
    this.#ignoredLogged.add(file)
    this.#log.info({ file, reason }, 'ignoring file')
  }

  /** reconcileFile decides what one directory entry means right now. */
  #reconcileFile(dir: string, name: string, cause: FsEvent['type'] | 'scan'): void {
    const file = path.join(dir, name)
    const m = GUID_DB_RE.exec(name)
    if (!m) {
      if (cause !== 'delete' && !name.startsWith('.') && !/\.db-(wal|shm|journal)$/.test(name) && !name.endsWith('.tmp')) {
        this.#logIgnored(file, 'name is not <lowercase guid>.db')
      }
      return
    }
    const id = m[1]!
    let st: fs.Stats | undefined
    try {
      st = fs.lstatSync(file)
    } catch {
      st = undefined
    }
    const existing = this.#entries.get(id)
    if (existing && existing.dir !== dir) {
      // The same GUID in a second directory: never two writers on one replica prefix.
      if (st && existing.state !== 'stopped') {
        if (!this.#conflicts.has(file)) {
          const reason = `same id already replicating from ${existing.dir}`
          this.#conflicts.set(file, reason)
          this.#log.warn({ file, id, other: existing.path }, 'duplicate database id; not replicating this copy')
          this.#changed(id)
        }
        return
      }
      if (!st) {
        this.#conflicts.delete(file)
        return
      }
      // The previous owner is gone: this copy takes over.
      this.#entries.delete(id)
    }
    if (!st) {
      if (existing && existing.state !== 'stopped') this.#stop(existing, 'file deleted')
      return
    }
    if (st.isSymbolicLink()) {
      let target = ''
      try {
        target = fs.realpathSync(file)
      } catch {
        target = '(dangling)'
      }
      const inside = target.startsWith(path.resolve(dir) + path.sep)
      this.#logIgnored(file, inside ? `symlink to ${target}: only regular files are replicated` : 'symlink leading outside the watched directory')
      if (existing && existing.state !== 'stopped') this.#stop(existing, 'replaced by a symlink')
      return
    }
    if (!st.isFile()) {
      this.#logIgnored(file, st.isDirectory() ? 'is a directory' : 'is not a regular file')
      return
    }
    const entry = existing ?? this.#newEntry(id, dir, file)
    if (entry.state === 'stopped') {
      entry.state = 'starting'
      entry.detectedAt = Date.now()
      entry.lastError = null
    }
    if (entry.replicator) {
      // A scan learns nothing new about a running client: the safety check after it compares the WAL.
      if (cause === 'scan') return
      this.#updateSizes(entry)
      if (cause === 'update' || cause === 'create') entry.replicator.notify('db')
      this.#changed(id)
      return
    }
    this.#updateSizes(entry)
    if (this.#jittering.has(entry) || this.#startQueue.includes(entry)) return
    const check = checkDbFile(file)
    if (!check.ok) {
      const waiting = check.reason === 'empty'
      const state: ClientState = waiting ? 'waiting' : 'error'
      if (entry.state !== state || entry.lastError !== check.detail) {
        entry.state = state
        entry.lastError = waiting ? null : check.detail
        this.#log[waiting ? 'info' : 'warn']({ id, file, reason: check.detail }, waiting ? 'waiting for the application to create the database' : 'not replicating: not a valid database')
        this.#changed(id)
      }
      return
    }
    entry.state = 'starting'
    this.#startQueue.push(entry)
    this.#pumpStarts()
    this.#changed(id)
  }

  #newEntry(id: string, dir: string, file: string): Entry {
    const entry: Entry = {
      id,
      dir,
      path: file,
      state: 'starting',
      dbSizeBytes: 0,
      walSizeBytes: 0,
      walSig: '',
      stale: null,
      detectedAt: Date.now(),
      lastError: null,
      replicator: null,
      replica: '',
      client: null,
      drill: null,
      nextDrillAt: Date.now() + Math.random() * (this.#opts.drillIntervalMs ?? DEFAULT_DRILL_INTERVAL_MS),
    }
    this.#entries.set(id, entry)
    this.#log.info({ id, file }, 'client detected')
    return entry
  }

  /**
   * pumpStarts opens queued databases, a bounded number at a time, so a thousand start without a stampede. A
   * start that has to queue behind others (a backlog) first waits a random 0-20 ms; a lone new file starts at once.
   */
  #pumpStarts(): void {
    const max = this.#opts.maxConcurrentStarts ?? DEFAULT_MAX_CONCURRENT_STARTS
    while (this.#starting < max && this.#startQueue.length > 0 && !this.#closed) {
      const backlog = this.#startQueue.length > max - this.#starting
      const entry = this.#startQueue.shift()!
      if (entry.state !== 'starting' || entry.replicator) continue
      this.#starting++
      if (!backlog) {
        this.#startOne(entry)
        continue
      }
      this.#jittering.add(entry)
      setTimeout(() => {
        this.#jittering.delete(entry)
        this.#startOne(entry)
      }, Math.random() * START_JITTER_MS)
    }
  }

  #startOne(entry: Entry): void {
    if (this.#closed || entry.state !== 'starting' || entry.replicator) {
      this.#starting--
      this.#pumpStarts()
      return
    }
    const client = this.#opts.clientFor(entry.id)
    entry.client = client
    entry.replica = client.describe()
    const r = new Replicator({
      ...this.#opts.replicatorOptions,
      dbPath: entry.path,
      client,
      log: this.#log.child({ client: entry.id }),
      onStatus: (s) => this.#onStatus(entry, s),
      passSlots: this.#passSlots,
    })
    entry.replicator = r
    r.start()
    void r.whenStarted().finally(() => {
      this.#starting--
      this.#pumpStarts()
    })
  }

  #onStatus(entry: Entry, s: ReplicatorStatus): void {
    if (entry.state !== 'stopped') {
      entry.state = s.state === 'error' ? 'error' : s.state === 'replicating' ? 'replicating' : s.state === 'idle' ? 'idle' : s.state === 'stopped' ? 'stopped' : 'starting'
      entry.lastError = s.lastError
    }
    this.#changed(entry.id)
  }

  #updateSizes(e: Entry): void {
    try {
      e.dbSizeBytes = fs.statSync(e.path).size
    } catch {
      // deleted; reconcile stops it
    }
    this.#updateWalSize(e)
  }

  #updateWalSize(e: Entry): void {
    const st = walStat(e.path)
    e.walSizeBytes = st ? Number(st.size) : 0
    if (st) e.walSig = sigOf(st)
  }

  #stop(entry: Entry, reason: string): void {
    entry.state = 'stopped'
    const r = entry.replicator
    entry.replicator = null
    this.#log.info({ id: entry.id, file: entry.path, reason }, 'client stopped; its backups stay')
    this.#changed(entry.id)
    if (r) {
      r.close().catch((err: unknown) => this.#log.warn({ id: entry.id, err: errorMessage(err) }, 'close after delete'))
    }
  }

  /** subscribe registers a change listener; listeners must not throw and must return quickly. */
  subscribe(listener: (id: string) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  #changed(id: string): void {
    this.#opts.onChange?.(id)
    for (const l of this.#listeners) l(id)
  }

  /**
   * drillDue runs at most one restore drill at a time, for the client most overdue whose replicated position
   * changed since its last drill: an unchanged (idle) client costs no replica request.
   */
  async #drillDue(): Promise<void> {
    if (this.#drilling || this.#closed) return
    const now = Date.now()
    let due: Entry | undefined
    for (const e of this.#entries.values()) {
      if (!e.replicator || !e.client || (e.state !== 'idle' && e.state !== 'replicating') || e.nextDrillAt > now) continue
      const pos = e.replicator.pos()
      if (e.drill?.ok && e.drill.position && samePos(e.drill.position, pos)) continue
      if (!due || e.nextDrillAt < due.nextDrillAt) due = e
    }
    if (due) await this.drill(due.id)
  }

  /** drill restores one client from its replica now, checks it, and records the outcome. */
  async drill(id: string): Promise<DrillStatus | undefined> {
    const e = this.#entries.get(id)
    if (!e?.replicator || !e.client || this.#drilling) return undefined
    this.#drilling = true
    try {
      e.nextDrillAt = Date.now() + (this.#opts.drillIntervalMs ?? DEFAULT_DRILL_INTERVAL_MS)
      const point = await e.replicator.drillPoint().catch(() => undefined)
      const r = await runDrill(e.client, e.path, {
        maxBytes: this.#opts.drillMaxBytes,
        tmpDir: this.#opts.drillTmpDir,
        expected: (pos) => (point && samePos(pos, point.pos) ? point.counts : undefined),
      })
      const status: DrillStatus = { at: r.at, ok: r.ok, skipped: r.skipped ?? false, position: r.position, durationMs: r.durationMs, error: r.error ?? null, compared: point !== undefined && r.position !== null && samePos(r.position, point.pos) }
      e.drill = status
      if (r.ok) this.#log.info({ id, position: r.position, durationMs: r.durationMs, compared: status.compared }, 'restore drill passed')
      else if (r.skipped) this.#log.warn({ id, reason: r.error }, 'restore drill skipped')
      else {
        this.#log.error({ id, position: r.position, err: r.error }, 'RESTORE DRILL FAILED')
        if (this.#opts.webhookUrl) {
          fetch(this.#opts.webhookUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ event: 'drill_failed', id, at: new Date(r.at).toISOString(), error: r.error, position: r.position }) }).catch((err: unknown) => this.#log.warn({ err: errorMessage(err) }, 'webhook failed'))
        }
      }
      this.#changed(id)
      return status
    } finally {
      this.#drilling = false
    }
  }

  /** clients lists every known client, including stopped ones and duplicates, sorted by id. */
  clients(): ClientInfo[] {
    const out: ClientInfo[] = []
    for (const e of this.#entries.values()) out.push(this.#info(e))
    for (const [file, reason] of this.#conflicts) {
      const id = GUID_DB_RE.exec(path.basename(file))![1]!
      out.push({ id, dir: path.dirname(file), path: file, state: 'conflict', dbSizeBytes: 0, walSizeBytes: 0, detectedAt: 0, replicator: null, lastError: reason, replica: '', drill: null })
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.dir < b.dir ? -1 : 1))
  }

  /** client returns one client by id, or undefined. */
  client(id: string): ClientInfo | undefined {
    const e = this.#entries.get(id)
    return e ? this.#info(e) : undefined
  }

  #info(e: Entry): ClientInfo {
    if (e.stale !== null) {
      if (e.stale === 'all') this.#updateSizes(e)
      else this.#updateWalSize(e)
      e.stale = null
    }
    return {
      id: e.id,
      dir: e.dir,
      path: e.path,
      state: e.state,
      dbSizeBytes: e.dbSizeBytes,
      walSizeBytes: e.walSizeBytes,
      detectedAt: e.detectedAt,
      replicator: e.replicator ? e.replicator.status() : null,
      lastError: e.lastError,
      replica: e.replica,
      drill: e.drill,
    }
  }

  /** sync ships everything committed so far for one client and resolves with the durable position. */
  async sync(id: string): Promise<Pos | undefined> {
    const r = this.#entries.get(id)?.replicator
    return r ? r.syncNow() : undefined
  }

  /** snapshot forces a snapshot of one client. */
  async snapshot(id: string): Promise<Pos | undefined> {
    const r = this.#entries.get(id)?.replicator
    return r ? r.snapshotNow() : undefined
  }

  /** close stops discovery, then ships everything committed by every client. Rejects if any final sync failed. */
  async close(opts: { readonly timeoutMs?: number } = {}): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.#reconcileTimer) clearInterval(this.#reconcileTimer)
    if (this.#drillTimer) clearInterval(this.#drillTimer)
    await Promise.all([...this.#watches.values()].map((w) => w.watch.close().catch(() => {})))
    const failures: string[] = []
    await Promise.all(
      [...this.#entries.values()].map(async (e) => {
        const r = e.replicator
        if (!r) return
        try {
          await r.close({ timeoutMs: opts.timeoutMs ?? 30_000 })
        } catch (err) {
          failures.push(`${e.id}: ${errorMessage(err)}`)
        }
      }),
    )
    if (failures.length > 0) throw new Error(`final sync failed for ${failures.length} client(s): ${failures.slice(0, 5).join('; ')}`)
  }
}

/** walStat stats a database's `-wal` file, or returns undefined when there is none. */
function walStat(dbPath: string): fs.BigIntStats | undefined {
  try {
    return fs.statSync(`${dbPath}-wal`, { bigint: true })
  } catch {
    return undefined
  }
}

/** sigOf identifies a WAL file's content as far as a stat can: same inode, size and modification time. */
function sigOf(st: fs.BigIntStats): string {
  return `${st.ino}:${st.size}:${st.mtimeNs}`
}

function samePos(a: Pos, b: Pos): boolean {
  return a.generation === b.generation && a.index === b.index && a.offset === b.offset
}

function dirIno(dir: string): string {
  try {
    const st = fs.statSync(dir)
    return `${st.dev}:${st.ino}`
  } catch {
    return ''
  }
}
