/**
 * The `/api/clients` body, rendered for 1 000+ clients without a megabyte-sized string or buffer per request.
 *
 * ```
 *   source.clients() ──► per client: same inputs as last time? ──yes──► its cached JSON text
 *                                                 │ no
 *                                                 ▼
 *                                     safeJson(toRow(c)) (and cache it)
 *   rows, in order, in groups of GROUP_ROWS ──► group unchanged? ──yes──► its cached bytes
 *                                                 │ no
 *                                                 ▼
 *                                   one ~50 KiB Buffer for the group
 *   `[` + groups joined by `,` + `]` ──► ReadableStream of those Buffers, with Content-Length
 * ```
 *
 * Freshness: a row is reused only while every input of toRow is the same value (objects by identity: a
 * ReplicatorStatus and a DrillStatus are immutable and replaced on change), so each request shows exactly what
 * toRow would show now; nothing depends on change notifications.
 *
 * Why: a 780 KB JSON string written with `res.end(string)` makes Node malloc about 3x its length to encode it;
 * freeing that mmap'd block raises glibc's mmap threshold, after which the process's medium buffers stay in
 * the malloc heap (RSS steady/peak under the benchmark's polling, default arenas: 105.9/115.0 MiB before, 96.9/107.4
 * after; docs/decisions/0006-two-malloc-arenas.md). Chunks below 128 KiB never do that,
 * and an unchanged group is neither serialized nor encoded again.
 * @module
 */
import type { ClientInfo } from '../types.js'
import { safeJson, toRow } from './rows.js'

/** GROUP_ROWS rows share one chunk: about 50 KB at ~780 bytes a row, below glibc's 128 KiB mmap threshold. */
export const GROUP_ROWS = 64

interface CachedRow {
  readonly info: ClientInfo
  readonly json: string
}

interface CachedGroup {
  readonly rows: readonly string[]
  readonly bytes: Buffer
}

const OPEN = Buffer.from('[')
const CLOSE = Buffer.from(']')
const COMMA = Buffer.from(',')

/**
 * sameInputs reports whether toRow would render a and b identically: every field the same value (objects by
 * identity), so a field added to ClientInfo is compared without a change here.
 */
function sameInputs(a: ClientInfo, b: ClientInfo): boolean {
  const x = a as unknown as Record<string, unknown>
  const y = b as unknown as Record<string, unknown>
  let n = 0
  for (const k in x) {
    if (x[k] !== y[k]) return false
    n++
  }
  return Object.keys(y).length === n
}

/** ClientsBody renders the JSON array of rows of `/api/clients`, reusing what did not change since last time. */
export class ClientsBody {
  readonly #restoreCommand: (c: ClientInfo) => string
  /** #rows caches the last rendering of each client, keyed by id and dir (duplicate ids differ by dir). */
  #rows = new Map<string, CachedRow>()
  #groups: CachedGroup[] = []

  constructor(restoreCommand: (c: ClientInfo) => string) {
    this.#restoreCommand = restoreCommand
  }

  /** render returns the body as chunks (valid JSON once concatenated) and its total length in bytes. */
  render(clients: readonly ClientInfo[]): { readonly chunks: readonly Uint8Array[]; readonly length: number } {
    const rows = new Map<string, CachedRow>()
    const groups: CachedGroup[] = []
    const chunks: Uint8Array[] = [OPEN]
    let length = OPEN.length + CLOSE.length
    let group: string[] = []
    const flush = (): void => {
      const i = groups.length
      const old = this.#groups[i]
      const same = old !== undefined && old.rows.length === group.length && old.rows.every((r, k) => r === group[k])
      const g = same ? old : { rows: group, bytes: Buffer.from(group.join(',')) }
      groups.push(g)
      if (i > 0) {
        chunks.push(COMMA)
        length += COMMA.length
      }
      chunks.push(g.bytes)
      length += g.bytes.length
      group = []
    }
    for (const c of clients) {
      const key = `${c.id}\n${c.dir}`
      let cached = this.#rows.get(key)
      if (cached === undefined || !sameInputs(cached.info, c)) cached = { info: c, json: safeJson(toRow(c, this.#restoreCommand)) }
      rows.set(key, cached)
      group.push(cached.json)
      if (group.length === GROUP_ROWS) flush()
    }
    if (group.length > 0) flush()
    chunks.push(CLOSE)
    this.#rows = rows
    this.#groups = groups
    return { chunks, length }
  }
}

/** TEXT_CHUNK_CHARS bounds one chunk of textChunks: at most 96 KiB of UTF-8, below glibc's 128 KiB mmap threshold. */
export const TEXT_CHUNK_CHARS = 32 * 1024

/**
 * textChunks encodes a large string as UTF-8 in chunks of at most TEXT_CHUNK_CHARS characters (never splitting a
 * surrogate pair), so writing it needs no malloc of three times its length at once.
 */
export function textChunks(text: string): { readonly chunks: readonly Uint8Array[]; readonly length: number } {
  const chunks: Uint8Array[] = []
  let length = 0
  for (let i = 0; i < text.length; ) {
    let end = Math.min(text.length, i + TEXT_CHUNK_CHARS)
    const last = text.charCodeAt(end - 1)
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end--
    const chunk = Buffer.from(text.slice(i, end))
    chunks.push(chunk)
    length += chunk.length
    i = end
  }
  return { chunks, length }
}

/** chunkStream streams chunks one by one (the stream holds no copy of them). */
export function chunkStream(chunks: readonly Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(chunks[i++]!)
      else controller.close()
    },
  })
}
