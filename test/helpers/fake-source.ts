/** An in-memory StatusSource that emits changes like the Manager does, for dashboard tests and demos. */
import type { ClientInfo, Pos, ReplicatorStatus, StatusSource } from '../../src/types.js'

/** FakeSource holds clients in a map; every mutation notifies subscribers synchronously, as the manager does. */
export class FakeSource implements StatusSource {
  readonly map = new Map<string, ClientInfo>()
  readonly listeners = new Set<(id: string) => void>()
  /** syncResult is what sync() and snapshot() resolve with (undefined: "not replicating"). */
  syncResult: Pos | undefined = { generation: '0123456789abcdef', index: 1, offset: 4152 }
  /** syncError, when set, makes sync() and snapshot() reject with it. */
  syncError: Error | undefined
  /** syncGate, when set, is awaited by sync() and snapshot() before they answer (to test the barrier). */
  syncGate: Promise<void> | undefined
  readonly syncCalls: string[] = []
  readonly snapshotCalls: string[] = []
  /** clientsCalls counts clients() calls (to check that work is bounded). */
  clientsCalls = 0

  clients(): ClientInfo[] {
    this.clientsCalls++
    return [...this.map.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  }
  client(id: string): ClientInfo | undefined {
    return this.map.get(id)
  }
  subscribe(l: (id: string) => void): () => void {
    this.listeners.add(l)
    return () => this.listeners.delete(l)
  }
  async sync(id: string): Promise<Pos | undefined> {
    this.syncCalls.push(id)
    return this.#answer()
  }
  async snapshot(id: string): Promise<Pos | undefined> {
    this.snapshotCalls.push(id)
    return this.#answer()
  }
  async #answer(): Promise<Pos | undefined> {
    if (this.syncGate) await this.syncGate
    if (this.syncError) throw this.syncError
    return this.syncResult
  }

  /** set adds a client or merges fields into it, then notifies. */
  set(c: Partial<ClientInfo> & { id: string }): ClientInfo {
    const prev = this.map.get(c.id)
    const next = Object.freeze({ ...(prev ?? makeClient(c.id)), ...c })
    this.map.set(c.id, next)
    this.emit(c.id)
    return next
  }
  /** setReplicator merges fields into a client's replicator status (creating one if needed), then notifies. */
  setReplicator(id: string, patch: Partial<ReplicatorStatus>): ClientInfo {
    const prev = this.map.get(id) ?? makeClient(id)
    return this.set({ id, replicator: Object.freeze({ ...(prev.replicator ?? makeReplicator()), ...patch }) })
  }
  /** remove forgets a client, then notifies (the id no longer resolves). */
  remove(id: string): void {
    this.map.delete(id)
    this.emit(id)
  }
  /** emit notifies every subscriber that id changed. */
  emit(id: string): void {
    for (const l of this.listeners) l(id)
  }
}

/** makeReplicator returns a plausible caught-up replicator status. */
export function makeReplicator(overrides: Partial<ReplicatorStatus> = {}): ReplicatorStatus {
  const now = Date.now()
  return Object.freeze({
    state: 'idle',
    generation: '0123456789abcdef',
    index: 0,
    offset: 4152,
    pageSize: 4096,
    lastSyncAt: now,
    lastSnapshotAt: now,
    lagMs: 0,
    lastLagMs: 120,
    bytesShipped: 12345,
    objectsWritten: 3,
    generationsStarted: 1,
    lastError: null,
    ...overrides,
  })
}

/** makeClient returns a plausible idle client replicating to s3://bucket/databases/<id>. */
export function makeClient(id: string, overrides: Partial<ClientInfo> = {}): ClientInfo {
  return Object.freeze({
    id,
    dir: '/data/clients',
    path: `/data/clients/${id}.db`,
    state: 'idle',
    dbSizeBytes: 81920,
    walSizeBytes: 4152,
    detectedAt: Date.now(),
    lastError: null,
    replica: `s3://bucket/databases/${id}`,
    drill: null,
    replicator: makeReplicator(),
    ...overrides,
  })
}
