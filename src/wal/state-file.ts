/**
 * The replicator's local state: what it last made durable in the replica, plus what it needs to prove on the
 * next start that the WAL continued where it left off. One small JSON file per database in its meta directory
 * (`<dir>/.<name>-litestream/`, as Litestream names it). The replica stays the source of truth; this file only
 * lets a restart resume the same generation instead of taking a new snapshot. It is written when the generation or
 * the WAL index changes and on a clean close, not per segment: after a crash the replica's last segment, checked
 * against the local WAL, gives the position.
 * @module
 */
import fs from 'node:fs'
import path from 'node:path'

/** PersistedState is the JSON shape of the state file (version 1). */
export interface PersistedState {
  readonly version: 1
  readonly generation: string
  readonly index: number
  /** offset is the end of what was shipped in WAL index `index` (0: nothing yet). */
  readonly offset: number
  /** header is the base64 WAL header of the incarnation shipped as `index`, or null if none yet. */
  readonly header: string | null
  /** checksum is the running WAL checksum at `offset`. */
  readonly checksum: readonly [number, number]
  readonly pageSize: number
  /** lastSegment identifies the newest segment written, to recognise the replica's listing on restart. */
  readonly lastSegment: { readonly index: number; readonly offset: number; readonly size: number } | null
  readonly lastSnapshotAt: string | null
  readonly dbIno: string
  /** clean is true only when written by a graceful close, with the database file's identity after the close. */
  readonly clean: boolean
  readonly dbStatAfterClose: { readonly ino: string; readonly size: string; readonly mtimeNs: string; readonly ctimeNs: string } | null
}

/** defaultMetaDir is Litestream's meta directory for a database path. */
export function defaultMetaDir(dbPath: string): string {
  return path.join(path.dirname(dbPath), `.${path.basename(dbPath)}-litestream`)
}

/** loadState reads the state file, returning undefined when it is missing or unusable. */
export function loadState(metaDir: string): PersistedState | undefined {
  let raw: string
  try {
    raw = fs.readFileSync(path.join(metaDir, 'state.json'), 'utf8')
  } catch {
    return undefined
  }
  try {
    const s = JSON.parse(raw) as PersistedState
    if (s.version !== 1 || typeof s.generation !== 'string' || !/^[0-9a-f]{16}$/.test(s.generation)) return undefined
    return s
  } catch {
    return undefined
  }
}

/** saveState writes the state file atomically (tmp + rename); with durable, it also fsyncs file and directory. */
export function saveState(metaDir: string, state: PersistedState, durable: boolean): void {
  fs.mkdirSync(metaDir, { recursive: true, mode: 0o700 })
  const file = path.join(metaDir, 'state.json')
  const tmp = `${file}.tmp`
  const fd = fs.openSync(tmp, 'w', 0o600)
  try {
    fs.writeSync(fd, JSON.stringify(state))
    if (durable) fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  fs.renameSync(tmp, file)
  if (durable) {
    const dfd = fs.openSync(metaDir, 'r')
    try {
      fs.fsyncSync(dfd)
    } finally {
      fs.closeSync(dfd)
    }
  }
}
