/**
 * ReplicaClient is the seam between the replicator and a storage backend (Litestream's replica_client.go).
 * Every body is already LZ4-compressed; backends never look inside. Implementations: src/file, src/s3.
 * @module
 */
import type { Readable } from 'node:stream'
import type { SnapshotInfo, WalSegmentInfo } from './types.js'

/** OpOptions carries cancellation for one I/O call. */
export interface OpOptions {
  readonly signal?: AbortSignal
}

/**
 * ReplicaClient reads and writes one database's replica in the Litestream v0.3 layout.
 *
 * Contract (checked by test/conformance/replica-client.ts against every backend):
 * - Reading an object that does not exist rejects with ReplicaError code NOT_FOUND.
 * - Listing a generation that does not exist resolves to an empty array.
 * - A write is durable when its promise resolves; a reader never sees a partial object.
 * - Listings are sorted: generations by id, snapshots by index, segments by (index, offset).
 */
export interface ReplicaClient {
  /** type names the backend: 'file' or 's3'. */
  readonly type: string
  /** describe returns a URL-like location for logs and restore commands, never with credentials. */
  describe(): string
  /** generations lists generation ids that Litestream would accept (16 lowercase hex). */
  generations(opts?: OpOptions): Promise<string[]>
  /** deleteGeneration removes every object of a generation. Deleting a missing generation succeeds. */
  deleteGeneration(generation: string, opts?: OpOptions): Promise<void>
  /** snapshots lists the snapshots of a generation. */
  snapshots(generation: string, opts?: OpOptions): Promise<SnapshotInfo[]>
  /** writeSnapshot stores a compressed snapshot; a stream body is uploaded without buffering it whole. */
  writeSnapshot(generation: string, index: number, body: Buffer | Readable, opts?: OpOptions): Promise<SnapshotInfo>
  /** readSnapshot returns a compressed snapshot. */
  readSnapshot(generation: string, index: number, opts?: OpOptions): Promise<Buffer>
  /** deleteSnapshot removes one snapshot. Deleting a missing snapshot succeeds. */
  deleteSnapshot(generation: string, index: number, opts?: OpOptions): Promise<void>
  /** walSegments lists the WAL segments of a generation. */
  walSegments(generation: string, opts?: OpOptions): Promise<WalSegmentInfo[]>
  /** writeWalSegment stores one compressed WAL segment. */
  writeWalSegment(generation: string, index: number, offset: number, body: Buffer, opts?: OpOptions): Promise<WalSegmentInfo>
  /** readWalSegment returns one compressed WAL segment. */
  readWalSegment(generation: string, index: number, offset: number, opts?: OpOptions): Promise<Buffer>
  /** listPrefixes lists the child "directory" names directly under `<root>/<subPath>/`, sorted (to enumerate databases). */
  listPrefixes(subPath: string, opts?: OpOptions): Promise<string[]>
  /** listKeys lists every object key under the root, relative to it and sorted (for audits of foreign names). */
  listKeys(opts?: OpOptions): Promise<string[]>
  /** deleteWalSegments removes the given segments. Missing ones are ignored. */
  deleteWalSegments(generation: string, segments: ReadonlyArray<{ index: number; offset: number }>, opts?: OpOptions): Promise<void>
}
