/**
 * Keeps the benchmark harness from rotting: runs bench/run.ts at 3 clients for 4 s against a file replica with
 * the ours and litestreamSingleProcess peers, checks every reported field is present and sane, then renders the
 * result with bench/doc.ts. Needs the built service (npm test builds first) and the stock litestream binary.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'

function run(args: readonly string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', ...args], { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0
      resolve({ code, output: `${stdout}${stderr}` })
    })
  })
}

const POSITIVE = ['rssMiBPeak', 'rssMiBSteady', 'cpuSeconds', 'lagMsP50', 'lagMsP99', 'lagMsMax', 'puts', 'idleRssMiB', 'coldStartS'] as const
const NON_NEGATIVE = ['idleCpuSeconds', 'idlePuts'] as const
const OURS_POSITIVE = ['discoveryMsP50', 'discoveryMsP99', 'firstSnapshotMsP99', 'apiClientsMsP99'] as const

function positive(o: Record<string, unknown>, key: string, where: string): number {
  const v = o[key]
  assert.equal(typeof v, 'number', `${where}.${key} is a number (got ${JSON.stringify(v)})`)
  assert.ok((v as number) > 0 && Number.isFinite(v as number), `${where}.${key} > 0 (got ${String(v)})`)
  return v as number
}

test('bench harness: 3 clients, 4 s, file replica, ours + litestreamSingleProcess', { timeout: 120_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lm-bench-smoke-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const out = path.join(dir, 'result.json')
  const r = await run(
    ['bench/run.ts', '--clients', '3', '--duration', '4', '--replica', 'file', '--peers', 'ours,litestreamSingleProcess', '--idle', '2', '--discovery', '2', '--out', out],
    110_000,
  )
  assert.equal(r.code, 0, `bench exit code:\n${r.output.slice(-4000)}`)
  const res = JSON.parse(fs.readFileSync(out, 'utf8')) as Record<string, unknown>

  assert.equal(res.clients, 3, 'clients')
  assert.equal(res.durationS, 4, 'durationS')
  assert.equal(res.rate, 1, 'rate')
  assert.equal(res.replica, 'file', 'replica')
  const m = res.machine as Record<string, unknown>
  positive(m, 'cpus', 'machine')
  positive(m, 'memGiB', 'machine')
  assert.match(String(m.node), /^v\d+\./, 'machine.node')
  assert.ok(typeof m.kernel === 'string' && m.kernel !== '', 'machine.kernel')
  assert.equal(res.litestreamPerProcess, undefined, 'peer not asked for is absent')

  for (const peer of ['ours', 'litestreamSingleProcess']) {
    const p = res[peer] as Record<string, unknown> | undefined
    assert.ok(p, `${peer} section present`)
    for (const k of POSITIVE) positive(p, k, peer)
    for (const k of NON_NEGATIVE) assert.ok(typeof p[k] === 'number' && (p[k] as number) >= 0, `${peer}.${k} >= 0 (got ${String(p[k])})`)
    assert.ok((p.lagMsP50 as number) <= (p.lagMsP99 as number) && (p.lagMsP99 as number) <= (p.lagMsMax as number), `${peer} lag p50 <= p99 <= max`)
    assert.ok((p.lagMsMax as number) < 30_000, `${peer}.lagMsMax below 30 s (got ${String(p.lagMsMax)})`)
    assert.equal(p.lagMissing, 0, `${peer}: every sampled commit became durable`)
    assert.ok((p.lagSamples as number) >= 6, `${peer}.lagSamples >= 6 (got ${String(p.lagSamples)})`)
    assert.ok((p.rssMiBPeak as number) >= (p.rssMiBSteady as number), `${peer} RSS peak >= steady`)
    assert.ok(['cold start', 'load', 'discovery (writers still running)', 'drain', 'api latency', 'idle settle', 'idle', 'stop'].includes(p.rssPeakPhase as string), `${peer}.rssPeakPhase names a phase the peer ran in (got ${String(p.rssPeakPhase)})`)
    // The device's write counter: positive whenever the work directory is on a block device (not on tmpfs).
    if (p.diskWrittenMiB !== undefined) assert.ok(typeof p.diskWrittenMiB === 'number' && p.diskWrittenMiB > 0, `${peer}.diskWrittenMiB > 0 (got ${String(p.diskWrittenMiB)})`)
    assert.ok((p.coldStartS as number) < 60, `${peer}.coldStartS < 60`)
    const w = p.writer as Record<string, unknown>
    assert.equal(w.errors, 0, `${peer}: writer errors`)
    positive(w, 'commits', `${peer}.writer`)
    assert.equal(p.nonZeroExits, 0, `${peer}: exit code after SIGTERM`)
  }
  const ours = res.ours as Record<string, unknown>
  for (const k of OURS_POSITIVE) positive(ours, k, 'ours')
  assert.equal(ours.discoverySamples, 2, 'ours.discoverySamples')
  if ('eventLoopDelayMsP99' in ours) assert.ok(typeof ours.eventLoopDelayMsP99 === 'number' && ours.eventLoopDelayMsP99 >= 0, 'ours.eventLoopDelayMsP99')

  const md = path.join(dir, 'benchmarks.md')
  const d = await run(['bench/doc.ts', out, '--out', md], 30_000)
  assert.equal(d.code, 0, `bench/doc.ts exit code:\n${d.output}`)
  const text = fs.readFileSync(md, 'utf8')
  assert.match(text, /\| RSS peak \(MiB\), and the phase it came in \|/, 'doc has the side-by-side table')
  assert.match(text, /### Targets for ours/, 'doc has the targets')
  assert.match(text, /npm run bench -- --clients 3/, 'doc has the exact command')
})
