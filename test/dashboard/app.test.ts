/** Dashboard routes without a socket (app.request), over a fake StatusSource. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createApp, SSE_FLUSH_MS } from '../../src/dashboard/app.js'
import { APP_JS } from '../../src/dashboard/assets.js'
import { FakeSource } from '../helpers/fake-source.js'

const A = '7b0c6f5e-2a1d-4c3b-9e8f-0a1b2c3d4e5f'
const B = '01234567-89ab-cdef-0123-456789abcdef'
const HOSTS = ['localhost', '127.0.0.1']
const H = { host: '127.0.0.1:8080' }

function setup(token?: string) {
  const src = new FakeSource()
  src.set({ id: A })
  const app = createApp(src, { allowedHosts: HOSTS, token, collectProcessMetrics: false })
  return { src, app }
}

test('GET /api/clients lists clients with the documented fields', async () => {
  const { app } = setup()
  const res = await app.request('/api/clients', { headers: H })
  assert.equal(res.status, 200)
  const body = (await res.json()) as Record<string, unknown>[]
  assert.equal(body.length, 1)
  for (const k of ['id', 'state', 'dbSizeBytes', 'generation', 'lagMs', 'lastSyncAt', 'lastError', 'restoreCommand']) assert.ok(k in body[0]!, k)
  assert.equal(body[0]!.restoreCommand, `litestream restore -o ${A}.db s3://bucket/databases/${A}`)
})

test('GET /api/clients/:id: 200, 400 malformed, 404 unknown', async () => {
  const { app } = setup()
  assert.equal((await app.request(`/api/clients/${A}`, { headers: H })).status, 200)
  assert.equal((await app.request('/api/clients/NOT-A-GUID', { headers: H })).status, 400)
  assert.equal((await app.request(`/api/clients/${A.toUpperCase()}`, { headers: H })).status, 400)
  assert.equal((await app.request(`/api/clients/${B}`, { headers: H })).status, 404)
})

test('POST sync is the acknowledgement barrier; 409 when not replicating; cross-site refused', async () => {
  const { app, src } = setup()
  const post = (path: string, extra: Record<string, string> = {}) => app.request(path, { method: 'POST', headers: { ...H, 'content-type': 'application/json', ...extra } })
  const ok = await post(`/api/clients/${A}/sync`)
  assert.equal(ok.status, 200)
  assert.deepEqual(await ok.json(), { pos: src.syncResult })
  assert.deepEqual(src.syncCalls, [A])
  assert.equal((await post(`/api/clients/${A}/snapshot`)).status, 200)
  assert.equal((await post(`/api/clients/${B}/sync`)).status, 404)
  assert.equal((await post('/api/clients/x/sync')).status, 400)
  assert.equal((await post(`/api/clients/${A}/sync`, { 'sec-fetch-site': 'cross-site' })).status, 403)
  assert.equal((await post(`/api/clients/${A}/sync`, { origin: 'http://evil.example' })).status, 403)
  assert.equal((await app.request(`/api/clients/${A}/sync`, { method: 'POST', headers: { ...H, 'content-type': 'text/plain' } })).status, 415)
  src.syncResult = undefined
  assert.equal((await post(`/api/clients/${A}/sync`)).status, 409)
})

test('H2 Host header must be ours (DNS rebinding): 421', async () => {
  const { app } = setup()
  assert.equal((await app.request('/api/clients', { headers: { host: 'evil.example' } })).status, 421)
  assert.equal((await app.request('/api/clients', { headers: { host: 'localhost:8080' } })).status, 200)
})

test('H2 token: required everywhere but /healthz; Bearer or cookie from /?token=', async () => {
  const { app } = setup('s3cr3t-token')
  assert.equal((await app.request('/healthz', { headers: H })).status, 200)
  assert.equal((await app.request('/api/clients', { headers: H })).status, 401)
  assert.equal((await app.request('/metrics', { headers: H })).status, 401)
  assert.equal((await app.request('/api/clients', { headers: { ...H, authorization: 'Bearer nope' } })).status, 401)
  assert.equal((await app.request('/api/clients', { headers: { ...H, authorization: 'Bearer s3cr3t-token' } })).status, 200)
  const login = await app.request('/?token=s3cr3t-token', { headers: H })
  assert.equal(login.status, 303)
  const cookie = login.headers.get('set-cookie') ?? ''
  assert.match(cookie, /HttpOnly/)
  assert.match(cookie, /SameSite=Strict/)
  assert.equal((await app.request('/api/clients', { headers: { ...H, cookie: cookie.split(';')[0]! } })).status, 200)
  const page = await (await app.request('/', { headers: { ...H, cookie: cookie.split(';')[0]! } })).text()
  assert.ok(!page.includes('s3cr3t-token'), 'the token is never echoed')
})

test('H4 CSP and escaping: error text is data, the page script never uses innerHTML', async () => {
  const { app, src } = setup()
  src.set({ id: A, lastError: '<script>alert(1)</script>' })
  const res = await app.request('/', { headers: H })
  assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/)
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
  const api = await (await app.request(`/api/clients/${A}`, { headers: H })).json()
  assert.equal((api as { lastError: string }).lastError, '<script>alert(1)</script>', 'returned as a JSON string, rendered with textContent')
  assert.ok(!/innerHTML|outerHTML|insertAdjacentHTML|document\.write/.test(APP_JS), 'no HTML sinks in the page script')
})

test('H5 path traversal and unknown routes are 404', async () => {
  const { app } = setup()
  for (const p of ['/assets/..%2f..%2fetc/passwd', '/static/..%2f..%2fetc/passwd', '/api/dbs/../', '/debug/pprof']) {
    assert.equal((await app.request(p, { headers: H })).status, 404, p)
  }
})

test('healthz, readyz', async () => {
  const src = new FakeSource()
  let ready = false
  const app = createApp(src, { allowedHosts: HOSTS, ready: () => ready, collectProcessMetrics: false })
  assert.equal((await app.request('/healthz', { headers: H })).status, 200)
  assert.equal((await app.request('/readyz', { headers: H })).status, 503)
  ready = true
  assert.equal((await app.request('/readyz', { headers: H })).status, 200)
})

test('/metrics: per-client series labelled by id, computed at scrape time', async () => {
  const { app, src } = setup()
  src.set({ id: B, state: 'error', lastError: 'boom' })
  const text = await (await app.request('/metrics', { headers: H })).text()
  assert.match(text, new RegExp(`litestream_manager_client_lag_ms\\{client="${A}"\\} 0`))
  assert.match(text, new RegExp(`litestream_manager_client_error\\{client="${B}"\\} 1`))
  assert.match(text, /litestream_manager_clients\{state="error"\} 1/)
})

test('GET /api/events: a snapshot first, then coalesced deltas', async () => {
  const { app, src } = setup()
  const ac = new AbortController()
  const res = await app.request('/api/events', { headers: H, signal: ac.signal })
  assert.equal(res.headers.get('content-type')?.startsWith('text/event-stream'), true)
  const reader = res.body!.getReader()
  const dec = new TextDecoder()
  let buf = ''
  const next = async (event: string): Promise<unknown> => {
    for (;;) {
      const m = new RegExp(`event: ${event}\\ndata: (.*)\\n\\n`).exec(buf)
      if (m) {
        buf = buf.slice(m.index + m[0].length)
        return JSON.parse(m[1]!)
      }
      const { value, done } = await reader.read()
      if (done) throw new Error('stream ended')
      buf += dec.decode(value)
    }
  }
  const snap = (await next('snapshot')) as { id: string }[]
  assert.deepEqual(snap.map((c) => c.id), [A])
  for (let i = 0; i < 50; i++) src.set({ id: B, dbSizeBytes: i }) // 50 changes within one flush window
  const delta = (await next('delta')) as { changed: { id: string; dbSizeBytes: number }[] }
  assert.equal(delta.changed.length, 1, `coalesced per client within ${SSE_FLUSH_MS} ms`)
  assert.equal(delta.changed[0]!.dbSizeBytes, 49)
  src.remove(B)
  const gone = (await next('delta')) as { removed: string[] }
  assert.deepEqual(gone.removed, [B])
  ac.abort()
  await reader.cancel().catch(() => {})
})
