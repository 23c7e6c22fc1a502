/**
 * Serves a dashboard app with @hono/node-server; close() also ends open SSE streams.
 * @module
 */
import type { AddressInfo } from 'node:net'
import type { Server } from 'node:http'
import { serve } from '@hono/node-server'
import type { Hono } from 'hono'

/** RunningDashboard is a listening server. */
export interface RunningDashboard {
  readonly url: string
  close(): Promise<void>
}

/** startDashboard listens on host:port (0 picks a free port) and resolves once listening. */
export function startDashboard(app: Hono, opts: { readonly host: string; readonly port: number }): Promise<RunningDashboard> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, hostname: opts.host, port: opts.port }, (info: AddressInfo) => {
      const host = info.family === 'IPv6' ? `[${info.address}]` : info.address
      let closing: Promise<void> | null = null
      resolve({
        url: `http://${host}:${info.port}`,
        close: () =>
          (closing ??= new Promise<void>((done) => {
            const s = server as Server
            s.close(() => done())
            s.closeAllConnections()
          })),
      })
    }) as Server
    server.once('error', reject)
  })
}
