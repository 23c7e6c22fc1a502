/**
 * Runs a tier of reliability scenarios with node:test and collects what the scorecard needs: the TAP stream (test
 * results, durations, errors) and the `figure {json}` lines each scenario emits (also written to a JSON-lines file
 * through RELIABILITY_FIGURES). Used by run-nightly.ts and scripts/scorecard.ts.
 * @module
 */
import { execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

/** TestResult is one top-level test (or a file that failed to load) from a TAP stream. */
export interface TestResult {
  readonly name: string
  readonly ok: boolean
  readonly skipped: boolean
  readonly durationMs: number
  readonly error?: string
}

/** FigureLine is what harness.ts emitFigures writes. */
export interface FigureLine {
  readonly scenario: string
  readonly test: string
  readonly at: string
  readonly gates: Record<string, number>
  readonly failures: number
  readonly figures: Record<string, unknown>
}

/** TierRun is the outcome of one tier. */
export interface TierRun {
  readonly tier: string
  readonly command: string
  readonly startedAt: string
  readonly durationMs: number
  readonly exitCode: number
  readonly tests: TestResult[]
  readonly figures: FigureLine[]
  readonly tapPath: string
}

/** parseTap reads top-level results and figure diagnostics from node:test TAP output. */
export function parseTap(tap: string): { tests: TestResult[]; figures: FigureLine[] } {
  const tests: TestResult[] = []
  const figures: FigureLine[] = []
  const lines = tap.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    const fig = /^\s*# figure (\{.*\})\s*$/.exec(line)
    if (fig) {
      try {
        figures.push(JSON.parse(fig[1]!) as FigureLine)
      } catch {
        // a truncated diagnostic: ignore
      }
      continue
    }
    const m = /^(not )?ok \d+ - (.*?)(\s+#\s+(SKIP|TODO)\b.*)?$/.exec(line)
    if (!m) continue
    let durationMs = 0
    let error: string | undefined
    for (let j = i + 1; j < lines.length && /^\s{2}/.test(lines[j]!); j++) {
      const l = lines[j]!
      const d = /^\s+duration_ms: ([\d.]+)/.exec(l)
      if (d) durationMs = Number(d[1])
      const e = /^\s+error: (.*)$/.exec(l)
      if (e && error === undefined) {
        if (e[1] === '|-' || e[1] === '|' || e[1] === '>-') {
          const body: string[] = []
          for (let k = j + 1; k < lines.length && /^\s{4}/.test(lines[k]!); k++) body.push(lines[k]!.trim())
          error = (body[0] ?? '').slice(0, 600) // the assertion message's first line; the rest is CLI output
        } else error = e[1]!.replace(/^'|'$/g, '').slice(0, 600)
      }
    }
    tests.push({ name: m[2]!, ok: !m[1], skipped: m[4] === 'SKIP', durationMs, ...(error !== undefined ? { error } : {}) })
  }
  return { tests, figures }
}

/** build compiles the CLI (dist/src/main.js); type errors elsewhere in the repo only warn, a missing output fails. */
export function buildCli(log: (s: string) => void = (s) => process.stderr.write(s)): void {
  try {
    execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { stdio: 'pipe' })
  } catch (err) {
    const out = String((err as { stdout?: Buffer }).stdout ?? '')
    log(`warning: tsc reported errors (continuing with the emitted output):\n${out.split('\n').slice(0, 10).join('\n')}\n`)
  }
  if (!fs.existsSync('dist/src/main.js')) throw new Error('dist/src/main.js missing after tsc')
}

/** runTier runs files with node:test (one at a time), echoing the spec reporter, and parses the TAP. */
export async function runTier(opts: {
  readonly tier: string
  readonly files: readonly string[]
  readonly outDir: string
  readonly testTimeoutMs?: number
  readonly env?: Readonly<Record<string, string>>
  readonly echo?: boolean
}): Promise<TierRun> {
  fs.mkdirSync(opts.outDir, { recursive: true })
  const tapPath = path.join(opts.outDir, `${opts.tier}.tap`)
  const figuresPath = path.join(opts.outDir, `${opts.tier}-figures.jsonl`)
  fs.rmSync(figuresPath, { force: true })
  const args = [
    '--import',
    'tsx',
    '--test',
    '--test-concurrency=1',
    `--test-timeout=${opts.testTimeoutMs ?? 600_000}`,
    '--test-reporter=tap',
    `--test-reporter-destination=${tapPath}`,
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    ...opts.files,
  ]
  // The command as a person would type it: reporters and the expanded file list shortened.
  const shownFiles = opts.files.length > 3 ? `${path.dirname(opts.files[0]!)}/*${path.basename(opts.files[0]!).replace(/^[^.]*/, '')} (${opts.files.length} files)` : opts.files.join(' ')
  const command = `node --import tsx --test --test-concurrency=1 ${shownFiles}`
  const startedAt = new Date()
  const exitCode = await new Promise<number>((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', opts.echo === false ? 'ignore' : 'inherit', 'inherit'], env: { ...process.env, ...opts.env, RELIABILITY_FIGURES: figuresPath } })
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)))
  })
  const tap = fs.existsSync(tapPath) ? fs.readFileSync(tapPath, 'utf8') : ''
  const { tests, figures } = parseTap(tap)
  // Figures also arrive through the JSON-lines file (complete even if a TAP diagnostic was cut).
  const fromFile = fs.existsSync(figuresPath)
    ? fs
        .readFileSync(figuresPath, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as FigureLine)
    : []
  const run: TierRun = {
    tier: opts.tier,
    command,
    startedAt: startedAt.toISOString(),
    durationMs: Date.now() - startedAt.getTime(),
    exitCode,
    tests,
    figures: fromFile.length >= figures.length ? fromFile : figures,
    tapPath,
  }
  fs.writeFileSync(path.join(opts.outDir, `${opts.tier}-run.json`), JSON.stringify(run, null, 2))
  return run
}

/** listFiles returns files under dir whose names end with suffix, sorted. */
export function listFiles(dir: string, suffix: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(suffix))
    .sort()
    .map((f) => path.join(dir, f))
}

/** DEFAULT_RESULTS_DIR is where tier runs leave their TAP, figures and run.json. */
export const DEFAULT_RESULTS_DIR = path.join(process.env.TMPDIR ?? '/tmp', 'litestream-manager-reliability')
