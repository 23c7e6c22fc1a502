/**
 * What it costs to make one small replica object durable, the way the file replica used to (fsync the file, rename,
 * fsync the directory) and the way it does now (syncfs shared by a batch of writes: src/file/syncfs.ts).
 * Synchronous calls on one thread, so process CPU is the cost of the calls themselves. Evidence for
 * docs/decisions/0005. Usage: node --import tsx bench/durable-write.ts [--objects 2000] [--dir DIR]
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import koffi from 'koffi'

const arg = (name: string, dflt: string): string => {
  const at = process.argv.indexOf(name)
  return at > 0 ? process.argv[at + 1]! : dflt
}
const N = Number(arg('--objects', '2000'))
if (!Number.isInteger(N) || N < 100) throw new Error('--objects must be an integer of at least 100')
const root = fs.mkdtempSync(path.join(arg('--dir', os.tmpdir()), 'lm-durable-'))
const DIRS = 1000 // one wal directory per client, as with 1,000 clients
for (let i = 0; i < DIRS; i++) fs.mkdirSync(path.join(root, String(i)))
const body = Buffer.alloc(300, 7) // a one-transaction segment, compressed
const syncfs = koffi.load(null).func('int syncfs(int fd)') as unknown as (fd: number) => number
const rootFd = fs.openSync(root, 'r')

function perObject(label: string, fn: (k: number) => void, step = 1): Record<string, number | string> {
  const u0 = process.cpuUsage()
  const t0 = performance.now()
  for (let k = 0; k < N; k += step) fn(k)
  const u = process.cpuUsage(u0)
  const row = { way: label, userUs: +(u.user / N).toFixed(1), sysUs: +(u.system / N).toFixed(1), wallUs: +(((performance.now() - t0) * 1000) / N).toFixed(0) }
  console.log(JSON.stringify(row))
  return row
}

const write = (k: number, tag: string): string => {
  const p = path.join(root, String(k % DIRS), `${tag}${k}.wal.lz4`)
  const fd = fs.openSync(`${p}.tmp`, 'w')
  fs.writeSync(fd, body)
  if (tag === 'f') fs.fsyncSync(fd)
  fs.closeSync(fd)
  return p
}

try {
  perObject('fsync file, rename, fsync dir (before)', (k) => {
    const p = write(k, 'f')
    fs.renameSync(`${p}.tmp`, p)
    const dfd = fs.openSync(path.dirname(p), 'r')
    fs.fsyncSync(dfd)
    fs.closeSync(dfd)
  })
  for (const batch of [1, 10, 100]) {
    perObject(`syncfs, rename, syncfs; ${batch} per batch (now)`, (k) => {
      const names: string[] = []
      for (let j = k; j < k + batch; j++) names.push(write(j, `s${batch}-`))
      if (syncfs(rootFd) !== 0) throw new Error('syncfs failed')
      for (const p of names) fs.renameSync(`${p}.tmp`, p)
      if (syncfs(rootFd) !== 0) throw new Error('syncfs failed')
    }, batch)
  }
} finally {
  fs.closeSync(rootFd)
  fs.rmSync(root, { recursive: true, force: true })
}
