/**
 * A tiny counting HTTP proxy for S3-compatible servers: forwards every request unchanged (Host header included,
 * so SigV4 signatures still verify) and counts requests by type. It also remembers when each successful PUT's
 * response was sent, which is when the object became durable as far as the uploader can tell.
 *
 * Control endpoints (never forwarded; `__bench` is not a valid bucket name):
 *   GET /__bench/counts  -> {"PUT":n,"GET":n,"LIST":n,"DELETE":n,"HEAD":n,"POST":n,"OTHER":n}
 *   GET /__bench/puts    -> [[key, doneAtMs], ...] for every 2xx PUT (multipart parts excluded)
 * @module
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'

/** RequestKind is how a request is counted. */
export type RequestKind = 'PUT' | 'GET' | 'LIST' | 'DELETE' | 'HEAD' | 'POST' | 'OTHER'

/** classify maps an S3 request (path-style) to its counted kind. */
export function classify(method: string, url: URL): RequestKind {
  const segments = url.pathname.split('/').filter((s) => s !== '')
  switch (method) {
    case 'PUT':
      return 'PUT'
    case 'GET':
      return segments.length <= 1 ? 'LIST' : 'GET' // bucket-level GET is a listing (v1 or v2)
    case 'DELETE':
      return 'DELETE'
    case 'HEAD':
      return 'HEAD'
    case 'POST':
      return url.searchParams.has('delete') ? 'DELETE' : 'POST' // DeleteObjects is a POST ?delete
    default:
      return 'OTHER'
  }
}

/** CountingProxy is a running proxy. */
export interface CountingProxy {
  readonly endpoint: string
  readonly counts: Record<RequestKind, number>
  readonly puts: [string, number][]
  close(): Promise<void>
}

/** startCountingProxy listens on 127.0.0.1 (random port) and forwards to target (`http://host:port`). */
export async function startCountingProxy(target: string): Promise<CountingProxy> {
  const t = new URL(target)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 })
  const counts: Record<RequestKind, number> = { PUT: 0, GET: 0, LIST: 0, DELETE: 0, HEAD: 0, POST: 0, OTHER: 0 }
  const puts: [string, number][] = []
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy')
    if (url.pathname.startsWith('/__bench/')) {
      const body = url.pathname === '/__bench/counts' ? counts : url.pathname === '/__bench/puts' ? puts : null
      res.writeHead(body ? 200 : 404, { 'content-type': 'application/json' })
      res.end(JSON.stringify(body ?? { error: 'not found' }))
      return
    }
    const kind = classify(req.method ?? 'GET', url)
    counts[kind]++
    const isObjectPut = kind === 'PUT' && !url.searchParams.has('partNumber')
    const up = http.request(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers, agent },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers)
        upRes.pipe(res)
        if (isObjectPut && (upRes.statusCode ?? 0) < 300) {
          res.on('finish', () => puts.push([decodeURIComponent(url.pathname.split('/').slice(2).join('/')), Date.now()]))
        }
      },
    )
    up.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' })
      res.end(`proxy: ${err.message}`)
    })
    req.pipe(up)
  })
  server.keepAliveTimeout = 30_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    endpoint: `http://127.0.0.1:${port}`,
    counts,
    puts,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
        agent.destroy()
      }),
  }
}
