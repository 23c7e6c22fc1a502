/**
 * Prometheus metrics computed at scrape time from `StatusSource.clients()`: nothing is updated on the hot
 * path, each metric reads one listing shared by the whole scrape, and the per-client metrics keep no series
 * between scrapes (see PerClientMetric).
 *
 * Per client (label `client`): state, lag, shipped bytes, objects, generations, db size, wal size, error: at
 * most 8 series per client, so 8 000 series at 1 000 clients, plus 7 `litestream_manager_clients{state}`
 * series and prom-client's default process metrics. Duplicate-id rows (state `conflict`) are counted in
 * `litestream_manager_clients` only, so every per-client series has a unique `client`.
 * @module
 */
import { Gauge, collectDefaultMetrics, Registry, type Metric } from 'prom-client'

import type { ClientInfo, ClientState, StatusSource } from '../types.js'

/**
 * EVENT_LOOP_SAMPLE_MS is how often the event-loop-delay histogram samples. prom-client's default, 10 ms, is a
 * timer that wakes an idle service 100 times a second: `node --import tsx bench/idle-wakeups.ts` (1,000 idle
 * databases, 30 s) measured 97.9 main-thread wake-ups/s and 1.3 % of a core at 10 ms, 10.3/s and 0.7 % at 100 ms.
 * A block still shows in the histogram when a sample falls inside it.
 */
const EVENT_LOOP_SAMPLE_MS = 100

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
  const perClientMetric = (name: string, type: 'gauge' | 'counter', help: string, value: (c: ClientInfo) => number | undefined, extra?: (c: ClientInfo) => Record<string, string>): void => {
    registry.registerMetric(new PerClientMetric(`${METRIC_PREFIX}${name}`, type, help, perClient, value, extra) as unknown as Metric)
  }
  perClientMetric('client_state', 'gauge', 'Current state of each client: 1 on the series of its current state (series of other states are absent).', () => 1, (c) => ({ state: c.state }))
  perClientMetric('client_lag_seconds', 'gauge', 'How long the oldest change not yet durable in the replica has waited (0 when caught up).', (c) =>
    c.replicator ? c.replicator.lagMs / 1000 : undefined,
  )
  perClientMetric('client_shipped_bytes_total', 'counter', 'WAL bytes (uncompressed frames) shipped to the replica since the replicator started.', (c) => c.replicator?.bytesShipped)
  perClientMetric('client_objects_written_total', 'counter', 'Objects (snapshots and WAL segments) written to the replica since the replicator started.', (c) => c.replicator?.objectsWritten)
  perClientMetric(
    'client_generations_started_total',
    'counter',
    'Generations started since the replicator started; each one after the first means WAL continuity was lost.',
    (c) => c.replicator?.generationsStarted,
  )
  perClientMetric('client_db_size_bytes', 'gauge', 'Size of the database file.', (c) => c.dbSizeBytes)
  perClientMetric('client_wal_size_bytes', 'gauge', 'Size of the -wal file.', (c) => c.walSizeBytes)
  perClientMetric('client_error', 'gauge', '1 when the client is in state error or reports an error message (shown on the dashboard), else 0.', (c) =>
    c.state === 'error' || (c.lastError ?? c.replicator?.lastError) != null ? 1 : 0,
  )
  perClientMetric('client_last_drill_ok', 'gauge', 'Last restore drill of the client: 1 passed, 0 failed, -1 none yet (skipped drills count as none).', (c) =>
    !c.drill || c.drill.skipped ? -1 : c.drill.ok ? 1 : 0,
  )
  perClientMetric('client_last_drill_timestamp_seconds', 'gauge', 'When the last restore drill of the client ran (0: never).', (c) => (c.drill ? c.drill.at / 1000 : 0))

  if ((opts.defaultMetrics ?? true) && !registry.getSingleMetric('process_cpu_user_seconds_total')) {
    collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS })
  }
  return registry
}

/**
 * PerClientMetric is a metric with one series per client, listed at scrape time. The registry formats it like
 * a Gauge or Counter with the same label names, but it keeps nothing between scrapes: a prom-client Gauge holds
 * a hashed entry per series until the next reset (about 2 MB of heap for 10 metrics at 1 000 clients) and
 * hashes every label set on each set().
 */
class PerClientMetric {
  readonly aggregator = 'sum'
  constructor(
    readonly name: string,
    readonly type: 'gauge' | 'counter',
    readonly help: string,
    readonly clients: () => Iterable<ClientInfo>,
    readonly value: (c: ClientInfo) => number | undefined,
    readonly extraLabels?: (c: ClientInfo) => Record<string, string>,
  ) {}

  get(): Promise<{ help: string; name: string; type: string; values: { value: number; labels: Record<string, string> }[]; aggregator: string }> {
    const values: { value: number; labels: Record<string, string> }[] = []
    for (const c of this.clients()) {
      const value = this.value(c)
      if (value !== undefined) values.push({ value, labels: this.extraLabels ? { client: c.id, ...this.extraLabels(c) } : { client: c.id } })
    }
    return Promise.resolve({ help: this.help, name: this.name, type: this.type, values, aggregator: this.aggregator })
  }

  /** reset is a no-op: values are computed at scrape time (Registry.resetMetrics calls it). */
  reset(): void {}
}
