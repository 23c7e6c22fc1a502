/**
 * Error codes carried through cause chains, like Go's sentinel errors checked with errors.Is.
 * @module
 */

/** ErrorCode names a failure that callers act on. Anything else is internal. */
export type ErrorCode =
  | 'NOT_FOUND' // replica object or local file does not exist
  | 'WAL_INVALID' // WAL bytes fail header, salt or checksum validation
  | 'NOT_SQLITE' // a file that should be a SQLite database is not one
  | 'CONFIG_INVALID' // bad option or flag
  | 'REPLICA_INVALID' // a replica violates the v0.3 layout or its invariants
  | 'CLOSED' // the object was closed
  | 'BUSY' // a SQLite lock is held by someone else right now; try again later
  | 'UNSUPPORTED' // the platform lacks something the engine needs
  | 'LOCK_FAILED' // a lock call failed for a reason other than contention

/** ReplicaError is the one error class of the project; `code` says what happened. */
export class ReplicaError extends Error {
  override readonly name = 'ReplicaError'
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

/** hasCode reports whether err or any error in its cause chain carries code. */
export function hasCode(err: unknown, code: ErrorCode): boolean {
  for (let e = err; e instanceof Error; e = e.cause) {
    if (e instanceof ReplicaError && e.code === code) return true
  }
  return false
}

/** errorMessage renders an error and its causes on one line, for status displays. */
export function errorMessage(err: unknown): string {
  const parts: string[] = []
  for (let e: unknown = err; e != null && parts.length < 5; e = e instanceof Error ? e.cause : undefined) {
    parts.push(e instanceof Error ? e.message : String(e))
    if (!(e instanceof Error)) break
  }
  return parts.join(': ')
}
