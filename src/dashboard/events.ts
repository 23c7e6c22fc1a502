/**
 * EventHub fans client changes out to Server-Sent Events subscribers.
 *
 * ```
 *   source.subscribe ──id──► dirty Set<id> ──(one timer, ≤ 1 flush / intervalMs)──► one encoded `delta`
 *                                                                                       │ same bytes
 *                                                   ┌───────────────┬───────────────────┤
 *                                                   ▼               ▼                   ▼
 *                                             subscriber queue  subscriber queue   (queue over its byte
 *                                             (ReadableStream)                      bound: disconnected)
 * ```
 *
 * Changes are coalesced per client and flushed at most once per `intervalMs` whatever the number of clients,
 * each flush is serialized once for every subscriber, and the publisher never awaits a subscriber: a
 * subscriber whose unread bytes exceed `maxQueuedBytes` is disconnected (wtf's `inmem/event.go` rule). Its
 * EventSource reconnects and starts over from a fresh snapshot.
 * @module
 */
import type { StatusSource } from '../types.js'
import { safeJson, type ClientRow } from './rows.js'

/** DEFAULT_EVENT_INTERVAL_MS is the minimum time between two delta events. */
export const DEFAULT_EVENT_INTERVAL_MS = 250
/** DEFAULT_HEARTBEAT_INTERVAL_MS is the period of the `: heartbeat` comment that keeps proxies from timing out. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 15_000
/** DEFAULT_MAX_EVENT_SUBSCRIBERS bounds concurrent `/api/events` streams. */
export const DEFAULT_MAX_EVENT_SUBSCRIBERS = 32
/** DEFAULT_MAX_QUEUED_EVENT_BYTES is how many unread bytes a subscriber may have before it is disconnected. */
export const DEFAULT_MAX_QUEUED_EVENT_BYTES = 1 << 20
/** EVENT_RETRY_MS is the reconnection delay the stream asks EventSource to use. */
export const EVENT_RETRY_MS = 2000

/** EventHubOptions configures an EventHub. */
export interface EventHubOptions {
  /** rows lists the current rows of the given ids (all rows when ids is undefined). */
  readonly rows: (ids?: ReadonlySet<string>) => ClientRow[]
  /** now is the wall clock stamped on events as `at` (epoch ms). */
  readonly now: () => number
  /** intervalMs is the minimum time between two deltas. Default 250. */
  readonly intervalMs?: number
  /** heartbeatIntervalMs is the comment heartbeat period; 0 disables. Default 15 000. */
  readonly heartbeatIntervalMs?: number
  /** maxSubscribers bounds concurrent streams; open() returns undefined past it. Default 32. */
  readonly maxSubscribers?: number
  /** maxQueuedBytes is the unread bytes a subscriber may hold before it is dropped. Default 1 MiB. */
  readonly maxQueuedBytes?: number
}

interface Subscriber {
  readonly controller: ReadableStreamDefaultController<Uint8Array>
}

const encoder = new TextEncoder()
const HEARTBEAT = encoder.encode(': heartbeat\n\n')

/** formatEvent renders one SSE event whose data is a single JSON line. */
export function formatEvent(event: string, data: unknown): string {
  // JSON never contains a raw newline, so the payload is exactly one `data:` line.
  return `event: ${event}\ndata: ${safeJson(data)}\n\n`
}

/** EventHub owns the subscription to the StatusSource while at least one subscriber is connected. */
export class EventHub {
  readonly #source: StatusSource
  readonly #opts: Required<EventHubOptions>
  readonly #subs = new Set<Subscriber>()
  readonly #dirty = new Set<string>()
  #unsubscribe: (() => void) | null = null
  #flushTimer: NodeJS.Timeout | null = null
  #heartbeatTimer: NodeJS.Timeout | null = null
  #lastFlushAt = -Infinity
  #dropped = 0

  constructor(source: StatusSource, opts: EventHubOptions) {
    this.#source = source
    this.#opts = Object.freeze({
      rows: opts.rows,
      now: opts.now,
      intervalMs: opts.intervalMs ?? DEFAULT_EVENT_INTERVAL_MS,
      heartbeatIntervalMs: opts.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
      maxSubscribers: opts.maxSubscribers ?? DEFAULT_MAX_EVENT_SUBSCRIBERS,
      maxQueuedBytes: opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_EVENT_BYTES,
    })
  }

  /** size is the number of connected subscribers. */
  get size(): number {
    return this.#subs.size
  }

  /** dropped counts subscribers disconnected for being too slow. */
  get dropped(): number {
    return this.#dropped
  }

  /**
   * open starts one subscriber's stream: `retry`, a full `snapshot` event, then deltas and heartbeats.
   * Returns undefined when maxSubscribers are already connected. Cancelling the stream unsubscribes.
   */
  open(): ReadableStream<Uint8Array> | undefined {
    if (this.#subs.size >= this.#opts.maxSubscribers) return undefined
    let sub: Subscriber | undefined
    return new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          sub = { controller }
          // Subscribe before reading the snapshot: a change racing it is delivered again as a delta.
          this.#add(sub)
          try {
            const snapshot = { at: this.#opts.now(), clients: this.#opts.rows() }
            controller.enqueue(encoder.encode(`retry: ${EVENT_RETRY_MS}\n\n${formatEvent('snapshot', snapshot)}`))
          } catch (err) {
            this.#remove(sub)
            throw err
          }
        },
        cancel: () => {
          if (sub) this.#remove(sub)
        },
      },
      { highWaterMark: this.#opts.maxQueuedBytes, size: (chunk) => chunk.byteLength },
    )
  }

  #add(sub: Subscriber): void {
    this.#subs.add(sub)
    if (this.#unsubscribe) return
    this.#unsubscribe = this.#source.subscribe((id) => this.#changed(id))
    if (this.#opts.heartbeatIntervalMs > 0) {
      this.#heartbeatTimer = setInterval(() => this.#broadcast(HEARTBEAT), this.#opts.heartbeatIntervalMs)
      this.#heartbeatTimer.unref()
    }
  }

  #remove(sub: Subscriber): void {
    if (!this.#subs.delete(sub) || this.#subs.size > 0) return
    this.#unsubscribe?.()
    this.#unsubscribe = null
    if (this.#flushTimer) clearTimeout(this.#flushTimer)
    if (this.#heartbeatTimer) clearInterval(this.#heartbeatTimer)
    this.#flushTimer = null
    this.#heartbeatTimer = null
    this.#dirty.clear()
  }

  /** changed is the source listener: O(1), never throws, never writes. */
  #changed(id: string): void {
    this.#dirty.add(id)
    if (this.#flushTimer) return
    const waitMs = Math.max(0, this.#lastFlushAt + this.#opts.intervalMs - performance.now())
    this.#flushTimer = setTimeout(() => this.#flush(), waitMs)
    this.#flushTimer.unref()
  }

  #flush(): void {
    this.#flushTimer = null
    this.#lastFlushAt = performance.now()
    if (this.#dirty.size === 0 || this.#subs.size === 0) return
    const ids = new Set(this.#dirty)
    this.#dirty.clear()
    let bytes: Uint8Array
    try {
      // A changed id with no rows was removed: the page drops every row of each listed id, then adds `clients`.
      bytes = encoder.encode(formatEvent('delta', { at: this.#opts.now(), ids: [...ids], clients: this.#opts.rows(ids) }))
    } catch {
      // The source failed to list: keep the ids dirty and try again next interval.
      for (const id of ids) this.#dirty.add(id)
      this.#changed([...ids][0]!)
      return
    }
    this.#broadcast(bytes)
  }

  #broadcast(bytes: Uint8Array): void {
    for (const sub of this.#subs) {
      const room = sub.controller.desiredSize
      if (room === null || room <= 0) {
        // Too slow (or already gone): drop it and its queue. Erroring the stream makes the server destroy the socket.
        this.#dropped++
        this.#remove(sub)
        try {
          sub.controller.error(new Error('event subscriber too slow'))
        } catch {
          // already closed
        }
        continue
      }
      sub.controller.enqueue(bytes)
    }
  }
}
