/** Dashboard routes without a socket (`app.request`), over a fake StatusSource. */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import vm from 'node:vm'
import { Registry } from 'prom-client'
import { createApp, CONTENT_SECURITY_POLICY, normalizeHost, type DashboardOptions } from '../../src/dashboard/app.js'
import { APP_CSS, APP_JS, INDEX_HTML } from '../../src/dashboard/assets.js'
import type { ClientRow } from '../../src/dashboard/rows.js'
import type { Pos } from '../../src/types.js'
import { FakeSource, makeClient } from '../helpers/fake-source.js'

const A = '7b0c6f5e-2a1d-4c3b-9e8f-0a1b2c3d4e5f'
const B = '01234567-89ab-cdef-0123-456789abcdef'
const HOSTS = ['localhost', '127.0.0.1', '[::1]']
const H = { host: '127.0.0.1:8080' }
const TOKEN = 's3cr3t-T0KEN-sentinel-4f9a'

function setup(opts: Partial<DashboardOptions> = {}) {
  const src = new FakeSource()
  src.set({ id: A })
  const app = createApp(src, { allowedHosts: HOSTS, collectProcessMetrics: false, ...opts })
  const get = (path: string, headers: Record<string, string> = {}) => app.request(path, { headers: { ...H, ...headers } })
  const post = (path: string, headers: Record<string, string> = {}, body?: string) =>
    app.request(path, { method: 'POST', headers: { ...H, ...headers }, body })
  return { src, app, get, post }
}

class Deferred<T> {
  resolve!: (v: T) => void
  readonly promise = new Promise<T>((r) => (this.resolve = r))
}

/** SseReader parses a text/event-stream body into events and comments, with a timeout per read. */
class SseReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>
  readonly #dec = new TextDecoder()
  #buf = ''
  #pending: ReturnType<ReadableStreamDefaultReader<Uint8Array>['read']> | undefined
  constructor(res: Response) {
    this.#reader = res.body!.getReader()
  }
  /** next returns the next block (event or comment) within timeoutMs. */
  async next(timeoutMs = 2000): Promise<{ event?: string; data?: string; comment?: string; retry?: string }> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const end = this.#buf.indexOf('\n\n')
      if (end >= 0) {
        const block = this.#buf.slice(0, end)
        this.#buf = this.#buf.slice(end + 2)
        const out: Record<string, string> = {}
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) out.comment = line.slice(1).trim()
          else {
            const i = line.indexOf(': ')
            out[line.slice(0, i)] = line.slice(i + 2)
          }
        }
        return out
      }
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`no SSE block within ${timeoutMs} ms`)
      let timer: NodeJS.Timeout | undefined
      // A read outlives a timeout: keep it for the next call, so no chunk is lost.
      this.#pending ??= this.#reader.read()
      const r = await Promise.race([
        this.#pending,
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no SSE block within ${timeoutMs} ms`)), left))),
      ]).finally(() => clearTimeout(timer))
      this.#pending = undefined
      if (r.done) throw new Error('stream ended')
      this.#buf += this.#dec.decode(r.value, { stream: true })
    }
  }
  /** event skips comments and retry lines and returns the next named event's parsed data. */
  async event<T>(name: string, timeoutMs = 2000): Promise<T> {
    for (;;) {
      const b = await this.next(timeoutMs)
      if (b.event === undefined) continue
      assert.equal(b.event, name, `next event is ${b.event}, want ${name}`)
      return JSON.parse(b.data!) as T
    }
  }
  cancel(): Promise<void> {
    return this.#reader.cancel().catch(() => {})
  }
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

describe('JSON API', () => {
  test('GET /api/clients lists flat rows with epoch-ms times', async () => {
    const { get, src } = setup()
    src.set({ id: B, state: 'waiting', replicator: null, replica: '' })
    const res = await get('/api/clients')
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/)
    assert.equal(res.headers.get('cache-control'), 'no-store')
    const rows = (await res.json()) as ClientRow[]
    assert.deepEqual(
      rows.map((r) => r.id),
      [B, A],
      'sorted by id, as the source lists them',
    )
    const a = rows.find((r) => r.id === A)!
    for (const k of ['id', 'state', 'dbSizeBytes', 'walSizeBytes', 'generation', 'index', 'offset', 'lagMs', 'lastSyncAt', 'lastSnapshotAt', 'bytesShipped', 'objectsWritten', 'lastError', 'dir', 'replica']) {
      assert.ok(k in a, `row has ${k}`)
    }
    const info = src.client(A)!
    assert.equal(a.generation, info.replicator!.generation)
    assert.equal(a.offset, info.replicator!.offset)
    assert.equal(typeof a.lastSyncAt, 'number', 'times are epoch ms')
    assert.equal(a.lastSyncAt, info.replicator!.lastSyncAt)
    assert.equal(a.restoreCommand, `litestream restore -o ${A}.db s3://bucket/databases/${A}`)
    const b = rows.find((r) => r.id === B)!
    assert.equal(b.generation, '', 'no replicator: empty generation')
    assert.equal(b.lagMs, null, 'no replicator: lag unknown')
    assert.equal(b.lastSyncAt, null)
    assert.equal(b.restoreCommand, null, 'no replica: no restore command')
  })

  test('restore command: quoted for the shell; opts.restoreCommand overrides it', async () => {
    const { get, src } = setup()
    src.set({ id: A, replica: `file:///data/my replica/databases/${A}` })
    const row = (await (await get(`/api/clients/${A}`)).json()) as ClientRow
    assert.equal(row.restoreCommand, `litestream restore -o ${A}.db 'file:///data/my replica/databases/${A}'`)
    const custom = setup({ restoreCommand: (c) => `restore ${c.id}` })
    assert.equal(((await (await custom.get(`/api/clients/${A}`)).json()) as ClientRow).restoreCommand, `restore ${A}`)
  })

  test('GET /api/clients/:id: 200, 400 malformed, 404 unknown', async () => {
    const { get } = setup()
    const ok = await get(`/api/clients/${A}`)
    assert.equal(ok.status, 200)
    assert.equal(((await ok.json()) as ClientRow).id, A)
    for (const bad of ['NOT-A-GUID', A.toUpperCase(), `${A}x`, A.slice(1), '%3Cscript%3E', '..%2f..%2fetc%2fpasswd']) {
      const res = await get(`/api/clients/${bad}`)
      assert.equal(res.status, 400, bad)
      assert.match(((await res.json()) as { error: string }).error, /malformed client id/)
    }
    const unknown = await get(`/api/clients/${B}`)
    assert.equal(unknown.status, 404)
    assert.deepEqual(await unknown.json(), { error: 'unknown client' })
  })

  test('POST sync answers {pos} only once the source resolved (acknowledgement barrier)', async () => {
    const { post, src } = setup()
    const gate = new Deferred<void>()
    src.syncGate = gate.promise
    src.syncResult = { generation: 'fedcba9876543210', index: 7, offset: 32 }
    let answered = false
    const pending = Promise.resolve(post(`/api/clients/${A}/sync`, { 'content-type': 'application/json' }, '{}')).then((r) => {
      answered = true
      return r
    })
    await new Promise((r) => setTimeout(r, 30))
    assert.equal(answered, false, 'no answer before the sync resolved')
    assert.deepEqual(src.syncCalls, [A])
    gate.resolve()
    const res = await pending
    assert.equal(res.status, 200)
    assert.deepEqual(await res.json(), { id: A, pos: { generation: 'fedcba9876543210', index: 7, offset: 32 } })
  })

  test('POST sync and snapshot: 400, 404, 409 not replicating, 500 with a JSON error', async () => {
    const { post, src } = setup()
    const snap = await post(`/api/clients/${A}/snapshot`)
    assert.equal(snap.status, 200, 'no body at all is fine')
    assert.deepEqual(((await snap.json()) as { pos: Pos }).pos, src.syncResult)
    assert.deepEqual(src.snapshotCalls, [A])
    assert.equal((await post('/api/clients/x/sync')).status, 400)
    assert.equal((await post(`/api/clients/${B}/sync`)).status, 404)
    assert.equal((await post(`/api/clients/${B}/snapshot`)).status, 404)
    src.syncResult = undefined
    const conflict = await post(`/api/clients/${A}/sync`)
    assert.equal(conflict.status, 409)
    assert.deepEqual(await conflict.json(), { error: 'client is not replicating' })
    src.syncError = new Error('put object: <b>SlowDown</b>', { cause: new Error('503') })
    for (const what of ['sync', 'snapshot']) {
      const res = await post(`/api/clients/${A}/${what}`)
      assert.equal(res.status, 500)
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/)
      const text = await res.text()
      assert.ok(!text.includes('<b>'), 'markup in error text is escaped in the JSON')
      assert.deepEqual(JSON.parse(text), { error: `${what} failed: put object: <b>SlowDown</b>: 503` })
    }
    assert.equal(src.syncCalls.length + src.snapshotCalls.length, 4, 'only valid, known ids reached the source')
  })

  test('GET-only routes refuse other methods; unknown routes are JSON 404', async () => {
    const { app, get } = setup()
    const res = await app.request('/api/clients', { method: 'DELETE', headers: H })
    assert.equal(res.status, 404)
    const missing = await get('/nope')
    assert.equal(missing.status, 404)
    assert.deepEqual(await missing.json(), { error: 'not found' })
  })
})

describe('security', () => {
  test('H2 CSRF: cross-site POSTs are refused with 403 and change nothing; bodies must be JSON (415)', async () => {
    const { post, src } = setup()
    const url = `/api/clients/${A}/sync`
    const refused: Record<string, string>[] = [
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
      { origin: 'http://evil.example' },
      { origin: 'http://127.0.0.1:9999' },
      { origin: 'null' },
      { origin: 'http://127.0.0.1:8080', 'sec-fetch-site': 'cross-site' },
    ]
    for (const h of refused) {
      const res = await post(url, h)
      assert.equal(res.status, 403, JSON.stringify(h))
    }
    assert.equal((await post(url, { 'content-type': 'text/plain' }, 'x')).status, 415)
    assert.equal((await post(url, { 'content-type': 'application/x-www-form-urlencoded' }, 'a=b')).status, 415)
    assert.equal((await post(url, { 'content-type': 'multipart/form-data; boundary=x' }, '--x--')).status, 415)
    assert.equal((await post(url, {}, 'no type')).status, 415)
    assert.deepEqual(src.syncCalls, [], 'no refused request reached the source')
    // The page's own fetch: same origin, no body.
    assert.equal((await post(url, { origin: 'http://127.0.0.1:8080', 'sec-fetch-site': 'same-origin' })).status, 200)
    assert.equal((await post(url, { 'content-type': 'application/json; charset=utf-8' }, '{}')).status, 200)
    assert.deepEqual(src.syncCalls, [A, A])
  })

  test('H2 DNS rebinding: a Host we do not serve is 421 (port ignored, IPv6 brackets optional)', async () => {
    const { app } = setup()
    for (const host of ['evil.example', 'evil.example:8080', '127.0.0.2', 'localhost.evil.example', '[::2]:8080']) {
      const res = await app.request('/api/clients', { headers: { host } })
      assert.equal(res.status, 421, host)
      assert.equal(res.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY)
    }
    for (const host of ['localhost', 'LOCALHOST:8080', '127.0.0.1:1', '[::1]:8080', '[::1]']) {
      assert.equal((await app.request('/api/clients', { headers: { host } })).status, 200, host)
    }
    assert.equal((await app.request('/healthz', { headers: { host: 'evil.example' } })).status, 200, '/healthz is for probes')
    assert.equal(normalizeHost('[::1]:80'), '::1')
    assert.equal(normalizeHost('::1'), '::1')
    assert.equal(normalizeHost('Example.COM:443'), 'example.com')
    assert.throws(() => createApp(new FakeSource(), { allowedHosts: [] }), /allowedHosts/)
  })

  test('H2 token: every route but /healthz needs Bearer or the cookie set by /?token=; 401 otherwise', async () => {
    const { get, post, src } = setup({ token: TOKEN })
    const seen: string[] = []
    const record = async (res: Response): Promise<Response> => {
      seen.push([...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n'), await res.clone().text())
      return res
    }
    assert.equal((await record(await get('/healthz'))).status, 200)
    for (const p of ['/', '/api/clients', `/api/clients/${A}`, '/api/events', '/metrics', '/readyz', '/assets/app.js', '/assets/app.css']) {
      const res = await record(await get(p))
      assert.equal(res.status, 401, p)
      assert.equal(res.headers.get('www-authenticate'), 'Bearer')
    }
    assert.equal((await record(await post(`/api/clients/${A}/sync`))).status, 401)
    assert.deepEqual(src.syncCalls, [])
    for (const auth of ['Bearer nope', `Bearer ${TOKEN}x`, `Basic ${TOKEN}`, TOKEN, 'Bearer ']) {
      assert.equal((await record(await get('/api/clients', { authorization: auth }))).status, 401, auth)
    }
    assert.equal((await record(await get('/api/clients', { authorization: `Bearer ${TOKEN}` }))).status, 200)
    assert.equal((await record(await get('/api/clients', { cookie: `token=${TOKEN}` }))).status, 401, 'the raw token is not a valid cookie')
    assert.equal((await record(await get(`/?token=wrong`))).status, 401)

    const login = await record(await get(`/?token=${encodeURIComponent(TOKEN)}`))
    assert.equal(login.status, 303)
    assert.equal(login.headers.get('location'), '/', 'the token leaves the address bar')
    const setCookie = login.headers.get('set-cookie') ?? ''
    assert.match(setCookie, /^token=[^;]+/)
    assert.match(setCookie, /HttpOnly/)
    assert.match(setCookie, /SameSite=Strict/)
    const cookie = setCookie.split(';')[0]!
    for (const p of ['/', '/api/clients', '/metrics', '/assets/app.js']) {
      assert.equal((await record(await get(p, { cookie }))).status, 200, `${p} with the cookie`)
    }
    assert.equal((await record(await post(`/api/clients/${A}/sync`, { cookie }))).status, 200)
    assert.equal((await record(await get('/api/clients', { cookie: 'token=forged' }))).status, 401)
    for (const s of seen) assert.ok(!s.includes(TOKEN), `the token is never echoed:\n${s.slice(0, 300)}`)
  })

  test('H4 security headers on every response, a CSP without inline script', async () => {
    const { get, post } = setup()
    const responses = [
      await get('/'),
      await get('/assets/app.js'),
      await get('/api/clients'),
      await get(`/api/clients/${B}`),
      await get('/nope'),
      await get('/metrics'),
      await get('/healthz'),
      await get('/readyz'),
      await post(`/api/clients/${A}/sync`, { origin: 'http://evil.example' }),
    ]
    for (const res of responses) {
      assert.equal(res.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY, res.url)
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
      assert.equal(res.headers.get('referrer-policy'), 'no-referrer')
      assert.equal(res.headers.get('x-frame-options'), 'DENY')
    }
    assert.match(CONTENT_SECURITY_POLICY, /default-src 'self'/)
    assert.match(CONTENT_SECURITY_POLICY, /script-src 'self';/)
    assert.doesNotMatch(CONTENT_SECURITY_POLICY, /unsafe-inline|unsafe-eval|\*/)
    assert.doesNotMatch(CONTENT_SECURITY_POLICY, /https?:/, 'no CDN')
  })

  test('H4 XSS: error text is JSON-escaped data; the page never parses data as HTML', async () => {
    const { get, src } = setup()
    const evil = '<script>alert(1)</script><img src=x onerror=alert(2)> & "quotes"'
    src.set({ id: A, lastError: evil, dir: '/data/<b>dir</b>' })
    for (const p of ['/api/clients', `/api/clients/${A}`]) {
      const raw = await (await get(p)).text()
      assert.ok(!raw.includes('<'), `${p} carries no raw "<"`)
      assert.ok(raw.includes('\\u003cscript\\u003e'))
    }
    const row = (await (await get(`/api/clients/${A}`)).json()) as ClientRow
    assert.equal(row.lastError, evil, 'the value survives the escaping')
    assert.equal(row.dir, '/data/<b>dir</b>')

    // The page script: no HTML sinks, no eval, valid JavaScript; the shell has no inline script or style.
    assert.doesNotMatch(APP_JS, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function/)
    assert.match(APP_JS, /textContent/)
    assert.doesNotThrow(() => new vm.Script(APP_JS, { filename: 'app.js' }))
    assert.doesNotMatch(APP_JS, /setAttribute\('style'|\.style\s*=/, 'no style attributes (CSP style-src)')
    assert.doesNotMatch(APP_JS, /https?:\/\/(?!www\.w3\.org\/2000\/svg)/, 'no external URLs')
    const scripts = [...INDEX_HTML.matchAll(/<script\b[^>]*>/g)].map((m) => m[0])
    assert.deepEqual(scripts, ['<script src="/assets/app.js" defer>'])
    assert.doesNotMatch(INDEX_HTML, /\sstyle=|<style|\son[a-z]+=/i, 'no inline style or handlers')
    assert.doesNotMatch(APP_CSS, /@import|url\(/, 'no external CSS')
  })

  test('H5 path traversal and unknown routes: 400/404, nothing served from disk', async () => {
    const { get } = setup()
    for (const p of ['/assets/..%2f..%2fetc/passwd', '/assets/%2e%2e/%2e%2e/etc/passwd', '/static/..%2f..%2fetc/passwd', '/assets/..%252fapp.ts', '/api/dbs/../', '/debug/pprof', '/api/clients/../../etc/passwd', '/src/dashboard/app.ts']) {
      const res = await get(p)
      assert.ok(res.status === 404 || res.status === 400, `${p}: ${res.status}`)
      assert.ok(!(await res.text()).includes('root:'), p)
    }
    assert.equal((await get(`/api/clients/${A}%2f..%2f..`)).status, 400)
  })
})

describe('page, probes and metrics', () => {
  test('GET / and the assets: right types, no CDN', async () => {
    const { get } = setup()
    const page = await get('/')
    assert.equal(page.status, 200)
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/)
    const html = await page.text()
    assert.match(html, /<link rel="stylesheet" href="\/assets\/app.css">/)
    assert.doesNotMatch(html, /https?:\/\/(?!www\.w3\.org)/)
    assert.match((await get('/assets/app.js')).headers.get('content-type') ?? '', /^text\/javascript/)
    assert.match((await get('/assets/app.css')).headers.get('content-type') ?? '', /^text\/css/)
    assert.match((await get('/assets/favicon.svg')).headers.get('content-type') ?? '', /^image\/svg\+xml/)
  })

  test('/healthz always 200; /readyz 503 until ready', async () => {
    let ready = false
    const { get } = setup({ ready: () => ready })
    assert.equal((await get('/healthz')).status, 200)
    assert.equal(await (await get('/healthz')).text(), 'ok')
    assert.equal((await get('/readyz')).status, 503)
    ready = true
    assert.equal((await get('/readyz')).status, 200)
    assert.equal((await setup().get('/readyz')).status, 200, 'no ready() callback: ready')
  })

  test('/metrics: per-client series labelled by client id, computed once per scrape', async () => {
    const { get, src } = setup()
    src.set({ id: B, state: 'error', lastError: 'boom', replicator: null, dbSizeBytes: 4096 })
    src.setReplicator(A, { lagMs: 1500, bytesShipped: 9000, objectsWritten: 4, generationsStarted: 2 })
    src.set({ id: A, state: 'replicating', drill: { at: 1_700_000_000_000, ok: false, skipped: false, position: null, durationMs: 5, error: 'lz4: bad magic number', compared: false } })
    const before = src.clientsCalls
    const res = await get('/metrics')
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
    const text = await res.text()
    assert.equal(src.clientsCalls - before, 1, 'one listing per scrape, shared by every metric')
    const has = (line: string) => assert.ok(text.split('\n').includes(line), `missing ${line}`)
    has(`litestream_manager_client_lag_seconds{client="${A}"} 1.5`)
    has(`litestream_manager_client_shipped_bytes_total{client="${A}"} 9000`)
    has(`litestream_manager_client_objects_written_total{client="${A}"} 4`)
    has(`litestream_manager_client_generations_started_total{client="${A}"} 2`)
    has(`litestream_manager_client_db_size_bytes{client="${B}"} 4096`)
    has(`litestream_manager_client_wal_size_bytes{client="${A}"} 4152`)
    has(`litestream_manager_client_state{client="${A}",state="replicating"} 1`)
    has(`litestream_manager_client_state{client="${B}",state="error"} 1`)
    has(`litestream_manager_client_error{client="${B}"} 1`)
    has(`litestream_manager_client_error{client="${A}"} 0`)
    has(`litestream_manager_client_last_drill_ok{client="${A}"} 0`)
    has(`litestream_manager_client_last_drill_ok{client="${B}"} -1`)
    has(`litestream_manager_client_last_drill_timestamp_seconds{client="${A}"} 1700000000`)
    has('litestream_manager_clients{state="error"} 1')
    has('litestream_manager_clients{state="replicating"} 1')
    has('litestream_manager_clients{state="idle"} 0')
    assert.ok(!text.includes(`lag_seconds{client="${B}"}`), 'no lag series without a replicator')
    assert.doesNotMatch(text, /^process_cpu/m, 'process metrics off in this setup')

    // A client that goes away leaves no series behind: values come from the source at scrape time.
    src.remove(B)
    const after = await (await get('/metrics')).text()
    assert.ok(!after.includes(B))
  })

  test('/metrics: default process metrics with event-loop delay, on a per-app registry', async () => {
    const registry = new Registry()
    const { get } = setup({ collectProcessMetrics: true, metrics: registry })
    const text = await (await get('/metrics')).text()
    assert.match(text, /^process_cpu_user_seconds_total /m)
    assert.match(text, /^nodejs_eventloop_lag_p99_seconds /m)
    assert.match(text, /^litestream_manager_clients\{state="idle"\} 1/m)
    assert.ok(registry.getSingleMetric('litestream_manager_client_lag_seconds'), 'registered on the given registry')
    // A second app gets its own registry: no "already registered" clash, no global state.
    const other = setup({ collectProcessMetrics: true })
    assert.equal((await other.get('/metrics')).status, 200)
  })
})

describe('GET /api/events (SSE)', () => {
  test('a full snapshot first, then coalesced per-client deltas; removal is a delta with no row', async () => {
    const { get, src } = setup({ eventIntervalMs: 40, now: () => 1_700_000_000_000 })
    const res = await get('/api/events')
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/)
    assert.match(res.headers.get('cache-control') ?? '', /no-store/)
    assert.equal(res.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY)
    const sse = new SseReader(res)
    const first = await sse.next()
    assert.equal(first.retry, '2000')
    const snap = await sse.event<{ at: number; clients: ClientRow[] }>('snapshot')
    assert.equal(snap.at, 1_700_000_000_000)
    assert.deepEqual(
      snap.clients.map((c) => c.id),
      [A],
    )
    assert.equal(snap.clients[0]!.generation, '0123456789abcdef')
    assert.equal(src.listeners.size, 1)

    for (let i = 0; i < 50; i++) src.set({ id: B, dbSizeBytes: i }) // 50 changes inside one interval
    const delta = await sse.event<{ ids: string[]; clients: ClientRow[] }>('delta')
    assert.deepEqual(delta.ids, [B])
    assert.equal(delta.clients.length, 1, 'coalesced per client')
    assert.equal(delta.clients[0]!.dbSizeBytes, 49, 'the latest state')

    src.set({ id: A, state: 'stopped' })
    const stopped = await sse.event<{ ids: string[]; clients: ClientRow[] }>('delta')
    assert.deepEqual(stopped.ids, [A])
    assert.equal(stopped.clients[0]!.state, 'stopped')

    src.remove(B)
    const gone = await sse.event<{ ids: string[]; clients: ClientRow[] }>('delta')
    assert.deepEqual(gone, { at: 1_700_000_000_000, ids: [B], clients: [] })

    await sse.cancel()
    await waitFor(() => src.listeners.size === 0, 'unsubscribe after the subscriber left')
  })

  test('the delta rate is bounded whatever the change rate; one listing per flush for all subscribers', async () => {
    const { get, src } = setup({ eventIntervalMs: 50 })
    const id = (i: number) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`
    for (let i = 0; i < 200; i++) src.set({ id: id(i) })
    const readers = (await Promise.all([get('/api/events'), get('/api/events'), get('/api/events')])).map((r) => new SseReader(r))
    for (const r of readers) await r.event('snapshot')
    // Read every stream while the changes pour in, as browsers do.
    const counts = readers.map(() => 0)
    let stop = false
    const drains = readers.map(async (r, i) => {
      while (!stop) {
        const b = await r.next(100).catch(() => undefined)
        if (b?.event === 'delta') counts[i]!++
      }
    })
    const before = src.clientsCalls
    const t0 = Date.now()
    let n = 0
    while (Date.now() - t0 < 400) {
      src.set({ id: id(n++ % 200), walSizeBytes: n })
      await new Promise((r) => setImmediate(r))
    }
    const elapsed = Date.now() - t0
    const listings = src.clientsCalls - before
    await new Promise((r) => setTimeout(r, 120)) // the last flush
    stop = true
    await Promise.all(drains)
    assert.ok(n > 100, `made ${n} changes`)
    assert.ok(listings <= Math.ceil(elapsed / 50) + 1, `${listings} flushes in ${elapsed} ms for ${n} changes`)
    for (const c of counts) assert.ok(c >= 2 && c <= listings + 1, `${c} deltas for ${listings} flushes`)
    assert.equal(src.listeners.size, 1, 'nobody was dropped')
    await Promise.all(readers.map((r) => r.cancel()))
  })

  test('a comment heartbeat keeps idle streams open', async () => {
    const { get } = setup({ heartbeatIntervalMs: 30 })
    const sse = new SseReader(await get('/api/events'))
    await sse.event('snapshot')
    const b = await sse.next(1000)
    assert.equal(b.comment, 'heartbeat')
    assert.equal(b.event, undefined)
    await sse.cancel()
  })

  test('a slow subscriber is disconnected; the publisher never waits for it and the others keep going', async () => {
    const { app, get, src } = setup({ eventIntervalMs: 5, maxQueuedEventBytes: 64 * 1024 })
    const slow = await get('/api/events') // never read
    const fast = new SseReader(await get('/api/events'))
    await fast.event('snapshot')
    const bigError = 'x'.repeat(8 * 1024)
    let i = 0
    const deadline = Date.now() + 5000
    let slowEnded = false
    const slowReader = slow.body!.getReader()
    while (Date.now() < deadline && src.listeners.size > 0) {
      src.set({ id: A, lastError: `${bigError}${i++}` })
      await new Promise((r) => setTimeout(r, 6))
      await fast.next(1000)
      // Drop one subscriber only: the fast one is still subscribed, so the source keeps a listener.
      const probe = await Promise.race([slowReader.closed.then(() => 'closed', () => 'errored'), new Promise((r) => setImmediate(() => r('open')))])
      if (probe !== 'open') {
        slowEnded = true
        break
      }
    }
    assert.ok(slowEnded, `slow subscriber dropped after ${i} events (bounded queue)`)
    assert.ok(i * bigError.length < 400 * 1024, 'dropped long before its queue grew large')
    // The fast one keeps receiving.
    src.set({ id: A, state: 'error' })
    for (;;) {
      const b = await fast.next(1000)
      if (b.event === 'delta' && (JSON.parse(b.data!) as { clients: ClientRow[] }).clients[0]?.state === 'error') break
    }
    await fast.cancel()
    await waitFor(() => src.listeners.size === 0, 'unsubscribed')
    void app
  })

  test('subscribers are bounded: 503 past maxEventSubscribers', async () => {
    const { get, src } = setup({ maxEventSubscribers: 2 })
    const a = new SseReader(await get('/api/events'))
    const b = new SseReader(await get('/api/events'))
    const c = await get('/api/events')
    assert.equal(c.status, 503)
    await a.cancel()
    await waitFor(() => src.listeners.size === 1, 'one left')
    const d = await get('/api/events')
    assert.equal(d.status, 200)
    await new SseReader(d).cancel()
    await b.cancel()
    await waitFor(() => src.listeners.size === 0, 'all gone')
  })

  test('a source that fails to list: 500 JSON, and no listener is left behind', async () => {
    const { get, src } = setup()
    src.clients = () => {
      throw new Error('listing failed')
    }
    for (const p of ['/api/events', '/api/clients']) {
      const res = await get(p)
      assert.equal(res.status, 500, p)
      assert.deepEqual(await res.json(), { error: 'internal error: listing failed' })
    }
    assert.equal(src.listeners.size, 0)
  })

  test('a snapshot event of 1000 clients is a single data line, and rows keep their JSON escaping', async () => {
    const { get, src } = setup()
    for (let i = 0; i < 1000; i++) src.map.set(`00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, makeClient(`00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, { lastError: 'line1\nline2 <x>' }))
    const sse = new SseReader(await get('/api/events'))
    const block = await (async () => {
      for (;;) {
        const b = await sse.next()
        if (b.event) return b
      }
    })()
    assert.equal(block.event, 'snapshot')
    assert.ok(!block.data!.includes('<'))
    const snap = JSON.parse(block.data!) as { clients: ClientRow[] }
    assert.equal(snap.clients.length, 1001)
    assert.equal(snap.clients[1]!.lastError, 'line1\nline2 <x>')
    await sse.cancel()
  })
})
