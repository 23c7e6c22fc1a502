/**
 * Value types shared by every module. Plain readonly objects, JSON-ready, no behaviour beyond pure helpers.
 * Vocabulary follows Litestream v0.3: generation, index, offset, pos, frame, salt, segment, snapshot.
 * @module
 */

/** Pos is a replica position: byte `offset` inside WAL `index` of `generation`. */
export interface Pos {
  readonly generation: string
  readonly index: number
  readonly offset: number
}

/** ZERO_POS is the position of a database that has no generation yet. */
export const ZERO_POS: Pos = Object.freeze({ generation: '', index: 0, offset: 0 })

/** posToString formats a position the way Litestream logs it: `gen/%08x:offset`. */
export function posToString(pos: Pos): string {
  return `${pos.generation}/${pos.index.toString(16).padStart(8, '0')}:${pos.offset}`
}

/** SnapshotInfo describes one snapshot object in a replica. */
export interface SnapshotInfo {
  readonly generation: string
  readonly index: number
  /** size is the compressed object size in bytes. */
  readonly size: number
  /** createdAt is the object's LastModified (S3) or mtime (file), as Litestream uses it. */
  readonly createdAt: Date
}

/** WalSegmentInfo describes one WAL segment object in a replica. */
export interface WalSegmentInfo {
  readonly generation: string
  readonly index: number
  readonly offset: number
  /** size is the compressed object size in bytes. */
  readonly size: number
  readonly createdAt: Date
}

/** ReplicatorState is what the dashboard shows. */
export type ReplicatorState = 'starting' | 'replicating' | 'idle' | 'waiting' | 'error' | 'stopped'

/** ReplicatorStatus is an immutable snapshot of one replicator, replaced on every change. */
export interface ReplicatorStatus {
  readonly state: ReplicatorState
  readonly generation: string
  readonly index: number
  readonly offset: number
  readonly pageSize: number
  readonly lastSyncAt: number | null
  readonly lastSnapshotAt: number | null
  /** lagMs is how long the oldest unshipped change has waited (0 when caught up). */
  readonly lagMs: number
  /** lastLagMs is the lag of the most recent shipped change, from notification to durable. */
  readonly lastLagMs: number
  readonly bytesShipped: number
  readonly objectsWritten: number
  readonly generationsStarted: number
  readonly lastError: string | null
}

/** ClientState is a client's lifecycle state as the dashboard shows it. */
export type ClientState = 'replicating' | 'idle' | 'starting' | 'waiting' | 'error' | 'conflict' | 'stopped'

/** DrillStatus is the outcome of the last restore drill of a client. */
export interface DrillStatus {
  readonly at: number
  readonly ok: boolean
  readonly skipped: boolean
  readonly position: Pos | null
  readonly durationMs: number
  readonly error: string | null
  /** compared is true when the restored rows were compared with the source at exactly the restored position. */
  readonly compared: boolean
}

/** ClientInfo is one client as the dashboard and API show it. Immutable. */
export interface ClientInfo {
  readonly id: string
  readonly dir: string
  readonly path: string
  readonly state: ClientState
  readonly dbSizeBytes: number
  readonly walSizeBytes: number
  readonly detectedAt: number
  readonly replicator: ReplicatorStatus | null
  readonly lastError: string | null
  readonly replica: string
  /** drill is the last restore drill's outcome, or null before the first. */
  readonly drill: DrillStatus | null
}

/** StatusSource is what the dashboard reads and drives: the manager implements it. */
export interface StatusSource {
  /** clients lists every client, sorted by id. */
  clients(): ClientInfo[]
  /** client returns one client, or undefined. */
  client(id: string): ClientInfo | undefined
  /** subscribe calls listener with a client id whenever that client changed; returns the unsubscribe function. */
  subscribe(listener: (id: string) => void): () => void
  /** sync ships everything committed and resolves with the durable position (undefined: not replicating). */
  sync(id: string): Promise<Pos | undefined>
  /** snapshot forces a snapshot and resolves with the position (undefined: not replicating). */
  snapshot(id: string): Promise<Pos | undefined>
}
