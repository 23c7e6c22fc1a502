/**
 * Reading a replica back after (or during) a run, without going through the system under test or the
 * counting proxy: a file replica directly, an s3rver replica through s3rver's data directory on disk.
 *
 *   <root>/databases/<guid>/generations/<gen>/snapshots/<index>.snapshot.lz4
 *   <root>/databases/<guid>/generations/<gen>/wal/<index>_<offset>.wal.lz4
 *
 * s3rver stores key K as `<dataDir>/<bucket>/K._S3rver_object`.
 * @module
 */
import fs from 'node:fs'
import path from 'node:path'
import lz4napi from 'lz4-napi'
import { decodeFrame } from '../../src/lz4.js'

/** ReplicaLayout says where a database's objects are on local disk. */
export interface ReplicaLayout {
  /** kind is 'file' (a file replica directory) or 's3' (an s3rver data directory). */
  readonly kind: 'file' | 's3'
  /** dbDir returns the local directory holding `generations/` for guid. */
  dbDir(guid: string): string
  /** keyFor returns the S3 key (s3) or relative path (file) of an object, for joining with PUT timestamps. */
  keyFor(guid: string, generation: string, sub: 'snapshots' | 'wal', name: string): string
}

const OBJ_SUFFIX = '._S3rver_object'

/** fileLayout is a file replica rooted at root (databases live in `<root>/databases/<guid>`). */
export function fileLayout(root: string): ReplicaLayout {
  return {
    kind: 'file',
    dbDir: (guid) => path.join(root, 'databases', guid),
    keyFor: (guid, gen, sub, name) => `databases/${guid}/generations/${gen}/${sub}/${name}`,
  }
}

/** s3rverLayout is a replica under prefix in bucket of an s3rver whose data directory is dataDir. */
export function s3rverLayout(dataDir: string, bucket: string, prefix: string): ReplicaLayout {
  return {
    kind: 's3',
    dbDir: (guid) => path.join(dataDir, bucket, prefix, 'databases', guid),
    keyFor: (guid, gen, sub, name) => `${prefix}/databases/${guid}/generations/${gen}/${sub}/${name}`,
  }
}

/** ObjectInfo is one snapshot or WAL segment object found on disk. */
export interface ObjectInfo {
  readonly guid: string
  readonly generation: string
  readonly sub: 'snapshots' | 'wal'
  /** name is the Litestream object name (`.lz4` suffix, no s3rver suffix). */
  readonly name: string
  readonly file: string
  /** ctimeMs is when the object became visible under its final name (rename for file replicas). */
  readonly ctimeMs: number
  readonly size: number
}

function readdirSafe(dir: string): string[] {
  try {
    return fs.readdirSync(dir)
  } catch {
    return []
  }
}

function objectName(layout: ReplicaLayout, entry: string): string | undefined {
  if (layout.kind === 's3') return entry.endsWith(OBJ_SUFFIX) ? entry.slice(0, -OBJ_SUFFIX.length) : undefined
  return entry.endsWith('.lz4') ? entry : undefined // skip .tmp files still being written
}

/** listObjects returns every complete snapshot/WAL object of guid (optionally only snapshots). */
export function listObjects(layout: ReplicaLayout, guid: string, only?: 'snapshots'): ObjectInfo[] {
  const out: ObjectInfo[] = []
  const gens = path.join(layout.dbDir(guid), 'generations')
  for (const generation of readdirSafe(gens)) {
    for (const sub of only ? ([only] as const) : (['snapshots', 'wal'] as const)) {
      const dir = path.join(gens, generation, sub)
      for (const entry of readdirSafe(dir)) {
        const name = objectName(layout, entry)
        if (!name) continue
        const file = path.join(dir, entry)
        try {
          const st = fs.statSync(file)
          out.push({ guid, generation, sub, name, file, ctimeMs: st.ctimeMs, size: st.size })
        } catch {
          // removed between readdir and stat (retention)
        }
      }
    }
  }
  return out
}

/** hasSnapshot reports whether any generation of guid has a complete snapshot object. */
export function hasSnapshot(layout: ReplicaLayout, guid: string): boolean {
  const gens = path.join(layout.dbDir(guid), 'generations')
  for (const generation of readdirSafe(gens)) {
    for (const entry of readdirSafe(path.join(gens, generation, 'snapshots'))) {
      if (objectName(layout, entry)) return true
    }
  }
  return false
}

/** decodeObject decompresses one LZ4-frame object (the project's strict decoder, lz4-napi as a fallback). */
export function decodeObject(file: string): Buffer {
  const raw = fs.readFileSync(file)
  try {
    return decodeFrame(raw)
  } catch {
    return lz4napi.decompressFrameSync(raw)
  }
}

/** countObjects counts complete objects of the given databases (directory reads only, no stat). */
export function countObjects(layout: ReplicaLayout, guids: readonly string[]): number {
  let n = 0
  for (const guid of guids) {
    const gens = path.join(layout.dbDir(guid), 'generations')
    for (const generation of readdirSafe(gens)) {
      for (const sub of ['snapshots', 'wal']) {
        for (const entry of readdirSafe(path.join(gens, generation, sub))) if (objectName(layout, entry)) n++
      }
    }
  }
  return n
}
