/**
 * Idle cost of the service: N idle databases, our service as `npm run bench` starts it (file replica), a settle
 * period, then the CPU seconds and the main thread's voluntary context switches (each one an event-loop wake-up
 * that found nothing to run) over a window. The design goal is no wake-up per idle database; what remains is
 * process-wide.
 *
 *   npm run --silent build && node --import tsx bench/idle-wakeups.ts [--clients 1000] [--settle 20] [--window 30]
 * @module
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { createClientDb } from './lib/dbs.js'
import { readCpuSeconds } from './lib/proc.js'
import { sleep } from './lib/stats.js'
import { startOurs } from './lib/sut.js'

const { values } = parseArgs({ options: { clients: { type: 'string', default: '1000' }, settle: { type: 'string', default: '20' }, window: { type: 'string', default: '30' } } })
const windowS = Number(values.window)
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'idle-wakeups-'))
const clientsDir = path.join(work, 'clients')
fs.mkdirSync(clientsDir)
for (let i = 0; i < Number(values.clients); i++) createClientDb(clientsDir)
const sut = await startOurs({ workDir: work, clientsDir, replica: { kind: 'file', root: path.join(work, 'replica') }, syncInterval: '1s' })
const pid = sut.pids()[0]!
/** wakeups reads the main thread's voluntary context switches. */
const wakeups = (): number => Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8'))![1])
try {
  await sleep(Number(values.settle) * 1000)
  const [c0, w0] = [readCpuSeconds(pid)!, wakeups()]
  await sleep(windowS * 1000)
  const [c1, w1] = [readCpuSeconds(pid)!, wakeups()]
  const cpuSeconds = c1 - c0
  process.stdout.write(
    `${JSON.stringify({ clients: Number(values.clients), windowS, cpuSeconds: Math.round(cpuSeconds * 100) / 100, cpuPercentOfCore: Math.round((cpuSeconds / windowS) * 1000) / 10, mainThreadWakeupsPerS: Math.round(((w1 - w0) / windowS) * 10) / 10 })}\n`,
  )
} finally {
  await sut.stop()
  fs.rmSync(work, { recursive: true, force: true })
}
