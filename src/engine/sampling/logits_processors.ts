// Logits processors, applied in vLLM v1's order to a copy of one raw logits row:
//   1. min_tokens  EOS and stop ids -> -inf while fewer than minTokens tokens are generated
//   2. logit_bias  logit[t] += bias[t]
//   3. penalties   repetition over prompt ∪ output: logit > 0 ? logit / r : logit * r;
//                  then frequency and presence over output counts c[t]:
//                  logit[t] -= frequency * c[t] + presence * [c[t] > 0]
//   4. temperature logit /= T, for sampled requests only (the greedy argmax is taken before it)
// Steps 1-3 touch O(distinct tokens) entries; only step 4 is O(vocab).
import { isGreedy, type SamplingParams } from './sampling_params.ts';
import type { SamplingState } from './sampling_state.ts';

/** Runs steps 1-4 on `logits` in place. The caller passes a copy: the raw row feeds logprobs. */
export function applyLogitsProcessors(logits: Float32Array, params: SamplingParams, state: SamplingState): void {
  applyMinTokens(logits, params, state);
  applyLogitBias(logits, params);
  applyPenalties(logits, params, state);
  if (!isGreedy(params)) applyTemperature(logits, params.temperature);
}

export function applyMinTokens(logits: Float32Array, params: SamplingParams, state: SamplingState): void {
  if (state.numOutputTokens >= params.minTokens) return;
  for (const id of state.minTokensMaskIds) if (id < logits.length) logits[id] = -Infinity;
}

export function applyLogitBias(logits: Float32Array, params: SamplingParams): void {
  if (params.logitBias === null) return;
  for (const [id, bias] of params.logitBias) if (id < logits.length) logits[id]! += bias;
}

export function applyPenalties(logits: Float32Array, params: SamplingParams, state: SamplingState): void {
  const r = params.repetitionPenalty;
  if (r !== 1 && state.repetitionTokenIds !== null) {
    for (const id of state.repetitionTokenIds) {
      const x = logits[id]!;
      logits[id] = x > 0 ? x / r : x * r;
    }
  }
  const frequency = params.frequencyPenalty;
  const presence = params.presencePenalty;
  if (frequency === 0 && presence === 0) return;
  for (const [id, count] of state.outputCounts.entries()) {
    logits[id]! -= frequency * count + presence;
  }
}

export function applyTemperature(logits: Float32Array, temperature: number): void {
  if (temperature === 1) return;
  for (let i = 0; i < logits.length; i++) logits[i]! /= temperature;
}
