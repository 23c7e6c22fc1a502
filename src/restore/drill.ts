/**
 * runDrill is a scheduled restore drill for one live database: restore the newest state into a temporary
 * directory, check integrity, and check that the restore holds at least what the caller saw committed when the
 * restored position was shipped. It never rejects on a failed drill (that is its result); only an abort rejects.
 * @module
 */
import fs from 'node:fs'
import { mkdtemp, rm, statfs } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import { errorMessage } from '../errors.js'
import type { ReplicaClient } from '../replica-client.js'
import type { Pos } from '../types.js'
import { restore } from './restore.js'
import { userTableCounts } from './verify.js'

/** DEFAULT_DRILL_MAX_BYTES bounds the disk a drill may use: sources larger than 1 GiB are skipped. */
export const DEFAULT_DRILL_MAX_BYTES = 1 << 30

/** DrillOptions configures one drill. */
export interface DrillOptions {
  /** maxBytes: skip (ok=false, skipped) when the source database plus its WAL is larger. 0 means no limit. Default 1 GiB. */
  readonly maxBytes?: number
  /** tmpDir is the parent of the temporary directory. Default: os.tmpdir(). */
  readonly tmpDir?: string
  /**
   * expected returns the row counts per table the caller recorded when `pos` (or an earlier position of the same
   * generation) was acknowledged; the restore must hold at least as many rows. undefined: nothing to compare.
   */
  readonly expected?: (pos: Pos) => Readonly<Record<string, number>> | undefined
  /** parallelism bounds concurrent downloads. Default 8. */
  readonly parallelism?: number
  readonly signal?: AbortSignal
  /** now is the clock in epoch ms. Default Date.now. */
  readonly now?: () => number
}

/** TableCheck compares one table: rows restored, rows in the live source now, rows expected at the position. */
export interface TableCheck {
  readonly restored: number
  readonly source?: number
  readonly expected?: number
}

/** DrillResult is the outcome of one drill. */
export interface DrillResult {
  readonly ok: boolean
  /** at is when the drill started, epoch ms. */
  readonly at: number
  /** position is what was restored; null when the restore failed or was skipped. */
  readonly position: Pos | null
  readonly durationMs: number
  /** skipped is true when the drill did not run (size or disk limits). */
  readonly skipped?: boolean
  readonly error?: string
  readonly tables?: Readonly<Record<string, TableCheck>>
}

function fileSize(file: string): number {
  try {
    return fs.statSync(file).size
  } catch {
    return 0
  }
}

/** liveCounts reads the source's row counts in one read transaction; undefined when it cannot be read right now. */
function liveCounts(sourceDbPath: string): Record<string, number> | undefined {
  let db: Database.Database | undefined
  try {
    // Read-only: closing it can never checkpoint or delete the application's WAL.
    db = new Database(sourceDbPath, { readonly: true, fileMustExist: true, timeout: 0 })
    return userTableCounts(db)
  } catch {
    return undefined
  } finally {
    db?.close()
  }
}

/** runDrill restores client's newest state next to nothing the application uses and checks it. See the module comment. */
export async function runDrill(client: ReplicaClient, sourceDbPath: string, opts: DrillOptions = {}): Promise<DrillResult> {
  const now = opts.now ?? Date.now
  const at = now()
  const started = performance.now()
  const elapsed = (): number => Math.round(performance.now() - started)
  const maxBytes = opts.maxBytes ?? DEFAULT_DRILL_MAX_BYTES
  const parent = opts.tmpDir ?? os.tmpdir()

  // 1. Bounded disk: the restore is about as large as the database plus what its WAL adds.
  const sourceBytes = fileSize(sourceDbPath) + fileSize(`${sourceDbPath}-wal`)
  if (maxBytes > 0 && sourceBytes > maxBytes) {
    return { ok: false, skipped: true, at, position: null, durationMs: elapsed(), error: `source is ${sourceBytes} bytes, over the drill limit of ${maxBytes} bytes` }
  }
  try {
    const fsStat = await statfs(parent)
    const free = fsStat.bavail * fsStat.bsize
    if (free < 2 * sourceBytes) {
      return { ok: false, skipped: true, at, position: null, durationMs: elapsed(), error: `only ${free} bytes free in ${parent}, the drill needs about ${2 * sourceBytes}` }
    }
  } catch {
    // statfs unsupported: rely on maxBytes.
  }

  const dir = await mkdtemp(path.join(parent, 'lm-drill-'))
  let position: Pos | null = null
  try {
    // 2. Restore with every check restore makes (validation, full apply, integrity_check).
    const outPath = path.join(dir, 'drill.db')
    const r = await restore(client, { outPath, parallelism: opts.parallelism, signal: opts.signal })
    position = { generation: r.generation, index: r.index, offset: r.offset }
    const db = new Database(outPath, { timeout: 0, fileMustExist: true })
    let restored: Record<string, number>
    try {
      restored = userTableCounts(db)
    } finally {
      db.close()
    }

    // 3. Compare: restored >= what was committed when this position was acknowledged. The live source is shown.
    const expected = opts.expected?.(position)
    const source = liveCounts(sourceDbPath)
    const tables: Record<string, TableCheck> = {}
    const problems: string[] = []
    for (const name of new Set([...Object.keys(restored), ...Object.keys(expected ?? {})])) {
      const check: TableCheck = { restored: restored[name] ?? 0, source: source?.[name], expected: expected?.[name] }
      tables[name] = check
      if (expected?.[name] !== undefined) {
        if (restored[name] === undefined) problems.push(`table ${name} is missing from the restore (expected ${expected[name]} rows)`)
        else if (restored[name] < expected[name]) problems.push(`table ${name} has ${restored[name]} rows, expected at least ${expected[name]}`)
      }
    }
    if (problems.length > 0) return { ok: false, at, position, durationMs: elapsed(), error: problems.join('; '), tables }
    return { ok: true, at, position, durationMs: elapsed(), tables }
  } catch (err) {
    if (opts.signal?.aborted) throw err
    return { ok: false, at, position, durationMs: elapsed(), error: errorMessage(err) }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
