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
  const [a, b] = [sorted[lo]!, sorted[hi]!]; // 0 <= lo <= hi <= length - 1
  return a + (b - a) * (rank - lo);
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

/** The median (the 50th percentile, interpolated for an even count); NaN for an empty list. */
export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** A figure as reported: the median of repeated measurements and how far they spread. */
export interface Spread {
  readonly n: number;
  readonly median: number;
  readonly min: number;
  readonly max: number;
  /** First and third quartiles (numpy "linear"). */
  readonly q1: number;
  readonly q3: number;
}

export function spread(values: readonly number[]): Spread {
  if (values.length === 0) throw new RangeError('spread: no values');
  if (values.some((v) => !Number.isFinite(v))) throw new RangeError(`spread: non-finite value in [${values.join(', ')}]`);
  return {
    n: values.length,
    median: median(values),
    min: Math.min(...values),
    max: Math.max(...values),
    q1: percentile(values, 25),
    q3: percentile(values, 75),
  };
}

/** "86.3 (min 80.1, max 90.2, n 5)": a median with its range, `digits` after the point. */
export function formatSpread(s: Spread, digits = 1): string {
  return `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}-${s.max.toFixed(digits)}, n ${s.n})`;
}

/**
 * Per-round ratios a[i] / b[i] of two interleaved series (the same round of each), so slow drift of the
 * machine's state cancels within a round; the rounds must line up one to one.
 */
export function roundRatios(a: readonly number[], b: readonly number[]): number[] {
  if (a.length !== b.length) throw new RangeError(`roundRatios: ${a.length} vs ${b.length} rounds`);
  return a.map((x, i) => x / b[i]!); // same length, checked above
}
