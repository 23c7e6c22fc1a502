/**
 * File-system change hints from @parcel/watcher (inotify on Linux). The only importer of the watcher.
 * Events are hints: the watcher coalesces bursts (about 50 ms) and can drop events or go silent when a
 * directory is deleted and recreated, so every consumer pairs it with a reconcile scan.
 * @module
 */
import watcher from '@parcel/watcher'

/** FsEvent is one change under a watched directory. */
export interface FsEvent {
  readonly type: 'create' | 'update' | 'delete'
  readonly path: string
}

/** DirWatch is a running subscription. */
export interface DirWatch {
  close(): Promise<void>
}

/**
 * watchDir subscribes to changes under dir. onEvents gets batches; onError gets watcher failures (for example
 * the directory vanished), after which the caller should re-subscribe.
 */
export async function watchDir(dir: string, onEvents: (events: readonly FsEvent[]) => void, onError: (err: Error) => void): Promise<DirWatch> {
  const sub = await watcher.subscribe(dir, (err, events) => {
    if (err) onError(err)
    else onEvents(events)
  })
  let closed: Promise<void> | null = null
  return {
    close: () => (closed ??= sub.unsubscribe()),
  }
}
