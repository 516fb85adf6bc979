// Logits processors, applied in vLLM v1's order to a copy of one raw logits row:
//   1. min_tokens  EOS and stop ids -> -inf while fewer than minTokens tokens are generated
//   2. logit_bias  logit[t] += bias[t]
//   3. penalties   repetition over prompt ∪ output: logit > 0 ? logit / r : logit * r, saturated
//                  at ±MAX_PENALIZED_LOGIT; then frequency and presence over output counts c[t]:
//                  logit[t] -= frequency * c[t] + presence * [c[t] > 0]
//   4. temperature logit /= T, for sampled requests only (the greedy argmax is taken before it)
// Steps 1-3 touch O(distinct tokens) entries; only step 4 is O(vocab).
import { GREEDY_TEMPERATURE, isGreedy, type SamplingParams } from './sampling_params.ts';
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

/**
 * Every accepted repetition penalty r > 0 must leave the row computable: logit / 1e-300 overflows
 * float32 to +Infinity, which no sampler can rank. Penalised logits saturate here instead, at a
 * bound that the smallest non-greedy temperature (GREEDY_TEMPERATURE) still divides to a finite
 * float32 (3.4e38): the result is exact while |logit / r| stays below it (any r >= 1e-30 for
 * logits under 1e3); past it the penalised tokens tie at the bound.
 */
export const MAX_PENALIZED_LOGIT = 3.4e38 * GREEDY_TEMPERATURE * 0.99;

export function applyPenalties(logits: Float32Array, params: SamplingParams, state: SamplingState): void {
  const r = params.repetitionPenalty;
  if (r !== 1 && state.repetitionTokenIds !== null) {
    for (const id of state.repetitionTokenIds) {
      const x = logits[id]!;
      // -Infinity is a min_tokens mask (and NaN a model fault the sampler reports): both stay as they are.
      if (x === -Infinity || Number.isNaN(x)) continue;
      const y = x > 0 ? x / r : x * r;
      logits[id] = y > MAX_PENALIZED_LOGIT ? MAX_PENALIZED_LOGIT : y < -MAX_PENALIZED_LOGIT ? -MAX_PENALIZED_LOGIT : y;
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
