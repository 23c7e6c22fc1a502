/**
 * restore rebuilds a database from any Litestream v0.3-layout replica (ours or stock Litestream's).
 *
 * Steps: list the replica; choose generation, snapshot and segments (plan.ts); download in parallel but apply in
 * order; validate every object before SQLite sees it (one LZ4 frame, WAL header, offsets, salts, checksum chain,
 * commit endings); apply each WAL index exactly as Litestream's applyWAL does (write `<out>.tmp-wal`, open,
 * `PRAGMA wal_checkpoint(TRUNCATE)`, close) and check that SQLite applied every frame; `PRAGMA integrity_check`;
 * fsync; rename to the output; fsync the directory. Nothing named `<out>.tmp*` survives, success or failure.
 * @module
 */
import fs from 'node:fs'
import { open, rename, stat, unlink, writeFile, type FileHandle } from 'node:fs/promises'
import path from 'node:path'
import Database from 'better-sqlite3'
import { hasCode, ReplicaError } from '../errors.js'
import { decodeFrame } from '../lz4.js'
import type { ReplicaClient } from '../replica-client.js'
import type { SnapshotInfo, WalSegmentInfo } from '../types.js'
import {
  checkSnapshot,
  chooseGeneration,
  planRestore,
  segmentName,
  snapshotName,
  WalIndexChecker,
  type GenerationListing,
  type RestorePlan,
  type TimeRange,
} from './plan.js'

/** DEFAULT_RESTORE_PARALLELISM is Litestream's default -parallelism: objects downloaded at once. */
export const DEFAULT_RESTORE_PARALLELISM = 8

/** RestoreProgress reports compressed bytes downloaded so far out of the total the plan needs. */
export interface RestoreProgress {
  readonly doneBytes: number
  readonly totalBytes: number
}

/** RestoreOptions configures one restore. */
export interface RestoreOptions {
  /** outPath is the database file to create. Its directory must exist. */
  readonly outPath: string
  /** generation restricts the restore to one generation; undefined picks the newest like Litestream. */
  readonly generation?: string
  /** index is the last WAL index to apply, inclusive; undefined means all. */
  readonly index?: number
  /** timestamp restores the state as of this time (objects created after it are ignored); undefined means now. */
  readonly timestamp?: Date
  /** force replaces an existing outPath (and removes its stale -wal/-shm/-journal). Default false. */
  readonly force?: boolean
  /** parallelism bounds concurrent downloads (and downloaded objects held in memory). Default 8. */
  readonly parallelism?: number
  /** onProgress is called after each downloaded object. */
  readonly onProgress?: (p: RestoreProgress) => void
  readonly signal?: AbortSignal
}

/** RestoreResult says what was restored. */
export interface RestoreResult {
  readonly generation: string
  /** index is the last WAL index applied (the snapshot's index for a snapshot-only restore). */
  readonly index: number
  /** offset is the byte position in that index after the last applied segment (0 when none was applied). */
  readonly offset: number
  readonly snapshotIndex: number
  readonly pageSize: number
  /** bytes is the size of the restored database file. */
  readonly bytes: number
  /** timeRange: from = the generation's oldest object, to = the newest object applied. */
  readonly timeRange: TimeRange
}

/** listReplica lists snapshots and WAL segments of every generation (or of one). */
export async function listReplica(
  client: ReplicaClient,
  opts: { readonly generation?: string; readonly signal?: AbortSignal } = {},
): Promise<GenerationListing[]> {
  const signal = opts.signal
  let gens: string[]
  try {
    gens = await client.generations({ signal })
  } catch (err) {
    throw new Error(`list generations of ${client.describe()}`, { cause: err })
  }
  if (opts.generation !== undefined) gens = gens.filter((g) => g === opts.generation)
  return Promise.all(
    gens.map(async (generation) => {
      try {
        const [snapshots, segments] = await Promise.all([client.snapshots(generation, { signal }), client.walSegments(generation, { signal })])
        return { generation, snapshots, segments }
      } catch (err) {
        throw new Error(`list generation ${generation} of ${client.describe()}`, { cause: err })
      }
    }),
  )
}

/** ObjectRef names one replica object to download. */
export type ObjectRef = { readonly kind: 'snapshot'; readonly info: SnapshotInfo } | { readonly kind: 'segment'; readonly info: WalSegmentInfo }

/** objectName is the replica-relative key of ref, for messages. */
export function objectName(ref: ObjectRef): string {
  return ref.kind === 'snapshot' ? snapshotName(ref.info.generation, ref.info.index) : segmentName(ref.info.generation, ref.info.index, ref.info.offset)
}

/** readObject downloads one object (compressed), wrapping errors with its name. A listed object that is gone keeps NOT_FOUND in the cause chain. */
export async function readObject(client: ReplicaClient, ref: ObjectRef, signal?: AbortSignal): Promise<Buffer> {
  try {
    return ref.kind === 'snapshot'
      ? await client.readSnapshot(ref.info.generation, ref.info.index, { signal })
      : await client.readWalSegment(ref.info.generation, ref.info.index, ref.info.offset, { signal })
  } catch (err) {
    const what = hasCode(err, 'NOT_FOUND') ? 'listed but missing when read (deleted concurrently?)' : 'cannot be read'
    throw new Error(`${objectName(ref)} ${what}`, { cause: err })
  }
}

/** decodeObject decompresses one object strictly (exactly one complete LZ4 frame), naming it in the error. */
export function decodeObject(ref: ObjectRef, compressed: Buffer): Buffer {
  try {
    return decodeFrame(compressed)
  } catch (err) {
    throw new ReplicaError('REPLICA_INVALID', `${objectName(ref)}: ${(err as Error).message}`, { cause: err })
  }
}

/**
 * fetchInOrder runs fetch over items with at most `parallelism` fetches in flight or finished-but-unconsumed,
 * yielding results in item order. Leaving the loop early aborts the fetches still running.
 */
export async function* fetchInOrder<T, R>(
  items: readonly T[],
  parallelism: number,
  fetch: (item: T, signal: AbortSignal) => Promise<R>,
  signal?: AbortSignal,
): AsyncGenerator<R> {
  const ac = new AbortController()
  const sig = signal ? AbortSignal.any([signal, ac.signal]) : ac.signal
  const pending: Promise<R>[] = []
  let next = 0
  const start = (): void => {
    const p = fetch(items[next++]!, sig)
    p.catch(() => {}) // consumed in order below; an abandoned one must not become an unhandled rejection
    pending.push(p)
  }
  try {
    while (next < items.length && pending.length < parallelism) start()
    while (pending.length > 0) {
      const r = await pending.shift()!
      if (next < items.length) start()
      yield r
    }
  } finally {
    ac.abort()
  }
}

interface TmpFiles {
  readonly db: string
  readonly wal: string
  readonly shm: string
}

async function removeIfExists(file: string): Promise<void> {
  try {
    await unlink(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`remove ${file}`, { cause: err })
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.promises.lstat(file)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}

async function fsyncPath(p: string): Promise<void> {
  const fh = await open(p, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

interface CheckpointRow {
  busy: number
  log: number
  checkpointed: number
}

/**
 * applyWal checkpoints `<db>-wal` into db the way Litestream's applyWAL does (open, TRUNCATE checkpoint, close)
 * and proves SQLite used every frame we validated: a PASSIVE checkpoint first reports the frames SQLite
 * recovered from the WAL, and after a full checkpoint the file is exactly the last commit's database size.
 */
function applyWal(files: TmpFiles, what: string, frames: number, dbPages: number, pageSize: number): void {
  let db: Database.Database | undefined
  try {
    db = new Database(files.db, { timeout: 0, fileMustExist: true })
    const passive = (db.pragma('wal_checkpoint(PASSIVE)') as CheckpointRow[])[0]
    if (!passive || passive.busy !== 0 || passive.log !== frames || passive.checkpointed !== frames) {
      throw new ReplicaError(
        'REPLICA_INVALID',
        `${what}: SQLite applied ${passive?.checkpointed ?? '?'} of ${passive?.log ?? '?'} wal frames (busy=${passive?.busy ?? '?'}), expected all ${frames} validated frames`,
      )
    }
    const truncate = (db.pragma('wal_checkpoint(TRUNCATE)') as CheckpointRow[])[0]
    if (!truncate || truncate.busy !== 0 || truncate.log !== truncate.checkpointed) {
      throw new ReplicaError('REPLICA_INVALID', `${what}: truncation checkpoint failed during restore (${truncate?.busy},${truncate?.log},${truncate?.checkpointed})`)
    }
  } catch (err) {
    if (err instanceof ReplicaError) throw err
    throw new ReplicaError('REPLICA_INVALID', `${what}: SQLite cannot apply the wal: ${(err as Error).message}`, { cause: err })
  } finally {
    db?.close()
  }
  if (frames > 0 && dbPages > 0) {
    const size = fs.statSync(files.db).size
    if (size !== dbPages * pageSize) {
      throw new ReplicaError('REPLICA_INVALID', `${what}: database is ${size} bytes after the checkpoint, the last commit frame says ${dbPages} pages of ${pageSize}`)
    }
  }
}

/** integrityCheck runs PRAGMA integrity_check and returns the page size; throws REPLICA_INVALID unless the answer is "ok". */
function integrityCheck(file: string, what: string): number {
  let db: Database.Database | undefined
  try {
    db = new Database(file, { timeout: 0, fileMustExist: true })
    const rows = db.pragma('integrity_check') as { integrity_check: string }[]
    if (rows.length !== 1 || rows[0]!.integrity_check !== 'ok') {
      const shown = rows.slice(0, 5).map((r) => r.integrity_check).join('; ')
      throw new ReplicaError('REPLICA_INVALID', `${what}: restored database fails integrity_check: ${shown}`)
    }
    return db.pragma('page_size', { simple: true }) as number
  } catch (err) {
    if (err instanceof ReplicaError) throw err
    throw new ReplicaError('REPLICA_INVALID', `${what}: restored database cannot be read: ${(err as Error).message}`, { cause: err })
  } finally {
    db?.close()
  }
}

/** restore rebuilds a database from client into opts.outPath. See the module comment for the steps. */
export async function restore(client: ReplicaClient, opts: RestoreOptions): Promise<RestoreResult> {
  const out = path.resolve(opts.outPath)
  const parallelism = opts.parallelism ?? DEFAULT_RESTORE_PARALLELISM
  if (!Number.isInteger(parallelism) || parallelism < 1) throw new RangeError(`parallelism must be a positive integer, got ${parallelism}`)
  const signal = opts.signal
  signal?.throwIfAborted()

  // 1. Refuse to clobber: the output, or a stale -wal/-journal SQLite would replay into the new file.
  if (!opts.force) {
    for (const f of [out, `${out}-wal`, `${out}-journal`]) {
      if (await exists(f)) throw new ReplicaError('CONFIG_INVALID', `cannot restore: ${f} already exists (use force to replace it)`)
    }
  }

  // 2. Plan from the listing.
  const listing = await listReplica(client, { generation: opts.generation, signal })
  const g = chooseGeneration(listing, opts)
  const plan = planRestore(g, opts)

  // 3. Download, validate and apply into <out>.tmp, in order.
  const files: TmpFiles = { db: `${out}.tmp`, wal: `${out}.tmp-wal`, shm: `${out}.tmp-shm` }
  let renamed = false
  try {
    for (const f of [files.db, files.wal, files.shm]) await removeIfExists(f) // leftovers of a killed restore
    const applied = await applyPlan(client, plan, files, parallelism, opts.onProgress, signal)
    signal?.throwIfAborted()

    // 4. Integrity, durability, publish.
    const pageSize = integrityCheck(files.db, `restore of ${plan.generation}`)
    for (const f of [files.wal, files.shm]) await removeIfExists(f)
    await fsyncPath(files.db)
    signal?.throwIfAborted()
    if (opts.force) for (const f of [`${out}-wal`, `${out}-shm`, `${out}-journal`]) await removeIfExists(f)
    await rename(files.db, out)
    renamed = true
    await fsyncPath(path.dirname(out))
    const bytes = (await stat(out)).size
    return {
      generation: plan.generation,
      index: applied.index,
      offset: applied.offset,
      snapshotIndex: plan.snapshot.index,
      pageSize,
      bytes,
      timeRange: plan.timeRange,
    }
  } finally {
    const leftovers = renamed ? [files.wal, files.shm] : [files.db, files.wal, files.shm]
    for (const f of leftovers) await removeIfExists(f).catch(() => {})
  }
}

/** applyPlan downloads the plan's objects (bounded parallelism) and applies them in order. */
async function applyPlan(
  client: ReplicaClient,
  plan: RestorePlan,
  files: TmpFiles,
  parallelism: number,
  onProgress: RestoreOptions['onProgress'],
  signal: AbortSignal | undefined,
): Promise<{ index: number; offset: number }> {
  const refs: ObjectRef[] = [{ kind: 'snapshot', info: plan.snapshot }]
  for (const ix of plan.indexes) for (const s of ix.segments) refs.push({ kind: 'segment', info: s })
  const totalBytes = plan.totalBytes
  let doneBytes = 0
  onProgress?.({ doneBytes, totalBytes })

  let pageSize = 0
  let ixPos = 0 // position in plan.indexes
  let segPos = 0 // position in the current index's segments
  let checker: WalIndexChecker | null = null
  let wal: FileHandle | null = null
  let last = { index: plan.snapshot.index, offset: 0 }
  const fetched = fetchInOrder(refs, parallelism, async (ref, sig) => ({ ref, data: await readObject(client, ref, sig) }), signal)
  try {
    for await (const { ref, data } of fetched) {
      signal?.throwIfAborted()
      doneBytes += ref.info.size
      const bytes = decodeObject(ref, data)
      if (ref.kind === 'snapshot') {
        const check = checkSnapshot(bytes)
        if (!check.ok) throw new ReplicaError('REPLICA_INVALID', `${objectName(ref)}: ${check.reason}`)
        pageSize = check.pageSize
        await writeFile(files.db, bytes)
        onProgress?.({ doneBytes, totalBytes })
        continue
      }
      const ix = plan.indexes[ixPos]!
      if (segPos === 0) {
        checker = new WalIndexChecker(plan.generation, ix.index, pageSize)
        wal = await open(files.wal, 'w')
      }
      const found = checker!.check(ref.info.offset, bytes).findings[0]
      if (found) throw new ReplicaError('REPLICA_INVALID', found.message)
      await wal!.write(bytes)
      onProgress?.({ doneBytes, totalBytes })
      segPos++
      if (segPos < ix.segments.length) continue

      // Last segment of the index: hand the whole incarnation to SQLite.
      await wal!.close()
      wal = null
      applyWal(files, `wal index ${plan.generation}/${ix.index.toString(16).padStart(8, '0')}`, checker!.frames, checker!.dbPages, pageSize)
      last = { index: ix.index, offset: checker!.endOffset }
      ixPos++
      segPos = 0
    }
  } finally {
    await wal?.close().catch(() => {})
    await fetched.return(undefined)
  }
  return last
}
