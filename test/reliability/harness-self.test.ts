/**
 * Self-tests of the reliability harness (not matrix scenarios; the scorecard lists them apart): every fault-proxy
 * action against a tiny upstream, the recorder and rate figure, and the writer/model/ledger-chain agreement.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { test, type TestContext } from 'node:test'
import { digest } from '../helpers/db.js'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js'
import { LedgerChain, startWriter, WriterModel } from '../helpers/writer.js'

const BODY = Buffer.alloc(64 << 10, 7)

async function upstreamAndProxy(t: TestContext): Promise<FaultProxy> {
  const up = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = req.method === 'GET' ? BODY : Buffer.from(`got ${Buffer.concat(chunks).length}`)
      res.writeHead(200, { 'content-length': body.length })
      res.end(body)
    })
  })
  await new Promise<void>((r) => up.listen(0, '127.0.0.1', r))
  const proxy = await startFaultProxy({ target: `http://127.0.0.1:${(up.address() as AddressInfo).port}`, recordBodies: true, seed: 1 })
  t.after(async () => {
    await proxy.stop()
    up.closeAllConnections()
    await new Promise((r) => up.close(r))
  })
  return proxy
}

function request(proxy: FaultProxy, method: string, key: string, body?: Buffer): Promise<{ status: number; body: Buffer; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${proxy.endpoint}/bucket/${key}`, { method, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), headers: res.headers }))
      res.on('error', reject)
      res.on('aborted', () => reject(new Error('response aborted')))
    })
    req.on('error', reject)
    req.end(body)
  })
}

test('harness: fault proxy forwards and records method, key, status, bytes and bodies', async (t) => {
  const proxy = await upstreamAndProxy(t)
  const r = await request(proxy, 'PUT', 'a/b/c.lz4', Buffer.from('hello'))
  assert.equal(r.status, 200)
  assert.equal(r.body.toString(), 'got 5')
  const rec = await proxy.waitFor((x) => x.method === 'PUT')
  assert.equal(rec.key, 'a/b/c.lz4')
  assert.equal(rec.bucket, 'bucket')
  assert.equal(rec.status, 200)
  assert.equal(rec.reqBytes, 5)
  assert.equal(rec.body?.toString(), 'hello')
  assert.equal(rec.delivered, true)
})

test('harness: status injection answers S3 XML with Retry-After, honouring count', async (t) => {
  const proxy = await upstreamAndProxy(t)
  const rule = proxy.addRule({ method: 'PUT', count: 1, action: { type: 'status', status: 503, code: 'SlowDown', retryAfterS: 2 } })
  const r1 = await request(proxy, 'PUT', 'k', Buffer.from('x'))
  assert.equal(r1.status, 503)
  assert.equal(r1.headers['retry-after'], '2')
  assert.match(r1.body.toString(), /<Code>SlowDown<\/Code>/)
  const r2 = await request(proxy, 'PUT', 'k', Buffer.from('x'))
  assert.equal(r2.status, 200, 'count exhausted')
  assert.equal(rule.hits, 1)
})

test('harness: latency, bandwidth, refuse (reset and listener), blackhole, drop-response, truncate-body', async (t) => {
  const proxy = await upstreamAndProxy(t)
  let rule = proxy.addRule({ action: { type: 'latency', ms: 300 } })
  let t0 = Date.now()
  await request(proxy, 'GET', 'k')
  assert.ok(Date.now() - t0 >= 290, 'latency added')
  rule.remove()

  rule = proxy.addRule({ action: { type: 'bandwidth', bytesPerSec: 128 << 10 } })
  t0 = Date.now()
  const slow = await request(proxy, 'GET', 'k')
  assert.equal(slow.body.length, BODY.length)
  assert.ok(Date.now() - t0 >= 400, `64 KiB at 128 KiB/s takes ~0.5 s (took ${Date.now() - t0} ms)`)
  rule.remove()

  rule = proxy.addRule({ count: 1, action: { type: 'refuse', mode: 'reset' } })
  await assert.rejects(request(proxy, 'GET', 'k'), /socket hang up|ECONNRESET/)
  rule.remove()

  rule = proxy.addRule({ forMs: 60_000, action: { type: 'refuse', mode: 'listener' } })
  await new Promise((r) => setTimeout(r, 50))
  await assert.rejects(request(proxy, 'GET', 'k'), /ECONNREFUSED/)
  rule.remove()
  await new Promise((r) => setTimeout(r, 100))
  assert.equal((await request(proxy, 'GET', 'k')).status, 200, 'listener reopened on the same port')

  rule = proxy.addRule({ count: 1, action: { type: 'blackhole' } })
  const held = request(proxy, 'GET', 'k')
  await proxy.waitFor((r) => r.action === 'blackhole', { started: true })
  proxy.releaseBlackholed()
  await assert.rejects(held, /socket hang up|ECONNRESET/)
  rule.remove()

  rule = proxy.addRule({ method: 'PUT', count: 1, action: { type: 'drop-response' } })
  await assert.rejects(request(proxy, 'PUT', 'k', Buffer.from('abc')), /socket hang up|ECONNRESET/)
  const dropped = await proxy.waitFor((r) => r.action === 'drop-response')
  assert.equal(dropped.upstreamStatus, 200, 'the request reached upstream')
  assert.equal(dropped.delivered, false)
  rule.remove()

  rule = proxy.addRule({ method: 'GET', count: 1, action: { type: 'truncate-body', keepBytes: 1000 } })
  await assert.rejects(request(proxy, 'GET', 'k'), /aborted|ECONNRESET|socket hang up/)
  const cut = await proxy.waitFor((r) => r.action === 'truncate-body')
  assert.equal(cut.resBytes, 1000)
  rule.remove()
})

test('harness: maxRate counts the busiest window', async (t) => {
  const proxy = await upstreamAndProxy(t)
  for (let i = 0; i < 5; i++) await request(proxy, 'GET', `k${i}`)
  assert.equal(proxy.maxRate({ windowMs: 10_000 }), 5)
  assert.equal(proxy.maxRate({ windowMs: 10_000, pred: (r) => r.key === 'k1' }), 1)
})

test('harness: writer child, model replay and ledger chain agree; pause holds commits', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rel-self-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const w = await startWriter({ dbPath: path.join(dir, 'w.db'), opsPerSec: 0, maxSeq: 500 })
  t.after(() => w.stop())
  await w.done()
  const paused = await w.pause()
  assert.equal(paused, 500)
  await new Promise((r) => setTimeout(r, 50))
  assert.equal(w.acked(), 500, 'nothing commits while paused')
  w.resume({ maxSeq: 800 })
  await w.done()
  const n = await w.stop()
  assert.equal(n, 800)
  const model = new WriterModel(w.seed, w.noteChars).advanceTo(n)
  t.after(() => model.close())
  assert.equal(digest(path.join(dir, 'w.db')).hash, digest(model.db).hash, 'source == model at 800')
  const chain = new LedgerChain(w.seed, w.noteChars)
  assert.equal(chain.hash(800), model.hash(800))
  assert.equal(w.errors().length, 0)
})
