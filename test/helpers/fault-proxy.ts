/**
 * FaultProxy: an in-process HTTP proxy on 127.0.0.1 in front of s3rver that injects object-store faults and records
 * every request (reliability matrix, "Components: fault proxy").
 *
 *   client (CLI, SDK) ──► FaultProxy 127.0.0.1:<port> ──► s3rver
 *                            │ rules: first matching terminal rule acts; latency/bandwidth rules all add up
 *                            └ recorder: method, key, query, status, bytes, headers, (bodies), timing
 *
 * Requests keep their Host header, so SigV4 signatures made for the proxy's address verify at s3rver. Rules are
 * added and removed at runtime; a rule matches on method, key regex, percentage (seeded PRNG), a count budget
 * and a time window. Actions:
 *
 * - refuse: `reset` destroys the client socket at once (ECONNRESET); `listener` closes the listening socket and
 *   every open connection while the rule is active (ECONNREFUSED), reopening on the same port afterwards.
 * - blackhole: accept and read the request, never answer (the socket stays open until the client gives up).
 * - latency: delay forwarding by ms. bandwidth: cap request and response body throughput (bytes/s).
 * - status: answer with an S3 XML error (500 InternalError, 503 SlowDown + Retry-After, 429, 408, 403 …) without
 *   forwarding.
 * - drop-response: forward, let s3rver finish, then destroy the client socket (the write happened; the client
 *   cannot know).
 * - truncate-body: forward, send the real headers (full Content-Length) and only part of the body, then reset.
 *
 * Tests use the recorder's events as barriers (`waitFor`) instead of sleeping.
 * @module
 */
import crypto from 'node:crypto'
import { EventEmitter } from 'node:events'
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { Transform, type TransformCallback } from 'node:stream'

/** FaultAction says what a matching rule does to a request. */
export type FaultAction =
  | { readonly type: 'refuse'; readonly mode?: 'reset' | 'listener' }
  | { readonly type: 'blackhole' }
  | { readonly type: 'latency'; readonly ms: number }
  | { readonly type: 'bandwidth'; readonly bytesPerSec: number }
  | { readonly type: 'status'; readonly status: number; readonly code: string; readonly message?: string; readonly retryAfterS?: number }
  | { readonly type: 'drop-response' }
  | { readonly type: 'truncate-body'; readonly keepBytes?: number; readonly keepFraction?: number }

/** FaultRule selects requests and names the action. Unset matchers match everything. */
export interface FaultRule {
  readonly action: FaultAction
  /** method is an HTTP method or a list of them (upper case). */
  readonly method?: string | readonly string[]
  /** keyRe is tested against the decoded object key ('' for bucket-level requests such as LIST). */
  readonly keyRe?: RegExp
  /** query requires these query parameters to be present (e.g. ['uploadId']). */
  readonly queryHas?: readonly string[]
  /** percent of matching requests affected, 0..100. Default 100. */
  readonly percent?: number
  /** count is the most requests this rule affects; undefined = unlimited. */
  readonly count?: number
  /** from/until: absolute window in epoch ms (inclusive/exclusive). */
  readonly from?: number
  readonly until?: number
  /** afterMs/forMs: the same window relative to when the rule is added. */
  readonly afterMs?: number
  readonly forMs?: number
  /** label names the rule in the recorder. */
  readonly label?: string
}

/** RuleHandle is a rule added to a proxy. */
export interface RuleHandle {
  readonly id: number
  readonly label: string
  /** hits counts the requests the rule affected so far. */
  readonly hits: number
  /** remove takes the rule out; idempotent. */
  remove(): void
}

/** RecordedRequest is one request as the proxy saw it. Mutable until `done` is true. */
export interface RecordedRequest {
  readonly id: number
  readonly method: string
  /** url is the raw request target (path and query). */
  readonly url: string
  readonly bucket: string
  /** key is the decoded object key ('' for bucket-level requests). */
  readonly key: string
  readonly query: Readonly<Record<string, string>>
  readonly reqHeaders: Readonly<http.IncomingHttpHeaders>
  readonly startedAt: number
  /** action is what the proxy did: 'forward' or the terminal fault applied. */
  action: 'forward' | 'refuse' | 'blackhole' | 'status' | 'drop-response' | 'truncate-body'
  /** rules lists the labels of every rule that affected the request (terminal and modifiers). */
  rules: string[]
  /** upstreamStatus is s3rver's status when the request was forwarded. */
  upstreamStatus?: number
  /** status is what the client received (undefined when it received no complete response). */
  status?: number
  resHeaders?: http.IncomingHttpHeaders | http.OutgoingHttpHeaders
  reqBytes: number
  resBytes: number
  /** body is the request body, kept when recordBodies is on (PUT and POST only). */
  body?: Buffer
  endedAt?: number
  /** delivered: the client received the complete response. */
  delivered: boolean
  done: boolean
  error?: string
}

/** FaultProxyOptions configures a proxy. */
export interface FaultProxyOptions {
  /** target is the upstream endpoint, e.g. `http://127.0.0.1:4568`. */
  readonly target: string
  /** recordBodies keeps PUT/POST request bodies in the recorder (memory grows with uploads). Default false. */
  readonly recordBodies?: boolean
  /** seed makes percentage decisions reproducible. Default: random. */
  readonly seed?: number
}

/** FaultProxy is a running proxy. */
export interface FaultProxy extends EventEmitter {
  readonly endpoint: string
  readonly port: number
  /** addRule activates a rule now; rules are evaluated in insertion order. */
  addRule(rule: FaultRule): RuleHandle
  /** clearRules removes every rule. */
  clearRules(): void
  /** requests returns the recorder's entries (live objects). */
  requests(): readonly RecordedRequest[]
  /** clearRecords forgets every completed request (long soaks bound the recorder's memory this way). */
  clearRecords(): void
  /** waitFor resolves with the first completed request (from index `since`) that matches pred. */
  waitFor(pred: (r: RecordedRequest) => boolean, opts?: { readonly timeoutMs?: number; readonly since?: number; readonly started?: boolean }): Promise<RecordedRequest>
  /** maxRate returns the most requests started within any windowMs-long interval of [from, to). */
  maxRate(opts?: { readonly from?: number; readonly to?: number; readonly windowMs?: number; readonly pred?: (r: RecordedRequest) => boolean }): number
  /** closeListener refuses new connections (ECONNREFUSED) and resets open ones until openListener. */
  closeListener(): Promise<void>
  openListener(): Promise<void>
  /** releaseBlackholed destroys the sockets of requests held by blackhole rules (the client sees a reset). */
  releaseBlackholed(): void
  stop(): Promise<void>
}

const S3_MESSAGES: Readonly<Record<string, string>> = {
  InternalError: 'We encountered an internal error. Please try again.',
  SlowDown: 'Please reduce your request rate.',
  ServiceUnavailable: 'Service is unable to handle request.',
  TooManyRequests: 'Too many requests.',
  RequestTimeout: 'Your socket connection to the server was not read from or written to within the timeout period.',
  RequestCanceled: 'The request was canceled.',
  AccessDenied: 'Access Denied',
  ExpiredToken: 'The provided token has expired.',
}

/** s3ErrorXml renders an S3 error document. */
export function s3ErrorXml(code: string, message: string, resource: string, requestId: string): string {
  const esc = (s: string): string => s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`)
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${esc(code)}</Code><Message>${esc(message)}</Message><Resource>${esc(resource)}</Resource><RequestId>${requestId}</RequestId><HostId>fault-proxy</HostId></Error>`
}

interface ActiveRule {
  readonly id: number
  readonly label: string
  readonly rule: FaultRule
  readonly from: number
  readonly until: number
  hits: number
  removed: boolean
}

const HOP_HEADERS = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'expect', 'te', 'trailer'])

/** startFaultProxy listens on 127.0.0.1 (a free port) and forwards to opts.target. */
export async function startFaultProxy(opts: FaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(opts.target)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
  const emitter = new EventEmitter() as FaultProxy
  emitter.setMaxListeners(0)
  const records: RecordedRequest[] = []
  const rules: ActiveRule[] = []
  const sockets = new Set<Socket>()
  const held = new Set<Socket>()
  let nextRuleId = 1
  let nextReqId = 1
  const rand = mulberry32(opts.seed ?? crypto.randomInt(2 ** 31))
  let stopped = false
  let listening = false
  let port = 0

  const server = http.createServer((req, res) => void handle(req, res))
  server.keepAliveTimeout = 5000
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  server.on('clientError', (_err, s) => s.destroy())

  const listen = (p: number): Promise<void> =>
    new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(p, '127.0.0.1', () => {
        server.off('error', reject)
        listening = true
        port = (server.address() as AddressInfo).port
        resolve()
      })
    })
  await listen(0)

  const closeListener = async (): Promise<void> => {
    if (!listening) return
    listening = false
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    for (const s of sockets) s.destroy()
    await closed
  }
  const openListener = async (): Promise<void> => {
    if (listening || stopped) return
    for (let attempt = 0; ; attempt++) {
      try {
        await listen(port)
        return
      } catch (err) {
        if (attempt > 50) throw new Error(`fault proxy: cannot reopen port ${port}`, { cause: err })
        await new Promise((r) => setTimeout(r, 20))
      }
    }
  }

  // Listener-mode refuse rules are time based: a ticker opens and closes the listener as they come and go.
  let toggling = Promise.resolve()
  /** manualOpen is false while closeListener() (not a rule) holds the listener closed. */
  let manualOpen = true
  const listenerTick = (): void => {
    const now = Date.now()
    const refuse = rules.some((r) => !r.removed && r.rule.action.type === 'refuse' && r.rule.action.mode === 'listener' && now >= r.from && now < r.until)
    if (refuse && listening) {
      for (const r of rules) if (r.rule.action.type === 'refuse' && r.rule.action.mode === 'listener' && now >= r.from && now < r.until) r.hits++
      toggling = toggling.then(closeListener).catch(() => {})
    } else if (!refuse && !listening && !stopped && manualOpen) toggling = toggling.then(openListener).catch(() => {})
  }
  const ticker = setInterval(listenerTick, 10)
  ticker.unref()

  function matchRules(rec: RecordedRequest): { terminal: ActiveRule | undefined; modifiers: ActiveRule[] } {
    const now = Date.now()
    let terminal: ActiveRule | undefined
    const modifiers: ActiveRule[] = []
    for (const r of rules) {
      if (r.removed || now < r.from || now >= r.until) continue
      const m = r.rule
      if (m.action.type === 'refuse' && m.action.mode === 'listener') continue
      if (m.count !== undefined && r.hits >= m.count) continue
      if (m.method !== undefined) {
        const methods = typeof m.method === 'string' ? [m.method] : m.method
        if (!methods.includes(rec.method)) continue
      }
      if (m.keyRe && !m.keyRe.test(rec.key)) continue
      if (m.queryHas && !m.queryHas.every((q) => q in rec.query)) continue
      const isModifier = m.action.type === 'latency' || m.action.type === 'bandwidth'
      if (!isModifier && terminal) continue
      if (m.percent !== undefined && m.percent < 100 && rand() * 100 >= m.percent) continue
      r.hits++
      if (isModifier) modifiers.push(r)
      else terminal = r
    }
    return { terminal, modifiers }
  }

  function finish(rec: RecordedRequest, patch: Partial<RecordedRequest>): void {
    if (rec.done) return
    Object.assign(rec, patch, { done: true, endedAt: Date.now() })
    emitter.emit('response', rec)
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', 'http://proxy')
    const parts = u.pathname.split('/')
    const bucket = decodeURIComponent(parts[1] ?? '')
    const key = decodeURIComponent(parts.slice(2).join('/'))
    const query: Record<string, string> = {}
    for (const [k, v] of u.searchParams) query[k] = v
    const rec: RecordedRequest = {
      id: nextReqId++,
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      bucket,
      key,
      query,
      reqHeaders: { ...req.headers },
      startedAt: Date.now(),
      action: 'forward',
      rules: [],
      reqBytes: 0,
      resBytes: 0,
      delivered: false,
      done: false,
    }
    records.push(rec)
    const { terminal, modifiers } = matchRules(rec)
    rec.rules = [...modifiers.map((r) => r.label), ...(terminal ? [terminal.label] : [])]
    const t = terminal?.rule.action.type
    if (t === 'refuse' || t === 'blackhole' || t === 'status') rec.action = t
    emitter.emit('request', rec)
    const keepBody = opts.recordBodies === true && (rec.method === 'PUT' || rec.method === 'POST')
    const chunks: Buffer[] = []
    const onReqData = (c: Buffer): void => {
      rec.reqBytes += c.length
      if (keepBody) chunks.push(c)
    }
    const bodyDone = (): void => {
      if (keepBody) rec.body = Buffer.concat(chunks)
    }
    res.on('close', () => {
      if (!rec.done) finish(rec, { error: rec.error ?? 'client connection closed' })
    })

    let latencyMs = 0
    let bytesPerSec = 0
    for (const m of modifiers) {
      const a = m.rule.action
      if (a.type === 'latency') latencyMs += a.ms
      if (a.type === 'bandwidth') bytesPerSec = bytesPerSec === 0 ? a.bytesPerSec : Math.min(bytesPerSec, a.bytesPerSec)
    }
    const action = terminal?.rule.action
    if (action?.type === 'refuse') {
      rec.action = 'refuse'
      req.socket.destroy()
      finish(rec, { error: 'refused (reset)' })
      return
    }
    if (action?.type === 'blackhole') {
      rec.action = 'blackhole'
      const sock = req.socket
      held.add(sock)
      sock.once('close', () => held.delete(sock))
      req.on('data', onReqData)
      req.on('end', bodyDone)
      return // never answered; finished by 'close' when the client gives up or releaseBlackholed
    }
    if (latencyMs > 0) await new Promise((r) => setTimeout(r, latencyMs))
    if (action?.type === 'status') {
      rec.action = 'status'
      req.on('data', onReqData)
      await new Promise<void>((resolve) => {
        req.on('end', resolve)
        req.on('close', resolve)
      })
      bodyDone()
      const requestId = crypto.randomBytes(8).toString('hex').toUpperCase()
      const body = rec.method === 'HEAD' ? '' : s3ErrorXml(action.code, action.message ?? S3_MESSAGES[action.code] ?? action.code, `/${bucket}/${key}`, requestId)
      const headers: http.OutgoingHttpHeaders = {
        'content-type': 'application/xml',
        'content-length': Buffer.byteLength(body),
        'x-amz-request-id': requestId,
        ...(action.retryAfterS !== undefined ? { 'retry-after': String(action.retryAfterS) } : {}),
      }
      res.writeHead(action.status, headers)
      res.end(body, () => finish(rec, { status: action.status, resHeaders: headers, resBytes: Buffer.byteLength(body), delivered: true }))
      return
    }

    // Forward.
    const headers: http.OutgoingHttpHeaders = {}
    for (const [k, v] of Object.entries(req.headers)) if (!HOP_HEADERS.has(k) && v !== undefined) headers[k] = v
    const upReq = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent })
    upReq.on('error', (err) => {
      rec.error = `upstream: ${err.message}`
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' })
        res.end('fault proxy: upstream error')
      } else res.destroy()
      finish(rec, { status: res.headersSent ? undefined : 502 })
    })
    req.on('data', onReqData)
    req.on('end', bodyDone)
    if (bytesPerSec > 0) req.pipe(throttle(bytesPerSec)).pipe(upReq)
    else req.pipe(upReq)
    upReq.on('response', (up) => {
      rec.upstreamStatus = up.statusCode
      rec.resHeaders = { ...up.headers }
      if (action?.type === 'drop-response') {
        rec.action = 'drop-response'
        up.on('data', (c: Buffer) => (rec.resBytes += c.length))
        up.on('end', () => {
          req.socket.destroy()
          finish(rec, { error: 'response dropped after forwarding' })
        })
        up.on('error', () => req.socket.destroy())
        return
      }
      const resHeaders: http.OutgoingHttpHeaders = {}
      for (const [k, v] of Object.entries(up.headers)) if (!HOP_HEADERS.has(k) && v !== undefined) resHeaders[k] = v
      if (action?.type === 'truncate-body' && rec.method === 'GET' && (up.statusCode ?? 0) < 300) {
        rec.action = 'truncate-body'
        const total = Number(up.headers['content-length'] ?? 0)
        const keep = Math.max(0, Math.min(total - 1, action.keepBytes ?? Math.floor(total * (action.keepFraction ?? 0.5))))
        res.writeHead(up.statusCode ?? 200, resHeaders)
        let sent = 0
        up.on('data', (c: Buffer) => {
          if (sent >= keep) return
          const part = c.subarray(0, keep - sent)
          sent += part.length
          rec.resBytes += part.length
          res.write(part)
        })
        up.on('end', () => {
          // Let the kept bytes reach the client (the write callback runs once they are flushed), then reset.
          res.write(Buffer.alloc(0), () =>
            setTimeout(() => {
              req.socket.destroy()
              finish(rec, { error: `body truncated at ${sent} of ${total} bytes` })
            }, 5),
          )
        })
        return
      }
      res.writeHead(up.statusCode ?? 502, resHeaders)
      const src = bytesPerSec > 0 ? up.pipe(throttle(bytesPerSec)) : up
      src.on('data', (c: Buffer) => (rec.resBytes += c.length))
      src.pipe(res)
      res.on('finish', () => finish(rec, { status: up.statusCode, delivered: true }))
    })
    req.on('aborted', () => upReq.destroy())
  }

  Object.assign(emitter, {
    endpoint: '',
    addRule(rule: FaultRule): RuleHandle {
      const now = Date.now()
      const id = nextRuleId++
      const from = rule.from ?? now + (rule.afterMs ?? 0)
      const until = rule.until ?? (rule.forMs !== undefined ? from + rule.forMs : Infinity)
      const active: ActiveRule = { id, label: rule.label ?? `${rule.action.type}#${id}`, rule, from, until, hits: 0, removed: false }
      rules.push(active)
      if (rule.action.type === 'refuse' && rule.action.mode === 'listener') listenerTick()
      return {
        id,
        label: active.label,
        get hits() {
          return active.hits
        },
        remove() {
          if (active.removed) return
          active.removed = true
          rules.splice(rules.indexOf(active), 1)
          listenerTick()
        },
      }
    },
    clearRules(): void {
      for (const r of rules) r.removed = true
      rules.length = 0
      listenerTick()
    },
    requests: () => records,
    clearRecords(): void {
      const pending = records.filter((r) => !r.done)
      records.length = 0
      records.push(...pending)
    },
    waitFor(pred: (r: RecordedRequest) => boolean, o: { timeoutMs?: number; since?: number; started?: boolean } = {}): Promise<RecordedRequest> {
      const ready = (r: RecordedRequest): boolean => (o.started || r.done) && r.id > (o.since ?? 0) && pred(r)
      const found = records.find(ready)
      if (found) return Promise.resolve(found)
      const ev = o.started ? 'request' : 'response'
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          emitter.off(ev, on)
          reject(new Error(`fault proxy: timed out after ${o.timeoutMs ?? 20_000} ms waiting for a request (${records.length} recorded)`))
        }, o.timeoutMs ?? 20_000)
        const on = (r: RecordedRequest): void => {
          if (!ready(r)) return
          clearTimeout(timer)
          emitter.off(ev, on)
          resolve(r)
        }
        emitter.on(ev, on)
      })
    },
    maxRate(o: { from?: number; to?: number; windowMs?: number; pred?: (r: RecordedRequest) => boolean } = {}): number {
      const w = o.windowMs ?? 1000
      const times = records
        .filter((r) => r.startedAt >= (o.from ?? 0) && r.startedAt < (o.to ?? Infinity) && (o.pred ? o.pred(r) : true))
        .map((r) => r.startedAt)
        .sort((a, b) => a - b)
      let best = 0
      for (let i = 0, j = 0; i < times.length; i++) {
        while (times[i]! - times[j]! >= w) j++
        best = Math.max(best, i - j + 1)
      }
      return best
    },
    async closeListener(): Promise<void> {
      manualOpen = false
      await (toggling = toggling.then(closeListener))
    },
    async openListener(): Promise<void> {
      manualOpen = true
      await (toggling = toggling.then(openListener))
    },
    releaseBlackholed(): void {
      for (const sock of held) sock.destroy()
      held.clear()
    },
    async stop(): Promise<void> {
      if (stopped) return
      stopped = true
      clearInterval(ticker)
      rules.length = 0
      for (const sock of held) sock.destroy()
      listening = false
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
        for (const s of sockets) s.destroy()
      })
      agent.destroy()
    },
  })
  Object.defineProperty(emitter, 'endpoint', { get: () => `http://127.0.0.1:${port}` })
  Object.defineProperty(emitter, 'port', { get: () => port })
  return emitter
}

/** throttle passes bytes at most bytesPerSec, in 20 ms slices. */
function throttle(bytesPerSec: number): Transform {
  const slice = Math.max(1, Math.floor(bytesPerSec / 50))
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      let p = 0
      const next = (): void => {
        if (p >= chunk.length) return cb()
        const part = chunk.subarray(p, p + slice)
        p += part.length
        this.push(part)
        setTimeout(next, 20)
      }
      next()
    },
  })
}

/** mulberry32 is a tiny seeded PRNG returning [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** isPut/isWalPut/isSnapshotPut are recorder predicates for the v0.3 layout. */
export const isPut = (r: RecordedRequest): boolean => r.method === 'PUT'
export const isWalPut = (r: RecordedRequest): boolean => r.method === 'PUT' && /\/wal\/[0-9a-f]{8}_[0-9a-f]{8}\.wal\.lz4$/.test(r.key)
export const isSnapshotPut = (r: RecordedRequest): boolean =>
  (r.method === 'PUT' && /\/snapshots\/[0-9a-f]{8}\.snapshot\.lz4$/.test(r.key) && !('partNumber' in r.query)) ||
  (r.method === 'POST' && /\/snapshots\/[0-9a-f]{8}\.snapshot\.lz4$/.test(r.key) && 'uploadId' in r.query)
/** succeeded: the client received a complete 2xx response. */
export const succeeded = (r: RecordedRequest): boolean => r.delivered && r.status !== undefined && r.status >= 200 && r.status < 300
