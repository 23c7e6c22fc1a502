/**
 * Nightly (N-tier) reliability run: builds the CLI, then runs every test/reliability/nightly/*.nightly.ts scenario
 * one at a time (D2 blackhole, D3 500s, C1 random kill -9 × 20, C3 past the shutdown timeout, B2 WAL bound, D7
 * truncated GETs). Results (TAP, figures, run.json) go to --out (default $TMPDIR/litestream-manager-reliability);
 * scripts/scorecard.ts --nightly <out>/N-run.json puts them in docs/reliability.md.
 *
 *   node --import tsx test/reliability/run-nightly.ts [--out DIR] [--only c1,d2] [--with-pr]
 *
 * --with-pr also runs the PR tier first (as a separate tier). Exit code: 0 when every scenario passed.
 * @module
 */
import path from 'node:path'
import { buildCli, DEFAULT_RESULTS_DIR, listFiles, runTier } from './runner.js'

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : undefined
}

const outDir = path.resolve(arg('out') ?? DEFAULT_RESULTS_DIR)
const only = arg('only')?.split(',').map((s) => s.trim().toLowerCase())
const here = path.dirname(new URL(import.meta.url).pathname)

buildCli()
let failed = 0
if (process.argv.includes('--with-pr')) {
  const pr = await runTier({ tier: 'PR', files: listFiles(here, '.test.ts'), outDir })
  failed += pr.tests.filter((t) => !t.ok).length
}
let files = listFiles(path.join(here, 'nightly'), '.nightly.ts')
if (only) files = files.filter((f) => only.some((id) => path.basename(f).startsWith(`${id}-`)))
const run = await runTier({ tier: 'N', files, outDir, testTimeoutMs: 30 * 60_000 })
failed += run.tests.filter((t) => !t.ok).length
const passed = run.tests.filter((t) => t.ok && !t.skipped).length
process.stdout.write(`\nnightly: ${passed}/${run.tests.length} passed in ${Math.round(run.durationMs / 1000)} s; results in ${outDir}\n`)
process.exit(failed === 0 && run.exitCode === 0 ? 0 : 1)
