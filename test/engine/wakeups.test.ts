/**
 * The replication loops of a process sleep in one wake-up queue (WakeupQueue in src/replicator.ts): a heap by due time
 * with a single timer. It must fire every entry once, in due order, not before its time; let entries due close together
 * share one timeout; forget cancelled entries; and leave no timer behind when nothing is queued, so that an idle
 * database costs no wake-up.
 */
import assert from 'node:assert/strict'
import path from 'node:path'
import { test } from 'node:test'
import { FileReplicaClient } from '../../src/file/replica-client.js'
import { Replicator, WakeupQueue } from '../../src/replicator.js'
import { insertRows, openApp, tmpDir } from '../helpers/db.js'

/** timeouts counts the process's active timeouts. */
function timeouts(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
}

function entry(name: string, fired: string[]): { at: number; index: number; fire: () => void } {
  return { at: 0, index: -1, fire: () => fired.push(name) }
}

test('wake-ups fire once each, in due order, never early; moved and cancelled entries are respected', async () => {
  const q = new WakeupQueue()
  const fired: string[] = []
  const firedAt = new Map<string, number>()
  const t0 = performance.now()
  let lastFired!: () => void
  const allFired = new Promise<void>((resolve) => (lastFired = resolve))
  const mk = (name: string) => {
    const e = entry(name, fired)
    const fire = e.fire
    return {
      ...e,
      fire: () => {
        firedAt.set(name, performance.now())
        fire()
        if (name === 'a') lastFired() // due last, past the cancelled d
      },
    }
  }
  const names = ['e', 'b', 'd', 'a', 'c', 'f', 'g']
  const es = new Map(names.map((n) => [n, mk(n)]))
  // Due at 10 ms steps in name order, queued out of order.
  for (const n of names) q.schedule(es.get(n)!, t0 + 10 * (n.charCodeAt(0) - 96))
  q.schedule(es.get('g')!, t0 + 5) // moved earlier: first
  q.schedule(es.get('a')!, t0 + 65) // moved later: last
  q.cancel(es.get('d')!)
  q.cancel(es.get('d')!) // twice: a no-op
  await allFired
  assert.deepEqual(fired, ['g', 'b', 'c', 'e', 'f', 'a'], 'due order, d cancelled, each once')
  const due: Record<string, number> = { g: 5, b: 20, c: 30, e: 50, f: 60, a: 65 }
  for (const [n, ms] of Object.entries(due)) assert.ok(firedAt.get(n)! >= t0 + ms, `${n} fired ${(firedAt.get(n)! - t0).toFixed(1)} ms in, due at ${ms}`)
})

test('entries due within a few milliseconds of each other share one timeout', async () => {
  const q = new WakeupQueue()
  const order: string[] = []
  let laterTask = false
  const now = performance.now()
  const first = {
    at: 0,
    index: -1,
    fire: () => {
      order.push('first')
      setImmediate(() => (laterTask = true))
    },
  }
  const second = { at: 0, index: -1, fire: () => order.push(laterTask ? 'second, in a later task' : 'second, same task') }
  // Both in the same 5 ms step of the timer's grid (WAKE_GRANULE_MS), 2 ms apart.
  const step = Math.ceil((now + 20) / 5) * 5
  q.schedule(first, step - 3)
  q.schedule(second, step - 1)
  await new Promise((r) => setTimeout(r, 60))
  assert.deepEqual(order, ['first', 'second, same task'])
})

test('an empty queue holds no timer', async () => {
  const before = timeouts()
  const q = new WakeupQueue()
  const fired: string[] = []
  const a = entry('a', fired)
  const b = entry('b', fired)
  q.schedule(a, performance.now() + 10_000)
  q.schedule(b, performance.now() + 20_000)
  assert.equal(timeouts(), before + 1, 'one timer for two entries')
  q.cancel(a)
  assert.equal(timeouts(), before + 1, 'b is still queued')
  q.cancel(b)
  assert.equal(timeouts(), before, 'nothing queued: no timer')
  assert.deepEqual(fired, [])
})

test('a replicator ships after its sync interval, then holds no timer while its database is idle', async (t) => {
  const dir = tmpDir(t)
  const dbPath = path.join(dir, 'app.db')
  const app = openApp(dbPath)
  t.after(() => app.close())
  insertRows(app, 10)
  const before = timeouts()
  const idle: { at: number; timeouts: number; offset: number }[] = []
  let onIdle: (() => void) | undefined
  const r = new Replicator({
    dbPath,
    client: new FileReplicaClient(path.join(dir, 'replica')),
    syncIntervalMs: 200,
    retentionMs: 0,
    onStatus: (s) => {
      if (s.state !== 'idle') return
      // The loop queues its next wake-up (or none) right after the pass: look once that has happened.
      setImmediate(() => {
        idle.push({ at: s.lastSyncAt!, timeouts: timeouts(), offset: s.offset })
        onIdle?.()
      })
    },
  })
  t.after(() => r.close().catch(() => {}))
  const startedAt = Date.now()
  r.start()
  await new Promise<void>((resolve) => (onIdle = resolve))
  assert.equal(idle[0]!.timeouts, before, 'idle after the first pass: no timer')
  const shipped = idle[0]!.offset
  insertRows(app, 10)
  const next = new Promise<void>((resolve) => (onIdle = resolve))
  r.notify('wal')
  await next
  const second = idle[1]!
  assert.ok(second.offset > shipped, 'the commit shipped')
  assert.ok(second.at >= startedAt + 199, `the second pass waited out the sync interval (${second.at - startedAt} ms after start)`)
  assert.equal(second.timeouts, before, 'idle again: no timer')
})
