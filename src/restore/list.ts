/**
 * Listing what a bucket holds: the service stores each database at `<root>/databases/<guid>`, a Litestream v0.3
 * replica root of its own. Enumerating the guids needs a delimiter listing of `databases/`, which is not part of
 * the ReplicaClient contract: clients that offer `listPrefixes(subPath)` are used as they are, file replicas are
 * read from the directory, and anything else is reported as unsupported.
 * @module
 */
import type { OpOptions, ReplicaClient } from '../replica-client.js'
import { childClient } from '../replica-url.js'
import { generationTimeRange, type TimeRange } from './plan.js'
import { listReplica } from './restore.js'

/** DATABASES_PREFIX is where the service keeps one replica root per database. */
export const DATABASES_PREFIX = 'databases'

/** DATABASE_ID_RE is a canonical lowercase GUID, the manager's database id (manager.ts GUID_RE). */
export const DATABASE_ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** listPrefixes returns the sorted child names under `<root>/<subPath>/` (S3 CommonPrefixes, or subdirectories). */
export async function listPrefixes(client: ReplicaClient, subPath: string, opts: OpOptions = {}): Promise<string[]> {
  return (await client.listPrefixes(subPath, opts)).sort()
}

/** listDatabaseIds returns the GUIDs with a replica under `<root>/databases/`. */
export async function listDatabaseIds(root: ReplicaClient, opts: OpOptions = {}): Promise<string[]> {
  return (await listPrefixes(root, DATABASES_PREFIX, opts)).filter((id) => DATABASE_ID_RE.test(id))
}

/** GenerationSummary describes one generation of a replica. */
export interface GenerationSummary {
  readonly generation: string
  readonly snapshots: number
  readonly segments: number
  /** snapshotIndexes lists the snapshot indexes, ascending. */
  readonly snapshotIndexes: readonly number[]
  /** lastIndex is the highest WAL index with a segment (-1: none). */
  readonly lastIndex: number
  /** bytes is the total compressed size of the generation's objects. */
  readonly bytes: number
  /** timeRange spans the generation's objects; undefined for an empty generation. */
  readonly timeRange?: TimeRange
}

/** summarizeReplica lists every generation of one replica root, newest last-updated first (the one restore picks by default comes first). */
export async function summarizeReplica(client: ReplicaClient, opts: OpOptions = {}): Promise<GenerationSummary[]> {
  const listing = await listReplica(client, { signal: opts.signal })
  const out = listing.map((g): GenerationSummary => {
    const range = generationTimeRange(g)
    return {
      generation: g.generation,
      snapshots: g.snapshots.length,
      segments: g.segments.length,
      snapshotIndexes: g.snapshots.map((s) => s.index).sort((a, b) => a - b),
      lastIndex: g.segments.reduce((m, s) => Math.max(m, s.index), -1),
      bytes: [...g.snapshots, ...g.segments].reduce((n, o) => n + o.size, 0),
      ...(range ? { timeRange: range } : {}),
    }
  })
  const t = (s: GenerationSummary): number => s.timeRange?.to.getTime() ?? -Infinity
  // Stable: equal times keep generation order, as Litestream's choice does.
  return out.sort((a, b) => t(b) - t(a))
}

/** DatabaseListing is one database under `<root>/databases/<id>`. */
export interface DatabaseListing {
  readonly id: string
  readonly generations: readonly GenerationSummary[]
}

/** listDatabases summarizes every database under a bucket root. */
export async function listDatabases(root: ReplicaClient, opts: OpOptions = {}): Promise<DatabaseListing[]> {
  const ids = await listDatabaseIds(root, opts)
  const out: DatabaseListing[] = []
  for (const id of ids) {
    opts.signal?.throwIfAborted()
    out.push({ id, generations: await summarizeReplica(childClient(root, `${DATABASES_PREFIX}/${id}`), opts) })
  }
  return out
}
