/**
 * An application in another process, as in production: a better-sqlite3 connection driven one command per line of
 * stdin, answering one JSON line each. Each test file brings its own command set (src, run with `node -e`).
 */
import { spawn } from 'node:child_process'
import readline from 'node:readline'
import type { TestContext } from 'node:test'

/** AppProcess sends a command and resolves with its JSON reply; close sends `close` and waits for the exit. */
export interface AppProcess {
  run(cmd: string): Promise<unknown>
  close(): Promise<void>
}

/** startAppProcess runs src with the database file as its argument; the process is killed after the test. */
export function startAppProcess(t: TestContext, src: string, file: string): AppProcess {
  const child = spawn(process.execPath, ['-e', src, file], { cwd: process.cwd() })
  t.after(() => child.kill('SIGKILL'))
  const lines = readline.createInterface({ input: child.stdout })
  const waiting: ((v: unknown) => void)[] = []
  lines.on('line', (l) => waiting.shift()?.(JSON.parse(l)))
  return {
    run: (cmd) =>
      new Promise((resolve) => {
        waiting.push(resolve)
        child.stdin.write(`${cmd}\n`)
      }),
    close: async () => {
      const exited = new Promise((r) => child.once('exit', r))
      child.stdin.write('close\n')
      await exited
    },
  }
}
