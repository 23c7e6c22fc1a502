/**
 * How long a new file takes to be reported, by @parcel/watcher and by our watchDir (fs.watch), in a quiet
 * directory and in one where 100 `-wal` files are written every millisecond (what 1,000 active clients look like).
 * Evidence for docs/decisions/0004. Usage: node --import tsx bench/watch-latency.ts [--files 30]
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import watcher from '@parcel/watcher'
import { watchDir } from '../src/watch.js'

const at = process.argv.indexOf('--files')
const N = at > 0 ? Number(process.argv[at + 1]) : 30
if (!Number.isInteger(N) || N < 1) throw new Error('--files must be a positive integer')

function quantile(a: number[], p: number): number {
  const s = [...a].sort((x, y) => x - y)
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN
}

async function run(busy: boolean): Promise<Record<string, { p50: number; p99: number; max: number; n: number }>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lm-watchlat-'))
  const created = new Map<string, number>()
  const lat: Record<string, number[]> = { parcelWatcher: [], watchDir: [] }
  const sub = await watcher.subscribe(dir, (_err, evs) => {
    const t = performance.now()
    for (const e of evs) if (e.type === 'create' && created.has(path.basename(e.path))) lat.parcelWatcher!.push(t - created.get(path.basename(e.path))!)
  })
  const ours = await watchDir(
    dir,
    (evs) => {
      const t = performance.now()
      for (const e of evs) if (e.type === 'create' && created.has(path.basename(e.path))) lat.watchDir!.push(t - created.get(path.basename(e.path))!)
    },
    () => {},
  )
  const writer = busy
    ? spawn(process.execPath, ['-e', `const fs=require('fs');const fds=[];for(let i=0;i<100;i++)fds.push(fs.openSync(${JSON.stringify(dir)}+'/w'+i+'.db-wal','w'));let i=0;setInterval(()=>{for(let k=0;k<10;k++)fs.writeSync(fds[(i++)%100],'x')},1)`], { stdio: 'inherit' })
    : null
  await new Promise((r) => setTimeout(r, 500))
  for (let i = 0; i < N; i++) {
    const name = `n${i}.db`
    created.set(name, performance.now())
    fs.writeFileSync(path.join(dir, name), 'x')
    await new Promise((r) => setTimeout(r, 150))
  }
  await new Promise((r) => setTimeout(r, 1000))
  writer?.kill()
  await sub.unsubscribe()
  await ours.close()
  fs.rmSync(dir, { recursive: true, force: true })
  const out: Record<string, { p50: number; p99: number; max: number; n: number }> = {}
  for (const [k, v] of Object.entries(lat)) out[k] = { n: v.length, p50: +quantile(v, 0.5).toFixed(1), p99: +quantile(v, 0.99).toFixed(1), max: +Math.max(...v).toFixed(1) }
  return out
}

const quiet = await run(false)
const busy = await run(true)
console.log(JSON.stringify({ date: new Date().toISOString(), files: N, cpus: os.cpus().length, quiet, busy }, null, 2))
process.exit(0)
