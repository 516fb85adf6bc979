// Our side of the single-stream benchmarks, through the offline driver (the serving path:
// scheduler, chunked prefill at the server's default 2048-token budget, sampler), timed per step.
import { OfflineEngine } from '../src/engine/offline.ts';
import type { ModelRunnerOptions } from '../src/engine/model_runner.ts';
import { emptyTimings, type StepTimings } from '../src/engine/step_profiler.ts';
import type { StepStats } from '../src/engine/step_stats.ts';

/** The server's default --max-num-batched-tokens: prefill runs in chunks of this size. */
export const PREFILL_CHUNK = 2048;

export function openBenchEngine(dir: string, runner: ModelRunnerOptions, maxNumSeqs = 1): Promise<OfflineEngine> {
  return OfflineEngine.create(dir, { runner, scheduler: { maxNumSeqs, maxNumBatchedTokens: PREFILL_CHUNK }, enablePrefixCaching: false });
}

export function addTimings(acc: Record<keyof StepTimings, number>, t: StepTimings, scale = 1): void {
  for (const k of Object.keys(acc) as (keyof StepTimings)[]) acc[k] += t[k] * scale;
}

/** Time to the first token of one prompt (the prefill, in chunks, plus one sampling); split summed over steps. */
export async function timePrefill(engine: OfflineEngine, prompt: readonly number[]): Promise<{ ms: number; split: StepTimings }> {
  const split = { ...emptyTimings() };
  const t0 = performance.now();
  await engine.generate([{ promptTokenIds: prompt, params: { temperature: 0, maxTokens: 1, ignoreEos: true } }], (s) => addTimings(split, s.timings));
  return { ms: performance.now() - t0, split };
}

/**
 * Batch-1 decode after a real prefill of the prompt (llama-bench's tg at depth d): `warmup` untimed
 * decode steps, then `steps` timed ones, wall time between step ends (everything a token costs).
 */
export async function timeDecode(
  engine: OfflineEngine,
  prompt: readonly number[],
  warmup: number,
  steps: number,
): Promise<{ msPerToken: number; split: StepTimings; graphRunsPerToken: number }> {
  const split = { ...emptyTimings() };
  const ends: number[] = [];
  let graphRuns = 0;
  const onStep = (s: StepStats): void => {
    if (s.numPrefillTokens > 0 || s.numDecodeTokens !== 1) return; // prefill steps
    ends.push(performance.now());
    if (ends.length > warmup + 1) {
      addTimings(split, s.timings, 1 / steps);
      graphRuns += s.numGraphRuns;
    }
  };
  await engine.generate([{ promptTokenIds: prompt, params: { temperature: 0, maxTokens: warmup + steps + 2, ignoreEos: true } }], onStep);
  const timed = ends.slice(warmup, warmup + steps + 1);
  return { msPerToken: (timed[timed.length - 1]! - timed[0]!) / (timed.length - 1), split, graphRunsPerToken: graphRuns / steps };
}
