/**
 * Idle cost of the service: N idle databases, the built service (file replica), a settle period, then the CPU
 * seconds and the main thread's voluntary context switches (each one an event-loop wake-up that found nothing
 * running) over a window. The design goal is no wake-up per idle database; what remains is process-wide.
 *
 *   npm run --silent build && node --import tsx bench/idle-wakeups.ts [--clients 1000] [--settle 20] [--window 30]
 * @module
 */
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import Database from 'better-sqlite3'
import { MAIN_JS, shebangLaunch } from './lib/sut.js'

const { values } = parseArgs({ options: { clients: { type: 'string', default: '1000' }, settle: { type: 'string', default: '20' }, window: { type: 'string', default: '30' } } })
const n = Number(values.clients)
const settleS = Number(values.settle)
const windowS = Number(values.window)
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'idle-wakeups-'))
fs.mkdirSync(path.join(root, 'clients'))
for (let i = 0; i < n; i++) {
  const db = new Database(path.join(root, 'clients', `${crypto.randomUUID()}.db`))
  db.pragma('journal_mode = wal')
  db.exec('CREATE TABLE t (x)')
  db.prepare('INSERT INTO t VALUES (1)').run()
  db.close()
}
const launch = shebangLaunch()
const svc = spawn(process.execPath, [...launch.flags, MAIN_JS, '-watch-dir', path.join(root, 'clients'), '-bucket', `file://${path.join(root, 'replica')}`, '-port', '0'], {
  stdio: 'ignore',
  env: { ...process.env, ...launch.env },
})
const sample = (): { cpuS: number; wakeups: number } => {
  const f = fs.readFileSync(`/proc/${svc.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  const status = fs.readFileSync(`/proc/${svc.pid}/task/${svc.pid}/status`, 'utf8')
  return { cpuS: (Number(f[11]) + Number(f[12])) / 100, wakeups: Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(status)![1]) }
}
try {
  await new Promise((r) => setTimeout(r, settleS * 1000))
  const a = sample()
  await new Promise((r) => setTimeout(r, windowS * 1000))
  const b = sample()
  const cpuS = b.cpuS - a.cpuS
  process.stdout.write(
    `${JSON.stringify({ clients: n, windowS, cpuSeconds: Math.round(cpuS * 100) / 100, cpuPercentOfCore: Math.round((cpuS / windowS) * 1000) / 10, mainThreadWakeupsPerS: Math.round(((b.wakeups - a.wakeups) / windowS) * 10) / 10 })}\n`,
  )
} finally {
  svc.kill('SIGTERM')
  await new Promise((r) => svc.once('exit', r))
  fs.rmSync(root, { recursive: true, force: true })
}
