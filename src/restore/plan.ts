/**
 * Restore planning and replica validation, shared by restore, verify, drill and the auditor. Pure: listings and
 * decompressed bytes in, decisions and findings out.
 *
 * Choosing what to restore follows Litestream v0.3.13 (replica.go CalcRestoreTarget, SnapshotIndexAt,
 * SnapshotIndexByIndex, walSegmentMap). Validation is stricter than Litestream: v0.3.13 hands SQLite whatever it
 * downloaded, and SQLite silently drops every frame after the first bad salt, checksum or missing commit, so a
 * damaged replica restores "successfully" to an older or malformed database. Here every such case is an error.
 *
 *   snapshot S ──► WAL index S: seg@0 (header + frames) ─ seg@o1 ─ seg@o2 …  (o(n+1) = o(n) + len(n))
 *              ──► WAL index S+1: seg@0 …                                    (no index gaps)
 *
 * @module
 */
import { ReplicaError } from '../errors.js'
import { MAX_OFFSET, snapshotKey, walSegmentKey } from '../keys.js'
import type { SnapshotInfo, WalSegmentInfo } from '../types.js'
import { checkFrames, frameSize, parseWalHeader, WAL_HEADER_SIZE, type WalHeader } from '../wal/format.js'

/** GenerationListing is everything a replica lists for one generation, sorted as the ReplicaClient contract says. */
export interface GenerationListing {
  readonly generation: string
  readonly snapshots: readonly SnapshotInfo[]
  readonly segments: readonly WalSegmentInfo[]
}

/** TimeRange is a closed interval of object times (LastModified on S3, mtime on file replicas). */
export interface TimeRange {
  readonly from: Date
  readonly to: Date
}

/** RestoreTarget says where to stop. Both undefined: the newest state. */
export interface RestoreTarget {
  /** generation restricts the choice to one generation (16 lowercase hex). */
  readonly generation?: string
  /** index is the last WAL index to apply, inclusive. */
  readonly index?: number
  /**
   * timestamp excludes every object created after it. Object times come from the client as Dates (milliseconds):
   * stock Litestream compares file mtimes in nanoseconds, so an object created in the same millisecond just
   * after `timestamp` is included here and excluded there. S3 times are whole seconds for both.
   */
  readonly timestamp?: Date
}

/** IndexPlan is one WAL index to apply: its segments in offset order, the first at offset 0. */
export interface IndexPlan {
  readonly index: number
  readonly segments: readonly WalSegmentInfo[]
}

/** RestorePlan is what a restore downloads and applies, in order. */
export interface RestorePlan {
  readonly generation: string
  readonly snapshot: SnapshotInfo
  /** indexes run from snapshot.index upward without gaps; empty for a snapshot-only restore. */
  readonly indexes: readonly IndexPlan[]
  /** totalBytes is the compressed size of every object to download. */
  readonly totalBytes: number
  /** timeRange: from = the generation's oldest object, to = the newest object this restore uses. */
  readonly timeRange: TimeRange
}

/** snapshotName is the replica-relative key of a snapshot, for messages. */
export function snapshotName(generation: string, index: number): string {
  return snapshotKey('', generation, index)
}

/** segmentName is the replica-relative key of a WAL segment, for messages. */
export function segmentName(generation: string, index: number, offset: number): string {
  return walSegmentKey('', generation, index, offset)
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0')
}

function invalid(message: string): ReplicaError {
  return new ReplicaError('REPLICA_INVALID', message)
}

/** generationTimeRange is the min and max object time of a generation (Litestream GenerationTimeBounds); undefined when empty. */
export function generationTimeRange(g: GenerationListing): TimeRange | undefined {
  let from: Date | undefined
  let to: Date | undefined
  for (const o of [...g.snapshots, ...g.segments]) {
    if (from === undefined || o.createdAt < from) from = o.createdAt
    if (to === undefined || o.createdAt > to) to = o.createdAt
  }
  return from && to ? { from, to } : undefined
}

/**
 * chooseGeneration picks the generation to restore like Litestream's CalcRestoreTarget: among the generations
 * that existed at `timestamp` (or all), the one whose newest object is newest; ties go to the first listed.
 * Litestream also skips a generation whose newest object is older than `timestamp`, so restoring "as of now"
 * fails there; this keeps such generations (they can only win when no generation spans the timestamp).
 * Throws NOT_FOUND when nothing matches.
 */
export function chooseGeneration(generations: readonly GenerationListing[], target: RestoreTarget = {}): GenerationListing {
  if (target.generation !== undefined && !generations.some((g) => g.generation === target.generation)) {
    throw new ReplicaError('NOT_FOUND', `generation ${target.generation} not found in the replica`)
  }
  let best: { g: GenerationListing; to: Date } | undefined
  for (const g of generations) {
    if (target.generation !== undefined && g.generation !== target.generation) continue
    const range = generationTimeRange(g)
    if (!range) continue
    if (target.timestamp && target.timestamp < range.from) continue
    if (best === undefined || range.to > best.to) best = { g, to: range.to }
  }
  if (!best) {
    const what = target.timestamp ? ` at ${target.timestamp.toISOString()}` : ''
    if (generations.length === 0) throw new ReplicaError('NOT_FOUND', 'no matching backups found: the replica has no generations')
    throw new ReplicaError('NOT_FOUND', `no matching backups found${what}`)
  }
  return best.g
}

/**
 * planRestore picks the snapshot and the WAL segments of one generation for a target, and checks everything that
 * a listing can show: a snapshot at or below the target, no index gaps from the snapshot index to the last index,
 * every index starting at offset 0. Offsets against byte lengths, and contents, are checked while downloading
 * (WalIndexChecker). Throws REPLICA_INVALID naming the object, or NOT_FOUND for a target index that does not exist.
 */
export function planRestore(g: GenerationListing, target: RestoreTarget = {}): RestorePlan {
  const gen = g.generation
  const { index, timestamp } = target
  if (index !== undefined && (!Number.isInteger(index) || index < 0)) throw new RangeError(`invalid target index ${index}`)
  if (g.snapshots.length === 0) {
    throw invalid(
      `generation ${gen} has no snapshot, so its ${g.segments.length} wal segment(s) cannot be restored` +
        ' (pass a generation with a snapshot explicitly to restore an older one)',
    )
  }

  // 1. Snapshot: at or below the target. By index, the highest; by time (or neither), the newest, like Litestream.
  const eligible = g.snapshots.filter((s) => (index === undefined || s.index <= index) && (!timestamp || s.createdAt <= timestamp))
  if (eligible.length === 0) {
    const what = [index !== undefined ? `index ${hex8(index)}` : '', timestamp ? `time ${timestamp.toISOString()}` : ''].filter(Boolean).join(' and ')
    const have = g.snapshots.map((s) => `${hex8(s.index)} at ${s.createdAt.toISOString()}`).join(', ')
    throw invalid(`generation ${gen}: no snapshot at or below ${what} (snapshots: ${have})`)
  }
  let snapshot = eligible[0]!
  for (const s of eligible) {
    const better =
      index !== undefined
        ? s.index > snapshot.index || (s.index === snapshot.index && s.createdAt > snapshot.createdAt)
        : s.createdAt > snapshot.createdAt || (s.createdAt.getTime() === snapshot.createdAt.getTime() && s.index > snapshot.index)
    if (better) snapshot = s
  }

  // A snapshot may run ahead of the uploaded WAL by one index (its index's first segment not uploaded yet), not
  // more: its name would then claim a WAL position the replica never reached (stock v0.3.13 panics here).
  const maxWalIndex = g.segments.reduce((m, s) => Math.max(m, s.index), -1)
  if (maxWalIndex >= 0 && maxWalIndex < snapshot.index - 1) {
    throw invalid(`${snapshotName(gen, snapshot.index)}: snapshot index ${hex8(snapshot.index)} is ahead of the highest wal index ${hex8(maxWalIndex)}`)
  }

  // 2. A target index must exist somewhere in the generation.
  if (index !== undefined) {
    const exists = g.snapshots.some((s) => s.index === index) || g.segments.some((s) => s.index === index)
    if (!exists) {
      const highest = Math.max(...g.snapshots.map((s) => s.index), ...g.segments.map((s) => s.index))
      throw new ReplicaError('NOT_FOUND', `wal index ${hex8(index)} not found in generation ${gen} (highest index is ${hex8(highest)})`)
    }
  }

  // 3. Segments from the snapshot index on, in (index, offset) order, up to the first one past the target.
  const sorted = [...g.segments].filter((s) => s.index >= snapshot.index).sort((a, b) => a.index - b.index || a.offset - b.offset)
  const indexes: { index: number; segments: WalSegmentInfo[] }[] = []
  for (const s of sorted) {
    if (index !== undefined && s.index > index) break
    if (timestamp && s.createdAt > timestamp) break
    const last = indexes.at(-1)
    if (last && last.index === s.index) {
      const prev = last.segments.at(-1)!
      if (s.offset <= prev.offset) throw invalid(`wal segments out of order or duplicated: ${segmentName(gen, s.index, s.offset)} after offset ${prev.offset}`)
      last.segments.push(s)
    } else {
      if (s.offset !== 0) {
        throw invalid(`missing initial wal segment: ${segmentName(gen, s.index, 0)} (index ${hex8(s.index)} starts at offset ${s.offset})`)
      }
      indexes.push({ index: s.index, segments: [s] })
    }
  }

  // 4. No index gaps from the snapshot index to the last index.
  for (let i = 0; i < indexes.length; i++) {
    const want = snapshot.index + i
    if (indexes[i]!.index !== want) {
      throw invalid(
        `missing wal index ${gen}/${hex8(want)}: snapshot ${snapshotName(gen, snapshot.index)} needs every index from ${hex8(snapshot.index)}` +
          ` up to ${hex8(indexes.at(-1)!.index)}`,
      )
    }
  }

  let totalBytes = snapshot.size
  let to = snapshot.createdAt
  for (const ix of indexes) {
    for (const s of ix.segments) {
      totalBytes += s.size
      if (s.createdAt > to) to = s.createdAt
    }
  }
  const range = generationTimeRange(g)!
  return { generation: gen, snapshot, indexes, totalBytes, timeRange: { from: range.from, to } }
}

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1')

/** SnapshotCheck is the outcome of checking decompressed snapshot bytes. */
export type SnapshotCheck = { readonly ok: true; readonly pageSize: number; readonly pages: number } | { readonly ok: false; readonly reason: string }

/** checkSnapshot checks that bytes are a whole SQLite database file: magic, page size, whole pages. */
export function checkSnapshot(bytes: Buffer): SnapshotCheck {
  if (bytes.length < 100 || !bytes.subarray(0, 16).equals(SQLITE_MAGIC)) return { ok: false, reason: 'not a SQLite database (no "SQLite format 3" header)' }
  let pageSize = bytes.readUInt16BE(16)
  if (pageSize === 1) pageSize = 65536
  if (pageSize < 512 || (pageSize & (pageSize - 1)) !== 0) return { ok: false, reason: `invalid page size ${pageSize} in the database header` }
  if (bytes.length % pageSize !== 0) return { ok: false, reason: `${bytes.length} bytes is not a whole number of ${pageSize}-byte pages` }
  return { ok: true, pageSize, pages: bytes.length / pageSize }
}

/** SegmentRule names what a segment violates. */
export type SegmentRule = 'missing-initial-segment' | 'offset-gap' | 'wal-header' | 'page-size' | 'frame-alignment' | 'salt' | 'checksum' | 'commit-end' | 'offset-range'

/** SegmentFinding is one problem with one segment. */
export interface SegmentFinding {
  readonly rule: SegmentRule
  readonly object: string
  readonly message: string
}

/** SegmentCheck is what WalIndexChecker.check found: the frames it accepted and any problems. */
export interface SegmentCheck {
  /** frames is the number of whole, valid frames in the segment (0 for a header-only segment). */
  readonly frames: number
  readonly findings: readonly SegmentFinding[]
}

/**
 * WalIndexChecker validates the decompressed segments of one WAL index, fed in offset order, the way SQLite
 * will read their concatenation: the first segment is at offset 0 and starts with a valid WAL header; each next
 * segment starts where the previous one ended; every frame carries the header's salts and continues the
 * checksum chain across segments; every segment ends on a commit frame. After a chain-breaking finding, the
 * rest of the index is only checked for offsets (its frames can no longer be validated).
 */
export class WalIndexChecker {
  readonly #generation: string
  readonly #index: number
  readonly #pageSize: number | undefined
  #header: WalHeader | null = null
  #seed: readonly [number, number] = [0, 0]
  #expectOffset = 0
  #broken = false
  #frames = 0
  #dbPages = 0

  /** pageSize, when known (from the snapshot), must equal the WAL header's page size. */
  constructor(generation: string, index: number, pageSize?: number) {
    this.#generation = generation
    this.#index = index
    this.#pageSize = pageSize
  }

  /** frames is the number of valid frames accepted so far in this index. */
  get frames(): number {
    return this.#frames
  }

  /** dbPages is the database size in pages after the last commit frame accepted so far (0 if none). */
  get dbPages(): number {
    return this.#dbPages
  }

  /** endOffset is the byte position after the last segment checked. */
  get endOffset(): number {
    return this.#expectOffset
  }

  /** header is the index's WAL header once the offset-0 segment was accepted. */
  get header(): WalHeader | null {
    return this.#header
  }

  /** skip accounts for a segment that could not be read: the chain is broken and offsets are unknown from here. */
  skip(): void {
    this.#broken = true
    this.#expectOffset = -1
  }

  /** check validates the segment at offset whose decompressed bytes are data. */
  check(offset: number, data: Buffer): SegmentCheck {
    const object = segmentName(this.#generation, this.#index, offset)
    const findings: SegmentFinding[] = []
    const find = (rule: SegmentRule, message: string): void => {
      findings.push({ rule, object, message: `${object}: ${message}` })
    }

    // Offsets are byte positions: this segment must start where the previous one ended.
    if (this.#expectOffset >= 0 && offset !== this.#expectOffset) {
      if (this.#expectOffset === 0) find('missing-initial-segment', `index ${hex8(this.#index)} starts at offset ${offset}, not 0`)
      else find('offset-gap', `offset ${offset} but the previous segments end at byte ${this.#expectOffset} (${offset > this.#expectOffset ? 'gap' : 'overlap'} of ${Math.abs(offset - this.#expectOffset)} bytes)`)
      this.#broken = true
    }
    const end = offset + data.length
    if (end - 1 > MAX_OFFSET) find('offset-range', `ends at byte ${end}: a following segment's offset would not fit in 8 hex digits`)
    this.#expectOffset = end

    let start = 0
    if (offset === 0) {
      const parsed = parseWalHeader(data)
      if (!parsed.ok) {
        find('wal-header', `does not start with a valid WAL header (${parsed.reason})`)
        this.#broken = true
        return { frames: 0, findings }
      }
      this.#header = parsed.header
      this.#seed = parsed.header.checksum
      start = WAL_HEADER_SIZE
      if (this.#pageSize !== undefined && parsed.header.pageSize !== this.#pageSize) {
        find('page-size', `WAL page size ${parsed.header.pageSize} differs from the snapshot's page size ${this.#pageSize}`)
        this.#broken = true
      }
    }
    if (this.#broken || this.#header === null) return { frames: 0, findings }

    const header = this.#header
    const fsz = frameSize(header.pageSize)
    const body = data.length - start
    if (body === 0 && offset !== 0) {
      find('commit-end', 'holds no frames')
      return { frames: 0, findings }
    }
    const run = checkFrames(header, this.#seed, data, start, data.length, Infinity)
    const firstFrame = (offset + start - WAL_HEADER_SIZE) / fsz + 1 // 1-based frame number in the WAL
    if (run.stop === 'salt') {
      const p = start + run.frames * fsz
      find(
        'salt',
        `frame ${firstFrame + run.frames} (byte ${offset + p}) has salts ${hex8(data.readUInt32BE(p + 8))}/${hex8(data.readUInt32BE(p + 12))},` +
          ` the WAL header has ${hex8(header.salt1)}/${hex8(header.salt2)}`,
      )
      this.#broken = true
    } else if (run.stop === 'checksum') {
      find('checksum', `frame ${firstFrame + run.frames} (byte ${offset + start + run.frames * fsz}) breaks the WAL checksum chain`)
      this.#broken = true
    } else if (body % fsz !== 0) {
      find('frame-alignment', `${body} bytes of frames is not a whole number of ${fsz}-byte frames (page size ${header.pageSize})`)
      this.#broken = true
    } else if (run.commitFrames !== run.frames) {
      find('commit-end', `ends with ${run.frames - run.commitFrames} frame(s) after its last commit frame (an incomplete transaction)`)
      this.#broken = true
    }
    if (this.#broken) return { frames: run.frames, findings }
    this.#seed = run.checksum
    this.#frames += run.frames
    if (run.commitFrames > 0) this.#dbPages = run.dbPages
    return { frames: run.frames, findings }
  }
}
