/**
 * Serves a dashboard app with @hono/node-server. `close()` also ends open SSE streams, which otherwise
 * keep `server.close()` waiting forever.
 * @module
 */
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import type { Hono } from 'hono'

/** RunningDashboard is a listening dashboard server. */
export interface RunningDashboard {
  /** url is `http://host:port` with the port actually bound (IPv6 hosts in brackets). */
  readonly url: string
  /** close stops accepting, destroys every open connection (SSE streams included) and resolves once closed. Idempotent. */
  close(): Promise<void>
}

/** DashboardListenOptions says where to listen. */
export interface DashboardListenOptions {
  readonly host: string
  /** port to bind; 0 picks a free one (tests). */
  readonly port: number
}

/** startDashboard listens on host:port and resolves once listening; it rejects if the port cannot be bound. */
export function startDashboard(app: Hono, opts: DashboardListenOptions): Promise<RunningDashboard> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, hostname: opts.host, port: opts.port }, (info: AddressInfo) => {
      server.off('error', reject)
      const host = info.family === 'IPv6' || info.address.includes(':') ? `[${info.address}]` : info.address
      let closing: Promise<void> | undefined
      resolve({
        url: `http://${host}:${info.port}`,
        close: () =>
          (closing ??= new Promise<void>((done) => {
            server.close(() => done())
            server.closeAllConnections()
          })),
      })
    }) as Server
    server.once('error', reject)
  })
}
