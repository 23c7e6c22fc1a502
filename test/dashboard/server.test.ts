/** startDashboard on a real loopback socket: port 0, close() ending open SSE streams, bind errors. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createApp } from '../../src/dashboard/app.js'
import { startDashboard } from '../../src/dashboard/server.js'
import { FakeSource } from '../helpers/fake-source.js'

const A = '7b0c6f5e-2a1d-4c3b-9e8f-0a1b2c3d4e5f'

test('startDashboard: listens on port 0, serves, and close() ends open SSE streams', async () => {
  const src = new FakeSource()
  src.set({ id: A })
  const app = createApp(src, { allowedHosts: ['127.0.0.1'], collectProcessMetrics: false })
  const server = await startDashboard(app, { host: '127.0.0.1', port: 0 })
  assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/)
  assert.notEqual(server.url, 'http://127.0.0.1:0')

  const health = await fetch(`${server.url}/healthz`)
  assert.equal(await health.text(), 'ok')
  const rows = (await (await fetch(`${server.url}/api/clients`)).json()) as { id: string }[]
  assert.deepEqual(
    rows.map((r) => r.id),
    [A],
  )

  // An open event stream: the first chunk carries the snapshot.
  const events = await fetch(`${server.url}/api/events`)
  const reader = events.body!.getReader()
  const first = new TextDecoder().decode((await reader.read()).value)
  assert.match(first, /event: snapshot/)
  assert.equal(src.listeners.size, 1)

  const t0 = Date.now()
  const closing = server.close()
  assert.equal(server.close(), closing, 'close is memoized')
  await closing
  assert.ok(Date.now() - t0 < 2000, `close took ${Date.now() - t0} ms with an SSE stream open`)
  await assert.rejects(
    (async () => {
      for (;;) if ((await reader.read()).done) throw new Error('ended')
    })(),
  )
  for (let i = 0; i < 100 && src.listeners.size > 0; i++) await new Promise((r) => setTimeout(r, 10))
  assert.equal(src.listeners.size, 0, 'the stream unsubscribed when its socket closed')
  await assert.rejects(fetch(`${server.url}/healthz`), 'no longer listening')
})

test('startDashboard rejects when the port is taken', async () => {
  const app = createApp(new FakeSource(), { allowedHosts: ['127.0.0.1'], collectProcessMetrics: false })
  const a = await startDashboard(app, { host: '127.0.0.1', port: 0 })
  try {
    const port = Number(new URL(a.url).port)
    await assert.rejects(startDashboard(app, { host: '127.0.0.1', port }), /EADDRINUSE/)
  } finally {
    await a.close()
  }
})
