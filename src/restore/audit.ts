/**
 * The replica auditor (reliability matrix, "Oracles: replica auditor"): reads every object of every generation
 * and reports each broken invariant instead of stopping at the first, so one run shows all the damage.
 *
 * Checked per generation: at least one snapshot; snapshots decode to whole SQLite files; the WAL does not lag a
 * snapshot (max WAL index >= snapshot index - 1, else stock restore panics); no index gaps from each snapshot
 * index up to the max; each index starts at offset 0 with a valid WAL header; offsets are byte positions; salts
 * and the checksum chain hold within each index; every segment ends on a commit frame; offsets fit 8 hex
 * digits; every object is exactly one complete LZ4 frame. With a raw key listing (see AuditOptions.listKeys):
 * names match v0.3.13's regexes and nothing foreign lives under the prefix.
 *
 * Not checked: the snapshot's shadow-WAL offset (the v0.3 layout has no place for it; the matrix's metadata idea
 * needs a client that exposes object metadata).
 * @module
 */
import { errorMessage } from '../errors.js'
import { isGenerationName, parseSnapshotName, parseWalSegmentName } from '../keys.js'
import type { ReplicaClient } from '../replica-client.js'
import { checkSnapshot, snapshotName, WalIndexChecker, type SegmentRule } from './plan.js'
import { DEFAULT_RESTORE_PARALLELISM, decodeObject, fetchInOrder, objectName, readObject, type ObjectRef } from './restore.js'

/** AuditRule names an invariant. */
export type AuditRule =
  | SegmentRule
  | 'no-snapshot' // a generation without a snapshot cannot be restored, and a default restore may pick it
  | 'snapshot' // a snapshot that is not a whole SQLite database file
  | 'snapshot-ahead' // max WAL index < snapshot index - 1: stock v0.3.13 restore panics
  | 'missing-index' // a WAL index between a snapshot's index and the max index has no segment
  | 'lz4' // not exactly one complete, checksummed LZ4 frame
  | 'unreadable' // listed but could not be read
  | 'name' // a key under generations/ that v0.3.13 silently ignores
  | 'foreign-key' // a key Litestream would never write

/** Violation is one broken invariant. generation is '' for keys outside any generation. */
export interface Violation {
  readonly generation: string
  readonly object?: string
  readonly rule: AuditRule
  readonly message: string
}

/** RawKeyLister is an optional client capability: every key under the replica root, relative to it. */
export interface RawKeyLister {
  listKeys(opts?: { readonly signal?: AbortSignal }): Promise<string[]>
}

/** AuditOptions configures an audit. */
export interface AuditOptions {
  /** parallelism bounds concurrent downloads. Default 8. */
  readonly parallelism?: number
  /**
   * listKeys returns every key under the replica root. Default: the client's own listKeys() when it has one,
   * a directory walk for file replicas, else names and foreign keys are not checked (listings filter them out).
   */
  readonly listKeys?: () => Promise<string[]>
  readonly signal?: AbortSignal
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0')
}

const LONG_OFFSET_RE = /^[0-9a-f]{8}_[0-9a-f]{9,}\.wal\.lz4$/

/** rawKeyLister lists raw keys for client: the audit's own hook, else the client's listKeys. */
function rawKeyLister(client: ReplicaClient, opts: AuditOptions): () => Promise<string[]> {
  return opts.listKeys ?? (() => client.listKeys({ signal: opts.signal }))
}

/** checkKeys reports keys that v0.3.13 would ignore or that Litestream never writes. */
export function checkKeys(keys: readonly string[]): Violation[] {
  const out: Violation[] = []
  for (const key of keys) {
    const parts = key.split('/')
    if (parts.length !== 4 || parts[0] !== 'generations' || (parts[2] !== 'snapshots' && parts[2] !== 'wal')) {
      out.push({ generation: parts[0] === 'generations' && parts[1] ? parts[1] : '', object: key, rule: 'foreign-key', message: `${key}: not a snapshot or wal segment key; Litestream never writes it` })
      continue
    }
    const [, gen, kind, name] = parts as [string, string, string, string]
    if (!isGenerationName(gen)) {
      out.push({ generation: gen, object: key, rule: 'name', message: `${key}: generation ${JSON.stringify(gen)} is not 16 lowercase hex digits; Litestream ignores it` })
    } else if (kind === 'snapshots' && parseSnapshotName(name) === undefined) {
      out.push({ generation: gen, object: key, rule: 'name', message: `${key}: does not match ^[0-9a-f]{8}\\.snapshot\\.lz4$; Litestream ignores it` })
    } else if (kind === 'wal' && parseWalSegmentName(name) === undefined) {
      if (LONG_OFFSET_RE.test(name)) {
        out.push({ generation: gen, object: key, rule: 'offset-range', message: `${key}: offset needs more than 8 hex digits (>= 4 GiB); v0.3.13 ignores the segment` })
      } else {
        out.push({ generation: gen, object: key, rule: 'name', message: `${key}: does not match ^[0-9a-f]{8}_[0-9a-f]{8}\\.wal\\.lz4$; Litestream ignores it` })
      }
    }
  }
  return out
}

/** auditReplica checks every invariant for every generation of client and returns every violation found (empty: clean). */
export async function auditReplica(client: ReplicaClient, opts: AuditOptions = {}): Promise<Violation[]> {
  const signal = opts.signal
  const parallelism = opts.parallelism ?? DEFAULT_RESTORE_PARALLELISM
  const out: Violation[] = []
  const lister = rawKeyLister(client, opts)
  if (lister) out.push(...checkKeys(await lister()))
  const generations = await client.generations({ signal })
  for (const gen of generations) {
    signal?.throwIfAborted()
    out.push(...(await auditGeneration(client, gen, parallelism, signal)))
  }
  return out
}

async function auditGeneration(client: ReplicaClient, gen: string, parallelism: number, signal: AbortSignal | undefined): Promise<Violation[]> {
  const out: Violation[] = []
  const [snapshots, segments] = await Promise.all([client.snapshots(gen, { signal }), client.walSegments(gen, { signal })])
  const sorted = [...segments].sort((a, b) => a.index - b.index || a.offset - b.offset)

  // 1. Structure, from the listing.
  if (snapshots.length === 0) {
    out.push({ generation: gen, rule: 'no-snapshot', message: `generation ${gen} has no snapshot: its ${segments.length} wal segment(s) cannot be restored` })
  }
  const indexes = new Set(sorted.map((s) => s.index))
  const maxIndex = sorted.length > 0 ? sorted.at(-1)!.index : -1
  const missing = new Set<number>()
  for (const s of snapshots) {
    if (sorted.length > 0 && maxIndex < s.index - 1) {
      out.push({
        generation: gen,
        object: snapshotName(gen, s.index),
        rule: 'snapshot-ahead',
        message: `${snapshotName(gen, s.index)}: snapshot index ${hex8(s.index)} is ahead of the highest wal index ${hex8(maxIndex)} (stock restore panics)`,
      })
      continue
    }
    for (let i = s.index; i <= maxIndex; i++) {
      if (!indexes.has(i) && !missing.has(i)) {
        missing.add(i)
        out.push({
          generation: gen,
          rule: 'missing-index',
          message: `missing wal index ${gen}/${hex8(i)}: snapshot ${hex8(s.index)} needs every index up to ${hex8(maxIndex)}`,
        })
      }
    }
  }

  // 2. Contents: snapshots, then each index's segments in offset order.
  const refs: ObjectRef[] = [...snapshots.map((info): ObjectRef => ({ kind: 'snapshot', info })), ...sorted.map((info): ObjectRef => ({ kind: 'segment', info }))]
  let pageSize: number | undefined
  let checker: WalIndexChecker | null = null
  let checkerIndex = -1
  const fetched = fetchInOrder(
    refs,
    parallelism,
    async (ref, sig) => {
      try {
        return { ref, data: await readObject(client, ref, sig), error: undefined }
      } catch (err) {
        if (sig.aborted) throw err
        return { ref, data: undefined, error: err as Error }
      }
    },
    signal,
  )
  for await (const { ref, data, error } of fetched) {
    const object = objectName(ref)
    if (ref.kind === 'segment' && ref.info.index !== checkerIndex) {
      checker = new WalIndexChecker(gen, ref.info.index, pageSize)
      checkerIndex = ref.info.index
    }
    if (data === undefined) {
      out.push({ generation: gen, object, rule: 'unreadable', message: errorMessage(error) })
      if (ref.kind === 'segment') checker!.skip()
      continue
    }
    let bytes: Buffer
    try {
      bytes = decodeObject(ref, data)
    } catch (err) {
      out.push({ generation: gen, object, rule: 'lz4', message: (err as Error).message })
      if (ref.kind === 'segment') checker!.skip()
      continue
    }
    if (ref.kind === 'snapshot') {
      const check = checkSnapshot(bytes)
      if (!check.ok) out.push({ generation: gen, object, rule: 'snapshot', message: `${object}: ${check.reason}` })
      else if (pageSize === undefined) pageSize = check.pageSize
      else if (check.pageSize !== pageSize) out.push({ generation: gen, object, rule: 'page-size', message: `${object}: page size ${check.pageSize} differs from other snapshots' ${pageSize}` })
      continue
    }
    for (const f of checker!.check(ref.info.offset, bytes).findings) out.push({ generation: gen, object: f.object, rule: f.rule, message: f.message })
  }
  return out
}
