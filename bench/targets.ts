// The targets as measured ratios: each target is "ratio >= x" or "ratio <= x"; a missed target
// says by how much (pure; unit-tested in test/bench/targets.test.ts).

export type Direction = '>=' | '<=';

export interface TargetSpec {
  readonly id: string;
  readonly name: string;
  /** The measured ratio, or null when it could not be measured in this run (e.g. the peer is missing). */
  readonly value: number | null;
  readonly direction: Direction;
  readonly target: number;
  /** What the ratio is made of, e.g. "ours 101.2 / llama.cpp 95.3 tok/s". */
  readonly detail?: string;
}

export interface TargetResult extends TargetSpec {
  /** null: not measured. */
  readonly met: boolean | null;
  /**
   * Relative distance to the target in the good direction: value/target - 1 for ">=", 1 - value/target
   * for "<="; >= 0 when met, < 0 when missed (-0.2 = missed by 20% of the target).
   */
  readonly margin: number | null;
  /** "met (+12%)", "missed by 23% (0.77 vs >= 1.0)" or "not measured". */
  readonly verdict: string;
}

function pct(x: number): string {
  const v = Math.round(Math.abs(x) * 1000) / 10; // to 0.1%, so 9.99999% prints as 10%
  return `${v < 10 ? v.toFixed(1) : v.toFixed(0)}%`;
}

export function evaluateTarget(spec: TargetSpec): TargetResult {
  if (spec.value === null || !Number.isFinite(spec.value)) return { ...spec, value: null, met: null, margin: null, verdict: 'not measured' };
  if (!(spec.target > 0)) throw new RangeError(`target ${spec.id}: the target must be positive, got ${spec.target}`);
  const margin = spec.direction === '>=' ? spec.value / spec.target - 1 : 1 - spec.value / spec.target;
  const met = spec.direction === '>=' ? spec.value >= spec.target : spec.value <= spec.target;
  const verdict = met
    ? `met (${margin >= 0 ? '+' : '-'}${pct(margin)})`
    : `missed by ${pct(margin)} (${spec.value.toFixed(2)} vs ${spec.direction} ${spec.target})`;
  return { ...spec, met, margin, verdict };
}

export function evaluateTargets(specs: readonly TargetSpec[]): TargetResult[] {
  return specs.map(evaluateTarget);
}

/** a / b, or null when either is missing or b is not positive. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined || !(b > 0) || !Number.isFinite(a)) return null;
  return a / b;
}
