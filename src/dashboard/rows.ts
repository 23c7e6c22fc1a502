/**
 * The dashboard's JSON shape: one flat, JSON-ready row per client, built from a `ClientInfo` and its
 * replicator status. Every timestamp is epoch milliseconds (a number) or null for "never".
 * @module
 */
import type { ClientInfo, ClientState, DrillStatus, ReplicatorState } from '../types.js'

/** GUID_RE matches a client id: a canonical lowercase GUID. */
export const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** ClientRow is one client as `/api/clients`, `/api/events` and the page see it. Immutable, JSON-ready. */
export interface ClientRow {
  readonly id: string
  /** dir is the watched directory holding the database; path is the database file. */
  readonly dir: string
  readonly path: string
  readonly state: ClientState
  /** replicatorState is the replicator's own state, or null when no replicator runs. */
  readonly replicatorState: ReplicatorState | null
  readonly dbSizeBytes: number
  readonly walSizeBytes: number
  /** generation is '' until the first snapshot; index and offset are then 0. */
  readonly generation: string
  readonly index: number
  readonly offset: number
  readonly pageSize: number
  /** lagMs is how long the oldest unshipped change has waited (0 when caught up); null without a replicator. */
  readonly lagMs: number | null
  /** lastLagMs is the lag of the most recently shipped change; null without a replicator. */
  readonly lastLagMs: number | null
  /** lastSyncAt and lastSnapshotAt are epoch ms, null for never. */
  readonly lastSyncAt: number | null
  readonly lastSnapshotAt: number | null
  /** bytesShipped counts WAL bytes (uncompressed frames) shipped, objectsWritten snapshots and segments, both since this replicator started. */
  readonly bytesShipped: number
  readonly objectsWritten: number
  readonly generationsStarted: number
  /** lastError is the client's error, else its replicator's, else null. Plain text: never HTML. */
  readonly lastError: string | null
  /** detectedAt is when the manager found the file (epoch ms). */
  readonly detectedAt: number
  /** replica is the client's replica URL ('' when none, e.g. a duplicate id). */
  readonly replica: string
  /** restoreCommand is a ready-to-run restore command line, or null without a replica. */
  readonly restoreCommand: string | null
  readonly drill: DrillStatus | null
}

const UNSAFE_JSON = /[<>&\u2028\u2029]/g
const JSON_ESCAPES: Record<string, string> = { '<': '\\u003c', '>': '\\u003e', '&': '\\u0026', '\u2028': '\\u2028', '\u2029': '\\u2029' }

/**
 * safeJson is JSON.stringify that also escapes `<`, `>`, `&`, U+2028 and U+2029 (as Go's encoding/json does):
 * the same value, but no byte sequence that an HTML or JS parser could take for markup, even if sniffed.
 */
export function safeJson(value: unknown): string {
  return JSON.stringify(value).replace(UNSAFE_JSON, (ch) => JSON_ESCAPES[ch]!)
}

/** shellQuote quotes one argument for a POSIX shell, leaving plain words alone. */
export function shellQuote(arg: string): string {
  if (arg !== '' && /^[A-Za-z0-9_./:@%+=,-]+$/.test(arg)) return arg
  return `'${arg.replace(/'/g, `'\\''`)}'`
}

/** defaultRestoreCommand is `litestream restore -o <guid>.db <replica>` (stock Litestream v0.3). */
export function defaultRestoreCommand(c: ClientInfo): string {
  return `litestream restore -o ${shellQuote(`${c.id}.db`)} ${shellQuote(c.replica)}`
}

/** toRow flattens a client and its replicator status into one row. */
export function toRow(c: ClientInfo, restoreCommand: (c: ClientInfo) => string = defaultRestoreCommand): ClientRow {
  const r = c.replicator
  return {
    id: c.id,
    dir: c.dir,
    path: c.path,
    state: c.state,
    replicatorState: r ? r.state : null,
    dbSizeBytes: c.dbSizeBytes,
    walSizeBytes: c.walSizeBytes,
    generation: r ? r.generation : '',
    index: r ? r.index : 0,
    offset: r ? r.offset : 0,
    pageSize: r ? r.pageSize : 0,
    lagMs: r ? r.lagMs : null,
    lastLagMs: r ? r.lastLagMs : null,
    lastSyncAt: r ? r.lastSyncAt : null,
    lastSnapshotAt: r ? r.lastSnapshotAt : null,
    bytesShipped: r ? r.bytesShipped : 0,
    objectsWritten: r ? r.objectsWritten : 0,
    generationsStarted: r ? r.generationsStarted : 0,
    lastError: c.lastError ?? r?.lastError ?? null,
    detectedAt: c.detectedAt,
    replica: c.replica,
    restoreCommand: c.replica ? restoreCommand(c) : null,
    drill: c.drill,
  }
}
