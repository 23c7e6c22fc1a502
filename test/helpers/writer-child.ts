/**
 * Writer child process (forked by writer.ts with `node --import tsx`): runs the deterministic op stream against
 * one database, one op per transaction, and reports every committed seq to the parent. See writer.ts.
 * @module
 */
import Database from 'better-sqlite3'
import { applyOp, initWriterDb, opFor, prepareStatements, type FromChild, type ToChild } from './writer.js'

type InitOpts = Extract<ToChild, { type: 'init' }>['opts']

function send(m: FromChild): void {
  process.send?.(m)
}

let db: Database.Database | undefined
let paused = true
let stopping = false
let timer: NodeJS.Timeout | undefined
let seq = 0
let hash = ''
let maxSeq: number | undefined
let opts: InitOpts

function errorInfo(err: unknown): { message: string; code?: string } {
  const e = err as { message?: string; code?: string }
  return { message: e?.message ?? String(err), code: e?.code }
}

function init(o: InitOpts): void {
  opts = o
  db = new Database(o.dbPath, { timeout: o.busyTimeoutMs })
  if (o.pageSize) db.pragma(`page_size = ${o.pageSize}`)
  db.pragma('journal_mode = wal')
  db.pragma('foreign_keys = ON')
  if (o.walAutocheckpoint !== undefined) db.pragma(`wal_autocheckpoint = ${o.walAutocheckpoint}`)
  const last = initWriterDb(db, o.seed, o.noteChars)
  seq = last.seq
  hash = last.hash
  maxSeq = o.maxSeq
  const st = prepareStatements(db)
  const tx = db.transaction((i: number) => applyOp(st, i, opFor(o.seed, i, o.noteChars), hash))
  runOne = () => {
    const i = seq + 1
    const t0 = performance.now()
    try {
      const h = tx(i)
      const at = Date.now()
      seq = i
      hash = h
      send({ type: 'commit', seq, at, latMs: performance.now() - t0 })
    } catch (err) {
      send({ type: 'error', ...errorInfo(err) })
      return
    }
    const every = o.checkpointEvery
    if (every && every.ops > 0 && seq % every.ops === 0) {
      const c0 = performance.now()
      try {
        const [r] = db!.pragma(`wal_checkpoint(${every.mode})`) as { busy: number; log: number; checkpointed: number }[]
        send({ type: 'checkpoint-result', mode: every.mode, ms: performance.now() - c0, busy: r?.busy ?? -1, log: r?.log ?? -1, checkpointed: r?.checkpointed ?? -1 })
      } catch (err) {
        send({ type: 'error', ...errorInfo(err) })
      }
    }
  }
  send({ type: 'ready', seq })
  if (!o.startPaused) resume()
}

let runOne: () => void = () => {}

function schedule(): void {
  if (paused || stopping) return
  if (maxSeq !== undefined && seq >= maxSeq) {
    paused = true
    send({ type: 'done', seq })
    return
  }
  const delay = opts.opsPerSec > 0 ? 1000 / opts.opsPerSec : 0
  timer = delay > 0 ? setTimeout(tick, delay) : (setImmediate(tick) as unknown as NodeJS.Timeout)
}

function tick(): void {
  timer = undefined
  if (paused || stopping) return
  runOne()
  schedule()
}

function resume(): void {
  if (!paused) return
  paused = false
  schedule()
}

function pause(): void {
  paused = true
  if (timer) {
    clearTimeout(timer)
    clearImmediate(timer as unknown as NodeJS.Immediate)
    timer = undefined
  }
}

process.on('message', (m: ToChild) => {
  try {
    switch (m.type) {
      case 'init':
        init(m.opts)
        return
      case 'pause':
        pause()
        send({ type: 'paused', seq })
        return
      case 'resume':
        if (m.maxSeq !== undefined) maxSeq = m.maxSeq
        resume()
        return
      case 'checkpoint': {
        let result: unknown
        try {
          result = db!.pragma(`wal_checkpoint(${m.mode})`)
        } catch (err) {
          result = { error: errorInfo(err) }
          send({ type: 'error', ...errorInfo(err) })
        }
        send({ type: 'checkpointed', result })
        return
      }
      case 'stop':
        stopping = true
        pause()
        db?.close()
        send({ type: 'stopped', seq })
        process.disconnect?.()
        return
      default:
        m satisfies never
    }
  } catch (err) {
    send({ type: 'error', ...errorInfo(err) })
    if (m.type === 'init') process.exit(1)
  }
})
process.on('disconnect', () => {
  if (!stopping) {
    pause()
    db?.close()
  }
  process.exit(0)
})
