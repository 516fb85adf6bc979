// Small statistics helpers for the bench (pure; unit-tested in test/bench/stats.test.ts).

/**
 * The p-th percentile (0..100) of `values` with linear interpolation between closest ranks
 * (numpy's default "linear" method, which benchmark_serving uses). NaN for an empty list.
 */
export function percentile(values: readonly number[], p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile: p must be in [0, 100], got ${p}`);
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

export function mean(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  return values.reduce((a, b) => a + b, 0) / values.length;
}

export interface LatencySummary {
  readonly count: number;
  readonly mean: number;
  readonly p50: number;
  readonly p99: number;
}

export function summarize(values: readonly number[]): LatencySummary {
  return { count: values.length, mean: mean(values), p50: percentile(values, 50), p99: percentile(values, 99) };
}

/** Gaps between consecutive timestamps (inter-token latencies from token arrival times). */
export function gaps(times: readonly number[]): number[] {
  const out: number[] = [];
  for (let i = 1; i < times.length; i++) out.push(times[i] - times[i - 1]);
  return out;
}
