/** `/api/clients` rendered from cached rows and chunks: the same bytes as safeJson of every row, and never stale. */
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import { test } from 'node:test'
import { createApp } from '../../src/dashboard/app.js'
import { ClientsBody, GROUP_ROWS, TEXT_CHUNK_CHARS, textChunks } from '../../src/dashboard/clients-body.js'
import { defaultRestoreCommand, safeJson, toRow } from '../../src/dashboard/rows.js'
import type { ClientInfo } from '../../src/types.js'
import { FakeSource } from '../helpers/fake-source.js'

const H = { host: '127.0.0.1:8080' }
const expected = (src: FakeSource): string => safeJson(src.clients().map((c) => toRow(c, defaultRestoreCommand)))
const text = (r: { chunks: readonly Uint8Array[] }): string => Buffer.concat(r.chunks).toString('utf8')

function many(n: number): FakeSource {
  const src = new FakeSource()
  for (let i = 0; i < n; i++) src.set({ id: crypto.randomUUID() })
  return src
}

test('same bytes as safeJson(rows), for 0, 1, a group and several groups of clients', () => {
  for (const n of [0, 1, GROUP_ROWS - 1, GROUP_ROWS, GROUP_ROWS + 1, 3 * GROUP_ROWS + 5]) {
    const src = many(n)
    const body = new ClientsBody(defaultRestoreCommand)
    const r = body.render(src.clients())
    assert.equal(text(r), expected(src), `n=${n}`)
    assert.equal(r.length, Buffer.byteLength(expected(src)), `n=${n}: length`)
  }
})

test('escapes markup and non-ASCII like safeJson, with a byte length (not a character length)', () => {
  const src = many(3)
  const id = src.clients()[1]!.id
  src.set({ id, state: 'error', lastError: '<script>alert("x") & ü \u2028</script>' })
  const r = new ClientsBody(defaultRestoreCommand).render(src.clients())
  assert.equal(text(r), expected(src))
  assert.equal(r.length, Buffer.concat(r.chunks).length)
  assert.ok(!text(r).includes('<'))
})

test('every change of a row input shows on the next render; an unchanged group keeps its bytes', () => {
  const src = many(2 * GROUP_ROWS + 3)
  const body = new ClientsBody(defaultRestoreCommand)
  const first = body.render(src.clients())
  const again = body.render(src.clients())
  assert.equal(text(again), text(first))
  assert.deepEqual(
    again.chunks.map((c, i) => c === first.chunks[i]),
    first.chunks.map(() => true),
    'nothing changed: every chunk reused',
  )
  const ids = src.clients().map((c) => c.id)
  const changes: ((id: string) => void)[] = [
    (id) => src.setReplicator(id, { offset: 999_999 }),
    (id) => src.setReplicator(id, { lagMs: 1234 }),
    (id) => src.set({ id, dbSizeBytes: 123_456 }),
    (id) => src.set({ id, walSizeBytes: 7 }),
    (id) => src.set({ id, state: 'error' }),
    (id) => src.set({ id, lastError: 'boom' }),
    (id) => src.set({ id, replica: '' }),
    (id) => src.set({ id, replicator: null }),
    (id) => src.set({ id, drill: { at: 1, ok: true, skipped: false, position: null, durationMs: 3, error: null, compared: false } }),
    (id) => src.set({ id, detectedAt: 42 }),
    (id) => src.remove(id),
    () => src.set({ id: crypto.randomUUID() }),
  ]
  for (const [i, change] of changes.entries()) {
    const before = body.render(src.clients())
    change(ids[(i * 17) % ids.length]!)
    const after = body.render(src.clients())
    assert.equal(text(after), expected(src), `change ${i}`)
    assert.notEqual(text(after), text(before), `change ${i} is visible`)
  }
  // A changed row rebuilds its own group only.
  const before = body.render(src.clients())
  src.setReplicator(src.clients()[0]!.id, { offset: 1 })
  const after = body.render(src.clients())
  assert.notEqual(after.chunks[1], before.chunks[1], 'first group rebuilt')
  assert.equal(after.chunks[3], before.chunks[3], 'second group reused')
})

test('a new ClientInfo object with equal fields reuses the row; a duplicate id in another dir is its own row', () => {
  const src = many(2)
  const [a] = src.clients()
  const dup: ClientInfo = { ...a!, dir: '/other', path: `/other/${a!.id}.db`, state: 'conflict', replicator: null, lastError: 'same id', replica: '' }
  const body = new ClientsBody(defaultRestoreCommand)
  const list = [...src.clients(), dup]
  const r1 = body.render(list)
  const r2 = body.render(list.map((c) => ({ ...c })))
  assert.equal(text(r2), text(r1))
  assert.equal(text(r1), safeJson(list.map((c) => toRow(c))))
})

test('GET /api/clients: Content-Length matches, the body is the rows as before, and reflects a change at once', async () => {
  const src = many(GROUP_ROWS + 10)
  const app = createApp(src, { allowedHosts: ['127.0.0.1'], collectProcessMetrics: false })
  const get = async () => {
    const res = await app.request('/api/clients', { headers: H })
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('content-type'), 'application/json; charset=utf-8')
    assert.equal(res.headers.get('cache-control'), 'no-store')
    const body = await res.text()
    assert.equal(Number(res.headers.get('content-length')), Buffer.byteLength(body))
    return body
  }
  assert.equal(await get(), expected(src))
  const id = src.clients()[5]!.id
  src.setReplicator(id, { generation: 'fedcba9876543210', index: 7 })
  const body = await get()
  assert.equal(body, expected(src))
  assert.equal((JSON.parse(body) as { id: string; index: number }[]).find((r) => r.id === id)!.index, 7)
})

test('textChunks: bounded UTF-8 chunks that concatenate to the text, never splitting a surrogate pair', () => {
  for (const text of ['', 'a', 'x'.repeat(TEXT_CHUNK_CHARS), 'x'.repeat(TEXT_CHUNK_CHARS - 1) + '😀' + 'ü'.repeat(3 * TEXT_CHUNK_CHARS)]) {
    const r = textChunks(text)
    assert.equal(Buffer.concat(r.chunks).toString('utf8'), text)
    assert.equal(r.length, Buffer.byteLength(text))
    for (const c of r.chunks) assert.ok(c.length <= 3 * TEXT_CHUNK_CHARS && c.length > 0)
  }
})

test('GET /metrics: the registry text with its Content-Length', async () => {
  const src = many(3 * GROUP_ROWS)
  const app = createApp(src, { allowedHosts: ['127.0.0.1'], collectProcessMetrics: false })
  const res = await app.request('/metrics', { headers: H })
  const body = await res.text()
  assert.equal(Number(res.headers.get('content-length')), Buffer.byteLength(body))
  assert.ok(body.length > TEXT_CHUNK_CHARS, 'spans several chunks')
  assert.match(body, /^litestream_manager_client_state\{client="[0-9a-f-]{36}",state="idle"\} 1$/m)
  assert.ok(body.endsWith('\n'))
})
