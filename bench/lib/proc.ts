/**
 * Resource sampling from /proc: resident set size (VmRSS) and CPU time (utime+stime) of a set of processes.
 * Linux only. CPU of a process that has exited is remembered, so summed CPU never goes backwards.
 * @module
 */
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'

let clockTicks = 0

/** clkTck returns the kernel's clock ticks per second (getconf CLK_TCK, normally 100). */
export function clkTck(): number {
  if (clockTicks === 0) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100
    } catch {
      clockTicks = 100
    }
  }
  return clockTicks
}

/** readRssKiB returns VmRSS of pid in KiB, or undefined if the process is gone. */
export function readRssKiB(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : undefined
  } catch {
    return undefined
  }
}

/** readHwmKiB returns VmHWM (peak resident set) of pid in KiB, or undefined if the process is gone. */
export function readHwmKiB(pid: number): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : undefined
  } catch {
    return undefined
  }
}

/** readCpuSeconds returns utime+stime of pid in seconds, or undefined if the process is gone. */
export function readCpuSeconds(pid: number): number | undefined {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = s.slice(s.lastIndexOf(')') + 2).split(' ')
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    return (Number(fields[11]) + Number(fields[12])) / clkTck()
  } catch {
    return undefined
  }
}

/**
 * readDiskWrittenBytes returns the bytes written so far to the block device holding path (field 7 of
 * /sys/dev/block/MAJOR:MINOR/stat, in 512-byte sectors), or undefined when path is on no block device (tmpfs). It
 * counts every writer of the device: the applications, the peer, and the writeback the peer forces.
 */
export function readDiskWrittenBytes(path: string): number | undefined {
  try {
    const dev = fs.statSync(path, { bigint: true }).dev
    const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn))
    const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn))
    const fields = fs.readFileSync(`/sys/dev/block/${major}:${minor}/stat`, 'utf8').trim().split(/\s+/)
    const sectors = Number(fields[6])
    return Number.isFinite(sectors) ? sectors * 512 : undefined
  } catch {
    return undefined
  }
}

/** Sample is one reading of a process group: time (epoch ms), summed RSS (MiB), summed CPU (s), live process count. */
export interface Sample {
  readonly t: number
  readonly rssMiB: number
  readonly cpuS: number
  readonly alive: number
}

/** Sampler reads RSS and CPU of a changing set of processes every intervalMs. */
export class Sampler {
  readonly #pids: () => readonly number[]
  readonly #lastCpu = new Map<number, number>()
  readonly samples: Sample[] = []
  #timer: NodeJS.Timeout | null = null

  constructor(pids: () => readonly number[]) {
    this.#pids = pids
  }

  /** start begins sampling every intervalMs (default 250 ms). */
  start(intervalMs = 250): void {
    this.sample()
    this.#timer = setInterval(() => this.sample(), intervalMs)
  }

  /** stop ends sampling. */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = null
  }

  /** sample takes and records one reading now. */
  sample(): Sample {
    let rssKiB = 0
    let alive = 0
    for (const pid of this.#pids()) {
      const cpu = readCpuSeconds(pid)
      const rss = readRssKiB(pid)
      if (cpu !== undefined) this.#lastCpu.set(pid, cpu)
      if (rss !== undefined) {
        rssKiB += rss
        alive++
      }
    }
    let cpuS = 0
    for (const v of this.#lastCpu.values()) cpuS += v
    const s = { t: Date.now(), rssMiB: rssKiB / 1024, cpuS, alive }
    this.samples.push(s)
    return s
  }

  /** cpuNow is the summed CPU seconds so far (taking a fresh sample). */
  cpuNow(): number {
    return this.sample().cpuS
  }

  /** between returns the samples taken in [from, to]. */
  between(from: number, to: number): Sample[] {
    return this.samples.filter((s) => s.t >= from && s.t <= to)
  }

  /** peak is the sample with the largest summed RSS (the first of equals), or undefined before any sample. */
  peak(): Sample | undefined {
    let m: Sample | undefined
    for (const s of this.samples) if (m === undefined || s.rssMiB > m.rssMiB) m = s
    return m
  }
}

/** SystemCpu is a reading of the machine-wide CPU counters in /proc/stat (clock ticks). */
export interface SystemCpu {
  readonly busy: number
  readonly total: number
}

/** readSystemCpu reads the aggregate `cpu` line of /proc/stat; busy excludes idle and iowait. */
export function readSystemCpu(): SystemCpu {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!
  const v = line.trim().split(/\s+/).slice(1).map(Number)
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0) // user nice system idle iowait irq softirq steal
  const idle = (v[3] ?? 0) + (v[4] ?? 0)
  return { busy: total - idle, total }
}

/** systemBusyPercent is the share of all CPUs busy (anyone's work) between two readings. */
export function systemBusyPercent(a: SystemCpu, b: SystemCpu): number {
  const total = b.total - a.total
  return total > 0 ? ((b.busy - a.busy) / total) * 100 : 0
}
