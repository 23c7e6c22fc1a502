import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { Readable } from 'node:stream'
import { FileReplicaClient } from '../../src/file/replica-client.js'
import { barrierFor, SyncBarrier, type SyncfsFn } from '../../src/file/syncfs.js'
import { replicaClientSuite } from '../conformance/replica-client.js'

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'file-replica-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

replicaClientSuite('file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'file-replica-'))
  const root = join(dir, 'replica')
  return {
    client: new FileReplicaClient(root),
    cleanup: () => rm(dir, { recursive: true, force: true }),
    async writeRaw(key, body) {
      await mkdir(dirname(join(root, key)), { recursive: true })
      await writeFile(join(root, key), body)
    },
  }
})

test('file: layout, modes and no tmp files left behind', async (t) => {
  const dir = await tempDir(t)
  const root = join(dir, 'a', 'replica')
  const client = new FileReplicaClient(root)
  await client.writeSnapshot('0123456789abcdef', 0, Buffer.from('snap'))
  await client.writeWalSegment('0123456789abcdef', 0, 0x4080, Buffer.from('wal'))

  const gen = join(root, 'generations', '0123456789abcdef')
  assert.deepEqual(await readdir(join(gen, 'snapshots')), ['00000000.snapshot.lz4'], 'snapshots dir')
  assert.deepEqual(await readdir(join(gen, 'wal')), ['00000000_00004080.wal.lz4'], 'wal dir')
  assert.equal((await stat(join(gen, 'wal', '00000000_00004080.wal.lz4'))).mode & 0o777, 0o600, 'file mode')
  for (const d of [root, join(root, 'generations'), gen, join(gen, 'wal')]) {
    assert.equal((await stat(d)).mode & 0o777, 0o700, `dir mode of ${d}`)
  }
  assert.equal((await stat(join(dir, 'a'))).mode & 0o777, 0o700, 'created parent dir mode')
})

test('file: createdAt is the file mtime', async (t) => {
  const dir = await tempDir(t)
  const client = new FileReplicaClient(dir)
  const info = await client.writeWalSegment('0123456789abcdef', 0, 0, Buffer.from('x'))
  const st = await stat(join(dir, 'generations', '0123456789abcdef', 'wal', '00000000_00000000.wal.lz4'))
  assert.equal(info.createdAt.getTime(), st.mtime.getTime(), 'write info createdAt')
  assert.equal((await client.walSegments('0123456789abcdef'))[0]!.createdAt.getTime(), st.mtime.getTime(), 'listed createdAt')
})

test('file: a generation name that is a file is not a generation', async (t) => {
  const dir = await tempDir(t)
  await mkdir(join(dir, 'generations'), { recursive: true })
  await writeFile(join(dir, 'generations', 'fedcba9876543210'), 'x')
  assert.deepEqual(await new FileReplicaClient(dir).generations(), [])
})

test('file: describe, root and child', async (t) => {
  const dir = await tempDir(t)
  const client = new FileReplicaClient(dir)
  assert.equal(client.describe(), `file://${dir}`)
  const child = client.child('databases/abc')
  assert.equal(child.root, join(dir, 'databases', 'abc'))
  assert.equal(child.describe(), `file://${join(dir, 'databases', 'abc')}`)
  assert.throws(() => client.child('../escape'), /invalid replica sub path/)
  assert.throws(() => client.child(''), /invalid replica sub path/)
  const rel = new FileReplicaClient('relative/dir')
  assert.equal(rel.root, join(process.cwd(), 'relative/dir'), 'relative root resolved against cwd')
})

test('file: a failed stream write leaves no tmp file', async (t) => {
  const dir = await tempDir(t)
  const client = new FileReplicaClient(dir)
  await client.writeSnapshot('0123456789abcdef', 0, Buffer.from('keep'))
  const failing = Readable.from((async function* () {
    yield Buffer.alloc(1 << 20)
    throw new Error('source broke')
  })())
  await assert.rejects(client.writeSnapshot('0123456789abcdef', 1, failing), (err: unknown) => {
    assert.match((err as Error).message, /^write snapshot .*00000001\.snapshot\.lz4$/)
    assert.equal(((err as Error).cause as Error).message, 'source broke')
    return true
  })
  const names = await readdir(join(dir, 'generations', '0123456789abcdef', 'snapshots'))
  assert.deepEqual(names, ['00000000.snapshot.lz4'], 'only the complete snapshot remains')
})

test('file: a wal directory removed behind the client is made again by the next write', async (t) => {
  const dir = await tempDir(t)
  const client = new FileReplicaClient(dir)
  await client.writeWalSegment('0123456789abcdef', 0, 0, Buffer.from('a'))
  await rm(join(dir, 'generations'), { recursive: true })
  await client.writeWalSegment('0123456789abcdef', 0, 4128, Buffer.from('b'))
  assert.deepEqual(await readdir(join(dir, 'generations', '0123456789abcdef', 'wal')), ['00000000_00001020.wal.lz4'])
})

test('file: a segment write that fails at the rename leaves no tmp file and rejects', async (t) => {
  const dir = await tempDir(t)
  const client = new FileReplicaClient(dir)
  await client.writeWalSegment('0123456789abcdef', 0, 0, Buffer.from('a')) // the directory is known from here
  const wal = join(dir, 'generations', '0123456789abcdef', 'wal')
  // A non-empty directory where the segment belongs: rename(2) cannot replace it.
  await mkdir(join(wal, '00000000_00001020.wal.lz4'))
  await writeFile(join(wal, '00000000_00001020.wal.lz4', 'x'), 'x')
  await assert.rejects(client.writeWalSegment('0123456789abcdef', 0, 4128, Buffer.from('b')), /write wal segment/)
  assert.deepEqual((await readdir(wal)).sort(), ['00000000_00000000.wal.lz4', '00000000_00001020.wal.lz4'])
})

test('file: a sync barrier shares one syncfs among waiters and never lets a late waiter ride an earlier call', async () => {
  const calls: Array<(err: unknown, res: number) => void> = []
  const fake = Object.assign(() => 0, { async: (_fd: number, cb: (err: unknown, res: number) => void) => void calls.push(cb) }) as SyncfsFn
  const b = new SyncBarrier(-1, fake, 'test', 0)
  const settled = new Set<string>()
  const track = (name: string, p: Promise<void>): Promise<void> =>
    p.then(
      () => void settled.add(`${name} ok`),
      () => void settled.add(`${name} failed`),
    )
  const tick = (): Promise<void> => new Promise((r) => setImmediate(r))

  const p1 = track('p1', b.flush())
  assert.equal(calls.length, 1, 'the first flush starts a syncfs')
  // These arrive while the first call runs: its result says nothing about their writes.
  const p2 = track('p2', b.flush())
  const p3 = track('p3', b.flush())
  assert.equal(calls.length, 1, 'no second call while one runs')
  calls[0]!(null, 0)
  await p1
  await tick()
  assert.deepEqual([...settled], ['p1 ok'], 'late waiters still wait')
  assert.equal(calls.length, 2, 'one call for both late waiters')
  calls[1]!(null, 0)
  await Promise.all([p2, p3])
  assert.deepEqual([...settled].sort(), ['p1 ok', 'p2 ok', 'p3 ok'])

  // A failed syncfs (a writeback error) fails every waiter of that call; the next flush runs a new call.
  const p4 = track('p4', b.flush())
  calls[2]!(null, -1)
  await p4
  assert.ok(settled.has('p4 failed'), 'syncfs returning -1 rejects')
  const p5 = track('p5', b.flush())
  assert.equal(calls.length, 4)
  calls[3]!(null, 0)
  await p5
  assert.ok(settled.has('p5 ok'))
})

test('file: a sync barrier starts its syncfs calls at least its gap apart; waiters arriving in the gap share the next', async () => {
  const starts: number[] = []
  const fake = Object.assign(() => 0, {
    async: (_fd: number, cb: (err: unknown, res: number) => void) => {
      starts.push(performance.now())
      setImmediate(() => cb(null, 0))
    },
  }) as SyncfsFn
  const gap = 40
  const b = new SyncBarrier(-1, fake, 'test', gap)
  const first = b.flush()
  assert.equal(starts.length, 1, 'the first flush starts a syncfs at once')
  await first
  // Three flushes after the first call ended, within its gap: none starts a call at once; one call serves all three,
  // no sooner than the gap.
  const later = [b.flush(), b.flush(), b.flush()]
  assert.equal(starts.length, 1, 'no call starts within the gap')
  await Promise.all(later)
  assert.equal(starts.length, 2, 'one call for the three waiters of the gap')
  assert.ok(starts[1]! - starts[0]! >= gap, `calls started ${(starts[1]! - starts[0]!).toFixed(1)} ms apart (gap ${gap})`)
  // Control: with no gap, the next call starts as soon as it is asked for.
  const nb = new SyncBarrier(-1, fake, 'test', 0)
  await nb.flush()
  const again = nb.flush()
  assert.equal(starts.length, 4, 'without a gap the second call starts at once')
  await again
})

test('file: this platform has a sync barrier for the replica filesystem', { skip: process.platform !== 'linux' }, async (t) => {
  const dir = await tempDir(t)
  const b = barrierFor(dir)
  assert.ok(b, 'syncfs is available on Linux')
  await b.flush()
})
