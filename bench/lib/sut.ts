/**
 * Systems under test: our service, one stock `litestream replicate -config` process for every database, or one
 * stock `litestream replicate` process per database. Each is spawned directly (never through npm or npx) with
 * stdout and stderr going to log files, so the PIDs we sample are the replicators themselves.
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { guidOf } from './dbs.js'

/** REPO is the repository root. */
export const REPO = fileURLToPath(new URL('../../', import.meta.url))
/** LITESTREAM_BIN is the stock v0.3.13 binary. */
export const LITESTREAM_BIN = path.join(REPO, 'node_modules/@flydotio/litestream-linux-x64/litestream')
/** MAIN_JS is our built CLI. */
export const MAIN_JS = path.join(REPO, 'dist/src/main.js')

/** PeerName names a system under test. */
export type PeerName = 'ours' | 'litestreamSingleProcess' | 'litestreamPerProcess'
/** PEERS lists every peer in report order. */
export const PEERS: readonly PeerName[] = ['ours', 'litestreamSingleProcess', 'litestreamPerProcess']

/** S3Target is where an S3 replica goes: through the counting proxy, under prefix. */
export interface S3Target {
  readonly proxyEndpoint: string
  readonly bucket: string
  readonly prefix: string
}

/** ReplicaTarget is the replica of one peer: a file directory or an S3 prefix. */
export type ReplicaTarget = { readonly kind: 'file'; readonly root: string } | ({ readonly kind: 's3' } & S3Target)

const S3_ENV = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' }

/** Exit is how one process ended. */
export interface Exit {
  readonly pid: number
  readonly code: number | null
  readonly signal: string | null
  readonly at: number
}

/** Sut is a running system under test. */
export interface Sut {
  readonly peer: PeerName
  readonly procs: readonly ChildProcess[]
  readonly logFiles: readonly string[]
  /** port is our dashboard port (ours only). */
  readonly port?: number
  /** exits lists every process that has exited so far, expected or not. */
  readonly exits: Exit[]
  /** anyAlive reports whether some process of the peer has not exited yet. */
  anyAlive(): boolean
  pids(): number[]
  /** stop sends SIGTERM to every process and waits (SIGKILL after timeoutMs). */
  stop(timeoutMs?: number): Promise<Exit[]>
}

const live = new Set<ChildProcess>()
process.on('exit', () => {
  for (const p of live) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL')
})

/** track registers a child so it is killed if the harness exits first. */
export function track(p: ChildProcess): ChildProcess {
  live.add(p)
  p.on('exit', () => live.delete(p))
  return p
}

function makeSut(peer: PeerName, procs: ChildProcess[], logFiles: string[], port?: number): Sut {
  const exits: Exit[] = []
  const done = procs.map(
    (p) =>
      new Promise<void>((resolve) => {
        if (p.exitCode !== null || p.signalCode !== null) {
          exits.push({ pid: p.pid ?? -1, code: p.exitCode, signal: p.signalCode, at: Date.now() })
          resolve()
          return
        }
        p.on('exit', (code, signal) => {
          exits.push({ pid: p.pid ?? -1, code, signal, at: Date.now() })
          resolve()
        })
      }),
  )
  return {
    peer,
    procs,
    logFiles,
    port,
    exits,
    anyAlive: () => exits.length < procs.length,
    pids: () => procs.map((p) => p.pid).filter((p): p is number => p !== undefined),
    async stop(timeoutMs = 60_000) {
      for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM')
      const timer = setTimeout(() => {
        for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL')
      }, timeoutMs)
      await Promise.all(done)
      clearTimeout(timer)
      return exits
    },
  }
}

function spawnLogged(cmd: string, args: readonly string[], logFile: string, env: Record<string, string>): ChildProcess {
  const fd = fs.openSync(logFile, 'a')
  try {
    return track(spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', fd, fd] }))
  } finally {
    fs.closeSync(fd)
  }
}

/** freePort returns a TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port
      srv.close(() => resolve(port))
    })
  })
}

/**
 * shebangLaunch reads how the executable's shebang starts node (`#!/usr/bin/env -S [NAME=VALUE...] node FLAGS`):
 * the environment it sets and the V8 flags it passes, so the benchmark runs the service exactly as an installed
 * `litestream-manager` runs.
 */
export function shebangLaunch(): { readonly env: Record<string, string>; readonly flags: string[] } {
  const first = fs.readFileSync(MAIN_JS, 'utf8').split('\n', 1)[0]!
  const m = /^#!\/usr\/bin\/env -S (.*)$/.exec(first)
  const words = m ? m[1]!.trim().split(/\s+/).filter((w) => w !== '') : []
  const env: Record<string, string> = {}
  while (words.length > 0 && /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[0]!)) {
    const w = words.shift()!
    env[w.slice(0, w.indexOf('='))] = w.slice(w.indexOf('=') + 1)
  }
  return words[0] === 'node' ? { env, flags: words.slice(1) } : { env: {}, flags: [] }
}

/**
 * startOurs spawns `node dist/src/main.js -watch-dir DIR -bucket ... -port P -sync-interval S` at LOG_LEVEL=info, as
 * the executable's first line launches it; env overrides that line's environment.
 */
export async function startOurs(opts: { workDir: string; clientsDir: string; replica: ReplicaTarget; syncInterval: string; env?: Readonly<Record<string, string>> }): Promise<Sut> {
  const port = await freePort()
  const launch = shebangLaunch()
  const args = [...launch.flags, MAIN_JS, '-watch-dir', opts.clientsDir, '-port', String(port), '-sync-interval', opts.syncInterval]
  let env: Record<string, string> = { ...launch.env, ...opts.env, LOG_LEVEL: 'info' }
  if (opts.replica.kind === 'file') args.push('-bucket', `file://${opts.replica.root}`)
  else {
    args.push('-bucket', `s3://${opts.replica.bucket}/${opts.replica.prefix}`, '-endpoint', opts.replica.proxyEndpoint, '-force-path-style')
    env = { ...env, ...S3_ENV }
  }
  const log = path.join(opts.workDir, 'ours.log')
  fs.writeFileSync(log, `# node ${args.join(' ')}\n`)
  return makeSut('ours', [spawnLogged(process.execPath, args, log, env)], [log], port)
}

function replicaYaml(replica: ReplicaTarget, guid: string, syncInterval: string, indent: string): string {
  if (replica.kind === 'file') {
    return `${indent}- type: file\n${indent}  path: ${path.join(replica.root, 'databases', guid)}\n${indent}  sync-interval: ${syncInterval}\n`
  }
  return (
    `${indent}- type: s3\n${indent}  bucket: ${replica.bucket}\n${indent}  path: ${replica.prefix}/databases/${guid}\n` +
    `${indent}  endpoint: ${replica.proxyEndpoint}\n${indent}  region: us-east-1\n${indent}  force-path-style: true\n` +
    `${indent}  access-key-id: S3RVER\n${indent}  secret-access-key: S3RVER\n${indent}  sync-interval: ${syncInterval}\n`
  )
}

/** litestreamConfig is a v0.3.13 config replicating every db to `<replica>/databases/<guid>`; all other settings default. */
export function litestreamConfig(dbs: readonly string[], replica: ReplicaTarget, syncInterval: string): string {
  let y = 'dbs:\n'
  for (const db of dbs) y += `  - path: ${db}\n    replicas:\n${replicaYaml(replica, guidOf(db), syncInterval, '      ')}`
  return y
}

/** startLitestreamSingle spawns one `litestream replicate -config cfg.yml` for every database. */
export function startLitestreamSingle(opts: { workDir: string; dbs: readonly string[]; replica: ReplicaTarget; syncInterval: string }): Sut {
  const cfg = path.join(opts.workDir, 'litestream.yml')
  fs.writeFileSync(cfg, litestreamConfig(opts.dbs, opts.replica, opts.syncInterval))
  const log = path.join(opts.workDir, 'litestream.log')
  return makeSut('litestreamSingleProcess', [spawnLogged(LITESTREAM_BIN, ['replicate', '-config', cfg], log, {})], [log])
}

/**
 * startLitestreamPerProcess spawns one stock process per database: `litestream replicate DB file:///...` for
 * file replicas; for S3 a one-database config (v0.3.13 URLs cannot name a custom endpoint).
 */
export function startLitestreamPerProcess(opts: { workDir: string; dbs: readonly string[]; replica: ReplicaTarget; syncInterval: string }): Sut {
  const procs: ChildProcess[] = []
  const logs: string[] = []
  const logDir = path.join(opts.workDir, 'litestream-logs')
  fs.mkdirSync(logDir, { recursive: true })
  for (const db of opts.dbs) {
    const guid = guidOf(db)
    const log = path.join(logDir, `${guid}.log`)
    logs.push(log)
    if (opts.replica.kind === 'file') {
      // CLI-form replicas get sync-interval 1s (replicate.go); the bench's -sync-interval must be 1s for this peer.
      procs.push(spawnLogged(LITESTREAM_BIN, ['replicate', db, `file://${path.join(opts.replica.root, 'databases', guid)}`], log, {}))
    } else {
      const cfg = path.join(logDir, `${guid}.yml`)
      fs.writeFileSync(cfg, litestreamConfig([db], opts.replica, opts.syncInterval))
      procs.push(spawnLogged(LITESTREAM_BIN, ['replicate', '-config', cfg], log, {}))
    }
  }
  return makeSut('litestreamPerProcess', procs, logs)
}

/** LogSummary counts problems in a peer's logs. */
export interface LogSummary {
  readonly errors: number
  readonly warnings: number
  /** examples holds up to 8 distinct problem lines (trimmed). */
  readonly examples: string[]
}

/**
 * summarizeLogs counts error and warning lines. Ours logs pino JSON (level 40 warn, >= 50 error); Litestream
 * v0.3.13 logs slog text (`level=ERROR`, or `ERROR` after the date in the CLI form); Go panics count as errors.
 */
export function summarizeLogs(files: readonly string[]): LogSummary {
  let errors = 0
  let warnings = 0
  const examples = new Map<string, string>()
  for (const f of files) {
    let text = ''
    try {
      text = fs.readFileSync(f, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('# ')) continue
      let level = 0
      let key = line
      if (line.startsWith('{')) {
        try {
          const o = JSON.parse(line) as { level?: number; msg?: string; err?: unknown }
          level = o.level ?? 0
          key = `${o.msg ?? ''} ${typeof o.err === 'string' ? o.err : o.err ? JSON.stringify(o.err) : ''}`.trim()
        } catch {
          level = /error/i.test(line) ? 50 : 0
        }
      } else if (/\bERROR\b|level=ERROR|panic:|fatal/.test(line)) {
        level = 50
      } else if (/\bWARN\b|level=WARN/.test(line)) {
        level = 40
      }
      if (!line.startsWith('{')) key = line.replace(/^(time=\S+|\S+ \S+) /, '').replace(/\/[^\s:"]+\.db\b/g, '<db>')
      if (level >= 50) errors++
      else if (level === 40) warnings++
      else continue
      if (examples.size < 8 && !examples.has(key.slice(0, 160))) examples.set(key.slice(0, 160), line.slice(0, 400))
    }
  }
  return { errors, warnings, examples: [...examples.values()] }
}
