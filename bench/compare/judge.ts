// Whether a run may judge targets at all: a loaded run, or one whose shape is not the target's (a quick run's
// shorter requests), reports its ratios but marks nothing met or missed (pure; unit-tested).
import { evaluateTarget, type TargetResult, type TargetSpec } from '../targets.ts';

export interface JudgedSpec extends TargetSpec {
  /** Why this run cannot judge this target even when quiet (e.g. "quick run: 64/32-token requests, the target is 256/128"), or null. */
  readonly shapeMismatch: string | null;
}

export interface RunCondition {
  readonly loaded: boolean;
  readonly reasons: readonly string[];
}

export function judgeTargets(specs: readonly JudgedSpec[], run: RunCondition): TargetResult[] {
  return specs.map((spec) => {
    const r = evaluateTarget(spec);
    if (r.value === null) return r;
    const why = run.loaded ? 'loaded run' : spec.shapeMismatch;
    if (why === null) return r;
    return { ...r, met: null, verdict: `not judged (${why}): measured ${r.value.toFixed(2)}, wanted ${spec.direction} ${spec.target}` };
  });
}
