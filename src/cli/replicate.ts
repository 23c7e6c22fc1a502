/**
 * `litestream-manager replicate [flags] <db-path> <replica-url>`: replicate one database until SIGINT/SIGTERM,
 * then ship everything committed and exit 0 (1 if the final sync failed; a second signal exits 130 at once).
 * @module
 */
import fs from 'node:fs'
import path from 'node:path'
import type { Logger } from '../log.js'
import { parseFlags, usage, type FlagSpec } from '../flags.js'
import { loadBackendFor, parseReplicaUrl } from '../replica-url.js'
import { Replicator } from '../replicator.js'
import { checkDbFile } from '../wal/sqlite-handle.js'
import { watchDir } from '../watch.js'
import { errorMessage } from '../errors.js'
import { replicationFlags, replicationOptions } from './options.js'

const FLAGS: readonly FlagSpec[] = [...replicationFlags]

/** CliIo is what a command needs from the process; main.ts passes the real one, tests a fake. */
export interface CliIo {
  readonly env: Readonly<Record<string, string | undefined>>
  readonly stdout: (s: string) => void
  readonly stderr: (s: string) => void
  readonly log: Logger
  /** signals resolves on the first SIGINT/SIGTERM; onSecond runs on the next one. */
  readonly onSignal: (first: () => void, second: () => void) => void
}

/** replicateCommand runs the replicate subcommand and resolves to the process exit code. */
export async function replicateCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const f = parseFlags(argv, FLAGS)
  const help = `Usage: litestream-manager replicate [flags] <db-path> <replica-url>\n\nReplica URLs: file:///abs/dir, a plain directory path, or s3://bucket/prefix[?endpoint=http://host:port&region=r&forcePathStyle=true]\n\nFlags:\n${usage(FLAGS)}\n`
  if (f.help) {
    io.stdout(help)
    return 0
  }
  const errors = [...f.errors]
  if (f.args.length !== 2) errors.push(`expected <db-path> <replica-url>, got ${f.args.length} argument(s)`)
  const opts = replicationOptions(f.values, errors)
  if (errors.length > 0) {
    io.stderr(`${errors.map((e) => `error: ${e}`).join('\n')}\n\n${help}`)
    return 2
  }
  const dbPath = path.resolve(f.args[0]!)
  const check = checkDbFile(dbPath)
  if (!check.ok) {
    io.stderr(`error: ${dbPath}: ${check.detail}\n`)
    return 1
  }
  let client
  try {
    await loadBackendFor(f.args[1]!)
    client = parseReplicaUrl(f.args[1]!, io.env)
  } catch (err) {
    io.stderr(`error: ${errorMessage(err)}\n`)
    return 1
  }
  const log = io.log.child({ db: dbPath })
  const r = new Replicator({ dbPath, client, log, ...opts })
  const walPath = `${dbPath}-wal`
  let stopping = false
  const stopped = new Promise<void>((resolve) => {
    io.onSignal(
      () => {
        stopping = true
        resolve()
      },
      () => {
        io.stderr('second signal: exiting without final sync\n')
        process.exit(130)
      },
    )
  })
  const watch = await watchDir(
    path.dirname(dbPath),
    (events) => {
      for (const e of events) {
        if (e.path === walPath) r.notify('wal')
        else if (e.path === dbPath) r.notify('db')
      }
    },
    (err) => log.warn({ err: err.message }, 'watcher error'),
  )
  // Slow safety net behind the watcher: a cheap stat of the WAL, no replica request.
  let lastWal = ''
  const safety = setInterval(() => {
    try {
      const st = fs.statSync(walPath, { bigint: true })
      const sig = `${st.ino}:${st.size}:${st.mtimeNs}`
      if (sig !== lastWal) {
        if (lastWal !== '') r.notify('wal')
        lastWal = sig
      }
    } catch {
      // no WAL yet
    }
  }, 5000)
  safety.unref()
  log.info({ replica: client.describe() }, 'replicating')
  r.start()
  await stopped
  clearInterval(safety)
  await watch.close()
  try {
    await r.close()
  } catch (err) {
    io.stderr(`error: final sync failed: ${errorMessage(err)}\n`)
    return 1
  }
  log.info({ pos: r.pos(), stopping }, 'stopped')
  return 0
}
