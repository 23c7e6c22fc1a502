/**
 * Restore-side commands: restore, verify, audit, list.
 *
 *   litestream-manager restore [-o out.db] [-timestamp RFC3339] [-generation G] [-index HEX] [-f] [-bucket ROOT] <guid | replica-url>
 *   litestream-manager verify  [-timestamp …] [-generation G] [-index HEX] [-json] [-bucket ROOT] <guid | replica-url>
 *   litestream-manager audit   [-json] [-bucket ROOT] [<guid | replica-url>]   (no argument: every database under -bucket)
 *   litestream-manager list    [-json] [-bucket ROOT] [<guid | replica-url>]   (no argument: every database under -bucket)
 *
 * A bare GUID means `<root>/databases/<guid>`, with the root given as for the service (-bucket NAME,
 * s3://bucket/prefix or file://path, plus -endpoint/-region/-force-path-style or AWS_ENDPOINT_URL_S3).
 * Exit codes: 0 success (restored, verified, no violations), 1 failure, 2 usage error, 130 interrupted.
 * @module
 */
import path from 'node:path'
import { errorMessage } from '../errors.js'
import { parseFlags, usage, type FlagSpec, type ParsedFlags } from '../flags.js'
import type { ReplicaClient } from '../replica-client.js'
import { childClient, loadS3Backend, parseReplicaUrl } from '../replica-url.js'
import { auditReplica, type Violation } from '../restore/audit.js'
import { DATABASE_ID_RE, DATABASES_PREFIX, listDatabaseIds, listDatabases, summarizeReplica, type GenerationSummary } from '../restore/list.js'
import { restore, DEFAULT_RESTORE_PARALLELISM, type RestoreProgress } from '../restore/restore.js'
import { verifyReplica } from '../restore/verify.js'
import type { CliIo } from './replicate.js'
import { serviceReplicaUrl } from './serve.js'

const ROOT_FLAGS: readonly FlagSpec[] = [
  { name: 'bucket', type: 'string', usage: 'replica root for a GUID argument: bucket name, s3://bucket[/prefix], or file://path (as for the service)' },
  { name: 'endpoint', type: 'string', usage: 'S3-compatible endpoint URL (or env AWS_ENDPOINT_URL_S3)' },
  { name: 'region', type: 'string', usage: 'S3 region (or env AWS_REGION)' },
  { name: 'force-path-style', type: 'boolean', usage: 'use path-style S3 addressing (default on when -endpoint is set)' },
]

const TARGET_FLAGS: readonly FlagSpec[] = [
  { name: 'generation', type: 'string', usage: 'restore from this generation (16 hex digits); default: the newest' },
  { name: 'index', type: 'string', usage: 'last WAL index to apply, inclusive, in hex like litestream (e.g. 1f)' },
  { name: 'timestamp', type: 'string', usage: 'restore the state as of this RFC3339 time (e.g. 2026-01-02T15:04:05Z)' },
  { name: 'parallelism', type: 'string', usage: 'objects downloaded at once', default: String(DEFAULT_RESTORE_PARALLELISM) },
]

const RESTORE_FLAGS: readonly FlagSpec[] = [
  { name: 'o', type: 'string', usage: 'output database path (default for a GUID: ./<guid>.db; required for a replica URL)' },
  { name: 'f', type: 'boolean', usage: 'replace an existing output file' },
  ...TARGET_FLAGS,
  ...ROOT_FLAGS,
]

const VERIFY_FLAGS: readonly FlagSpec[] = [{ name: 'json', type: 'boolean', usage: 'print the result as JSON' }, ...TARGET_FLAGS, ...ROOT_FLAGS]

const AUDIT_FLAGS: readonly FlagSpec[] = [
  { name: 'json', type: 'boolean', usage: 'print violations as JSON' },
  { name: 'parallelism', type: 'string', usage: 'objects downloaded at once', default: String(DEFAULT_RESTORE_PARALLELISM) },
  ...ROOT_FLAGS,
]

const LIST_FLAGS: readonly FlagSpec[] = [{ name: 'json', type: 'boolean', usage: 'print the listing as JSON' }, ...ROOT_FLAGS]

const TARGET_HELP = `The argument is a database GUID (stored at <root>/databases/<guid>, root from -bucket) or a replica URL:
file:///abs/dir, a plain directory, or s3://bucket/prefix[?endpoint=http://host:port&region=r&forcePathStyle=true].`

function helpText(cmd: string, synopsis: string, what: string, flags: readonly FlagSpec[]): string {
  return `Usage: litestream-manager ${cmd} ${synopsis}\n\n${what}\n\n${TARGET_HELP}\n\nFlags:\n${usage(flags)}\n`
}

class UsageError extends Error {}

/** Target is what the positional argument and flags resolve to. */
interface Target {
  readonly client: ReplicaClient
  /** id is the database GUID when the argument was one. */
  readonly id?: string
}

/** withS3Flags applies -endpoint/-region/-force-path-style to a root or s3:// URL, as the service does. */
function withS3Flags(url: string, v: ParsedFlags['values']): string {
  return serviceReplicaUrl(url, {
    endpoint: v.endpoint as string | undefined,
    region: v.region as string | undefined,
    forcePathStyle: v['force-path-style'] as boolean | undefined,
  })
}

function hasS3Flags(v: ParsedFlags['values']): boolean {
  return v.endpoint !== undefined || v.region !== undefined || v['force-path-style'] !== undefined
}

/** parseClient turns a URL into a client; a malformed URL is a usage error. */
function parseClient(url: string, env: CliIo['env']): ReplicaClient {
  try {
    return parseReplicaUrl(url, env)
  } catch (err) {
    throw new UsageError(errorMessage(err))
  }
}

/** rootClient is the -bucket root. */
function rootClient(v: ParsedFlags['values'], env: CliIo['env']): ReplicaClient {
  if (!v.bucket) throw new UsageError('missing -bucket: the replica root that holds databases/<guid>')
  return parseClient(withS3Flags(String(v.bucket), v), env)
}

/** resolveTarget resolves `<guid | replica-url>`. */
function resolveTarget(arg: string, v: ParsedFlags['values'], env: CliIo['env']): Target {
  if (DATABASE_ID_RE.test(arg)) {
    if (!v.bucket) throw new UsageError(`a database GUID needs -bucket (the root that holds ${DATABASES_PREFIX}/${arg}), or pass a replica URL`)
    return { client: childClient(rootClient(v, env), `${DATABASES_PREFIX}/${arg}`), id: arg }
  }
  if (v.bucket) throw new UsageError(`-bucket applies to a database GUID, but ${JSON.stringify(arg)} is not a lowercase GUID; pass either a GUID with -bucket or a full replica URL`)
  const url = /^s3:\/\//i.test(arg) && hasS3Flags(v) ? withS3Flags(arg, v) : arg
  return { client: parseClient(url, env) }
}

/** TargetOptions are the parsed -generation/-index/-timestamp/-parallelism flags. */
interface TargetOptions {
  generation?: string
  index?: number
  timestamp?: Date
  parallelism: number
}

const RFC3339_RE = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/

function targetOptions(v: ParsedFlags['values'], errors: string[]): TargetOptions {
  const o: TargetOptions = { parallelism: DEFAULT_RESTORE_PARALLELISM }
  if (v.generation !== undefined) {
    const g = String(v.generation)
    if (!/^[0-9a-f]{16}$/.test(g)) errors.push(`invalid -generation ${JSON.stringify(g)}: want 16 lowercase hex digits`)
    else o.generation = g
  }
  if (v.index !== undefined) {
    const s = String(v.index)
    const n = /^[0-9a-fA-F]{1,8}$/.test(s) ? parseInt(s, 16) : NaN
    if (!Number.isInteger(n) || n > 0x7fffffff) errors.push(`invalid -index ${JSON.stringify(s)}: want a hex WAL index like litestream's (0 to 7fffffff)`)
    else o.index = n
  }
  if (v.timestamp !== undefined) {
    const s = String(v.timestamp)
    const t = RFC3339_RE.test(s) ? new Date(s.replace(' ', 'T')) : new Date(NaN)
    if (Number.isNaN(t.getTime())) errors.push(`invalid -timestamp ${JSON.stringify(s)}: want RFC3339, e.g. 2026-01-02T15:04:05Z`)
    else o.timestamp = t
  }
  if (v.parallelism !== undefined) {
    const n = Number(v.parallelism)
    if (!Number.isInteger(n) || n < 1 || n > 256) errors.push(`invalid -parallelism ${JSON.stringify(v.parallelism)}: want 1 to 256`)
    else o.parallelism = n
  }
  return o
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0')
}

/** run wraps a command body: usage errors exit 2, aborts 130, other failures 1, with one clear line on stderr. */
async function run(io: CliIo, help: string, body: (signal: AbortSignal) => Promise<number>): Promise<number> {
  const ac = new AbortController()
  io.onSignal(
    () => ac.abort(),
    () => process.exit(130),
  )
  try {
    await loadS3Backend() // one-shot commands: any target may be s3://, and memory is no concern here
    return await body(ac.signal)
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`error: ${err.message}\n\n${help}`)
      return 2
    }
    if (ac.signal.aborted) {
      io.stderr('interrupted\n')
      return 130
    }
    io.stderr(`error: ${errorMessage(err)}\n`)
    return 1
  }
}

/** parse parses flags and counts positional arguments; returns an exit code when help was printed. */
function parse(argv: readonly string[], flags: readonly FlagSpec[], help: string, io: CliIo, maxArgs: number, minArgs: number): { f: ParsedFlags; errors: string[] } | number {
  const f = parseFlags(argv, flags)
  if (f.help) {
    io.stdout(help)
    return 0
  }
  const errors = [...f.errors]
  if (f.args.length < minArgs) errors.push('missing <guid | replica-url> argument')
  if (f.args.length > maxArgs) errors.push(`unexpected argument ${JSON.stringify(f.args[maxArgs])}`)
  return { f, errors }
}

function usageFail(io: CliIo, errors: readonly string[], help: string): number {
  io.stderr(`${errors.map((e) => `error: ${e}`).join('\n')}\n\n${help}`)
  return 2
}

/** progressBar renders restore progress on a terminal, at most ten times a second. */
function progressBar(io: CliIo): ((p: RestoreProgress) => void) | undefined {
  if (process.stderr.isTTY !== true) return undefined
  let last = 0
  return (p) => {
    const now = Date.now()
    const done = p.doneBytes >= p.totalBytes
    if (!done && now - last < 100) return
    last = now
    const frac = p.totalBytes > 0 ? Math.min(1, p.doneBytes / p.totalBytes) : 1
    const width = 30
    const fill = Math.round(frac * width)
    const mb = (n: number): string => (n / 1e6).toFixed(1)
    io.stderr(`\r[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${String(Math.round(frac * 100)).padStart(3)}% ${mb(p.doneBytes)}/${mb(p.totalBytes)} MB${done ? '\n' : ''}`)
  }
}

/** restoreCommand runs `litestream-manager restore` and resolves to the exit code. */
export async function restoreCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const help = helpText(
    'restore',
    '[flags] <guid | replica-url>',
    'Restores a database from a Litestream v0.3-layout replica, checking every object on the way (stricter than litestream restore).',
    RESTORE_FLAGS,
  )
  const parsed = parse(argv, RESTORE_FLAGS, help, io, 1, 1)
  if (typeof parsed === 'number') return parsed
  const { f, errors } = parsed
  const t = targetOptions(f.values, errors)
  const arg = f.args[0]
  if (arg !== undefined && f.values.o === undefined && !DATABASE_ID_RE.test(arg)) errors.push('missing -o <out.db>: required when restoring from a replica URL')
  if (errors.length > 0) return usageFail(io, errors, help)
  return run(io, help, async (signal) => {
    const target = resolveTarget(arg!, f.values, io.env)
    const out = path.resolve(f.values.o !== undefined ? String(f.values.o) : `${target.id}.db`)
    const r = await restore(target.client, { outPath: out, ...t, force: f.values.f === true, signal, onProgress: progressBar(io) })
    io.stdout(
      `restored ${r.generation}/${hex8(r.index)}:${r.offset} from ${target.client.describe()} to ${out}` +
        ` (snapshot index ${hex8(r.snapshotIndex)}, ${r.bytes} bytes, page size ${r.pageSize}, state as of ${r.timeRange.to.toISOString()})\n`,
    )
    return 0
  })
}

/** verifyCommand runs `litestream-manager verify` and resolves to the exit code. */
export async function verifyCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const help = helpText(
    'verify',
    '[flags] <guid | replica-url>',
    'Restores into a temporary file, runs PRAGMA integrity_check, prints the position, time range and row counts, and removes the copy.',
    VERIFY_FLAGS,
  )
  const parsed = parse(argv, VERIFY_FLAGS, help, io, 1, 1)
  if (typeof parsed === 'number') return parsed
  const { f, errors } = parsed
  const t = targetOptions(f.values, errors)
  if (errors.length > 0) return usageFail(io, errors, help)
  return run(io, help, async (signal) => {
    const target = resolveTarget(f.args[0]!, f.values, io.env)
    const r = await verifyReplica(target.client, { ...t, signal })
    if (f.values.json === true) {
      io.stdout(`${JSON.stringify({ replica: target.client.describe(), ok: true, integrity: 'ok', ...r })}\n`)
      return 0
    }
    const tables = Object.entries(r.tables)
      .map(([name, n]) => `${name}=${n}`)
      .join(', ')
    io.stdout(
      [
        `verified    ${target.client.describe()}`,
        `generation  ${r.generation}`,
        `position    ${hex8(r.index)}:${r.offset} (snapshot index ${hex8(r.snapshotIndex)})`,
        `time range  ${r.timeRange.from.toISOString()} .. ${r.timeRange.to.toISOString()}`,
        `integrity   ok (${r.bytes} bytes, page size ${r.pageSize}, ${r.durationMs} ms)`,
        `tables      ${tables || '(none)'}`,
        '',
      ].join('\n'),
    )
    return 0
  })
}

/** auditCommand runs `litestream-manager audit` and resolves to 0 only when no violation was found. */
export async function auditCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const help = helpText(
    'audit',
    '[flags] [<guid | replica-url>]',
    'Reads every object of every generation and reports each broken replica invariant. Without an argument, audits every database under -bucket.',
    AUDIT_FLAGS,
  )
  const parsed = parse(argv, AUDIT_FLAGS, help, io, 1, 0)
  if (typeof parsed === 'number') return parsed
  const { f, errors } = parsed
  const { parallelism } = targetOptions(f.values, errors)
  if (errors.length > 0) return usageFail(io, errors, help)
  return run(io, help, async (signal) => {
    const targets: { label: string; client: ReplicaClient }[] = []
    if (f.args[0] !== undefined) {
      const t = resolveTarget(f.args[0], f.values, io.env)
      targets.push({ label: t.id ?? t.client.describe(), client: t.client })
    } else {
      const root = rootClient(f.values, io.env)
      for (const id of await listDatabaseIds(root, { signal })) targets.push({ label: id, client: childClient(root, `${DATABASES_PREFIX}/${id}`) })
    }
    const found: (Violation & { database: string })[] = []
    for (const t of targets) {
      for (const v of await auditReplica(t.client, { parallelism, signal })) found.push({ database: t.label, ...v })
    }
    if (f.values.json === true) {
      io.stdout(`${JSON.stringify({ databases: targets.map((t) => t.label), violations: found })}\n`)
    } else {
      for (const v of found) io.stdout(`${targets.length > 1 ? `${v.database} ` : ''}[${v.rule}] ${v.message}\n`)
      io.stdout(`audit: ${found.length === 0 ? 'no violations' : `${found.length} violation(s)`} in ${targets.length} replica(s)\n`)
    }
    return found.length === 0 ? 0 : 1
  })
}

function formatGeneration(g: GenerationSummary): string {
  const range = g.timeRange ? `${g.timeRange.from.toISOString()} .. ${g.timeRange.to.toISOString()}` : '(empty)'
  const snaps = g.snapshotIndexes.map(hex8).join(',') || '-'
  return `  ${g.generation}  snapshots ${snaps}  last index ${g.lastIndex < 0 ? '-' : hex8(g.lastIndex)}  ${g.segments} segment(s)  ${g.bytes} bytes  ${range}`
}

/** listCommand runs `litestream-manager list` and resolves to the exit code. */
export async function listCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const help = helpText(
    'list',
    '[flags] [<guid | replica-url>]',
    'Lists the generations of one replica, or of every database under -bucket (newest first: the one restore picks).',
    LIST_FLAGS,
  )
  const parsed = parse(argv, LIST_FLAGS, help, io, 1, 0)
  if (typeof parsed === 'number') return parsed
  const { f, errors } = parsed
  if (errors.length > 0) return usageFail(io, errors, help)
  return run(io, help, async (signal) => {
    if (f.args[0] !== undefined) {
      const t = resolveTarget(f.args[0], f.values, io.env)
      const gens = await summarizeReplica(t.client, { signal })
      if (f.values.json === true) io.stdout(`${JSON.stringify({ replica: t.client.describe(), generations: gens })}\n`)
      else io.stdout(`${t.client.describe()}\n${gens.map(formatGeneration).join('\n') || '  (no generations)'}\n`)
      return 0
    }
    const root = rootClient(f.values, io.env)
    const dbs = await listDatabases(root, { signal })
    if (f.values.json === true) {
      io.stdout(`${JSON.stringify({ root: root.describe(), databases: dbs })}\n`)
      return 0
    }
    const lines = [`${root.describe()}: ${dbs.length} database(s)`]
    for (const d of dbs) lines.push(d.id, ...(d.generations.length > 0 ? d.generations.map(formatGeneration) : ['  (no generations)']))
    io.stdout(`${lines.join('\n')}\n`)
    return 0
  })
}
