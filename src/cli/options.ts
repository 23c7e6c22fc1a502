/**
 * Replication flags shared by `replicate` and the service, with Litestream's defaults, validated up front.
 * @module
 */
import { parseDuration, type FlagSpec } from '../flags.js'
import {
  DEFAULT_MIN_CHECKPOINT_PAGES,
  DEFAULT_RETENTION_CHECK_INTERVAL_MS,
  DEFAULT_RETENTION_MS,
  DEFAULT_SYNC_INTERVAL_MS,
  DEFAULT_TRUNCATE_PAGES,
  type ReplicatorOptions,
} from '../replicator.js'

/** replicationFlags are the knobs of every replicator. */
export const replicationFlags: readonly FlagSpec[] = [
  { name: 'sync-interval', type: 'string', usage: 'least time between uploads of one database', default: `${DEFAULT_SYNC_INTERVAL_MS}ms` },
  { name: 'snapshot-interval', type: 'string', usage: 'new snapshot of a changed database this often; 0 = same as retention', default: '0' },
  { name: 'retention', type: 'string', usage: 'keep restore points this far back; 0 disables deletion', default: `${DEFAULT_RETENTION_MS / 3_600_000}h` },
  { name: 'retention-check-interval', type: 'string', usage: 'least time between retention passes of an active database', default: `${DEFAULT_RETENTION_CHECK_INTERVAL_MS / 3_600_000}h` },
  { name: 'min-checkpoint-page-count', type: 'string', usage: 'PASSIVE checkpoint once the WAL has this many frames; 0 disables', default: String(DEFAULT_MIN_CHECKPOINT_PAGES) },
  { name: 'truncate-page-count', type: 'string', usage: 'TRUNCATE checkpoint (backstop) once the WAL has this many frames; 0 disables', default: String(DEFAULT_TRUNCATE_PAGES) },
]

type Values = Readonly<Record<string, string | boolean | undefined>>

function duration(values: Values, name: string, errors: string[]): number {
  const raw = String(values[name] ?? '')
  const ms = parseDuration(raw)
  if (ms === undefined || ms < 0) {
    errors.push(`invalid duration ${JSON.stringify(raw)} for -${name} (examples: 1s, 500ms, 24h)`)
    return 0
  }
  return ms
}

function count(values: Values, name: string, errors: string[]): number {
  const raw = String(values[name] ?? '')
  if (!/^\d+$/.test(raw)) {
    errors.push(`invalid count ${JSON.stringify(raw)} for -${name}: want a whole number`)
    return 0
  }
  return Number(raw)
}

/** replicationOptions validates the replication flags, appending every problem to errors. */
export function replicationOptions(values: Values, errors: string[]): Partial<ReplicatorOptions> {
  const syncIntervalMs = duration(values, 'sync-interval', errors)
  const retentionMs = duration(values, 'retention', errors)
  const snapshotIntervalMs = duration(values, 'snapshot-interval', errors)
  const retentionCheckIntervalMs = duration(values, 'retention-check-interval', errors)
  const minCheckpointPages = count(values, 'min-checkpoint-page-count', errors)
  const truncatePages = count(values, 'truncate-page-count', errors)
  if (syncIntervalMs > 3_600_000) errors.push('-sync-interval must be at most 1h')
  if (truncatePages > 0 && minCheckpointPages > truncatePages) errors.push('-min-checkpoint-page-count must not exceed -truncate-page-count')
  if (retentionMs > 0 && retentionCheckIntervalMs === 0) errors.push('-retention-check-interval must be positive when retention is on')
  return {
    syncIntervalMs,
    retentionMs,
    snapshotIntervalMs: snapshotIntervalMs === 0 ? retentionMs : snapshotIntervalMs,
    retentionCheckIntervalMs,
    minCheckpointPages,
    truncatePages,
  }
}
