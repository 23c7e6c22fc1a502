/**
 * File-system change hints from the kernel (inotify on Linux, through `fs.watch`), one watch per directory.
 * Events are hints: the kernel queue can overflow in a large burst and a deleted-and-recreated directory goes
 * silent, so every consumer pairs them with a reconcile scan.
 *
 * Not @parcel/watcher, which the stack first named: it holds events back until 50 ms pass without one, and for up
 * to 500 ms while the directory keeps changing, which a directory of busy databases always does
 * (docs/decisions/0004; `node --import tsx bench/watch-latency.ts`).
 * @module
 */
import fs from 'node:fs'
import path from 'node:path'

/** FsEvent is one change under a watched directory. */
export interface FsEvent {
  readonly type: 'create' | 'update' | 'delete'
  /** name is the entry's name in the watched directory; path is the directory joined with it. */
  readonly name: string
  readonly path: string
}

/** DirWatch is a running subscription. */
export interface DirWatch {
  close(): Promise<void>
}

/**
 * watchDir subscribes to changes of the entries of dir (not recursive). onEvents gets the events that arrived
 * together, one per path (a burst of writes to one file is one 'update'); onError gets watcher failures (for
 * example the directory vanished), after which the caller should re-subscribe.
 */
export async function watchDir(dir: string, onEvents: (events: readonly FsEvent[]) => void, onError: (err: Error) => void): Promise<DirWatch> {
  let pending = new Map<string, 'rename' | 'change'>()
  let scheduled = false
  const flush = (): void => {
    scheduled = false
    const batch = pending
    pending = new Map()
    const events: FsEvent[] = []
    for (const [name, kind] of batch) {
      const p = path.join(dir, name)
      // A rename is a create, a delete or a replacement: look once, for the whole batch.
      events.push({ type: kind === 'change' ? 'update' : fs.existsSync(p) ? 'create' : 'delete', name, path: p })
    }
    if (events.length > 0) onEvents(events)
  }
  const w = fs.watch(dir, (kind, name) => {
    if (!name) return
    if (kind === 'rename' || !pending.has(name)) pending.set(name, kind === 'rename' ? 'rename' : 'change')
    if (!scheduled) {
      scheduled = true
      setImmediate(flush)
    }
  })
  w.on('error', (err) => onError(err))
  let closed: Promise<void> | null = null
  return {
    close: () => (closed ??= Promise.resolve().then(() => w.close())),
  }
}
