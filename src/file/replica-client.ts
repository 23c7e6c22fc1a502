/**
 * FileReplicaClient stores a replica in a local directory with Litestream's file-replica layout
 * (file/replica_client.go): `<root>/generations/<gen>/snapshots/…` and `<root>/generations/<gen>/wal/…`.
 * Writes go to `<name>.tmp` (mode 0600), are made durable and renamed, then the rename is made durable: on Linux by
 * a syncfs shared with every write waiting at the same moment (./syncfs.ts), elsewhere by fsync of file and directory.
 * @module
 */
import fs, { constants, type Stats } from 'node:fs'
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, type FileHandle } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import type { Readable } from 'node:stream'
import { ReplicaError } from '../errors.js'
import {
  formatSnapshotName,
  formatWalSegmentName,
  generationsPath,
  isGenerationName,
  parseSnapshotName,
  parseWalSegmentName,
  snapshotsPath,
  walPath,
} from '../keys.js'
import type { OpOptions, ReplicaClient } from '../replica-client.js'
import type { SnapshotInfo, WalSegmentInfo } from '../types.js'
import { barrierFor, type SyncBarrier } from './syncfs.js'

/** FILE_MODE is the mode of replica files. */
const FILE_MODE = 0o600
/** DIR_MODE is the mode of directories the client creates. */
const DIR_MODE = 0o700
/** INLINE_WRITE_MAX: buffers up to this size are written with synchronous calls (see writeSmall). */
const INLINE_WRITE_MAX = 256 * 1024

/** Written is what a write reports of the file it stored: its size and modification time. */
type Written = Pick<Stats, 'size' | 'mtime'>

/** FileReplicaClient implements ReplicaClient over a local directory. */
export class FileReplicaClient implements ReplicaClient {
  readonly type = 'file'
  readonly #root: string
  /** dirs maps directories this client created or found (so a write need not look again) to their sync barrier. */
  readonly #dirs = new Map<string, SyncBarrier | null>()
  /** walDir is the WAL directory of the generation written last (every segment of a generation goes there). */
  #walDir: { readonly generation: string; readonly dir: string } | null = null

  /** root is the replica directory; a relative path is resolved against the current directory once, here. */
  constructor(root: string) {
    if (root === '') throw new ReplicaError('CONFIG_INVALID', 'file replica path is empty')
    this.#root = resolve(root)
  }

  /** root is the absolute replica directory. */
  get root(): string {
    return this.#root
  }

  /** child returns a client rooted at `<root>/<subPath>`. */
  child(subPath: string): FileReplicaClient {
    return new FileReplicaClient(join(this.#root, checkSubPath(subPath)))
  }

  describe(): string {
    return `file://${this.#root}`
  }

  async generations(opts: OpOptions = {}): Promise<string[]> {
    opts.signal?.throwIfAborted()
    const dir = join(this.#root, generationsPath(''))
    const entries = await readDir(dir, 'list generations')
    return entries
      .filter((e) => e.isDirectory() && isGenerationName(e.name))
      .map((e) => e.name)
      .sort()
  }

  async deleteGeneration(generation: string, opts: OpOptions = {}): Promise<void> {
    checkGeneration(generation)
    opts.signal?.throwIfAborted()
    const dir = join(this.#root, generationsPath(''), generation)
    try {
      for (const d of this.#dirs.keys()) if (d === dir || d.startsWith(`${dir}/`)) this.#dirs.delete(d)
      await rm(dir, { recursive: true, force: true })
      await fsyncDir(dirname(dir))
    } catch (err) {
      if (isEnoent(err)) return
      throw new Error(`delete generation ${dir}`, { cause: err })
    }
  }

  async snapshots(generation: string, opts: OpOptions = {}): Promise<SnapshotInfo[]> {
    checkGeneration(generation)
    opts.signal?.throwIfAborted()
    const dir = join(this.#root, snapshotsPath('', generation))
    const infos: SnapshotInfo[] = []
    for (const e of await readDir(dir, 'list snapshots')) {
      const index = e.isFile() ? parseSnapshotName(e.name) : undefined
      if (index === undefined) continue
      const st = await statOrUndefined(join(dir, e.name), 'list snapshots')
      if (st) infos.push({ generation, index, size: st.size, createdAt: st.mtime })
    }
    return infos.sort((a, b) => a.index - b.index)
  }

  async writeSnapshot(generation: string, index: number, body: Buffer | Readable, opts: OpOptions = {}): Promise<SnapshotInfo> {
    checkGeneration(generation)
    const path = join(this.#root, snapshotsPath('', generation), formatSnapshotName(index))
    const st = await this.#write(path, body, opts, 'write snapshot')
    return { generation, index, size: st.size, createdAt: st.mtime }
  }

  async readSnapshot(generation: string, index: number, opts: OpOptions = {}): Promise<Buffer> {
    checkGeneration(generation)
    return readObject(join(this.#root, snapshotsPath('', generation), formatSnapshotName(index)), opts, 'read snapshot')
  }

  async deleteSnapshot(generation: string, index: number, opts: OpOptions = {}): Promise<void> {
    checkGeneration(generation)
    opts.signal?.throwIfAborted()
    const dir = join(this.#root, snapshotsPath('', generation))
    await removeFiles(dir, [formatSnapshotName(index)], opts, 'delete snapshot')
  }

  async walSegments(generation: string, opts: OpOptions = {}): Promise<WalSegmentInfo[]> {
    checkGeneration(generation)
    opts.signal?.throwIfAborted()
    const dir = join(this.#root, walPath('', generation))
    const infos: WalSegmentInfo[] = []
    for (const e of await readDir(dir, 'list wal segments')) {
      const pos = e.isFile() ? parseWalSegmentName(e.name) : undefined
      if (pos === undefined) continue
      const st = await statOrUndefined(join(dir, e.name), 'list wal segments')
      if (st) infos.push({ generation, index: pos.index, offset: pos.offset, size: st.size, createdAt: st.mtime })
    }
    return infos.sort((a, b) => a.index - b.index || a.offset - b.offset)
  }

  async writeWalSegment(generation: string, index: number, offset: number, body: Buffer, opts: OpOptions = {}): Promise<WalSegmentInfo> {
    let wal = this.#walDir
    if (wal?.generation !== generation) {
      checkGeneration(generation)
      wal = this.#walDir = { generation, dir: join(this.#root, walPath('', generation)) }
    }
    const st = await this.#write(`${wal.dir}/${formatWalSegmentName(index, offset)}`, body, opts, 'write wal segment', wal.dir)
    return { generation, index, offset, size: st.size, createdAt: st.mtime }
  }

  async readWalSegment(generation: string, index: number, offset: number, opts: OpOptions = {}): Promise<Buffer> {
    checkGeneration(generation)
    return readObject(join(this.#root, walPath('', generation), formatWalSegmentName(index, offset)), opts, 'read wal segment')
  }

  async deleteWalSegments(
    generation: string,
    segments: ReadonlyArray<{ index: number; offset: number }>,
    opts: OpOptions = {},
  ): Promise<void> {
    checkGeneration(generation)
    const names = segments.map((s) => formatWalSegmentName(s.index, s.offset))
    await removeFiles(join(this.#root, walPath('', generation)), names, opts, 'delete wal segment')
  }

  async listPrefixes(subPath: string, opts: OpOptions = {}): Promise<string[]> {
    opts.signal?.throwIfAborted()
    const parts = subPath.split('/').filter((x) => x !== '')
    const dir = parts.length > 0 ? join(this.#root, checkSubPath(subPath)) : this.#root
    try {
      return (await readdir(dir, { withFileTypes: true }))
        .filter((e) => e.isDirectory())
        .map((e) => e.name)
        .sort()
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw new Error(`list ${dir}`, { cause: err })
    }
  }

  async listKeys(opts: OpOptions = {}): Promise<string[]> {
    const keys: string[] = []
    const walk = async (dir: string, prefix: string): Promise<void> => {
      opts.signal?.throwIfAborted()
      let entries
      try {
        entries = await readdir(dir, { withFileTypes: true })
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
        throw new Error(`list ${dir}`, { cause: err })
      }
      for (const e of entries) {
        if (e.isDirectory()) await walk(join(dir, e.name), `${prefix}${e.name}/`)
        else keys.push(`${prefix}${e.name}`)
      }
    }
    await walk(this.#root, '')
    return keys.sort()
  }

  /**
   * #write stores body at path atomically: tmp file, durable, rename, rename durable. Returns the final file's
   * stats. Durable means a syncfs shared with every write waiting at the same moment (./syncfs.ts) where there is
   * one, else fsync of the file and the directory. A small buffer (every WAL segment) with a barrier takes
   * writeSmall, in a directory looked up once per client (and made again if someone removed it since).
   */
  async #write(path: string, body: Buffer | Readable, opts: OpOptions, what: string, dir = dirname(path)): Promise<Written> {
    const tmp = `${path}.tmp`
    const small = Buffer.isBuffer(body) && body.length <= INLINE_WRITE_MAX
    try {
      opts.signal?.throwIfAborted()
      const known = small ? this.#dirs.get(dir) : undefined
      if (known) {
        try {
          return await writeSmall(tmp, path, body as Buffer, known, opts)
        } catch (err) {
          if (!isEnoent(err)) throw err
          this.#dirs.delete(dir) // removed behind our back (an operator, a deleted generation): make it again
        }
      }
      const barrier = await this.#prepareDir(dir)
      if (small && barrier) return await writeSmall(tmp, path, body as Buffer, barrier, opts)

      // Write the tmp file (and fsync it when there is no barrier); a failed write leaves no tmp file behind.
      const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, FILE_MODE)
      try {
        if (Buffer.isBuffer(body)) {
          await writeAll(fh, body)
        } else {
          for await (const chunk of body) {
            opts.signal?.throwIfAborted()
            await writeAll(fh, Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk))
          }
        }
        opts.signal?.throwIfAborted()
        if (!barrier) await fh.sync()
      } catch (err) {
        await fh.close().catch(() => {})
        await unlink(tmp).catch(() => {})
        throw err
      }
      await fh.close()
      if (barrier) await barrier.flush()

      // Publish it under its final name and make the rename durable.
      await rename(tmp, path)
      if (barrier) await barrier.flush()
      else await fsyncDir(dir)
      return await stat(path)
    } catch (err) {
      if (!Buffer.isBuffer(body)) body.destroy()
      throw new Error(`${what} ${path}`, { cause: err })
    }
  }

  /** prepareDir creates dir (durably) if missing and remembers it with its filesystem's sync barrier. */
  async #prepareDir(dir: string): Promise<SyncBarrier | null> {
    await mkdirSynced(dir)
    const barrier = barrierFor(dir)
    this.#rememberDir(dir, barrier)
    return barrier
  }

  /** rememberDir records a directory known to exist and its filesystem's barrier; bounded (a generation adds two). */
  #rememberDir(dir: string, barrier: SyncBarrier | null): void {
    if (this.#dirs.size >= 64) this.#dirs.clear()
    this.#dirs.set(dir, barrier)
  }
}

/**
 * writeSmall is #write for a small buffer on a filesystem with a barrier: open, write, fstat and close the tmp file
 * with synchronous calls (a few microseconds of metadata work each, cheaper here than handed to a pool thread and
 * back, which was a quarter of the CPU at 1,000 clients), wait for a syncfs, rename, wait for another. A failure
 * before the rename removes the tmp file.
 */
async function writeSmall(tmp: string, path: string, body: Buffer, barrier: SyncBarrier, opts: OpOptions): Promise<Written> {
  const fd = fs.openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, FILE_MODE)
  let st: Written
  try {
    try {
      for (let off = 0; off < body.length; ) off += fs.writeSync(fd, body, off, body.length - off)
      st = fs.fstatSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    await barrier.flush()
    opts.signal?.throwIfAborted()
    fs.renameSync(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
  // The file is in place: from here a failure only means the rename may not be durable yet.
  await barrier.flush()
  return st
}

/** checkGeneration rejects names that are not 16 lowercase hex: they could escape the replica directory. */
function checkGeneration(generation: string): void {
  if (!isGenerationName(generation)) throw new RangeError(`invalid generation name: ${JSON.stringify(generation)}`)
}

/** checkSubPath rejects absolute paths and `..` segments. */
function checkSubPath(subPath: string): string {
  const parts = subPath.split('/').filter((p) => p !== '' && p !== '.')
  if (parts.length === 0 || parts.includes('..') || subPath.includes('\\')) {
    throw new ReplicaError('CONFIG_INVALID', `invalid replica sub path: ${JSON.stringify(subPath)}`)
  }
  return parts.join('/')
}

function isEnoent(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT'
}

/** readDir lists a directory; a missing directory is empty. */
async function readDir(dir: string, what: string) {
  try {
    return await readdir(dir, { withFileTypes: true })
  } catch (err) {
    if (isEnoent(err)) return []
    throw new Error(`${what} ${dir}`, { cause: err })
  }
}

/** statOrUndefined stats a file that a concurrent delete may have removed since it was listed. */
async function statOrUndefined(path: string, what: string): Promise<Stats | undefined> {
  try {
    return await stat(path)
  } catch (err) {
    if (isEnoent(err)) return undefined
    throw new Error(`${what} ${path}`, { cause: err })
  }
}

async function readObject(path: string, opts: OpOptions, what: string): Promise<Buffer> {
  try {
    return await readFile(path, { signal: opts.signal })
  } catch (err) {
    if (isEnoent(err)) throw new ReplicaError('NOT_FOUND', `${what} ${path}: not found`, { cause: err })
    throw new Error(`${what} ${path}`, { cause: err })
  }
}

/** removeFiles unlinks names in dir, ignoring missing ones, then fsyncs dir once if anything was removed. */
async function removeFiles(dir: string, names: readonly string[], opts: OpOptions, what: string): Promise<void> {
  let removed = false
  for (const name of names) {
    opts.signal?.throwIfAborted()
    try {
      await unlink(join(dir, name))
      removed = true
    } catch (err) {
      if (!isEnoent(err)) throw new Error(`${what} ${join(dir, name)}`, { cause: err })
    }
  }
  if (!removed) return
  try {
    await fsyncDir(dir)
  } catch (err) {
    throw new Error(`${what}: sync ${dir}`, { cause: err })
  }
}

/** writeAll writes all of buf at the file handle's current position. */
async function writeAll(fh: FileHandle, buf: Buffer): Promise<void> {
  for (let off = 0; off < buf.length; ) off += (await fh.write(buf, off, buf.length - off)).bytesWritten
}

/** fsyncDir makes directory entry changes (create, rename, unlink) in dir durable. */
async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY)
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/** mkdirSynced creates dir and its missing parents with DIR_MODE, fsyncing the parent of each directory it creates. */
async function mkdirSynced(dir: string): Promise<void> {
  try {
    if ((await stat(dir)).isDirectory()) return
  } catch (err) {
    if (!isEnoent(err)) throw err
  }
  const parent = dirname(dir)
  if (parent !== dir) await mkdirSynced(parent)
  try {
    await mkdir(dir, { mode: DIR_MODE })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err // EEXIST: a concurrent write made it
  }
  await fsyncDir(parent)
}
