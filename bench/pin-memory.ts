/**
 * Memory and time of WAL pins (decision 0003): creates N small WAL databases, opens a SqliteHandle on each (a
 * short-lived connection, then the lock-only pin) and reports RSS per handle and the cost of re-pinning all.
 * Usage: node --expose-gc --import tsx bench/pin-memory.ts [N]
 */
import fs from 'node:fs'
import Database from 'better-sqlite3'
import { SqliteHandle } from '../src/wal/sqlite-handle.js'
const dir = '/tmp/lm-pin-memory'; fs.rmSync(dir, { recursive: true, force: true }); fs.mkdirSync(dir)
const N = Number(process.argv[2] ?? 1000)
for (let i = 0; i < N; i++) { const d = new Database(`${dir}/${i}.db`); d.pragma('journal_mode=wal'); d.exec('create table t(x); insert into t values (1)'); d.close() }
;(globalThis as { gc?: () => void }).gc?.()
const rss0 = process.memoryUsage().rss
const hs: SqliteHandle[] = []
const t0 = performance.now()
for (let i = 0; i < N; i++) hs.push(SqliteHandle.open(`${dir}/${i}.db`))
const t1 = performance.now()
;(globalThis as { gc?: () => void }).gc?.()
const rss1 = process.memoryUsage().rss
console.log(`open ${N}: ${(t1 - t0).toFixed(0)} ms; RSS ${(rss0/2**20).toFixed(1)} -> ${(rss1/2**20).toFixed(1)} MiB (+${((rss1-rss0)/N/1024).toFixed(1)} KiB each)`)
const t2 = performance.now(); for (const h of hs) { h.endRead(); h.beginRead() } ; console.log(`re-pin ${N}: ${(performance.now()-t2).toFixed(1)} ms`)
