/**
 * Reliability scorecard (matrix "Scorecard"): runs the PR tier of test/reliability (or reads a previous run) and
 * writes docs/reliability.md: scenarios passed/total per tier, the hard gates (each must be 0), lag and catch-up
 * figures, failures, date and command.
 *
 *   node --import tsx scripts/scorecard.ts                      run the PR tier now, write docs/reliability.md
 *   node --import tsx scripts/scorecard.ts --tap pr.tap         read node:test TAP output instead of running
 *   node --import tsx scripts/scorecard.ts --pr-run DIR/PR-run.json
 *        [--nightly DIR/N-run.json] [--soak DIR/soak-summary.json] [--out docs/reliability.md] [--results DIR]
 *
 * Exit code: 0 when every PR scenario passed and every hard gate is 0.
 * @module
 */
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { buildCli, DEFAULT_RESULTS_DIR, listFiles, parseTap, runTier, type FigureLine, type TestResult, type TierRun } from '../test/reliability/runner.js'

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : undefined
}

const outPath = path.resolve(arg('out') ?? 'docs/reliability.md')
const resultsDir = path.resolve(arg('results') ?? DEFAULT_RESULTS_DIR)

interface SoakSummary {
  readonly command: string
  readonly startedAt: string
  readonly durationMs: number
  readonly dbs: number
  readonly faults: readonly { kind: string }[]
  readonly checkpoints: number
  readonly checkpointsFailed: number
  readonly totalAcked: number
  readonly gates: Record<string, number>
  readonly failures: readonly string[]
}

async function loadPr(): Promise<TierRun> {
  const tap = arg('tap')
  if (tap) {
    const { tests, figures } = parseTap(fs.readFileSync(tap, 'utf8'))
    const st = fs.statSync(tap)
    return { tier: 'PR', command: `(read from ${tap})`, startedAt: st.mtime.toISOString(), durationMs: tests.reduce((n, t) => n + t.durationMs, 0), exitCode: tests.every((t) => t.ok) ? 0 : 1, tests, figures, tapPath: tap }
  }
  const run = arg('pr-run')
  if (run) return JSON.parse(fs.readFileSync(run, 'utf8')) as TierRun
  buildCli()
  return runTier({ tier: 'PR', files: listFiles('test/reliability', '.test.ts'), outDir: resultsDir })
}

const pr = await loadPr()
const nightly = arg('nightly') ? (JSON.parse(fs.readFileSync(arg('nightly')!, 'utf8')) as TierRun) : undefined
const soak = arg('soak') ? (JSON.parse(fs.readFileSync(arg('soak')!, 'utf8')) as SoakSummary) : undefined

const GATES: readonly [string, string][] = [
  ['ackedLost', 'Acked writes lost'],
  ['corruptions', 'Corruptions (integrity, FK, ledger chain, content ≠ model)'],
  ['stockRestoreFailures', 'Stock-restore (v0.3.13) failures'],
  ['auditorViolations', 'Auditor violations'],
  ['uploadByteMismatches', 'Upload byte mismatches'],
  ['secretOccurrences', 'Secret occurrences (logs, local state)'],
  ['restoreMismatches', 'Our restore ≠ stock restore'],
  ['keyShapeViolations', 'Key-shape violations (H6)'],
  ['appErrors', 'Application errors (I7)'],
]

function sumGates(figs: readonly FigureLine[], extra?: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [k] of GATES) out[k] = 0
  for (const f of figs) for (const [k, v] of Object.entries(f.gates)) out[k] = (out[k] ?? 0) + v
  if (extra) for (const [k, v] of Object.entries(extra)) out[k] = (out[k] ?? 0) + v
  return out
}

const scenarioId = (name: string): string => /^([A-H]\d+[a-z]?(?:\/[A-H]\d+)?)\b/.exec(name)?.[1] ?? name.split(' ')[0] ?? name
const secs = (ms: number): string => (ms >= 60_000 ? `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s` : `${(ms / 1000).toFixed(1)} s`)
const esc = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ')
/** Harness self-tests ("harness: …") check the tools, not the product: reported apart from the scenarios. */
const isSelfTest = (t: TestResult): boolean => t.name.startsWith('harness:')
const counted = (tests: readonly TestResult[]): TestResult[] => tests.filter((t) => !t.skipped && !isSelfTest(t))

function figureSummary(f: FigureLine | undefined): string {
  if (!f) return '—'
  const g = f.figures
  const parts: string[] = []
  const lag = g.lagMs as { p50: number; p99: number; max: number } | undefined
  if (lag) parts.push(`lag p50/p99/max ${lag.p50}/${lag.p99}/${lag.max} ms`)
  if (typeof g.catchUpMs === 'number') parts.push(`catch-up ${g.catchUpMs} ms`)
  if (g.generations !== undefined) parts.push(`generations ${String(g.generations)}`)
  if (typeof g.ackedSeq === 'number') parts.push(`acked ${g.ackedSeq} → restored ${String(g.restoredSeq)}`)
  if (g.shutdownMs !== undefined) parts.push(`shutdown ${JSON.stringify(g.shutdownMs)} ms`)
  const rates = g.throttleRates as { phase: string; avgPerS: number; maxPerS: number }[] | undefined
  if (rates) parts.push(`req/s during throttle: ${rates.map((r) => `${r.phase} avg ${r.avgPerS} max ${r.maxPerS}`).join('; ')}`)
  if (typeof g.maxWalBytes === 'number') parts.push(`max WAL ${(g.maxWalBytes / 2 ** 20).toFixed(1)} MiB`)
  if (g.appCheckpointMaxMs !== undefined) parts.push(`app TRUNCATE won/busy ${String(g.appCheckpointsWon)}/${String(g.appCheckpointsBusy)}, max ${String(g.appCheckpointMaxMs)} ms`)
  if (typeof g.objectsChecked === 'number') parts.push(`${g.objectsChecked} objects / ${((g.bytesChecked as number) / 2 ** 20).toFixed(1)} MiB byte-compared`)
  if (typeof g.iterations === 'number') parts.push(`${g.iterations} kills`)
  return esc(parts.join('; '))
}

function tierTable(run: TierRun): string[] {
  const byTest = new Map(run.figures.map((f) => [f.test, f]))
  const rows = ['| ID | Scenario | Result | Time | Figures |', '|---|---|---|---|---|']
  for (const t of counted(run.tests)) {
    rows.push(`| ${scenarioId(t.name)} | ${esc(t.name)} | ${t.ok ? 'pass' : '**FAIL**'} | ${secs(t.durationMs)} | ${figureSummary(byTest.get(t.name))} |`)
  }
  return rows
}

function failuresList(run: TierRun): string[] {
  const failed = counted(run.tests).filter((t) => !t.ok)
  if (failed.length === 0) return ['None.']
  return failed.map((t) => `- **${esc(t.name)}**: ${esc(t.error ?? 'failed (see TAP)')}`)
}

const litestreamVersion = (() => {
  try {
    return execFileSync('node_modules/@flydotio/litestream-linux-x64/litestream', ['version']).toString().trim()
  } catch {
    return 'unknown'
  }
})()
const sqliteVersion = await (async () => {
  try {
    const { default: Database } = await import('better-sqlite3')
    const db = new Database(':memory:')
    const v = db.prepare('SELECT sqlite_version()').pluck().get() as string
    db.close()
    return v
  } catch {
    return 'unknown'
  }
})()

const prTests = counted(pr.tests)
const prPassed = prTests.filter((t) => t.ok).length
const prGates = sumGates(pr.figures)
const nGates = nightly ? sumGates(nightly.figures) : undefined
const wGates = soak ? soak.gates : undefined
const allGates = sumGates([...pr.figures, ...(nightly?.figures ?? [])], wGates)
const gatesOk = GATES.every(([k]) => (allGates[k] ?? 0) === 0)
const nightlyDefined = listFiles('test/reliability/nightly', '.nightly.ts').length

const lagRows = [...pr.figures, ...(nightly?.figures ?? [])]
  .filter((f) => f.figures.lagMs !== undefined || f.figures.catchUpMs !== undefined)
  .map((f) => {
    const lag = f.figures.lagMs as { n: number; p50: number; p99: number; max: number } | undefined
    return `| ${scenarioId(f.test)} (${f.scenario}) | ${lag ? `${lag.p50} | ${lag.p99} | ${lag.max} | ${lag.n}` : '— | — | — | —'} | ${typeof f.figures.catchUpMs === 'number' ? `${f.figures.catchUpMs}` : '—'} |`
  })

const now = new Date()
const lines: string[] = [
  '# Reliability scorecard',
  '',
  `Generated by \`node --import tsx scripts/scorecard.ts${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(' ')}` : ''}\` on ${now.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}`,
  `(${os.type()} ${os.arch()}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, SQLite ${sqliteVersion} (better-sqlite3), oracle litestream ${litestreamVersion}).`,
  'Do not edit by hand; regenerate. Scenario IDs are those of the reliability matrix; the suite and its helpers are',
  'described in the "How it works" section below.',
  '',
  '## Scenarios passed / total',
  '',
  '| Tier | Passed / total | Duration | Run |',
  '|---|---|---|---|',
  `| PR (every pull request, < 10 min) | ${prPassed} / ${prTests.length} | ${secs(pr.durationMs)} | ${pr.startedAt.replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}: \`${esc(pr.command)}\` |`,
  nightly
    ? `| N (nightly, ≤ 90 min) | ${counted(nightly.tests).filter((t) => t.ok).length} / ${counted(nightly.tests).length} | ${secs(nightly.durationMs)} | ${nightly.startedAt.replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}: \`node --import tsx test/reliability/run-nightly.ts\` |`
    : `| N (nightly, ≤ 90 min) | not run for this card (${nightlyDefined} scenarios defined) | — | \`npm run test:reliability:nightly\` |`,
  soak
    ? `| W (soak) | ${soak.checkpoints - soak.checkpointsFailed} / ${soak.checkpoints} checkpoints clean | ${secs(soak.durationMs)} | ${soak.startedAt.replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}: \`${esc(soak.command)}\` (${soak.dbs} databases, ${soak.faults.length} faults, ${soak.totalAcked} acked writes) |`
    : '| W (soak) | not run for this card | — | `npm run soak -- --hours 8` |',
  '',
  `Harness self-tests (fault proxy actions, recorder, writer/model agreement): ${pr.tests.filter(isSelfTest).filter((t) => t.ok).length} / ${pr.tests.filter(isSelfTest).length} passed.`,
  '',
  '## Hard gates (each must be 0)',
  '',
  `Summed over every scenario that reached its invariant check${nightly ? ' (PR + nightly' : ' (PR'}${soak ? ' + soak checkpoints)' : ')'}. ${gatesOk ? 'All gates hold.' : '**At least one gate is broken.**'}`,
  '',
  `| Gate | PR | N | W | Total |`,
  '|---|---|---|---|---|',
  ...GATES.map(([k, label]) => `| ${label} | ${prGates[k] ?? 0} | ${nGates ? (nGates[k] ?? 0) : '—'} | ${wGates ? (wGates[k] ?? '—') : '—'} | ${(allGates[k] ?? 0) === 0 ? '0' : `**${allGates[k]}**`} |`),
  '',
  'A scenario that fails before its invariant check contributes no gate counts; see the failures below.',
  '',
  '## Lag and catch-up',
  '',
  'Lag = commit (writer child) → the upload holding that commit acknowledged to the service; found by searching each',
  "recorded upload body (LZ4-decoded) for the commit's ledger hash. Catch-up = fault end → the last commit made during",
  'the fault durable. Figures include time spent inside injected faults and downtime where the scenario has them.',
  '',
  '| Scenario | lag p50 (ms) | p99 | max | commits | catch-up (ms) |',
  '|---|---|---|---|---|---|',
  ...lagRows,
  '',
  '## PR tier',
  '',
  ...tierTable(pr),
  '',
  '### Failures',
  '',
  ...failuresList(pr),
  '',
]
if (nightly) lines.push('## Nightly tier', '', ...tierTable(nightly), '', '### Failures', '', ...failuresList(nightly), '')
if (soak) {
  const kinds = new Map<string, number>()
  for (const f of soak.faults) kinds.set(f.kind, (kinds.get(f.kind) ?? 0) + 1)
  lines.push(
    '## Soak',
    '',
    `${soak.dbs} databases for ${secs(soak.durationMs)}; faults injected: ${[...kinds].map(([k, n]) => `${k} ×${n}`).join(', ') || 'none'}; ${soak.checkpoints} checkpoints, ${soak.checkpointsFailed} with failures.`,
    '',
    ...(soak.failures.length > 0 ? soak.failures.slice(0, 20).map((f) => `- ${esc(f)}`) : ['No failures.']),
    '',
  )
}
lines.push(
  '## How it works',
  '',
  '- `test/helpers/fault-proxy.ts`: an HTTP proxy in front of s3rver; rules (method, key regex, percentage, count, time window)',
  '  refuse (listener closed / connection reset), blackhole, add latency or a bandwidth cap, answer S3 XML errors (500, 503',
  '  SlowDown + Retry-After, 429, 408, 403), drop the response after s3rver stored the object, or truncate GET bodies; it',
  '  records every request (method, key, status, bytes, headers, bodies) for barriers, rates and byte checks.',
  '- `test/helpers/writer.ts` (+ `writer-child.ts`): writer processes running a deterministic op stream (customers, orders',
  '  with a foreign key and indexes) and a hash-chained `ledger(seq, hash)` in the same transaction; `WriterModel`',
  '  replays the stream in memory for the expected content at any seq.',
  '- `test/helpers/invariants.ts`: I1 stock restore exit 0, I2 integrity/foreign keys, I3 ledger 1..N with a valid chain and',
  '  N ≥ acked, I4 content == model (== stopped source), I5 our restore == stock, I6 auditor clean; H6 key shapes; D11',
  '  byte-exactness; durable seqs and lag from recorded bodies; secret scan (a unique session-token sentinel).',
  '- Scenarios drive the real `litestream-manager replicate` process; SIGTERM (exit 0) is the acknowledgement barrier,',
  '  and after kill -9 the acknowledged seq is the highest one inside an upload whose success the service received.',
  '- Tiers: PR `npm run test:reliability` (`test/reliability/*.test.ts`), nightly `npm run test:reliability:nightly`',
  '  (`test/reliability/nightly/*.nightly.ts`), soak `npm run soak -- --hours H`; this file: `npm run scorecard`.',
  '',
)
fs.mkdirSync(path.dirname(outPath), { recursive: true })
fs.writeFileSync(outPath, lines.join('\n'))
process.stdout.write(`scorecard: PR ${prPassed}/${prTests.length} passed; gates ${gatesOk ? 'all 0' : 'BROKEN'}; wrote ${path.relative(process.cwd(), outPath)}\n`)
const selfOk = pr.tests.filter(isSelfTest).every((t) => t.ok)
process.exit(prPassed === prTests.length && gatesOk && selfOk ? 0 : 1)
