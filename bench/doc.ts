/**
 * `npm run bench:doc [-- FILE...] [--notes NOTES.md] [--out docs/benchmarks.md]`: regenerates docs/benchmarks.md
 * from result JSON files (pino's update-bench-doc habit). A file whose `kind` is `single-db` (bench/single-db.ts)
 * fills the single-database section; any other is a many-clients result (bench/run.ts): the first is tabled in
 * full, later ones join a run-to-run table. Without files it reads bench/results/many-clients.json, then
 * bench/results/many-clients-*.json, bench/results/single-db.json, and the observations in bench/results/notes.md.
 * @module
 */
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'

const REPO = fileURLToPath(new URL('../', import.meta.url))

type Json = Record<string, unknown>

const PEER_TITLES: Record<string, string> = {
  ours: 'ours (litestream-manager)',
  litestreamSingleProcess: 'Litestream, one process',
  litestreamPerProcess: 'Litestream, process per db',
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined
}

function fmt(v: unknown, digits?: number): string {
  const n = num(v)
  if (n === undefined) return v === true ? 'yes' : v === false ? 'no' : typeof v === 'string' ? v : 'n/a'
  if (digits !== undefined) return n.toFixed(digits)
  if (Number.isInteger(n)) return String(n)
  return Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2).replace(/\.?0+$/, '') || '0'
}

function get(o: unknown, ...keys: string[]): unknown {
  let v: unknown = o
  for (const k of keys) v = v && typeof v === 'object' ? (v as Json)[k] : undefined
  return v
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}

function machineLine(m: unknown): string {
  return `${fmt(get(m, 'cpus'))} vCPU (${fmt(get(m, 'cpuModel'))}), ${fmt(get(m, 'memGiB'))} GiB RAM, Node ${fmt(get(m, 'node'))}, Linux ${fmt(get(m, 'kernel'))}, Litestream ${fmt(get(m, 'litestream'))}; 1-min load average at start ${fmt(get(m, 'loadAvg1mAtStart'))}`
}

/** Target is one goal for ours, evaluated against a result. */
interface Target {
  readonly name: string
  readonly goal: string
  readonly value: (r: Json) => string
  readonly met: (r: Json) => boolean | undefined
}

function targets(r: Json): Target[] {
  const ours = (r.ours ?? {}) as Json
  const single = r.litestreamSingleProcess as Json | undefined
  const syncMs = num(r.syncIntervalMs) ?? 1000
  return [
    {
      name: 'RSS',
      goal: '≤ 100 MiB (peak)',
      value: () => `peak ${fmt(ours.rssMiBPeak)} MiB, steady ${fmt(ours.rssMiBSteady)} MiB`,
      met: () => (num(ours.rssMiBPeak) === undefined ? undefined : num(ours.rssMiBPeak)! <= 100),
    },
    {
      name: 'CPU',
      goal: '≤ 1/3 of Litestream one-process',
      value: () => `${fmt(ours.cpuSeconds)} s vs ${fmt(single?.cpuSeconds)} s (${single && num(single.cpuSeconds) ? fmt((num(ours.cpuSeconds)! / num(single.cpuSeconds)!) * 100, 0) : 'n/a'} %)`,
      met: () => (num(ours.cpuSeconds) === undefined || num(single?.cpuSeconds) === undefined ? undefined : num(ours.cpuSeconds)! <= num(single!.cpuSeconds)! / 3),
    },
    {
      name: 'Lag p99',
      goal: `≤ sync interval + 250 ms = ${syncMs + 250} ms`,
      value: () => `${fmt(ours.lagMsP99)} ms`,
      met: () => (num(ours.lagMsP99) === undefined ? undefined : num(ours.lagMsP99)! <= syncMs + 250),
    },
    {
      name: 'Idle CPU',
      goal: 'near zero (≤ 1 % of one core)',
      value: () => `${fmt(ours.idleCpuSeconds)} s over ${fmt(ours.idleS)} s (${num(ours.idleS) ? fmt(((num(ours.idleCpuSeconds) ?? 0) / num(ours.idleS)!) * 100, 2) : 'n/a'} % of one core)`,
      met: () => (num(ours.idleCpuSeconds) === undefined || !num(ours.idleS) ? undefined : num(ours.idleCpuSeconds)! / num(ours.idleS)! <= 0.01),
    },
    {
      name: 'Cold start',
      goal: '≤ 10 s',
      value: () => `${fmt(ours.coldStartS)} s`,
      met: () => (num(ours.coldStartS) === undefined ? undefined : num(ours.coldStartS)! <= 10),
    },
    {
      name: 'Discovery p99',
      goal: '≤ 100 ms',
      value: () => `${fmt(ours.discoveryMsP99)} ms`,
      met: () => (num(ours.discoveryMsP99) === undefined ? undefined : num(ours.discoveryMsP99)! <= 100),
    },
  ]
}

function verdict(m: boolean | undefined): string {
  return m === undefined ? 'not measured' : m ? 'met' : '**MISSED**'
}

function manyClientsSection(r: Json): string {
  const peers = (r.peers as string[] | undefined) ?? Object.keys(PEER_TITLES).filter((p) => p in r)
  const pr = (p: string): Json => (r[p] ?? {}) as Json
  const ts = targets(r)
  const t = (name: string): string => ts.find((x) => x.name === name)?.goal ?? ''
  const perProc = r.litestreamPerProcess as Json | undefined
  const header = ['metric', 'target (ours)', ...peers.map((p) => PEER_TITLES[p] ?? p + (p === 'litestreamPerProcess' && perProc ? ` (measured ${fmt(perProc.perProcessCount)} processes, ×${fmt(num(r.clients)! / (num(perProc.perProcessCount) ?? 1))} extrapolated)` : ''))]
  if (perProc) header[2 + peers.indexOf('litestreamPerProcess')] = `Litestream, process per db — **${fmt(perProc.perProcessCount)} measured, linear extrapolation to ${fmt(r.clients)}**`
  const row = (label: string, target: string, f: (p: Json, name: string) => string): string[] => [label, target, ...peers.map((p) => f(pr(p), p))]
  const s3 = r.replica === 's3'
  const rows: string[][] = [
    row('clients replicated by this peer', '', (p) => fmt(p.clientsReplicated)),
    row('RSS peak (MiB), and the phase it came in', t('RSS'), (p) => (p.rssPeakPhase ? `${fmt(p.rssMiBPeak)} (${String(p.rssPeakPhase)})` : fmt(p.rssMiBPeak))),
    row('RSS steady, 2nd half of load (MiB)', '', (p) => fmt(p.rssMiBSteady)),
    row(`CPU seconds under load (${fmt(r.durationS)} s)`, t('CPU'), (p) => `${fmt(p.cpuSeconds)} (${fmt(p.cpuPercentOfOneCore)} % of a core)`),
    row('lag p50 (ms)', '', (p) => fmt(p.lagMsP50)),
    row('lag p99 (ms)', t('Lag p99'), (p) => fmt(p.lagMsP99)),
    row('lag max (ms)', '', (p) => fmt(p.lagMsMax)),
    row('lag samples (undurable)', '', (p) => `${fmt(p.lagSamples)} (${fmt(p.lagMissing)})`),
    row(s3 ? 'PUT requests under load' : 'objects written under load', '', (p) => fmt(p.puts)),
    row('disk written under load, whole device incl. the applications (MiB)', '', (p) => fmt(p.diskWrittenMiB)),
    row(`idle CPU seconds (${fmt(r.idleWindowS)} s window)`, t('Idle CPU'), (p) => fmt(p.idleCpuSeconds)),
    row('idle RSS (MiB)', '', (p) => fmt(p.idleRssMiB)),
    row(s3 ? 'idle PUTs' : 'idle objects written', '', (p) => fmt(p.idlePuts)),
    row('cold start: all have a snapshot (s)', t('Cold start'), (p) => fmt(p.coldStartS)),
    row('cold start: all have a generation in /api/clients (s)', '', (p, n) => (n === 'ours' ? fmt(p.coldStartApiS) : '—')),
    row('discovery: file created → in /api/clients p50 / p99 (ms)', t('Discovery p99'), (p, n) => (n === 'ours' ? `${fmt(p.discoveryMsP50)} / ${fmt(p.discoveryMsP99)}` : '—')),
    row('discovery: file created → first snapshot p50 / p99 (ms)', '', (p, n) => (n === 'ours' ? `${fmt(p.firstSnapshotMsP50)} / ${fmt(p.firstSnapshotMsP99)}` : '—')),
    row('GET /api/clients p50 / p99 (ms, 200 requests)', '', (p, n) => (n === 'ours' ? `${fmt(p.apiClientsMsP50)} / ${fmt(p.apiClientsMsP99)}` : '—')),
    row('event-loop delay p99 (ms)', '', (p, n) => (n === 'ours' ? fmt(p.eventLoopDelayMsP99) : '—')),
    row('RSS slope under load (MiB/min)', '', (p) => fmt(p.rssGrowthMiBPerMin)),
    row('drain after writers stop (s)', '', (p) => fmt(p.drainS)),
    row('extra generations started', '', (p) => fmt(p.extraGenerations)),
    row('writer commit p99 / max (ms)', '', (p) => `${fmt(get(p, 'writer', 'commitMsP99'))} / ${fmt(get(p, 'writer', 'commitMsMax'))}`),
    row('writer schedule lateness p99 (ms)', '', (p) => fmt(get(p, 'writer', 'lateMsP99'))),
    row('CPU s of the writers / the harness in the same window', '', (p) => `${fmt(get(p, 'writer', 'cpuSeconds'))} / ${fmt(p.harnessCpuSeconds)}`),
    row('machine CPU busy during load: benchmark processes / everything (%)', '', (p) => `${fmt(p.machineCpuBusyPercent)} / ${fmt(p.systemCpuBusyPercent)}`),
    row('log errors / warnings', '', (p) => `${fmt(get(p, 'log', 'errors'))} / ${fmt(get(p, 'log', 'warnings'))}`),
    row('non-zero exits after SIGTERM / exited early', '', (p) => `${fmt(p.nonZeroExits)} / ${fmt(p.exitedBeforeStop)}`),
  ]
  if (perProc) {
    rows.push(
      row('per process: RSS steady (MiB) / CPU under load (s)', '', (p, n) => (n === 'litestreamPerProcess' ? `${fmt(p.perProcessRssMiB)} / ${fmt(p.perProcessCpuSeconds)}` : '—')),
      row('measured total for the processes run: RSS peak / CPU s / puts', '', (p, n) =>
        n === 'litestreamPerProcess' ? `${fmt(get(p, 'measured', 'rssMiBPeak'))} / ${fmt(get(p, 'measured', 'cpuSeconds'))} / ${fmt(get(p, 'measured', 'puts'))}` : '—',
      ),
    )
  }
  const at1000 = r.clients === 1000 && r.rate === 1
  let out = `## Many clients\n\n`
  out += `- Date: ${fmt(r.date)}\n- Command: \`${fmt(r.command)}\`\n- Machine: ${machineLine(r.machine)}\n`
  out += `- Workload: ${fmt(r.clients)} client databases, ${fmt(r.rate)} transaction/s each for ${fmt(r.durationS)} s, ${fmt(r.writers)} writer processes, ${s3 ? 's3rver' : 'file'} replica, sync interval ${fmt(r.syncInterval)}, lag sampled on ${fmt(r.sampleDbs)} databases, ${fmt(r.discoveryDbs)} databases discovered during the run (ours only), ${fmt(r.idleWindowS)} s idle window${r.idleSettleS === undefined ? ' (opened right after the load, before runs had --idle-settle)' : ` opened ${fmt(r.idleSettleS)} s after the load`}.\n`
  if (s3) out += `- s3rver's own ceiling: **${fmt(r.s3rverPutCeilingPerS)} PUT/s** (1 KiB objects, 16 concurrent, 5 s, straight to s3rver). A peer needing more than this is capped by the test server, not by itself.\n`
  out += `\n${table(header, rows)}\n\n`
  if ('ours' in r) out += targetsSection(r, ts, at1000)
  const problems: string[] = []
  for (const p of peers) {
    const examples = (get(pr(p), 'log', 'examples') as string[] | undefined) ?? []
    if (examples.length > 0) problems.push(`- ${PEER_TITLES[p] ?? p}: ${fmt(get(pr(p), 'log', 'errors'))} error and ${fmt(get(pr(p), 'log', 'warnings'))} warning lines; first distinct ones:\n${examples.map((e) => `  - \`${e.replace(/`/g, "'").slice(0, 300)}\``).join('\n')}`)
  }
  if (problems.length > 0) out += `\n### Log problems seen\n\n${problems.join('\n')}\n`
  return out
}

function targetsSection(r: Json, ts: readonly Target[], at1000: boolean): string {
  let out = `### Targets for ours\n\n`
  if (!at1000) out += `The targets are defined for 1000 active clients at 1 tx/s; this run is ${fmt(r.clients)} clients at ${fmt(r.rate)} tx/s, so the verdicts below are indicative only.\n\n`
  out += table(
    ['target', 'goal', 'measured', 'verdict'],
    ts.map((x) => [x.name, x.goal, x.value(r), verdict(x.met(r))]),
  )
  const missed = ts.filter((x) => x.met(r) === false)
  const measured = ts.filter((x) => x.met(r) !== undefined)
  out +=
    missed.length > 0
      ? `\n\n**Missed:** ${missed.map((x) => `${x.name} (${x.value(r)}; goal ${x.goal})`).join('; ')}.\n`
      : measured.length > 0
        ? '\n\nEvery measured target was met.\n'
        : '\n'
  return out
}

function repeatRunsSection(runs: readonly Json[]): string {
  const rows: string[][] = []
  for (const r of runs) {
    for (const p of Object.keys(PEER_TITLES)) {
      const x = r[p] as Json | undefined
      if (!x) continue
      rows.push([
        fmt(r.date),
        `${fmt(r.clients)} × ${fmt(r.rate)} tx/s, ${fmt(r.durationS)} s`,
        PEER_TITLES[p]!,
        `${fmt(x.rssMiBPeak)} / ${fmt(x.rssMiBSteady)}`,
        fmt(x.cpuSeconds),
        `${fmt(x.lagMsP50)} / ${fmt(x.lagMsP99)} / ${fmt(x.lagMsMax)}`,
        fmt(x.coldStartS),
        fmt(x.idleCpuSeconds),
        `${fmt(x.machineCpuBusyPercent)} / ${fmt(x.systemCpuBusyPercent)}`,
      ])
    }
  }
  return (
    `### Run-to-run variation\n\nThe same command run more than once on this machine; the first group is the run tabled above. The machine was shared with other work, so read the last column (share of all CPUs busy with the benchmark's processes / with anything; n/a where the run predates that measurement).\n\n` +
    table(['date', 'workload', 'peer', 'RSS peak / steady (MiB)', 'CPU s', 'lag p50 / p99 / max (ms)', 'cold start (s)', 'idle CPU s', 'CPU busy % (bench / all)'], rows) +
    '\n'
  )
}

function singleDbSection(r: Json): string {
  const peers = ['ours', 'litestream'].filter((p) => p in r)
  const title: Record<string, string> = { ours: 'ours (`litestream-manager replicate`)', litestream: 'Litestream (`litestream replicate`)' }
  const pr = (p: string): Json => (r[p] ?? {}) as Json
  const row = (label: string, f: (p: Json) => string): string[] => [label, ...peers.map((p) => f(pr(p)))]
  const tp = (p: Json, k: string): unknown => get(p, 'throughput', k)
  const cp = (p: Json, k: string): unknown => get(p, 'checkpoint', k)
  const rows = [
    row('application commits/s while replicating', (p) => fmt(tp(p, 'appTxPerS'))),
    row('application payload MB/s', (p) => fmt(tp(p, 'appPayloadMBPerS'))),
    row('WAL shipped (MB, decompressed) / segments', (p) => `${fmt(tp(p, 'walMBShipped'))} / ${fmt(tp(p, 'walSegments'))}`),
    row('**WAL shipped MB/s** (writer start → last commit durable)', (p) => `**${fmt(tp(p, 'shippedMBPerS'))}**`),
    row('catch-up after the writer stops (ms)', (p) => fmt(tp(p, 'catchUpMsAfterWriterStop'))),
    row('replicator CPU seconds (write + catch-up)', (p) => fmt(tp(p, 'cpuSeconds'))),
    row('replicator RSS peak (MiB)', (p) => fmt(tp(p, 'rssMiBPeak'))),
    row('machine CPU busy: benchmark / everything (%)', (p) => `${fmt(tp(p, 'benchCpuBusyPercent'))} / ${fmt(tp(p, 'systemCpuBusyPercent'))}`),
    row('application commit p99 / max (ms)', (p) => `${fmt(tp(p, 'commitMsP99'))} / ${fmt(tp(p, 'commitMsMax'))}`),
    row(`application wal_checkpoint(TRUNCATE) stall p50 / max (ms)`, (p) => `${fmt(cp(p, 'stallMsP50'))} / ${fmt(cp(p, 'stallMsMax'))}`),
    row('checkpoints that truncated (busy = 0)', (p) => `${fmt(cp(p, 'truncated'))} / ${fmt(cp(p, 'count'))}`),
    row('generations in the replica at the end', (p) => fmt(p.generations)),
    row('stock `litestream restore` equals the source', (p) => (get(p, 'restore', 'ok') === true ? 'yes' : `**no** ${JSON.stringify(p.restore)}`)),
    row('exit code after SIGTERM', (p) => fmt(p.exitCode)),
  ]
  let out = `## Single database throughput\n\n`
  out += `- Date: ${fmt(r.date)}\n- Command: \`${fmt(r.command)}\`\n- Machine: ${machineLine(r.machine)}\n`
  out += `- Workload: one database; the writer commits one ${fmt(r.rowBytes)}-byte random row per transaction as fast as it can for ${fmt(r.durationS)} s (synchronous=NORMAL); then ${fmt(r.checkpoints)} times a burst of ${fmt(r.burstRows)} rows followed by the application's \`PRAGMA wal_checkpoint(TRUNCATE)\` with busy_timeout 5000 ms, 1 s apart. File replica, sync interval 1 s.\n\n`
  out += `${table(['metric', ...peers.map((p) => title[p] ?? p)], rows)}\n`
  return out
}

const METHOD = `## Method

**Harness** (\`bench/run.ts\`). Peers run one after another, never together, each on a fresh temporary directory of
\`<lowercase-guid>.db\` files (WAL mode; a payload table \`t\` and a side table \`bench_ledger(seq, at, tag)\`; 10 rows
at creation) and a fresh replica. Phases per peer: create databases → start the writers (connected, idle) → spawn
the peer → cold start → load → drain → \`/api/clients\` latency (ours) → rest (\`--idle-settle\`, 10 s) → idle window →
SIGTERM → read the replica back.

- **Peers.** *ours*: \`node dist/src/main.js -watch-dir DIR -bucket file://ROOT -port P -sync-interval 1s\` at
  LOG_LEVEL=info. *Litestream, one process*: one \`litestream replicate -config cfg.yml\` listing every database
  with one replica each (\`path: ROOT/databases/<guid>\`, \`sync-interval: 1s\`, every other setting at its v0.3.13
  default). *Litestream, process per db*: one \`litestream replicate DB file://ROOT/databases/<guid>\` per database
  (S3: a one-database config, since v0.3.13 URLs cannot name an endpoint), at most \`--per-process-max\` (50)
  processes. Its RSS, CPU and PUT figures in the table are **linear extrapolations**: measured total × N / processes
  (\`extrapolated: true\` in the JSON; the measured totals are listed too). Lag and cold start are not extrapolated.
  Every binary is spawned directly (no npm/npx wrapper), so the sampled PIDs are the replicators themselves.
- **Writers.** \`--writers\` (2) child processes (\`bench/writer.ts\`), separate from the system under test, each
  owning an equal share of the databases through better-sqlite3 (busy_timeout 5000 ms, synchronous=NORMAL). Each
  transaction inserts a 64-byte random payload row and a ledger row; commits are spread evenly (database
  \`j % m\` at \`start + j / (m × rate)\`). The writer reports its commit-latency p99 and how late it ran against
  its schedule, so a saturated writer is visible.
- **RSS and CPU.** \`/proc/<pid>/status\` VmRSS every 250 ms, summed over the peer's processes; *peak* is the largest
  sample over the peer's whole life (\`rssPeakPhase\` names the phase it fell in), *steady* the mean over the second
  half of the load window. VmRSS counts the pages of the executable and its libraries too, though
  every process running them shares them. CPU is
  \`utime + stime\` from \`/proc/<pid>/stat\`, summed, over the load window only (the cold start's CPU is reported
  separately as \`coldStartCpuSeconds\`). The harness, the writers and s3rver share the same cores. Objects/PUTs
  are counted over the same window, and so are the bytes written to the block device holding the work directory
  (\`diskWrittenMiB\`, field 7 of \`/sys/dev/block/M:m/stat\`): the whole device, so the writers' own writes and any
  writeback the peer forces are in it. To show contention, the writers' and the harness's CPU are reported too, and
  the share of the machine busy with the benchmark's processes is set against the share busy with anything
  (\`/proc/stat\`): a large gap means other work on the machine competed with the run.
- **Replication lag.** On \`--sample\` (50) databases the writer records, for every commit, its ledger
  sequence and the wall-clock time COMMIT returned. Each ledger row carries the text marker \`BLG#<seq>#\`. After the
  run every snapshot and WAL segment of those databases is decompressed (LZ4 frame) and scanned for the highest
  marker it contains; a segment only ever holds whole committed transactions, so that is the latest commit it makes
  durable. An object's durable time is the ctime of the replica file (set by the final \`rename\` of the
  write-tmp-then-rename pattern both implementations use; ext4, kernel coarse clock, a few ms granularity), or for
  S3 the time the counting proxy finished sending the 2xx response to the PUT. **Lag of a commit = durable time of
  the first object (in durable-time order) whose marker is ≥ the commit's sequence − commit time.** This is exact
  per commit, not "first segment after the commit". Commits never found durable are counted as undurable. A
  replicator can read and ship a commit before the writer process gets to take its timestamp, and ctime comes from
  the kernel's coarse clock, so a few lags come out slightly negative; they count as 0 (\`lagNegativeClampedToZero\`,
  \`lagMsMinRaw\` in the JSON).
- **Objects / PUTs.** File replica: objects of the peer's databases whose ctime falls in the window. S3: requests
  counted by \`bench/proxy.ts\`, a pass-through proxy in front of s3rver, by type (PUT, GET, LIST = bucket-level GET,
  DELETE incl. DeleteObjects, HEAD, POST); the harness itself reads the replica from s3rver's data directory on
  disk, so its reads are not counted.
- **Cold start.** From spawning the peer until every database has a snapshot object (polled every 100 ms), the
  same criterion for every peer. For ours also until \`/api/clients\` shows a generation for every database
  (polled every 500 ms; the result is within 500 ms).
- **Discovery (ours).** Right after the measured load window the writers keep committing for a discovery window
  in which \`--discovery\` (20) new databases are created one at a time, 500 ms apart (or as soon as the previous one
  is done): time from just before the file is created until its id appears in \`/api/clients\` (polled every 10 ms;
  \`GET /api/clients/:id\` when that answers 200/404, else the full list), and until its first snapshot object
  exists (its ctime). Doing this after the measured window keeps the polling's cost out of ours' CPU figure.
- **Drain.** After the writers stop (for ours, after the discovery window): until every sampled database's last
  commit is durable and the object/PUT count has been still for 2 s (max 60 s).
- **\`/api/clients\`** (ours): 200 sequential GETs after the drain, writers stopped. **Event-loop delay**: prom-client's
  \`nodejs_eventloop_lag_p99_seconds\` minus \`nodejs_eventloop_lag_min_seconds\` from \`/metrics\`, scraped at the start
  (reset) and end of the load window; omitted when the service exposes no \`/metrics\`. Node's histogram records the
  whole interval between its samples (100 ms in the service since 3b78dda, 10 ms before), so an idle loop reads the
  interval, which is also the histogram's min: the figure is what the loop added on top of it. Result files written
  before this method (every one up to many-clients-2026-11-28-arenas*.json) hold the p99 alone, interval included.
- **Idle.** The window after the drain with no writes: CPU seconds, mean RSS, objects/PUTs.
- **Logs.** Error and warning lines in each peer's output (pino levels for ours; \`ERROR\`/\`WARN\` for Litestream).

**Single database** (\`bench/single-db.ts\`). The writer runs in the harness process (yielding every 20 ms so the
sampler runs). Shipped MB/s = decompressed length of every WAL segment written from writer start until the object
holding the last commit (found by the same marker scan) became durable, divided by that time. The stall test uses
the application's own connection; \`truncated\` counts result rows with busy = 0. At the end the replicator gets
SIGTERM and a stock \`litestream restore\` of the replica is compared with the source (row count, highest ledger seq).

Reproduce: \`npm run bench -- --clients 1000 --duration 90 --replica file\` and \`npm run build && node --import tsx
bench/single-db.ts\` (both write to bench/out/), then either \`npm run bench:doc -- <result.json> <single-db.json>\`, or
copy them to bench/results/many-clients.json and bench/results/single-db.json (older many-clients runs as
bench/results/many-clients-*.json, observations in bench/results/notes.md) and run \`npm run bench:doc\`.
`

/** defaultResultFiles is bench/results/many-clients.json, then other many-clients-*.json by name, then single-db.json. */
function defaultResultFiles(): string[] {
  const dir = path.join(REPO, 'bench', 'results')
  if (!fs.existsSync(dir)) return []
  const names = fs.readdirSync(dir).filter((n) => n.endsWith('.json'))
  const main = names.filter((n) => n === 'many-clients.json')
  const others = names.filter((n) => n.startsWith('many-clients-')).sort()
  return [...main, ...others, ...names.filter((n) => n === 'single-db.json')].map((n) => path.join(dir, n))
}

function main(): void {
  const { values, positionals } = parseArgs({ options: { out: { type: 'string' }, notes: { type: 'string' } }, allowPositionals: true })
  const defaultNotes = path.join(REPO, 'bench', 'results', 'notes.md')
  const notesFile = values.notes ?? (positionals.length === 0 && fs.existsSync(defaultNotes) ? defaultNotes : undefined)
  const files =
    positionals.length > 0
      ? positionals
      : defaultResultFiles()
  if (files.length === 0) {
    process.stderr.write('usage: npm run bench:doc -- RESULT.json [SINGLE_DB.json] [--out docs/benchmarks.md]\n')
    process.exit(2)
  }
  const results = files.map((f) => JSON.parse(fs.readFileSync(f, 'utf8')) as Json)
  const manyAll = results.filter((r) => r.kind !== 'single-db')
  const many = manyAll[0]
  const single = results.find((r) => r.kind === 'single-db')
  let doc = `# Benchmarks\n\n`
  doc += `<!-- Generated by \`npm run bench:doc\` (bench/doc.ts) from ${files.map((f) => path.relative(REPO, path.resolve(f))).join(', ')}. Edit bench/doc.ts, not this file. -->\n\n`
  doc += `litestream-manager against stock Litestream v0.3.13 on the same workload and replica. Goals for ours are shown next to the figures; they are goals, not assertions, and a missed goal is reported as missed.\n\n`
  if (many) doc += `${manyClientsSection(many)}\n`
  if (manyAll.length > 1) doc += `${repeatRunsSection(manyAll)}\n`
  if (single) doc += `${singleDbSection(single)}\n`
  if (notesFile) doc += `## Observations\n\n<!-- from ${path.relative(REPO, path.resolve(notesFile))}, written by whoever ran the benchmark -->\n\n${fs.readFileSync(notesFile, 'utf8').trim()}\n\n`
  doc += METHOD
  const out = path.resolve(values.out ?? path.join(REPO, 'docs', 'benchmarks.md'))
  fs.writeFileSync(out, doc)
  process.stderr.write(`wrote ${out}\n`)
}

main()
