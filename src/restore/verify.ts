/**
 * verifyReplica proves a replica restores: it restores into a temporary directory (with every check restore
 * makes, including `PRAGMA integrity_check`), counts the rows of each user table, and removes the copy.
 * @module
 */
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import type { ReplicaClient } from '../replica-client.js'
import { restore, type RestoreOptions, type RestoreResult } from './restore.js'

/** VerifyOptions selects what to verify (default: the newest state) and where the temporary copy goes. */
export interface VerifyOptions extends Omit<RestoreOptions, 'outPath' | 'force'> {
  /** tmpDir is the parent of the temporary directory. Default: os.tmpdir(). */
  readonly tmpDir?: string
}

/** VerifyResult describes a replica that restored and passed integrity_check: what restore reports, plus counts. */
export interface VerifyResult extends RestoreResult {
  /** tables maps each user table (not sqlite_*, _litestream_*, or virtual) to its row count. */
  readonly tables: Readonly<Record<string, number>>
  readonly durationMs: number
}

/** userTableCounts counts the rows of every user table of an open database, in one read transaction. */
export function userTableCounts(db: Database.Database): Record<string, number> {
  const tables: Record<string, number> = {}
  db.transaction(() => {
    const rows = db.prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'table' ORDER BY name").all() as { name: string; sql: string | null }[]
    for (const { name, sql } of rows) {
      if (name.startsWith('sqlite_') || name.startsWith('_litestream_') || /^\s*CREATE\s+VIRTUAL\s/i.test(sql ?? '')) continue
      tables[name] = db.prepare(`SELECT count(*) FROM "${name.replaceAll('"', '""')}"`).pluck().get() as number
    }
  })()
  return tables
}

/** verifyReplica restores client into a temporary file, counts rows per table and cleans up. Throws like restore. */
export async function verifyReplica(client: ReplicaClient, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const started = performance.now()
  const dir = await mkdtemp(path.join(opts.tmpDir ?? os.tmpdir(), 'lm-verify-'))
  try {
    const outPath = path.join(dir, 'verify.db')
    const r = await restore(client, { ...opts, outPath })
    const db = new Database(outPath, { timeout: 0, fileMustExist: true })
    let tables: Record<string, number>
    try {
      tables = userTableCounts(db)
    } finally {
      db.close()
    }
    return { ...r, tables, durationMs: Math.round(performance.now() - started) }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
