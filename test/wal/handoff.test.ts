/**
 * The hand-off worker (src/wal/handoff-worker.ts) against an application in another process that commits one row
 * per transaction in a tight loop, with its own autocheckpoint: the worker must drop our slot in the gap between
 * the application's checkpoint and its next commit, so that the WAL restarts exactly once (SQLite adds 1 to salt-1
 * at each restart), with every frame it overwrote held in memory, and not again while READ(0) is held.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { test, type TestContext } from 'node:test'
import { checkFrames, frameSize, parseWalHeader, WAL_HEADER_SIZE } from '../../src/wal/format.js'
import { handOff, workersRunning } from '../../src/wal/handoff.js'
import { readShmHeader } from '../../src/wal/shm.js'
import { SqliteHandle } from '../../src/wal/sqlite-handle.js'
import { tmpDir } from '../helpers/db.js'
import { startAppProcess, type AppProcess } from '../helpers/app-process.js'

const APP_SRC = `
const Database = require('better-sqlite3')
const crypto = require('node:crypto')
const db = new Database(process.argv[1], { timeout: 0 })
db.pragma('journal_mode = wal')
db.pragma('wal_autocheckpoint = 0')
db.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)')
const ins = db.prepare('INSERT INTO t (v) VALUES (?)')
require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, arg] = line.split(' ')
  let out
  try {
    if (cmd === 'insert') { for (let i = 0; i < Number(arg); i++) ins.run(crypto.randomBytes(200)); out = null }
    else if (cmd === 'autocheckpoint') { db.pragma('wal_autocheckpoint = ' + arg); out = null }
    else if (cmd === 'count') out = db.prepare('SELECT count(*) AS n FROM t').get().n
    else if (cmd === 'integrity') out = db.pragma('integrity_check', { simple: true })
    else if (cmd === 'close') { db.close(); out = null }
  } catch (err) { out = { error: String(err.code || err.message) } }
  process.stdout.write(JSON.stringify(out === undefined ? null : out) + '\\n')
  if (cmd === 'close') process.exit(0)
})
`

function startApp(t: TestContext, file: string): AppProcess {
  return startAppProcess(t, APP_SRC, file)
}

function shm(file: string): { salt1: number; salt2: number; mxFrame: number; nBackfill: number; iChange: number } {
  const fd = fs.openSync(`${file}-shm`, 'r')
  try {
    return readShmHeader(fd)!
  } finally {
    fs.closeSync(fd)
  }
}

test('hand-off worker: drops the slot between the application checkpoint and its next commit; the WAL restarts exactly once', async (t) => {
  const file = path.join(tmpDir(t), 'h.db')
  const app = startApp(t, file)
  await app.run('insert 200')
  const h = SqliteHandle.open(file)
  t.after(() => h.close())
  const walBytes = fs.readFileSync(`${file}-wal`)
  const hr = parseWalHeader(walBytes.subarray(0, WAL_HEADER_SIZE))
  assert.ok(hr.ok)
  const header = hr.header
  const before = shm(file)
  const fsz = frameSize(header.pageSize)
  // Shipped position: the first 50 frames (commit-aligned: one row per transaction, each a commit frame or two).
  const run50 = checkFrames(header, header.checksum, walBytes, WAL_HEADER_SIZE, WAL_HEADER_SIZE + 50 * fsz, Infinity)
  const offset = WAL_HEADER_SIZE + run50.commitFrames * fsz
  const heldPath = path.join(path.dirname(file), 'held')
  const heldFd = fs.openSync(heldPath, 'w+')
  t.after(() => fs.closeSync(heldFd))
  const job = handOff({
    dbPath: file,
    walPath: `${file}-wal`,
    dbFd: h.dbFd,
    shmFd: h.shmFd,
    pin: h.pinState(),
    header,
    offset,
    heldFd,
    fileBase: 0,
    windowMs: 20_000,
    maxBytes: 64 << 20,
  })
  // The worker raises before it waits: give it the time to start (a thread, tsx in tests), then write.
  await new Promise((r) => setTimeout(r, 1500))
  await app.run('autocheckpoint 20')
  let r: Awaited<typeof job> | undefined
  void job.then((x) => (r = x))
  for (let i = 0; i < 200 && r === undefined; i++) await app.run('insert 20')
  r ??= await job
  assert.equal(r.handed, true, r.reason)
  t.diagnostic(`${r.reason} after ${r.checkpoints} checkpoint(s), ${r.lost} lost, ${r.ms.toFixed(1)} ms; held ${(r.end - offset) / fsz} frames`)
  h.adoptPin(r.pin)
  assert.equal(h.slotHeld, false)
  assert.equal(h.reading, true, 'READ(0) held')
  // The frames held: from the shipped position to the end at the hand-off, validated against the old incarnation.
  const tail = fs.readFileSync(heldPath)
  assert.equal(tail.length, r.end - offset)
  const chk = checkFrames(header, run50.checksum, tail, 0, tail.length, Infinity)
  assert.equal(chk.commitFrames * fsz, tail.length, 'whole committed frames continuing the shipped position')
  // iChange at the shipped position: the index's counter before the job, less the commits after that position then.
  const unshippedBefore = checkFrames(header, run50.checksum, walBytes, offset, WAL_HEADER_SIZE + before.mxFrame * fsz, Infinity)
  const iChangeAtOffset = (before.iChange - unshippedBefore.commits) >>> 0
  assert.equal((r.endIChange - iChangeAtOffset) >>> 0, chk.commits, 'endIChange is iChange at the held end: it counts exactly the commits held')
  await app.run('insert 300')
  const after = shm(file)
  assert.equal(after.salt1, (before.salt1 + 1) >>> 0, 'the WAL restarted exactly once (salt-1 + 1)')
  assert.equal(after.nBackfill, 0, 'READ(0) keeps the new incarnation from being backfilled')
  h.advance() // a slot at the end of the new incarnation, then READ(0) let go
  assert.equal(h.slotHeld, true)
  await app.run('insert 50')
  assert.equal(shm(file).salt1, after.salt1, 'no restart while our slot is held')
  assert.equal(await app.run('integrity'), 'ok')
  assert.equal(workersRunning(), 1)
  await app.close()
})
