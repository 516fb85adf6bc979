// The distribution sampleToken() draws from, as a dense probability row: what speculative decoding's
// rejection sampler compares (target p from the model's row, draft q from the MTP module's row).
// Same steps as sampler.ts (logits processors, then greedy or min-p / top-k / top-p), so drawing from
// this row is drawing what sampleToken() would draw. No grammar: requests with one do not speculate.
import { argmax } from '../../common/select.ts';
import { fillProbs, gatherMinP, keepTopK, keepTopP } from './filters.ts';
import { applyLogitsProcessors } from './logits_processors.ts';
import { SamplerWorkspace } from './sampler.ts';
import { isGreedy, type SamplingParams } from './sampling_params.ts';
import type { SamplingState } from './sampling_state.ts';

/** [vocab] probabilities summing to 1: one-hot at the processed argmax for greedy requests. */
export function processedDistribution(rawLogits: Float32Array, params: SamplingParams, state: SamplingState, ws: SamplerWorkspace): Float64Array {
  const V = rawLogits.length;
  ws.ensure(V);
  const logits = ws.logits.subarray(0, V);
  logits.set(rawLogits);
  applyLogitsProcessors(logits, params, state);
  const best = argmax(logits);
  const out = new Float64Array(V);
  if (isGreedy(params)) {
    out[best] = 1;
    return out;
  }
  const lmax = logits[best]!;
  const { ids, probs } = ws;
  let n = params.minP > 0 ? gatherMinP(logits, lmax, params.minP, ids) : -1;
  if (params.topK > 0 && params.topK < (n < 0 ? V : n)) n = keepTopK(logits, ids, n, params.topK);
  if (n < 0) {
    n = V;
    for (let i = 0; i < V; i++) ids[i] = i;
  }
  if (params.topP < 1) n = keepTopP(logits, lmax, ids, n, probs, params.topP);
  else fillProbs(logits, lmax, ids, n, probs);
  normalizeInto(ids, n, probs, out);
  return out;
}

function normalizeInto(ids: Int32Array, n: number, probs: Float64Array, out: Float64Array): void {
  let z = 0;
  for (let j = 0; j < n; j++) z += probs[ids[j]!]!;
  for (let j = 0; j < n; j++) out[ids[j]!] = probs[ids[j]!]! / z;
}

/** Inverse CDF in id order with u in [0, 1); the last token with mass when rounding runs past the end. */
export function drawFromDistribution(p: ArrayLike<number>, u: number): number {
  let z = 0;
  for (let i = 0; i < p.length; i++) z += p[i]!;
  const target = u * z;
  let acc = 0;
  let last = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i]! <= 0) continue;
    acc += p[i]!;
    last = i;
    if (target < acc) return i;
  }
  return last;
}
