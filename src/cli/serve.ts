/**
 * The service: `litestream-manager -watch-dir DIRS -bucket BUCKET [-port 8080]`.
 * Discovers `<guid>.db` files in every watched directory, replicates each to `<root>/databases/<guid>`,
 * serves the dashboard, and on SIGINT/SIGTERM ships everything committed before exiting 0.
 * @module
 */
import os from 'node:os'
import path from 'node:path'
import { createApp } from '../dashboard/app.js'
import { startDashboard } from '../dashboard/server.js'
import { errorMessage } from '../errors.js'
import { parseFlags, parseDuration, usage, type FlagSpec } from '../flags.js'
import { Manager } from '../manager.js'
import { childClient, loadBackendFor, parseReplicaUrl } from '../replica-url.js'
import type { ReplicaClient } from '../replica-client.js'
import type { CliIo } from './replicate.js'
import { replicationFlags, replicationOptions } from './options.js'

/** SERVICE_FLAGS are the service's flags; Go-style single dashes and double dashes both work. */
export const SERVICE_FLAGS: readonly FlagSpec[] = [
  { name: 'watch-dir', type: 'string', usage: 'comma-separated directories to watch for <guid>.db files (created if missing)' },
  { name: 'bucket', type: 'string', usage: 'replica root: bucket name, s3://bucket[/prefix], or file://path for a local replica' },
  { name: 'port', type: 'string', usage: 'dashboard port', default: '8080' },
  { name: 'listen', type: 'string', usage: 'dashboard bind address; anything but loopback requires -token', default: '127.0.0.1' },
  { name: 'allowed-host', type: 'string', usage: 'extra comma-separated host names the dashboard answers to (DNS-rebinding guard)' },
  { name: 'token', type: 'string', usage: 'dashboard access token (or env LITESTREAM_MANAGER_TOKEN)' },
  { name: 'endpoint', type: 'string', usage: 'S3-compatible endpoint URL (or env AWS_ENDPOINT_URL_S3)' },
  { name: 'region', type: 'string', usage: 'S3 region (or env AWS_REGION)' },
  { name: 'force-path-style', type: 'boolean', usage: 'use path-style S3 addressing (default on when -endpoint is set)' },
  { name: 'reconcile-interval', type: 'string', usage: 'rescan of every watched directory, behind the file watcher', default: '30s' },
  { name: 'shutdown-timeout', type: 'string', usage: 'bound on the final sync at shutdown', default: '30s' },
  { name: 'drill-interval', type: 'string', usage: 'restore each changed client from its replica and check it this often; 0 disables', default: '6h' },
  { name: 'drill-max-bytes', type: 'string', usage: 'skip restore drills of databases larger than this many bytes', default: String(1 << 30) },
  { name: 'webhook-url', type: 'string', usage: 'POST a JSON event here when a restore drill fails' },
  ...replicationFlags,
]

const HELP = `Usage:
  litestream-manager -watch-dir DIR[,DIR...] -bucket BUCKET [flags]   run the service
  litestream-manager replicate [flags] <db-path> <replica-url>         replicate one database
  litestream-manager restore [flags] <guid|replica-url> -o <out.db>    restore a backup
  litestream-manager demo                                              service + synthetic writing clients

Service flags:
${usage(SERVICE_FLAGS)}
`

/** serviceReplicaUrl turns -bucket and the S3 flags into a replica URL. */
export function serviceReplicaUrl(bucket: string, s3: { endpoint?: string; region?: string; forcePathStyle?: boolean }): string {
  if (bucket.startsWith('file://')) return bucket
  const base = bucket.startsWith('s3://') ? bucket : `s3://${bucket}`
  const q = new URLSearchParams()
  if (s3.endpoint) q.set('endpoint', s3.endpoint)
  if (s3.region) q.set('region', s3.region)
  if (s3.forcePathStyle !== undefined) q.set('forcePathStyle', String(s3.forcePathStyle))
  const qs = q.toString()
  return qs ? `${base}${base.includes('?') ? '&' : '?'}${qs}` : base
}

/**
 * dashboardHosts lists the Host header names the dashboard accepts: loopback names, the bind address, and for a
 * wildcard bind (0.0.0.0, ::) this machine's host name and interface addresses, plus -allowed-host.
 */
export function dashboardHosts(listen: string, extra: string): string[] {
  const hosts = new Set(['localhost', '127.0.0.1', '[::1]', '::1', listen, listen.includes(':') ? `[${listen}]` : listen])
  if (listen === '0.0.0.0' || listen === '::') {
    hosts.add(os.hostname())
    for (const addrs of Object.values(os.networkInterfaces())) {
      for (const a of addrs ?? []) hosts.add(a.family === 'IPv6' ? `[${a.address}]` : a.address)
    }
  }
  for (const h of extra.split(',').map((x) => x.trim().toLowerCase()).filter((x) => x !== '')) hosts.add(h)
  return [...hosts]
}

/** serveCommand runs the service and resolves to the exit code. */
export async function serveCommand(argv: readonly string[], io: CliIo, extra: { onStarted?: (m: Manager) => void } = {}): Promise<number> {
  const f = parseFlags(argv, SERVICE_FLAGS)
  if (f.help) {
    io.stdout(HELP)
    return 0
  }
  const errors = [...f.errors]
  const v = f.values
  if (f.args.length > 0) errors.push(`unexpected argument ${JSON.stringify(f.args[0])}`)
  if (!v['watch-dir']) errors.push('missing required flag -watch-dir')
  if (!v.bucket) errors.push('missing required flag -bucket')
  const port = Number(v.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) errors.push(`invalid -port ${JSON.stringify(v.port)}`)
  const listen = String(v.listen)
  const token = (v.token as string | undefined) ?? io.env.LITESTREAM_MANAGER_TOKEN
  const loopback = listen === '127.0.0.1' || listen === 'localhost' || listen === '::1' || listen.startsWith('127.')
  if (!loopback && !token) errors.push(`-listen ${listen} is not loopback: set -token or LITESTREAM_MANAGER_TOKEN`)
  const reconcileMs = parseDuration(String(v['reconcile-interval']))
  if (reconcileMs === undefined || reconcileMs < 1000) errors.push('-reconcile-interval must be a duration of at least 1s')
  const shutdownMs = parseDuration(String(v['shutdown-timeout']))
  if (shutdownMs === undefined || shutdownMs <= 0) errors.push('-shutdown-timeout must be a positive duration')
  const repl = replicationOptions(v, errors)
  const drillMs = parseDuration(String(v['drill-interval']))
  if (drillMs === undefined) errors.push('-drill-interval must be a duration (0 disables)')
  const drillMaxBytes = Number(v['drill-max-bytes'])
  if (!Number.isSafeInteger(drillMaxBytes) || drillMaxBytes < 0) errors.push('-drill-max-bytes must be a whole number of bytes')
  const webhookUrl = v['webhook-url'] as string | undefined
  if (webhookUrl !== undefined && !/^https?:\/\//.test(webhookUrl)) errors.push('-webhook-url must be an http(s) URL')
  const dirs = String(v['watch-dir'] ?? '')
    .split(',')
    .map((d) => d.trim())
    .filter((d) => d !== '')
    .map((d) => path.resolve(d))
  if (v['watch-dir'] && dirs.length === 0) errors.push('-watch-dir names no directory')
  if (new Set(dirs).size !== dirs.length) errors.push('-watch-dir lists a directory twice')
  let root: ReplicaClient | undefined
  if (errors.length === 0) {
    try {
      const url = serviceReplicaUrl(String(v.bucket), {
        endpoint: v.endpoint as string | undefined,
        region: v.region as string | undefined,
        forcePathStyle: v['force-path-style'] as boolean | undefined,
      })
      await loadBackendFor(url)
      root = parseReplicaUrl(url, io.env)
    } catch (err) {
      errors.push(errorMessage(err))
    }
  }
  if (errors.length > 0 || !root) {
    io.stderr(`${errors.map((e) => `error: ${e}`).join('\n')}\n\n${HELP}`)
    return 2
  }
  const log = io.log
  const rootClient = root
  const manager = new Manager({
    watchDirs: dirs,
    clientFor: (id) => childClient(rootClient, `databases/${id}`),
    log,
    replicatorOptions: repl,
    reconcileIntervalMs: reconcileMs!,
    drillIntervalMs: drillMs!,
    drillMaxBytes,
    webhookUrl,
  })
  let ready = false
  const app = createApp(manager, {
    token,
    allowedHosts: dashboardHosts(listen, String(v['allowed-host'] ?? '')),
    ready: () => ready,
  })
  let dashboard: { url: string; close(): Promise<void> }
  try {
    dashboard = await startDashboard(app, { host: listen, port })
  } catch (err) {
    io.stderr(`error: cannot serve the dashboard on ${listen}:${port}: ${errorMessage(err)}\n`)
    return 1
  }
  const stop = new Promise<void>((resolve) => {
    io.onSignal(resolve, () => {
      io.stderr('second signal: exiting without final sync\n')
      process.exit(130)
    })
  })
  await manager.start()
  ready = true
  log.info({ watchDirs: dirs, replica: rootClient.describe(), dashboard: dashboard.url }, 'service started')
  extra.onStarted?.(manager)
  await stop
  log.info({}, 'shutting down: shipping everything committed')
  let code = 0
  try {
    await manager.close({ timeoutMs: shutdownMs! })
  } catch (err) {
    io.stderr(`error: ${errorMessage(err)}\n`)
    code = 1
  }
  await dashboard.close()
  log.info({ code }, 'service stopped')
  return code
}
