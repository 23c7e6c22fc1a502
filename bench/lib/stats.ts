/**
 * Small numeric helpers for benchmark reports: nearest-rank percentiles and rounding.
 * @module
 */

/** percentile returns the nearest-rank p-th percentile (0 < p <= 100) of values, or undefined when empty. */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)))
  return sorted[rank - 1]
}

/** summarize returns p50/p99/max/count of values (undefined fields when empty). */
export function summarize(values: readonly number[]): { p50?: number; p99?: number; max?: number; n: number } {
  if (values.length === 0) return { n: 0 }
  let max = -Infinity
  for (const v of values) if (v > max) max = v
  return { p50: percentile(values, 50), p99: percentile(values, 99), max, n: values.length }
}

/** mean returns the arithmetic mean, or undefined when empty. */
export function mean(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined
  let s = 0
  for (const v of values) s += v
  return s / values.length
}

/** round rounds to `digits` decimal places; undefined stays undefined. */
export function round(v: number | undefined, digits = 1): number | undefined {
  if (v === undefined || !Number.isFinite(v)) return undefined
  const f = 10 ** digits
  return Math.round(v * f) / f
}

/** nowMs is wall-clock epoch milliseconds with sub-millisecond resolution, comparable across processes. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now()
}

/** sleep resolves after ms. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
