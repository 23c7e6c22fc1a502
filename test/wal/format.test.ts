import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import Database from 'better-sqlite3'
import { checkFrames, parseWalHeader, frameSize } from '../../src/wal/format.js'
import { makeWal, reencodeWal } from '../fixtures/make-wal.js'

const PS = 512
const frames = [
  { pgno: 1, commit: 0, fill: 1 },
  { pgno: 2, commit: 2, fill: 2 },
  { pgno: 3, commit: 0, fill: 3 },
  { pgno: 1, commit: 3, fill: 4 },
  { pgno: 2, commit: 0, fill: 5 }, // uncommitted tail
]

for (const bigEndian of [false, true]) {
  const order = bigEndian ? 'big-endian' : 'little-endian'

  test(`A10 wal header and frames validate (${order})`, () => {
    const wal = makeWal({ bigEndian, pageSize: PS, salt1: 7, salt2: 9, frames })
    const h = parseWalHeader(wal)
    assert.ok(h.ok, 'header parses')
    assert.equal(h.header.bigEndian, bigEndian)
    assert.equal(h.header.pageSize, PS)
    const run = checkFrames(h.header, h.header.checksum, wal, 32, wal.length, Infinity)
    assert.equal(run.frames, 5, 'valid frames')
    assert.equal(run.commitFrames, 4, 'frames up to the last commit: the non-commit tail is not shipped')
    assert.equal(run.commits, 2)
    assert.equal(run.dbPages, 3)
    assert.equal(run.stop, 'end')
  })

  test(`A10 incremental checking equals one pass (${order})`, () => {
    const wal = makeWal({ bigEndian, pageSize: PS, salt1: 7, salt2: 9, frames })
    const h = parseWalHeader(wal)
    assert.ok(h.ok)
    const fs1 = frameSize(PS)
    const first = checkFrames(h.header, h.header.checksum, wal, 32, 32 + 2 * fs1, Infinity)
    const second = checkFrames(h.header, first.checksum, wal, 32 + 2 * fs1, wal.length, Infinity)
    const whole = checkFrames(h.header, h.header.checksum, wal, 32, wal.length, Infinity)
    assert.deepEqual(second.checksum, whole.checksum)
  })

  test(`A10 bad salt stops at the stale frame (${order})`, () => {
    const wal = makeWal({ bigEndian, pageSize: PS, salt1: 7, salt2: 9, frames })
    wal.writeUInt32BE(8, 32 + 2 * frameSize(PS) + 8) // frame 3 salt-1
    const h = parseWalHeader(wal)
    assert.ok(h.ok)
    const run = checkFrames(h.header, h.header.checksum, wal, 32, wal.length, Infinity)
    assert.equal(run.stop, 'salt')
    assert.equal(run.frames, 2)
    assert.equal(run.commitFrames, 2)
  })

  test(`A10 bad checksum stops before the corrupt frame (${order})`, () => {
    const wal = makeWal({ bigEndian, pageSize: PS, salt1: 7, salt2: 9, frames })
    wal[32 + frameSize(PS) + 24 + 100]! ^= 0xff // corrupt page 2's data
    const h = parseWalHeader(wal)
    assert.ok(h.ok)
    const run = checkFrames(h.header, h.header.checksum, wal, 32, wal.length, Infinity)
    assert.equal(run.stop, 'checksum')
    assert.equal(run.frames, 1)
    assert.equal(run.commitFrames, 0, 'nothing committed before the corruption')
  })

  test(`A10 partial frame is not read (${order})`, () => {
    const wal = makeWal({ bigEndian, pageSize: PS, salt1: 7, salt2: 9, frames: frames.slice(0, 2) })
    const h = parseWalHeader(wal)
    assert.ok(h.ok)
    const run = checkFrames(h.header, h.header.checksum, wal, 32, wal.length - 10, Infinity)
    assert.equal(run.frames, 1)
    assert.equal(run.commitFrames, 0)
  })
}

test('A10 header rejects zero length, bad magic, version, page size and checksum', () => {
  const wal = makeWal({ bigEndian: false, pageSize: PS, salt1: 1, salt2: 2, frames: [] })
  assert.deepEqual(parseWalHeader(Buffer.alloc(0)), { ok: false, reason: 'short wal header' })
  assert.deepEqual(parseWalHeader(wal.subarray(0, 31)), { ok: false, reason: 'short wal header' })
  const bad = (mutate: (b: Buffer) => void): string => {
    const b = Buffer.from(wal)
    mutate(b)
    const r = parseWalHeader(b)
    assert.equal(r.ok, false)
    return r.ok ? '' : r.reason
  }
  assert.equal(bad((b) => b.writeUInt32BE(0x377f0684, 0)), 'bad wal magic')
  assert.equal(bad((b) => b.writeUInt32BE(3007001, 4)), 'unsupported wal version')
  assert.equal(bad((b) => b.writeUInt32BE(1000, 8)), 'bad wal page size')
  assert.equal(bad((b) => (b[20]! ^= 1)), 'wal header checksum mismatch')
})

test('A10 big-endian checksums are the ones SQLite verifies', () => {
  // A real WAL, re-checksummed big-endian: SQLite must still see every row, proving our BE checksum is SQLite's.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lm-wal-'))
  try {
    const src = path.join(dir, 'a.db')
    const db = new Database(src)
    db.pragma('journal_mode = wal')
    db.pragma('wal_autocheckpoint = 0')
    db.exec('CREATE TABLE t(x)')
    const copyDb = fs.readFileSync(src) // database file before any frame is checkpointed
    for (let i = 0; i < 50; i++) db.prepare('INSERT INTO t VALUES (?)').run(`row ${i}`)
    const wal = fs.readFileSync(`${src}-wal`)
    db.close()
    for (const bigEndian of [true, false]) {
      const dst = path.join(dir, `b-${bigEndian}.db`)
      fs.writeFileSync(dst, copyDb)
      fs.writeFileSync(`${dst}-wal`, reencodeWal(wal, bigEndian))
      const h = parseWalHeader(fs.readFileSync(`${dst}-wal`))
      assert.ok(h.ok && h.header.bigEndian === bigEndian)
      const b = new Database(dst)
      assert.equal((b.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n, 50, `rows visible through a ${bigEndian ? 'BE' : 'LE'} wal`)
      b.close()
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
