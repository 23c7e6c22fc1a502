#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --optimize-for-size
/**
 * Entry point and wiring: the only module that reads process.env and installs signal handlers.
 * Signal handlers go in before anything heavy loads, so a SIGTERM right after start still gets a final sync.
 * The shebang runs node with `--optimize-for-size`, so V8 keeps its heap closer to the live data (23 MiB at 1,000
 * clients), and with MALLOC_ARENA_MAX=2, so glibc keeps two malloc arenas instead of one per busy thread
 * (docs/decisions/0006-two-malloc-arenas.md); `npm start` does the same, and `npm run bench` reads the
 * environment and flags from here, so its figures are taken with them.
 * @module
 */
import type { CliIo } from './cli/replicate.js'
import type { Logger } from './log.js'

let signals = 0
let onFirst: (() => void) | null = null
let onSecond: (() => void) | null = null
const handler = (): void => {
  signals++
  if (signals === 1) onFirst?.()
  else if (onSecond) onSecond()
  else process.exit(130)
}
process.on('SIGINT', handler)
process.on('SIGTERM', handler)

async function processIo(): Promise<CliIo> {
  const { pino } = await import('pino')
  const level = process.env.LOG_LEVEL ?? 'info'
  const log = pino({ level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: true })) as unknown as Logger
  return {
    env: process.env,
    stdout: (s) => process.stdout.write(s),
    stderr: (s) => process.stderr.write(s),
    log,
    onSignal: (first, second) => {
      onFirst = first
      onSecond = second
      if (signals >= 1) first()
      if (signals >= 2) second()
    },
  }
}

async function main(argv: string[]): Promise<number> {
  // For the benchmark's A/B runs only (decision 0005, addendum); loaded only then, so other commands skip koffi.
  if (process.env.LSM_SYNCFS_GAP_MS !== undefined) (await import('./file/syncfs.js')).setSyncfsMinGapMs(Number(process.env.LSM_SYNCFS_GAP_MS))
  const io = await processIo()
  const [cmd, ...rest] = argv
  switch (cmd) {
    case 'replicate':
      return (await import('./cli/replicate.js')).replicateCommand(rest, io)
    case 'restore':
      return (await import('./cli/restore.js')).restoreCommand(rest, io)
    case 'verify':
      return (await import('./cli/restore.js')).verifyCommand(rest, io)
    case 'audit':
      return (await import('./cli/restore.js')).auditCommand(rest, io)
    case 'list':
      return (await import('./cli/restore.js')).listCommand(rest, io)
    case 'demo':
      return (await import('./cli/demo.js')).demoCommand(rest, io)
    default:
      return (await import('./cli/serve.js')).serveCommand(argv, io)
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  },
)
