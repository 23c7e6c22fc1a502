/**
 * Replicas for the restore tests, built by our Replicator driven directly (sync() per step), with the source's
 * content recorded at every shipped position, and helpers to damage a copy of a replica object by object.
 */
import fs from 'node:fs'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { TestContext } from 'node:test'
import type Database from 'better-sqlite3'
import { FileReplicaClient } from '../../src/file/replica-client.js'
import { decodeFrame, encodeFrame } from '../../src/lz4.js'
import type { ReplicaClient } from '../../src/replica-client.js'
import { Replicator } from '../../src/replicator.js'
import type { Pos } from '../../src/types.js'
import { digest, insertRows, openApp, tmpDir, type Digest } from '../helpers/db.js'

/** Point is the source's content right after a sync acknowledged pos, and a time between this sync and the next write. */
export interface Point {
  readonly pos: Pos
  readonly digest: Digest
  readonly at: Date
}

/** Built is a finished replica plus its history. The replicator is closed; the app connection stays open. */
export interface Built {
  readonly dir: string
  readonly dbPath: string
  readonly app: Database.Database
  /** root is the replica directory (`<dir>/replica`, where test/helpers/replicas.ts fileReplica looks). */
  readonly root: string
  readonly client: FileReplicaClient
  readonly generation: string
  readonly points: readonly Point[]
}

/** GAP_MS separates a recorded time from the next object's mtime (file mtimes use a coarse clock). */
const GAP_MS = 25

/**
 * step runs one write, ships it, and records a point. `restart` first lets the WAL restart (the next
 * write goes to the next WAL index), as the continuity tests do.
 */
async function step(r: Replicator, app: Database.Database, points: Point[], write: () => void, restart = false): Promise<void> {
  if (restart) {
    r.notify('db')
    await r.sync()
    app.pragma('wal_checkpoint(TRUNCATE)')
  }
  write()
  r.notify('wal')
  const pos = await r.sync()
  points.push({ pos, digest: digest(app), at: new Date() })
  await sleep(GAP_MS)
}

/**
 * buildHistory writes a fixed history through a Replicator into client:
 *   index 0: 10 rows, then 12 rows of 3 KB in one transaction (multi-page), then 5 rows
 *   index 1: 7 rows, then 3 rows
 *   index 2: 8 rows of 3 KB in one transaction (the last segment is one multi-frame transaction)
 * Each step is one segment.
 */
export async function buildHistory(dbPath: string, client: ReplicaClient, app: Database.Database): Promise<Point[]> {
  const r = new Replicator({ dbPath, client, minCheckpointPages: 0, truncatePages: 0, snapshotIntervalMs: 0, retentionMs: 0 })
  const points: Point[] = []
  try {
    await step(r, app, points, () => insertRows(app, 10))
    await step(r, app, points, () => insertRows(app, 12, 3000, true))
    await step(r, app, points, () => insertRows(app, 5))
    await step(r, app, points, () => insertRows(app, 7), true)
    await step(r, app, points, () => insertRows(app, 3))
    await step(r, app, points, () => insertRows(app, 8, 3000, true), true)
  } finally {
    await r.close()
  }
  return points
}

/** buildReplica makes a temp dir with app.db and a file replica of buildHistory. */
export async function buildReplica(t: TestContext): Promise<Built> {
  const dir = tmpDir(t, 'lm-restore-')
  const dbPath = path.join(dir, 'app.db')
  const app = openApp(dbPath)
  app.pragma('wal_autocheckpoint = 0')
  t.after(() => app.close())
  const root = path.join(dir, 'replica')
  const client = new FileReplicaClient(root)
  const points = await buildHistory(dbPath, client, app)
  const gens = await client.generations()
  if (gens.length !== 1) throw new Error(`expected one generation, got ${gens.join(',')}`)
  return { dir, dbPath, app, root, client, generation: gens[0]!, points }
}

/** Damaged is a copy of a replica to break. */
export interface Damaged {
  readonly dir: string
  readonly root: string
  readonly client: FileReplicaClient
  readonly generation: string
  /** seg returns the path of a WAL segment file. */
  seg(index: number, offset: number): string
  /** snap returns the path of a snapshot file. */
  snap(index: number): string
  /** segments lists (index, offset) of the copy, sorted. */
  segments(): { index: number; offset: number }[]
}

/** copyReplica copies built's replica into `<built.dir>/<name>/replica` (fileReplica(<that dir>) finds it). */
export function copyReplica(built: Built, name: string): Damaged {
  const dir = path.join(built.dir, name)
  const root = path.join(dir, 'replica')
  fs.cpSync(built.root, root, { recursive: true })
  const gdir = path.join(root, 'generations', built.generation)
  const hex = (n: number): string => n.toString(16).padStart(8, '0')
  return {
    dir,
    root,
    client: new FileReplicaClient(root),
    generation: built.generation,
    seg: (index, offset) => path.join(gdir, 'wal', `${hex(index)}_${hex(offset)}.wal.lz4`),
    snap: (index) => path.join(gdir, 'snapshots', `${hex(index)}.snapshot.lz4`),
    segments: () =>
      fs
        .readdirSync(path.join(gdir, 'wal'))
        .map((n) => /^([0-9a-f]{8})_([0-9a-f]{8})\.wal\.lz4$/.exec(n))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => ({ index: parseInt(m[1]!, 16), offset: parseInt(m[2]!, 16) }))
        .sort((a, b) => a.index - b.index || a.offset - b.offset),
  }
}

/** rewrite decodes an object, lets fn change its content, and stores it as one frame again. */
export function rewrite(file: string, fn: (content: Buffer) => Buffer): void {
  fs.writeFileSync(file, encodeFrame(fn(Buffer.from(decodeFrame(fs.readFileSync(file))))))
}

/** decoded returns an object's decompressed content. */
export function decoded(file: string): Buffer {
  return decodeFrame(fs.readFileSync(file))
}
