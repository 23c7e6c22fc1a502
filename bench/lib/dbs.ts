/**
 * Synthetic client databases: `<lowercase-guid>.db` in WAL mode with a small payload table and the
 * `bench_ledger` side table whose rows carry a searchable marker, so a replica object can be scanned for the
 * highest committed ledger sequence it contains.
 * @module
 */
import crypto from 'node:crypto'
import path from 'node:path'
import Database from 'better-sqlite3'

/** SCHEMA is every synthetic client's tables. bench_ledger.tag holds `BLG#<seq:9 digits>#`. */
export const SCHEMA = `
CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS bench_ledger (seq INTEGER PRIMARY KEY, at REAL NOT NULL, tag TEXT NOT NULL);
`

/** ledgerTag is the marker text stored with ledger row seq. */
export function ledgerTag(seq: number): string {
  return `BLG#${String(seq).padStart(9, '0')}#`
}

const TAG_PREFIX = Buffer.from('BLG#')

/** maxLedgerSeq scans decoded page bytes (a WAL segment or database image) for the highest ledger marker. */
export function maxLedgerSeq(buf: Buffer): number {
  let max = 0
  let i = buf.indexOf(TAG_PREFIX)
  while (i !== -1 && i + 14 <= buf.length) {
    if (buf[i + 13] === 0x23) {
      let n = 0
      let ok = true
      for (let j = i + 4; j < i + 13; j++) {
        const c = buf[j]!
        if (c < 0x30 || c > 0x39) {
          ok = false
          break
        }
        n = n * 10 + (c - 0x30)
      }
      if (ok && n > max) max = n
    }
    i = buf.indexOf(TAG_PREFIX, i + 4)
  }
  return max
}

/** createClientDb creates `<dir>/<guid>.db` in WAL mode with the schema and `rows` payload rows; returns its path. */
export function createClientDb(dir: string, guid: string = crypto.randomUUID(), rows = 10): string {
  const file = path.join(dir, `${guid}.db`)
  const db = new Database(file)
  try {
    db.pragma('journal_mode = wal')
    db.exec(SCHEMA)
    const ins = db.prepare('INSERT INTO t (v) VALUES (?)')
    db.transaction(() => {
      for (let i = 0; i < rows; i++) ins.run(crypto.randomBytes(64))
    })()
  } finally {
    db.close()
  }
  return file
}

/** guidOf returns the GUID of a `<guid>.db` path. */
export function guidOf(file: string): string {
  return path.basename(file, '.db')
}
