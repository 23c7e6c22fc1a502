/**
 * The dashboard: page, JSON API, Server-Sent Events and Prometheus metrics over a StatusSource.
 * Imports hono, prom-client and types only; never the manager or the engine.
 *
 * Every request passes, in order: security headers (CSP, nosniff, no-referrer, no framing) → `/healthz`
 * (answered here: no Host check, no auth) → Host check (421, DNS rebinding) → token (401) → for POSTs the
 * cross-site check (403) and the body type (415) → the route. Errors become `{ "error": message }`.
 *
 * @example
 * const app = createApp(manager, { token, allowedHosts: ['localhost', '127.0.0.1', '[::1]'], ready: () => scanned })
 * const res = await app.request('/api/clients')   // tests need no socket
 * @module
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import { Hono, type Context } from 'hono'
import { getCookie, setCookie } from 'hono/cookie'
import type { Registry } from 'prom-client'
import { errorMessage, ReplicaError } from '../errors.js'
import type { ClientInfo, Pos, StatusSource } from '../types.js'
import { APP_CSS, APP_JS, FAVICON_SVG, INDEX_HTML } from './assets.js'
import { chunkStream, ClientsBody, textChunks } from './clients-body.js'
import { DEFAULT_EVENT_INTERVAL_MS, EventHub } from './events.js'
import { registerMetrics } from './metrics.js'
import { defaultRestoreCommand, GUID_RE, safeJson, toRow, type ClientRow } from './rows.js'

export type { ClientRow } from './rows.js'

/** SSE_FLUSH_MS is the default minimum time between two `delta` events. */
export const SSE_FLUSH_MS = DEFAULT_EVENT_INTERVAL_MS

/** TOKEN_COOKIE is the name of the session cookie set by `/?token=`. */
export const TOKEN_COOKIE = 'token'

/** CONTENT_SECURITY_POLICY is sent on every response: same-origin script, style, fetch and images only. */
export const CONTENT_SECURITY_POLICY =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

/** DashboardOptions configures createApp. */
export interface DashboardOptions {
  /** token, when set (non-empty), is required on every route but /healthz: `Authorization: Bearer` or the cookie. */
  readonly token?: string
  /** allowedHosts lists the host names (port ignored; `[::1]` and `::1` alike) accepted in the Host header. */
  readonly allowedHosts: readonly string[]
  /** ready reports whether the source has been scanned, for /readyz. Undefined: always ready. */
  readonly ready?: () => boolean
  /** metrics is the registry to add our metrics to. Undefined: a new per-app Registry (never the global one). */
  readonly metrics?: Registry
  /** collectProcessMetrics adds prom-client's process and event-loop-delay metrics. Default true. */
  readonly collectProcessMetrics?: boolean
  /** restoreCommand renders a client's restore command line. Default `litestream restore -o <guid>.db <replica>`. */
  readonly restoreCommand?: (c: ClientInfo) => string
  /** now is the wall clock (epoch ms) stamped on events. Default Date.now. */
  readonly now?: () => number
  /** eventIntervalMs is the minimum time between two SSE deltas. Default 250. */
  readonly eventIntervalMs?: number
  /** heartbeatIntervalMs is the SSE comment heartbeat period; 0 disables. Default 15 000. */
  readonly heartbeatIntervalMs?: number
  /** maxEventSubscribers bounds concurrent /api/events streams (503 past it). Default 32. */
  readonly maxEventSubscribers?: number
  /** maxQueuedEventBytes is the unread bytes an SSE subscriber may hold before it is disconnected. Default 1 MiB. */
  readonly maxQueuedEventBytes?: number
}

type ErrorStatus = 400 | 401 | 403 | 404 | 409 | 415 | 421 | 500 | 503

/** normalizeHost lowercases a host, drops its port and IPv6 brackets: `[::1]:8080` -> `::1`. */
export function normalizeHost(host: string): string {
  const h = host.trim().toLowerCase()
  if (h.startsWith('[')) {
    const end = h.indexOf(']')
    return end < 0 ? h : h.slice(1, end)
  }
  const colons = h.split(':').length - 1
  if (colons === 1) return h.slice(0, h.indexOf(':'))
  return h // a bare name, or a bare IPv6 address (which has no port)
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest()

/** createApp builds the dashboard over source. It holds no timers until an SSE subscriber connects. */
export function createApp(source: StatusSource, opts: DashboardOptions): Hono {
  if (opts.allowedHosts.length === 0) throw new ReplicaError('CONFIG_INVALID', 'dashboard: allowedHosts names no host')
  const allowed = new Set(opts.allowedHosts.map(normalizeHost))
  const now = opts.now ?? Date.now
  const restoreCommand = opts.restoreCommand ?? defaultRestoreCommand
  const token = opts.token ? opts.token : undefined
  // Compare digests, so neither the length nor a prefix of the token leaks through timing. The cookie carries
  // an HMAC of the token, never the token itself.
  const tokenDigest = token === undefined ? undefined : sha256(token)
  const cookieValue = token === undefined ? undefined : createHmac('sha256', token).update('litestream-manager dashboard cookie v1').digest('base64url')
  const cookieDigest = cookieValue === undefined ? undefined : sha256(cookieValue)
  const matches = (given: string | undefined, want: Buffer | undefined): boolean =>
    given !== undefined && want !== undefined && timingSafeEqual(sha256(given), want)

  const rows = (ids?: ReadonlySet<string>): ClientRow[] => {
    const out: ClientRow[] = []
    for (const c of source.clients()) if (!ids || ids.has(c.id)) out.push(toRow(c, restoreCommand))
    return out
  }
  const hub = new EventHub(source, {
    rows,
    now,
    intervalMs: opts.eventIntervalMs,
    heartbeatIntervalMs: opts.heartbeatIntervalMs,
    maxSubscribers: opts.maxEventSubscribers,
    maxQueuedBytes: opts.maxQueuedEventBytes,
  })
  const registry = registerMetrics(source, opts.metrics, { defaultMetrics: opts.collectProcessMetrics ?? true })

  const app = new Hono()
  /** json answers with safeJson: `<`, `>` and `&` inside strings are \u-escaped, so no response can carry markup. */
  const json = (c: Context, value: unknown, status: 200 | ErrorStatus = 200): Response => {
    c.header('Content-Type', 'application/json; charset=utf-8')
    return c.body(safeJson(value), status)
  }
  /** sendChunks answers with a body already cut into chunks (see clients-body.ts), with its Content-Length. */
  const sendChunks = (c: Context, body: { readonly chunks: readonly Uint8Array[]; readonly length: number }): Response => {
    c.header('Content-Length', String(body.length))
    return c.body(chunkStream(body.chunks))
  }
  const fail = (c: Context, status: ErrorStatus, error: string): Response => {
    c.header('Cache-Control', 'no-store')
    return json(c, { error }, status)
  }

  app.onError((err, c) => fail(c, 500, `internal error: ${errorMessage(err)}`))
  app.notFound((c) => fail(c, 404, 'not found'))

  // 1. Security headers on every response, including errors and the SSE stream.
  app.use('*', async (c, next) => {
    await next()
    const h = c.res.headers
    h.set('Content-Security-Policy', CONTENT_SECURITY_POLICY)
    h.set('X-Content-Type-Options', 'nosniff')
    h.set('Referrer-Policy', 'no-referrer')
    h.set('X-Frame-Options', 'DENY')
    h.set('Cross-Origin-Opener-Policy', 'same-origin')
    h.set('Cross-Origin-Resource-Policy', 'same-origin')
  })

  // 2. Liveness: always 200, for probes that neither know the token nor send our Host.
  app.get('/healthz', (c) => c.text('ok'))

  // 3. Host check (DNS rebinding), then the token, then cross-site and body-type checks for writes.
  app.use('*', async (c, next) => {
    const host = c.req.header('host') ?? new URL(c.req.url).host
    if (!allowed.has(normalizeHost(host))) return fail(c, 421, 'unexpected Host header')

    if (token !== undefined) {
      const query = c.req.path === '/' && c.req.method === 'GET' ? c.req.query('token') : undefined
      if (query !== undefined) {
        if (!matches(query, tokenDigest)) return fail(c, 401, 'unauthorized')
        // Trade the token in the address for a cookie, and drop it from the address bar and history.
        setCookie(c, TOKEN_COOKIE, cookieValue!, { httpOnly: true, sameSite: 'Strict', path: '/' })
        c.header('Cache-Control', 'no-store')
        return c.redirect('/', 303)
      }
      const auth = c.req.header('authorization')
      const bearer = auth !== undefined && /^bearer /i.test(auth) ? auth.slice(7).trim() : undefined
      if (!matches(bearer, tokenDigest) && !matches(getCookie(c, TOKEN_COOKIE), cookieDigest)) {
        c.header('WWW-Authenticate', 'Bearer')
        return fail(c, 401, 'unauthorized: send Authorization: Bearer <token>, or open /?token=<token> once')
      }
    }

    if (c.req.method !== 'GET' && c.req.method !== 'HEAD') {
      const site = c.req.header('sec-fetch-site')
      if (site !== undefined && site !== 'same-origin' && site !== 'none') return fail(c, 403, 'cross-site request refused')
      const origin = c.req.header('origin')
      if (origin !== undefined && !sameOrigin(origin, host)) return fail(c, 403, 'cross-origin request refused')
      const length = c.req.header('content-length')
      const hasBody = (length !== undefined && length !== '0') || c.req.header('transfer-encoding') !== undefined
      const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase()
      if ((hasBody || type !== '') && type !== 'application/json') return fail(c, 415, 'a request body must be application/json')
    }
    await next()
  })

  // 4. The page and its assets.
  const asset = (body: string, type: string) => (c: Context) => {
    c.header('Content-Type', type)
    c.header('Cache-Control', 'no-cache')
    return c.body(body)
  }
  app.get('/', asset(INDEX_HTML, 'text/html; charset=utf-8'))
  app.get('/assets/app.js', asset(APP_JS, 'text/javascript; charset=utf-8'))
  app.get('/assets/app.css', asset(APP_CSS, 'text/css; charset=utf-8'))
  app.get('/assets/favicon.svg', asset(FAVICON_SVG, 'image/svg+xml'))

  // 5. Probes and metrics.
  app.get('/readyz', (c) => ((opts.ready?.() ?? true) ? c.text('ready') : c.text('not ready: first scan not finished', 503)))
  app.get('/metrics', async (c) => {
    c.header('Content-Type', registry.contentType)
    c.header('Cache-Control', 'no-store')
    return sendChunks(c, textChunks(await registry.metrics())) // about 1 MB at 1 000 clients: see textChunks
  })

  // 6. JSON API.
  app.use('/api/*', async (c, next) => {
    await next()
    if (!c.res.headers.has('Cache-Control')) c.res.headers.set('Cache-Control', 'no-store')
  })
  // Same bytes as json(c, rows()), but in cached ~50 KB chunks: see clients-body.ts.
  const clientsBody = new ClientsBody(restoreCommand)
  app.get('/api/clients', (c) => {
    c.header('Content-Type', 'application/json; charset=utf-8')
    return sendChunks(c, clientsBody.render(source.clients()))
  })

  /** known validates :id and resolves the client; otherwise it answers 400 or 404. */
  const known = (c: Context): ClientInfo | Response => {
    const id = c.req.param('id') ?? ''
    if (!GUID_RE.test(id)) return fail(c, 400, 'malformed client id: want a lowercase GUID')
    return source.client(id) ?? fail(c, 404, 'unknown client')
  }
  app.get('/api/clients/:id', (c) => {
    const info = known(c)
    return info instanceof Response ? info : json(c, toRow(info, restoreCommand))
  })
  const action = (run: (id: string) => Promise<Pos | undefined>, what: string) => async (c: Context) => {
    const info = known(c)
    if (info instanceof Response) return info
    let pos: Pos | undefined
    try {
      pos = await run(info.id)
    } catch (err) {
      return fail(c, 500, `${what} failed: ${errorMessage(err)}`)
    }
    if (pos === undefined) return fail(c, 409, 'client is not replicating')
    return json(c, { id: info.id, pos: { generation: pos.generation, index: pos.index, offset: pos.offset } })
  }
  app.post('/api/clients/:id/sync', action((id) => source.sync(id), 'sync'))
  app.post('/api/clients/:id/snapshot', action((id) => source.snapshot(id), 'snapshot'))

  app.get('/api/events', (c) => {
    const stream = hub.open()
    if (!stream) return fail(c, 503, 'too many event subscribers')
    c.header('Content-Type', 'text/event-stream; charset=utf-8')
    c.header('Cache-Control', 'no-store, no-transform')
    c.header('X-Accel-Buffering', 'no')
    return c.body(stream)
  })

  return app
}

/** sameOrigin reports whether an Origin header names the host the request was sent to. */
function sameOrigin(origin: string, host: string): boolean {
  try {
    const u = new URL(origin)
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return false
    // Compare as the URL parser normalizes both (case, default port, IPv6 form).
    return u.host === new URL(`${u.protocol}//${host}`).host
  } catch {
    return false // "null" and garbage
  }
}
