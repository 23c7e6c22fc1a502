/** Test helpers for real SQLite databases: temp dirs, application connections, content digests. */
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { TestContext } from 'node:test'
import Database from 'better-sqlite3'

/** tmpDir makes a temporary directory removed after the test. */
export function tmpDir(t: TestContext, prefix = 'lm-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** openApp opens a database the way an application would: WAL mode, default autocheckpoint, 5 s busy timeout. */
export function openApp(file: string, opts: { pageSize?: number; timeoutMs?: number } = {}): Database.Database {
  const db = new Database(file, { timeout: opts.timeoutMs ?? 5000 })
  if (opts.pageSize) db.pragma(`page_size = ${opts.pageSize}`)
  db.pragma('journal_mode = wal')
  db.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)')
  return db
}

/** insertRows commits n rows of `bytes` random bytes each, one transaction per row unless inOneTx. */
export function insertRows(db: Database.Database, n: number, bytes = 100, inOneTx = false): void {
  const ins = db.prepare('INSERT INTO t (v) VALUES (?)')
  if (inOneTx) db.transaction(() => { for (let i = 0; i < n; i++) ins.run(crypto.randomBytes(bytes)) })()
  else for (let i = 0; i < n; i++) ins.run(crypto.randomBytes(bytes))
}

/** Digest identifies a database's user content: row counts and a hash over every user table's rows. */
export interface Digest {
  readonly tables: Record<string, number>
  readonly hash: string
}

/** digest reads every user table (ignoring sqlite_* and _litestream_*) in a read transaction. */
export function digest(fileOrDb: string | Database.Database): Digest {
  const db = typeof fileOrDb === 'string' ? new Database(fileOrDb, { readonly: true, fileMustExist: true }) : fileOrDb
  try {
    const h = crypto.createHash('sha256')
    const tables: Record<string, number> = {}
    db.transaction(() => {
      const names = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_litestream_%' ORDER BY name").pluck().all() as string[]
      for (const name of names) {
        let n = 0
        for (const row of db.prepare(`SELECT * FROM "${name}" ORDER BY rowid`).raw().iterate() as Iterable<unknown[]>) {
          n++
          for (const v of row) h.update(Buffer.isBuffer(v) ? v : Buffer.from(String(v)))
        }
        tables[name] = n
        h.update(`|${name}:${n}|`)
      }
    })()
    return { tables, hash: h.digest('hex') }
  } finally {
    if (typeof fileOrDb === 'string') db.close()
  }
}

/** integrity runs PRAGMA integrity_check on a file. */
export function integrity(file: string): string {
  const db = new Database(file, { readonly: true, fileMustExist: true })
  try {
    return String(db.pragma('integrity_check', { simple: true }))
  } finally {
    db.close()
  }
}
