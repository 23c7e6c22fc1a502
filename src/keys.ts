/**
 * Object keys, byte-compatible with Litestream v0.3.13 (litestream.go FormatSnapshotPath, FormatWALSegmentPath).
 *
 *   <root>/
 *     generations/
 *       <generation: 16 lowercase hex>/
 *         snapshots/<index:%08x>.snapshot.lz4
 *         wal/<index:%08x>_<offset:%08x>.wal.lz4
 *
 * Offsets must stay below 2^32: Litestream v0.3.13 ignores a segment whose offset needs 9 hex digits.
 * @module
 */

/** MAX_INDEX is Litestream's MaxIndex; reaching it forces a new generation. */
export const MAX_INDEX = 0x7fffffff
/** MAX_OFFSET is the largest byte offset an 8-hex-digit segment name can carry. */
export const MAX_OFFSET = 0xffffffff

const GENERATION_RE = /^[0-9a-f]{16}$/
const SNAPSHOT_RE = /^([0-9a-f]{8})\.snapshot\.lz4$/
const WAL_SEGMENT_RE = /^([0-9a-f]{8})_([0-9a-f]{8})\.wal\.lz4$/

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > MAX_OFFSET) throw new RangeError(`value out of range for %08x: ${n}`)
  return n.toString(16).padStart(8, '0')
}

/** isGenerationName reports whether s is a generation id Litestream accepts. */
export function isGenerationName(s: string): boolean {
  return GENERATION_RE.test(s)
}

/** formatSnapshotName returns `<index:%08x>.snapshot.lz4`. */
export function formatSnapshotName(index: number): string {
  return `${hex8(index)}.snapshot.lz4`
}

/** parseSnapshotName returns the index of a snapshot file name, or undefined if Litestream would skip it. */
export function parseSnapshotName(name: string): number | undefined {
  const m = SNAPSHOT_RE.exec(name)
  return m ? parseInt(m[1]!, 16) : undefined
}

/** formatWalSegmentName returns `<index:%08x>_<offset:%08x>.wal.lz4`. */
export function formatWalSegmentName(index: number, offset: number): string {
  return `${hex8(index)}_${hex8(offset)}.wal.lz4`
}

/** parseWalSegmentName returns index and offset of a segment file name, or undefined if Litestream would skip it. */
export function parseWalSegmentName(name: string): { index: number; offset: number } | undefined {
  const m = WAL_SEGMENT_RE.exec(name)
  return m ? { index: parseInt(m[1]!, 16), offset: parseInt(m[2]!, 16) } : undefined
}

/** generationsPath is `generations` under root (root may be ''). */
export function generationsPath(root: string): string {
  return joinKey(root, 'generations')
}

/** snapshotsPath is `generations/<gen>/snapshots` under root. */
export function snapshotsPath(root: string, generation: string): string {
  return joinKey(root, 'generations', generation, 'snapshots')
}

/** walPath is `generations/<gen>/wal` under root. */
export function walPath(root: string, generation: string): string {
  return joinKey(root, 'generations', generation, 'wal')
}

/** snapshotKey is the full key of a snapshot object. */
export function snapshotKey(root: string, generation: string, index: number): string {
  return joinKey(snapshotsPath(root, generation), formatSnapshotName(index))
}

/** walSegmentKey is the full key of a WAL segment object. */
export function walSegmentKey(root: string, generation: string, index: number, offset: number): string {
  return joinKey(walPath(root, generation), formatWalSegmentName(index, offset))
}

/** joinKey joins key parts with single slashes, like Go's path.Join for clean parts. */
export function joinKey(...parts: string[]): string {
  return parts
    .map((p) => p.replace(/^\/+|\/+$/g, ''))
    .filter((p) => p !== '')
    .join('/')
}
