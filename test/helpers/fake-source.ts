/** An in-memory StatusSource that emits changes, for dashboard tests. */
import type { ClientInfo, Pos, StatusSource } from '../../src/types.js'

/** FakeSource holds clients in a map; set() and remove() notify subscribers like the manager does. */
export class FakeSource implements StatusSource {
  readonly map = new Map<string, ClientInfo>()
  readonly listeners = new Set<(id: string) => void>()
  syncResult: Pos | undefined = { generation: '0123456789abcdef', index: 1, offset: 4152 }
  syncCalls: string[] = []

  clients(): ClientInfo[] {
    return [...this.map.values()].sort((a, b) => (a.id < b.id ? -1 : 1))
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
    return this.syncResult
  }
  async snapshot(id: string): Promise<Pos | undefined> {
    return this.sync(id)
  }
  set(c: Partial<ClientInfo> & { id: string }): void {
    const prev = this.map.get(c.id)
    this.map.set(c.id, { ...(prev ?? makeClient(c.id)), ...c })
    for (const l of this.listeners) l(c.id)
  }
  remove(id: string): void {
    this.map.delete(id)
    for (const l of this.listeners) l(id)
  }
}

/** makeClient returns a plausible replicating client. */
export function makeClient(id: string): ClientInfo {
  return {
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
    replicator: {
      state: 'idle',
      generation: '0123456789abcdef',
      index: 0,
      offset: 4152,
      pageSize: 4096,
      lastSyncAt: Date.now(),
      lastSnapshotAt: Date.now(),
      lagMs: 0,
      lastLagMs: 120,
      bytesShipped: 12345,
      objectsWritten: 3,
      generationsStarted: 1,
      lastError: null,
    },
  }
}
