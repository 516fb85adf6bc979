import { Rng } from '../../../src/engine/sampling/rng.ts';
import { resolveSamplingParams, type SamplingParams, type SamplingParamsInit } from '../../../src/engine/sampling/sampling_params.ts';
import { SamplingState } from '../../../src/engine/sampling/sampling_state.ts';

/** Engine sampling params for tests; logitBias may also be given OpenAI-style, as a record. */
export function params(
  init: Omit<SamplingParamsInit, 'logitBias'> & { logitBias?: SamplingParams['logitBias'] | Readonly<Record<string, number>> } = {},
): SamplingParams {
  const { logitBias, ...rest } = init;
  const bias =
    logitBias === undefined || logitBias === null || logitBias instanceof Map ? logitBias : new Map(Object.entries(logitBias).map(([k, v]) => [Number(k), v]));
  return resolveSamplingParams({ ...rest, logitBias: (bias as SamplingParams['logitBias'] | undefined) ?? null });
}

export function makeState(p: SamplingParams, promptTokenIds: readonly number[] = [], eosTokenIds: readonly number[] = []): SamplingState {
  return SamplingState.create(p, promptTokenIds, eosTokenIds);
}

/** Replaces the state's RNG with one returning `u` forever (white-box: pins the inverse CDF). */
export function pinUniform(state: SamplingState, u: number): void {
  (state as unknown as { rng: { nextFloat(): number } }).rng = { nextFloat: () => u };
}

/** Standard-normal-ish logits from a seeded stream (Box-Muller). */
export function randomRow(vocab: number, seed: number, scale = 1): Float32Array {
  const rng = Rng.fromSeed(seed);
  const row = new Float32Array(vocab);
  for (let i = 0; i < vocab; i++) {
    const u1 = 1 - rng.nextFloat();
    const u2 = rng.nextFloat();
    row[i] = scale * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }
  return row;
}

/** Reference log_softmax in float64. */
export function logSoftmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (const x of row) max = Math.max(max, x);
  let sum = 0;
  for (const x of row) sum += Math.exp(x - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(row, (x) => x - lse);
}

/** Reference softmax in float64 of row / temperature. */
export function softmax(row: ArrayLike<number>, temperature = 1): number[] {
  const xs = Array.from(row, (x) => x / temperature);
  const max = xs.reduce((a, b) => Math.max(a, b), -Infinity);
  const e = xs.map((x) => Math.exp(x - max));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / z);
}

/** Token ids sorted best first, ties to the lower id. */
export function rankIds(row: ArrayLike<number>): number[] {
  return Array.from({ length: row.length }, (_, i) => i).sort((a, b) => row[b]! - row[a]! || a - b);
}
