/**
 * Prometheus metrics computed at scrape time from `StatusSource.clients()`: nothing is updated on the hot
 * path, each metric's `collect()` reads one listing shared by the whole scrape.
 *
 * Per client (label `client`): state, lag, shipped bytes, objects, generations, db size, wal size, error: at
 * most 8 series per client, so 8 000 series at 1 000 clients, plus 7 `litestream_manager_clients{state}`
 * series and prom-client's default process metrics. Duplicate-id rows (state `conflict`) are counted in
 * `litestream_manager_clients` only, so every per-client series has a unique `client`.
 * @module
 */
import { Counter, Gauge, collectDefaultMetrics, Registry } from 'prom-client'
import type { ClientInfo, ClientState, StatusSource } from '../types.js'

/** METRIC_PREFIX starts every metric name of ours. */
export const METRIC_PREFIX = 'litestream_manager_'

const STATES: readonly ClientState[] = ['replicating', 'idle', 'starting', 'waiting', 'error', 'conflict', 'stopped']

/** MetricsOptions configures registerMetrics. */
export interface MetricsOptions {
  /** defaultMetrics adds prom-client's process, GC, heap and event-loop-delay metrics. Default true. */
  readonly defaultMetrics?: boolean
}

/**
 * registerMetrics adds the client metrics (and, unless disabled or already present, the default process
 * metrics) to registry, and returns it. With no registry a new one is created: never the global one.
 */
export function registerMetrics(source: StatusSource, registry: Registry = new Registry(), opts: MetricsOptions = {}): Registry {
  // One listing per scrape: registry.metrics() calls every collect() synchronously, one after another, before
  // its first await; the listing is forgotten at the first microtask after that.
  let scrape: ClientInfo[] | null = null
  const clients = (): ClientInfo[] => {
    if (scrape === null) {
      scrape = source.clients()
      queueMicrotask(() => {
        scrape = null
      })
    }
    return scrape
  }
  function* perClient(): Generator<ClientInfo> {
    for (const c of clients()) if (c.state !== 'conflict') yield c
  }
  const registers = [registry]

  new Gauge({
    name: `${METRIC_PREFIX}clients`,
    help: 'Number of clients by state.',
    labelNames: ['state'] as const,
    registers,
    collect() {
      const n = new Map<ClientState, number>(STATES.map((s) => [s, 0]))
      for (const c of clients()) n.set(c.state, (n.get(c.state) ?? 0) + 1)
      this.reset()
      for (const [state, count] of n) this.set({ state }, count)
    },
  })
  new Gauge({
    name: `${METRIC_PREFIX}client_state`,
    help: 'Current state of each client: 1 on the series of its current state (series of other states are absent).',
    labelNames: ['client', 'state'] as const,
    registers,
    collect() {
      this.reset()
      for (const c of perClient()) this.set({ client: c.id, state: c.state }, 1)
    },
  })
  new Gauge({
    name: `${METRIC_PREFIX}client_lag_seconds`,
    help: 'How long the oldest change not yet durable in the replica has waited (0 when caught up).',
    labelNames: ['client'] as const,
    registers,
    collect() {
      this.reset()
      for (const c of perClient()) if (c.replicator) this.set({ client: c.id }, c.replicator.lagMs / 1000)
    },
  })
  new Counter({
    name: `${METRIC_PREFIX}client_shipped_bytes_total`,
    help: 'WAL bytes (uncompressed frames) shipped to the replica since the replicator started.',
    labelNames: ['client'] as const,
    registers,
    collect() {
      this.reset()
      for (const c of perClient()) if (c.replicator) this.inc({ client: c.id }, c.replicator.bytesShipped)
    },
  })
  new Counter({
    name: `${METRIC_PREFIX}client_objects_written_total`,
    help: 'Objects (snapshots and WAL segments) written to the replica since the replicator started.',
    labelNames: ['client'] as const,
    registers,
    collect() {
      this.reset()
      for (const c of perClient()) if (c.replicator) this.inc({ client: c.id }, c.replicator.objectsWritten)
    },
  })
  new Counter({
    name: `${METRIC_PREFIX}client_generations_started_total`,
    help: 'Generations started since the replicator started; each one after the first means WAL continuity was lost.',
    labelNames: ['client'] as const,
    registers,
    collect() {
      this.reset()
      for (const c of perClient()) if (c.replicator) this.inc({ client: c.id }, c.replicator.generationsStarted)
    },
  })
  new Gauge({
    name: `${METRIC_PREFIX}client_db_size_bytes`,
    help: 'Size of the database file.',
    labelNames: ['client'] as const,
    registers,
    collect() {
      this.reset()
      for (const c of perClient()) this.set({ client: c.id }, c.dbSizeBytes)
    },
  })
  new Gauge({
    name: `${METRIC_PREFIX}client_wal_size_bytes`,
    help: 'Size of the -wal file.',
    labelNames: ['client'] as const,
    registers,
    collect() {
      this.reset()
      for (const c of perClient()) this.set({ client: c.id }, c.walSizeBytes)
    },
  })
  new Gauge({
    name: `${METRIC_PREFIX}client_error`,
    help: '1 when the client is in state error or reports an error message (shown on the dashboard), else 0.',
    labelNames: ['client'] as const,
    registers,
    collect() {
      this.reset()
      for (const c of perClient()) this.set({ client: c.id }, c.state === 'error' || (c.lastError ?? c.replicator?.lastError) != null ? 1 : 0)
    },
  })

  new Gauge({
    name: `${METRIC_PREFIX}client_last_drill_ok`,
    help: 'Last restore drill of the client: 1 passed, 0 failed, -1 none yet (skipped drills count as none).',
    labelNames: ['client'] as const,
    registers,
    collect() {
      this.reset()
      for (const c of perClient()) this.set({ client: c.id }, !c.drill || c.drill.skipped ? -1 : c.drill.ok ? 1 : 0)
    },
  })
  new Gauge({
    name: `${METRIC_PREFIX}client_last_drill_timestamp_seconds`,
    help: 'When the last restore drill of the client ran (0: never).',
    labelNames: ['client'] as const,
    registers,
    collect() {
      this.reset()
      for (const c of perClient()) this.set({ client: c.id }, c.drill ? c.drill.at / 1000 : 0)
    },
  })

  if ((opts.defaultMetrics ?? true) && !registry.getSingleMetric('process_cpu_user_seconds_total')) {
    collectDefaultMetrics({ register: registry })
  }
  return registry
}
