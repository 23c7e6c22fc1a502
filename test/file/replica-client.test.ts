import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { Readable } from 'node:stream'
import { FileReplicaClient } from '../../src/file/replica-client.js'
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
