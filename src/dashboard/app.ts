/**
 * The dashboard: page, JSON API, Server-Sent Events and Prometheus metrics over a read-only StatusSource.
 * Imports hono, prom-client and types only; never the manager or the engine.
 *
 * Security: loopback by default (the caller refuses a non-loopback bind without a token); with a token every
 * route but /healthz needs it (Bearer header or the HttpOnly cookie set by `/?token=`); the Host header must be
 * one we serve (DNS rebinding); POSTs refuse cross-site requests; a strict Content-Security-Policy; data goes
 * into the DOM through textContent only.
 * @module
 */
import { timingSafeEqual } from 'node:crypto'
import { Hono, type Context } from 'hono'
import { getCookie, setCookie } from 'hono/cookie'
import { streamSSE } from 'hono/streaming'
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client'
import { errorMessage } from '../errors.js'
import type { ClientInfo, StatusSource } from '../types.js'
import { APP_CSS, APP_JS, INDEX_HTML } from './assets.js'

const ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
/** SSE_FLUSH_MS bounds the event rate: changes are coalesced per client and sent at most this often. */
export const SSE_FLUSH_MS = 250
/** SSE_MAX_PENDING drops a subscriber whose unsent backlog grows past this many clients' worth of events. */
const SSE_MAX_BUFFERED_BYTES = 4 << 20

/** DashboardOptions configures the app. */
export interface DashboardOptions {
  /** token, when set, is required on every route but /healthz. */
  readonly token?: string
  /** allowedHosts lists host names (without port) accepted in the Host header. */
  readonly allowedHosts: readonly string[]
  /** ready reports whether the first directory scan finished (for /readyz). */
  readonly ready?: () => boolean
  /** collectProcessMetrics adds prom-client's default process metrics and event-loop delay. Default true. */
  readonly collectProcessMetrics?: boolean
}

/** ClientJson is one client as the API returns it. Times are epoch milliseconds or null. */
export interface ClientJson {
  readonly id: string
  readonly dir: string
  readonly path: string
  readonly state: string
  readonly dbSizeBytes: number
  readonly walSizeBytes: number
  readonly generation: string
  readonly index: number
  readonly offset: number
  readonly lagMs: number
  readonly lastLagMs: number
  readonly lastSyncAt: number | null
  readonly lastSnapshotAt: number | null
  readonly bytesShipped: number
  readonly objectsWritten: number
  readonly generationsStarted: number
  readonly lastError: string | null
  readonly replica: string
  readonly restoreCommand: string
  readonly lastDrillAt: number | null
  readonly lastDrillOk: boolean | null
  readonly lastDrillError: string | null
}

/** toJson flattens a ClientInfo for the API. */
export function toJson(c: ClientInfo): ClientJson {
  const r = c.replicator
  return {
    id: c.id,
    dir: c.dir,
    path: c.path,
    state: c.state,
    dbSizeBytes: c.dbSizeBytes,
    walSizeBytes: c.walSizeBytes,
    generation: r?.generation ?? '',
    index: r?.index ?? 0,
    offset: r?.offset ?? 0,
    lagMs: r?.lagMs ?? 0,
    lastLagMs: r?.lastLagMs ?? 0,
    lastSyncAt: r?.lastSyncAt ?? null,
    lastSnapshotAt: r?.lastSnapshotAt ?? null,
    bytesShipped: r?.bytesShipped ?? 0,
    objectsWritten: r?.objectsWritten ?? 0,
    generationsStarted: r?.generationsStarted ?? 0,
    lastError: c.lastError ?? r?.lastError ?? null,
    replica: c.replica,
    restoreCommand: c.replica ? `litestream restore -o ${c.id}.db ${c.replica}` : '',
    lastDrillAt: c.drill?.at ?? null,
    lastDrillOk: c.drill ? c.drill.ok : null,
    lastDrillError: c.drill?.error ?? null,
  }
}

function tokenMatches(given: string | undefined, want: string): boolean {
  if (given === undefined) return false
  const a = Buffer.from(given)
  const b = Buffer.from(want)
  return a.length === b.length && timingSafeEqual(a, b)
}

function hostName(host: string): string {
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1)
  const i = host.lastIndexOf(':')
  return i >= 0 ? host.slice(0, i) : host
}

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/** metricsRegistry builds a per-app registry whose per-client series are computed at scrape time. */
function metricsRegistry(source: StatusSource, processMetrics: boolean): Registry {
  const registry = new Registry()
  if (processMetrics) collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 })
  const perClient = (name: string, help: string, pick: (c: ClientJson) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ['client'],
      registers: [registry],
      collect() {
        this.reset()
        for (const c of source.clients()) if (c.state !== 'conflict') this.set({ client: c.id }, pick(toJson(c)))
      },
    })
  }
  perClient('litestream_manager_client_lag_ms', 'Age of the oldest unshipped change, ms (0 when caught up).', (c) => c.lagMs)
  perClient('litestream_manager_client_bytes_shipped_total', 'Uncompressed WAL bytes shipped since start.', (c) => c.bytesShipped)
  perClient('litestream_manager_client_objects_written_total', 'Snapshot and segment objects written since start.', (c) => c.objectsWritten)
  perClient('litestream_manager_client_db_size_bytes', 'Database file size.', (c) => c.dbSizeBytes)
  perClient('litestream_manager_client_wal_size_bytes', 'WAL file size.', (c) => c.walSizeBytes)
  perClient('litestream_manager_client_error', '1 when the client is in the error state.', (c) => (c.state === 'error' ? 1 : 0))
  perClient('litestream_manager_client_generations_started_total', 'Generations started since start (each costs a snapshot).', (c) => c.generationsStarted)
  perClient('litestream_manager_client_last_drill_ok', 'Last restore drill: 1 passed, 0 failed, -1 none yet.', (c) => (c.lastDrillOk === null ? -1 : c.lastDrillOk ? 1 : 0))
  new Gauge({
    name: 'litestream_manager_clients',
    help: 'Clients by state.',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.reset()
      const n = new Map<string, number>()
      for (const c of source.clients()) n.set(c.state, (n.get(c.state) ?? 0) + 1)
      for (const [state, v] of n) this.set({ state }, v)
    },
  })
  return registry
}

/** createApp builds the dashboard app. */
export function createApp(source: StatusSource, opts: DashboardOptions): Hono {
  const app = new Hono()
  const allowed = new Set(opts.allowedHosts.map((h) => h.toLowerCase()))
  const registry = metricsRegistry(source, opts.collectProcessMetrics ?? true)

  app.onError((err, c) => {
    c.header('Cache-Control', 'no-store')
    return c.json({ error: errorMessage(err) }, 500)
  })
  app.notFound((c) => c.json({ error: 'not found' }, 404))

  app.use('*', async (c, next) => {
    c.header('Content-Security-Policy', CSP)
    c.header('X-Content-Type-Options', 'nosniff')
    c.header('Referrer-Policy', 'no-referrer')
    c.header('X-Frame-Options', 'DENY')
    const host = (c.req.header('host') ?? '').toLowerCase()
    if (!allowed.has(hostName(host))) return c.json({ error: 'unexpected Host header' }, 421)
    if (c.req.path === '/healthz') return next()
    if (opts.token) {
      const auth = c.req.header('authorization')
      const bearer = auth?.startsWith('Bearer ') ? auth.slice(7) : undefined
      const viaQuery = c.req.path === '/' ? c.req.query('token') : undefined
      if (tokenMatches(viaQuery, opts.token)) {
        setCookie(c, 'token', opts.token, { httpOnly: true, sameSite: 'Strict', path: '/' })
        return c.redirect('/', 303)
      }
      if (!tokenMatches(bearer, opts.token) && !tokenMatches(getCookie(c, 'token'), opts.token)) {
        return c.json({ error: 'unauthorized' }, 401)
      }
    }
    if (c.req.method === 'POST') {
      const site = c.req.header('sec-fetch-site')
      const origin = c.req.header('origin')
      if ((site && site !== 'same-origin' && site !== 'none') || (origin && !allowed.has(hostName(origin.replace(/^https?:\/\//, '').toLowerCase())))) {
        return c.json({ error: 'cross-site request refused' }, 403)
      }
      const type = c.req.header('content-type')
      if (type && !type.startsWith('application/json')) return c.json({ error: 'content-type must be application/json' }, 415)
    }
    return next()
  })

  app.get('/healthz', (c) => c.text('ok'))
  app.get('/readyz', (c) => ((opts.ready?.() ?? true) ? c.text('ready') : c.text('starting', 503)))
  app.get('/', (c) => {
    c.header('Cache-Control', 'no-store')
    return c.html(INDEX_HTML)
  })
  app.get('/assets/app.js', (c) => c.body(APP_JS, 200, { 'Content-Type': 'text/javascript; charset=utf-8' }))
  app.get('/assets/app.css', (c) => c.body(APP_CSS, 200, { 'Content-Type': 'text/css; charset=utf-8' }))

  app.get('/api/clients', (c) => c.json(source.clients().map(toJson)))

  const withClient = (c: Context): { id: string } | Response => {
    const id = c.req.param('id') ?? ''
    if (!ID_RE.test(id)) return c.json({ error: 'malformed client id: want a lowercase GUID' }, 400)
    if (!source.client(id)) return c.json({ error: 'unknown client' }, 404)
    return { id }
  }
  app.get('/api/clients/:id', (c) => {
    const r = withClient(c)
    if (r instanceof Response) return r
    return c.json(toJson(source.client(r.id)!))
  })
  const action = (fn: (id: string) => Promise<unknown>) => async (c: Context) => {
    const r = withClient(c)
    if (r instanceof Response) return r
    const pos = await fn(r.id)
    if (pos === undefined) return c.json({ error: 'client is not replicating' }, 409)
    return c.json({ pos })
  }
  app.post('/api/clients/:id/sync', action((id) => source.sync(id)))
  app.post('/api/clients/:id/snapshot', action((id) => source.snapshot(id)))

  app.get('/api/events', (c) =>
    streamSSE(c, async (stream) => {
      const pending = new Set<string>()
      let closed = false
      const unsubscribe = source.subscribe((id) => {
        pending.add(id)
      })
      stream.onAbort(() => {
        closed = true
      })
      try {
        await stream.writeSSE({ event: 'snapshot', data: JSON.stringify(source.clients().map(toJson)) })
        let sinceBeat = 0
        while (!closed && !stream.aborted) {
          await stream.sleep(SSE_FLUSH_MS)
          sinceBeat += SSE_FLUSH_MS
          if (pending.size > 0) {
            const ids = [...pending]
            pending.clear()
            const changed: ClientJson[] = []
            const removed: string[] = []
            for (const id of ids) {
              const info = source.client(id)
              if (info) changed.push(toJson(info))
              else removed.push(id)
            }
            const data = JSON.stringify({ changed, removed })
            if (data.length > SSE_MAX_BUFFERED_BYTES) break // a subscriber that far behind is dropped; it reconnects
            await stream.writeSSE({ event: 'delta', data })
          } else if (sinceBeat >= 15_000) {
            sinceBeat = 0
            await stream.write(': keep-alive\n\n')
          }
        }
      } finally {
        unsubscribe()
      }
    }),
  )

  app.get('/metrics', async (c) => c.body(await registry.metrics(), 200, { 'Content-Type': registry.contentType }))
  return app
}
