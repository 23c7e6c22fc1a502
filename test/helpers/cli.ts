/** Runs the built CLI (dist/src/main.js) as a separate process, as an operator would. */
import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'

const MAIN = path.resolve('dist/src/main.js')

/** CliProcess is a running CLI with its captured output. */
export interface CliProcess {
  readonly proc: ChildProcess
  output(): string
  /** waitFor resolves when a stderr/stdout line matches re (log lines are JSON from pino). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>
  /** stop sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>
  exited: Promise<number | null>
}

/** startCli spawns `node dist/src/main.js ...args`. */
export function startCli(args: readonly string[], env: Record<string, string | undefined> = {}): CliProcess {
  const proc = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, LOG_LEVEL: 'debug', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = []
  const onData = (d: Buffer): void => {
    out += d.toString()
    for (const w of [...waiters]) {
      const line = out.split('\n').find((l) => w.re.test(l))
      if (line !== undefined) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(line)
      }
    }
  }
  proc.stdout!.on('data', onData)
  proc.stderr!.on('data', onData)
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  return {
    proc,
    output: () => out,
    exited,
    waitFor(re, timeoutMs = 20_000) {
      const line = out.split('\n').find((l) => re.test(l))
      if (line !== undefined) return Promise.resolve(line)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re} in output:\n${out.slice(-3000)}`)), timeoutMs)
        void exited.then(() => setTimeout(() => reject(new Error(`process exited while waiting for ${re}:\n${out.slice(-3000)}`)), 50))
        waiters.push({ re, resolve: (l) => (clearTimeout(timer), resolve(l)) })
      })
    },
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null) proc.kill(signal)
      return exited
    },
  }
}

/** runCli runs the CLI to completion. */
export async function runCli(args: readonly string[], env: Record<string, string | undefined> = {}): Promise<{ code: number | null; output: string }> {
  const p = startCli(args, env)
  const code = await p.exited
  return { code, output: p.output() }
}
