/**
 * Invariants checked after every reliability scenario (matrix "Invariants"), as data rather than assertions, so
 * a scenario reports every broken invariant at once and the scorecard can count them:
 *
 *   I1 stock v0.3.13 restore exits 0
 *   I2 integrity_check = ok and foreign_key_check empty (both restores)
 *   I3 acked writes lost = 0: restored ledger is exactly 1..N with a valid hash chain, N >= acked seq
 *   I4 restored content == the model replayed to N (and == the source when the writer is stopped at N)
 *   I5 our restore == stock restore (digest)
 *   I6 the replica auditor finds nothing
 *
 * Plus recorder-based checks: H6 key shapes, D11 upload byte-exactness, durable seqs (for kill -9 acks) and
 * replication lag from the recorded upload bodies.
 * @module
 */
import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import { decodeFrame } from '../../src/lz4.js'
import type { ReplicaClient } from '../../src/replica-client.js'
import { auditReplica } from '../../src/restore/audit.js'
import { restore } from '../../src/restore/restore.js'
import { digest } from './db.js'
import type { FaultProxy, RecordedRequest } from './fault-proxy.js'
import type { TestReplica } from './replicas.js'
import { WriterModel } from './writer.js'

/** InvariantInput says what to check. */
export interface InvariantInput {
  /** replica is the oracle's view (stock restore), normally straight to s3rver, not through the fault proxy. */
  readonly replica: TestReplica
  /** client reads the same replica for our restore and the auditor. Default replica.client. */
  readonly client?: ReplicaClient
  /** sourceDb is the application's database file. */
  readonly sourceDb: string
  /** ackedSeq: every seq up to it must be restored. */
  readonly ackedSeq: number
  /** outDir receives the restored files (a fresh subdirectory per call). */
  readonly outDir: string
  /** sourceStopped: no writer is running, so the source's content can be compared when its max seq == N. */
  readonly sourceStopped?: boolean
  /** model is reused across calls (it only moves forward); default: a fresh one from the source's writer_meta. */
  readonly model?: WriterModel
  /** label names the restore outputs. */
  readonly label?: string
}

/** InvariantCounts feed the scorecard's hard gates. */
export interface InvariantCounts {
  ackedLost: number
  corruptions: number
  stockRestoreFailures: number
  auditorViolations: number
  restoreMismatches: number
}

/** InvariantReport is the outcome: failures is empty when every invariant held. */
export interface InvariantReport {
  readonly failures: string[]
  readonly counts: InvariantCounts
  /** restoredSeq is N, the highest ledger seq in the stock restore (-1 if it could not be read). */
  readonly restoredSeq: number
  readonly generations: number
  readonly stockRestoreMs: number
  readonly ourRestoreMs: number
}

interface LedgerCheck {
  readonly n: number
  readonly problems: string[]
}

/** readMeta returns the writer parameters stored in a database. */
export function readWriterMeta(file: string): { seed: number; noteChars: number } {
  const db = new Database(file, { readonly: true, fileMustExist: true })
  try {
    const rows = db.prepare('SELECT k, v FROM writer_meta').all() as { k: string; v: string }[]
    const m = new Map(rows.map((r) => [r.k, r.v]))
    return { seed: Number(m.get('seed')), noteChars: Number(m.get('note_chars')) }
  } finally {
    db.close()
  }
}

/** checkLedger verifies that the ledger is exactly 1..N and each hash follows the model's chain. */
function checkLedger(db: Database.Database, model: WriterModel): LedgerCheck {
  const problems: string[] = []
  let expect = 1
  for (const row of db.prepare('SELECT seq, hash FROM ledger ORDER BY seq').iterate() as Iterable<{ seq: number; hash: string }>) {
    if (row.seq !== expect) {
      problems.push(`ledger not contiguous: expected seq ${expect}, found ${row.seq}`)
      return { n: row.seq, problems }
    }
    const want = model.hash(row.seq)
    if (row.hash !== want) {
      problems.push(`ledger hash chain broken at seq ${row.seq}`)
      return { n: row.seq, problems }
    }
    expect++
  }
  return { n: expect - 1, problems }
}

function dbChecks(file: string): { integrity: string; fk: number } {
  const db = new Database(file, { readonly: true, fileMustExist: true })
  try {
    return { integrity: String(db.pragma('integrity_check', { simple: true })), fk: (db.pragma('foreign_key_check') as unknown[]).length }
  } finally {
    db.close()
  }
}

/** maxLedgerSeq returns max(ledger.seq) of a database file (0 for an empty ledger). */
export function maxLedgerSeq(file: string): number {
  const db = new Database(file, { readonly: true, fileMustExist: true })
  try {
    return (db.prepare('SELECT coalesce(max(seq), 0) FROM ledger').pluck().get() as number) ?? 0
  } finally {
    db.close()
  }
}

/** checkInvariants runs I1–I6 and returns every failure found (empty: all held). It never throws for a failed check. */
export async function checkInvariants(input: InvariantInput): Promise<InvariantReport> {
  const failures: string[] = []
  const counts: InvariantCounts = { ackedLost: 0, corruptions: 0, stockRestoreFailures: 0, auditorViolations: 0, restoreMismatches: 0 }
  const client = input.client ?? input.replica.client
  const dir = fs.mkdtempSync(path.join(input.outDir, `${input.label ?? 'check'}-`))
  const stockOut = path.join(dir, 'stock.db')
  const ourOut = path.join(dir, 'ours.db')
  let restoredSeq = -1

  // I1: stock restore.
  let t0 = Date.now()
  const stock = await input.replica.stockRestore(stockOut)
  const stockRestoreMs = Date.now() - t0
  const stockOk = stock.code === 0 && fs.existsSync(stockOut)
  if (!stockOk) {
    counts.stockRestoreFailures++
    failures.push(`I1: stock litestream restore exited ${stock.code}: ${stock.output.trim().slice(-1500)}`)
  }

  const meta = readWriterMeta(input.sourceDb)
  const model = input.model ?? new WriterModel(meta.seed, meta.noteChars)
  try {
    if (stockOk) {
      // I2: structure.
      const c = dbChecks(stockOut)
      if (c.integrity !== 'ok') {
        counts.corruptions++
        failures.push(`I2: stock restore integrity_check: ${c.integrity.slice(0, 500)}`)
      }
      if (c.fk !== 0) {
        counts.corruptions++
        failures.push(`I2: stock restore foreign_key_check: ${c.fk} violation(s)`)
      }
      // I3: ledger.
      const restored = new Database(stockOut, { readonly: true, fileMustExist: true })
      let ledger: LedgerCheck
      try {
        ledger = checkLedger(restored, model)
      } finally {
        restored.close()
      }
      restoredSeq = ledger.n
      if (ledger.problems.length > 0) {
        counts.corruptions++
        failures.push(...ledger.problems.map((p) => `I3: ${p}`))
      }
      if (ledger.n < input.ackedSeq) {
        counts.ackedLost += input.ackedSeq - ledger.n
        failures.push(`I3: acked writes lost: restored up to seq ${ledger.n}, acked ${input.ackedSeq} (${input.ackedSeq - ledger.n} lost)`)
      }
      // I4: content == model at N (== source when stopped there).
      if (ledger.problems.length === 0) {
        if (model.seq > ledger.n) {
          failures.push(`I4: model already advanced past the restored seq (${model.seq} > ${ledger.n}); pass a fresh model`)
        } else {
          model.advanceTo(ledger.n)
          const want = digest(model.db)
          const got = digest(stockOut)
          if (got.hash !== want.hash) {
            counts.corruptions++
            failures.push(`I4: restored content differs from the model at seq ${ledger.n}: got ${JSON.stringify(got.tables)}, want ${JSON.stringify(want.tables)}`)
          }
          if (input.sourceStopped) {
            const srcSeq = maxLedgerSeq(input.sourceDb)
            if (srcSeq === ledger.n) {
              const src = digest(input.sourceDb)
              if (src.hash !== got.hash) {
                counts.corruptions++
                failures.push(`I4: restored content differs from the stopped source at seq ${srcSeq}`)
              }
            }
          }
        }
      }
    }

    // I5: our restore == stock restore.
    t0 = Date.now()
    let ourOk = false
    try {
      await restore(client, { outPath: ourOut })
      ourOk = true
    } catch (err) {
      counts.restoreMismatches++
      failures.push(`I5: our restore failed: ${(err as Error).message}`)
    }
    const ourRestoreMs = Date.now() - t0
    if (ourOk) {
      const c = dbChecks(ourOut)
      if (c.integrity !== 'ok' || c.fk !== 0) {
        counts.corruptions++
        failures.push(`I2: our restore integrity_check ${c.integrity.slice(0, 200)}, foreign_key_check ${c.fk}`)
      }
      if (stockOk) {
        const a = digest(stockOut)
        const b = digest(ourOut)
        if (a.hash !== b.hash) {
          counts.restoreMismatches++
          failures.push(`I5: our restore differs from stock: ours ${JSON.stringify(b.tables)}, stock ${JSON.stringify(a.tables)}`)
        }
      }
    }

    // I6: auditor.
    let generations = 0
    try {
      const violations = await auditReplica(client)
      counts.auditorViolations += violations.length
      for (const v of violations.slice(0, 20)) failures.push(`I6: ${v.rule}: ${v.message}`)
      if (violations.length > 20) failures.push(`I6: … ${violations.length - 20} more violation(s)`)
      generations = (await client.generations()).length
    } catch (err) {
      counts.auditorViolations++
      failures.push(`I6: audit failed: ${(err as Error).message}`)
    }
    return { failures, counts, restoredSeq, generations, stockRestoreMs, ourRestoreMs }
  } finally {
    if (!input.model) model.close()
  }
}

/** keyShapeRegex is H6's pattern for every object key written under prefix. */
export function keyShapeRegex(prefix: string): RegExp {
  const p = prefix.replace(/^\/+|\/+$/g, '').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  return new RegExp(`^${p}/generations/[0-9a-f]{16}/(snapshots/[0-9a-f]{8}\\.snapshot\\.lz4|wal/[0-9a-f]{8}_[0-9a-f]{8}\\.wal\\.lz4)$`)
}

/** checkKeyShapes (H6) returns every recorded write (PUT, multipart POST) whose key does not match keyShapeRegex. */
export function checkKeyShapes(records: readonly RecordedRequest[], prefix: string): string[] {
  const re = keyShapeRegex(prefix)
  return records.filter((r) => (r.method === 'PUT' || (r.method === 'POST' && ('uploads' in r.query || 'uploadId' in r.query))) && !re.test(r.key)).map((r) => `H6: ${r.method} ${JSON.stringify(r.key)} does not match ${re}`)
}

/** StoredUpload is the body an object should hold according to the recorder. */
export interface StoredUpload {
  readonly key: string
  readonly body: Buffer
  /** at is when s3rver finished storing it. */
  readonly at: number
  /** delivered: the uploader received the success response. */
  readonly delivered: boolean
}

/**
 * storedUploads reconstructs, per key, the last body s3rver accepted (PutObject, or a completed multipart upload's
 * parts in order). Requires a proxy with recordBodies.
 */
export function storedUploads(records: readonly RecordedRequest[]): Map<string, StoredUpload> {
  const out = new Map<string, StoredUpload>()
  const ok = (r: RecordedRequest): boolean => r.upstreamStatus !== undefined && r.upstreamStatus >= 200 && r.upstreamStatus < 300
  const parts = new Map<string, Map<number, Buffer>>() // uploadId -> partNumber -> body
  const done = [...records].filter((r) => r.done).sort((a, b) => (a.endedAt ?? 0) - (b.endedAt ?? 0))
  for (const r of done) {
    if (!ok(r)) continue
    if (r.method === 'PUT' && 'partNumber' in r.query && 'uploadId' in r.query) {
      const m = parts.get(r.query.uploadId!) ?? new Map<number, Buffer>()
      m.set(Number(r.query.partNumber), r.body ?? Buffer.alloc(0))
      parts.set(r.query.uploadId!, m)
    } else if (r.method === 'PUT') {
      out.set(r.key, { key: r.key, body: r.body ?? Buffer.alloc(0), at: r.endedAt!, delivered: r.delivered })
    } else if (r.method === 'POST' && 'uploadId' in r.query) {
      const m = parts.get(r.query.uploadId!)
      if (!m) continue
      const body = Buffer.concat([...m.entries()].sort((a, b) => a[0] - b[0]).map(([, b]) => b))
      out.set(r.key, { key: r.key, body, at: r.endedAt!, delivered: r.delivered })
    }
  }
  return out
}

/** UploadCheck is D11's outcome. */
export interface UploadCheck {
  readonly objects: number
  readonly bytes: number
  readonly mismatches: string[]
  readonly headerProblems: string[]
}

/**
 * checkUploadBytes (D11): every object in the store equals, byte for byte, the last body the proxy forwarded for
 * its key; every body is exactly one LZ4 frame; PUTs carry no aws-chunked encoding or flexible checksums
 * (checksum mode pinned to WHEN_REQUIRED) and a Content-Length equal to the bytes sent.
 */
export async function checkUploadBytes(records: readonly RecordedRequest[], getObject: (key: string) => Promise<Buffer | undefined>): Promise<UploadCheck> {
  const mismatches: string[] = []
  const headerProblems: string[] = []
  let bytes = 0
  for (const r of records) {
    if (r.method !== 'PUT') continue
    const h = r.reqHeaders
    if (String(h['content-encoding'] ?? '').includes('aws-chunked')) headerProblems.push(`${r.key}: content-encoding ${String(h['content-encoding'])}`)
    if (String(h['x-amz-content-sha256'] ?? '').startsWith('STREAMING-')) headerProblems.push(`${r.key}: x-amz-content-sha256 ${String(h['x-amz-content-sha256'])}`)
    for (const name of Object.keys(h)) if (name.startsWith('x-amz-checksum-') || name === 'x-amz-sdk-checksum-algorithm' || name === 'x-amz-trailer') headerProblems.push(`${r.key}: header ${name}`)
    if (r.done && r.body && h['content-length'] !== undefined && Number(h['content-length']) !== r.body.length) {
      headerProblems.push(`${r.key}: content-length ${String(h['content-length'])} but ${r.body.length} bytes sent`)
    }
  }
  // A WAL segment's bytes are fixed by its position: two accepted uploads of one WAL key must be identical.
  const walBodies = new Map<string, Buffer>()
  for (const r of records) {
    if (r.method !== 'PUT' || !r.body || !/\/wal\/[^/]+\.wal\.lz4$/.test(r.key) || r.upstreamStatus === undefined || r.upstreamStatus >= 300) continue
    const prev = walBodies.get(r.key)
    if (prev && !prev.equals(r.body)) mismatches.push(`${r.key}: uploaded twice with different bytes (${prev.length} vs ${r.body.length})`)
    else walBodies.set(r.key, r.body)
  }
  const uploads = storedUploads(records)
  for (const u of uploads.values()) {
    bytes += u.body.length
    const got = await getObject(u.key)
    if (got === undefined) {
      mismatches.push(`${u.key}: uploaded (${u.body.length} bytes) but missing from the store`)
      continue
    }
    if (!got.equals(u.body)) mismatches.push(`${u.key}: store holds ${got.length} bytes that differ from the ${u.body.length} bytes uploaded`)
    try {
      decodeFrame(u.body)
    } catch (err) {
      mismatches.push(`${u.key}: uploaded body is not one complete LZ4 frame: ${(err as Error).message}`)
    }
  }
  return { objects: uploads.size, bytes, mismatches, headerProblems }
}

/** DurableSeq maps ledger seqs to when the replica first durably held them. */
export interface DurableSeqs {
  /** at[seq] = epoch ms when an upload containing seq's ledger row completed (undefined if never seen). */
  readonly at: Map<number, number>
  /** max is the highest seq found in an upload whose success the uploader received. */
  readonly maxDelivered: number
}

const HASH_RE = /[0-9a-f]{64}/g

/**
 * durableSeqs finds, for each ledger seq, the first completed upload (WAL segment or snapshot) whose decoded bytes
 * contain its ledger row's hash: the moment that commit became durable in the store. Segments end on commit frames
 * and a ledger row is written by its own transaction, so the first upload holding hash[seq] is the one that
 * shipped commit seq. `upTo` bounds the seqs looked up; hashOf is the model's chain. Needs recordBodies.
 */
export function durableSeqs(records: readonly RecordedRequest[], hashOf: (seq: number) => string, upTo: number): DurableSeqs {
  const bySeq = new Map<string, number>()
  for (let i = 1; i <= upTo; i++) bySeq.set(hashOf(i), i)
  const at = new Map<number, number>()
  let maxDelivered = 0
  const uploads = [...storedUploadsInOrder(records)]
  for (const u of uploads) {
    let plain: Buffer
    try {
      plain = decodeFrame(u.body)
    } catch {
      continue
    }
    const text = plain.toString('latin1')
    for (const m of text.matchAll(HASH_RE)) {
      const seq = bySeq.get(m[0])
      if (seq === undefined) continue
      if (!at.has(seq)) at.set(seq, u.at)
      if (u.delivered && seq > maxDelivered) maxDelivered = seq
    }
  }
  return { at, maxDelivered }
}

/** storedUploadsInOrder yields every successful upload (not just the last per key), in completion order. */
function* storedUploadsInOrder(records: readonly RecordedRequest[]): Generator<StoredUpload> {
  const parts = new Map<string, Map<number, Buffer>>()
  const done = [...records].filter((r) => r.done && r.upstreamStatus !== undefined && r.upstreamStatus < 300).sort((a, b) => (a.endedAt ?? 0) - (b.endedAt ?? 0))
  for (const r of done) {
    if (r.method === 'PUT' && 'partNumber' in r.query && 'uploadId' in r.query) {
      const m = parts.get(r.query.uploadId!) ?? new Map<number, Buffer>()
      m.set(Number(r.query.partNumber), r.body ?? Buffer.alloc(0))
      parts.set(r.query.uploadId!, m)
    } else if (r.method === 'PUT' && r.body) {
      yield { key: r.key, body: r.body, at: r.endedAt!, delivered: r.delivered }
    } else if (r.method === 'POST' && 'uploadId' in r.query) {
      const m = parts.get(r.query.uploadId!)
      if (m) yield { key: r.key, body: Buffer.concat([...m.entries()].sort((a, b) => a[0] - b[0]).map(([, b]) => b)), at: r.endedAt!, delivered: r.delivered }
    }
  }
}

/** LagFigures summarise commit -> durable upload latency over the seqs that became durable. */
export interface LagFigures {
  readonly n: number
  readonly p50: number
  readonly p99: number
  readonly max: number
}

/** lagFigures computes lag = durable time - commit time for every seq with both. */
export function lagFigures(durable: DurableSeqs, commitTime: (seq: number) => number | undefined, range?: { readonly from?: number; readonly to?: number }): LagFigures {
  const lags: number[] = []
  for (const [seq, at] of durable.at) {
    if (range?.from !== undefined && seq < range.from) continue
    if (range?.to !== undefined && seq > range.to) continue
    const c = commitTime(seq)
    if (c !== undefined) lags.push(Math.max(0, at - c))
  }
  lags.sort((a, b) => a - b)
  const q = (p: number): number => (lags.length === 0 ? 0 : lags[Math.min(lags.length - 1, Math.floor(p * lags.length))]!)
  return { n: lags.length, p50: q(0.5), p99: q(0.99), max: lags.at(-1) ?? 0 }
}

/** SECRET_PATTERNS are strings that must never appear in logs or local state (H3, counted by the scorecard). */
export const SECRET_PATTERNS: readonly RegExp[] = [/X-Amz-Signature/i, /AWS4-HMAC-SHA256 Credential/i, /"authorization"/i, /x-amz-security-token/i]

/** countSecrets counts occurrences of the sentinels and SECRET_PATTERNS in text. */
export function countSecrets(text: string, sentinels: readonly string[] = []): number {
  let n = 0
  for (const s of sentinels) if (s) n += text.split(s).length - 1
  for (const re of SECRET_PATTERNS) n += (text.match(new RegExp(re.source, re.flags.includes('g') ? re.flags : `${re.flags}g`)) ?? []).length
  return n
}

/** uploadBody returns the full object body an upload request stored (a PUT's body, or a completed multipart's parts). */
export function uploadBody(records: readonly RecordedRequest[], r: RecordedRequest): Buffer | undefined {
  if (r.method === 'PUT' && !('partNumber' in r.query)) return r.body
  if (r.method === 'POST' && 'uploadId' in r.query) {
    const parts = records
      .filter((p) => p.method === 'PUT' && p.query.uploadId === r.query.uploadId && p.upstreamStatus !== undefined && p.upstreamStatus < 300)
      .sort((a, b) => Number(a.query.partNumber) - Number(b.query.partNumber) || (a.endedAt ?? 0) - (b.endedAt ?? 0))
    const byPart = new Map<string, Buffer>()
    for (const p of parts) byPart.set(p.query.partNumber!, p.body ?? Buffer.alloc(0))
    return Buffer.concat([...byPart.values()])
  }
  return undefined
}

/**
 * waitForDurable resolves with the first upload the uploader saw succeed whose decoded bytes contain needle (a
 * ledger hash): from then on the store durably holds that commit. The proxy must record bodies.
 */
export function waitForDurable(proxy: FaultProxy, needle: string, opts: { readonly timeoutMs?: number; readonly since?: number } = {}): Promise<RecordedRequest> {
  const records = proxy.requests()
  const holds = (r: RecordedRequest): boolean => {
    if (!r.done || !r.delivered || r.status === undefined || r.status >= 300 || r.id <= (opts.since ?? 0)) return false
    const body = uploadBody(records, r)
    if (!body) return false
    try {
      return decodeFrame(body).includes(needle, 0, 'latin1')
    } catch {
      return false
    }
  }
  return proxy.waitFor(holds, { timeoutMs: opts.timeoutMs ?? 30_000, since: opts.since })
}
