// Picks one token from one logits row. Steps (vLLM v1's order, see logits_processors.ts for 1-4):
//   0. grammar: a structured-output request's bitmask sets disallowed tokens to -inf (XGrammar's
//      layout, token_bitmask.ts); logprobs still come from the raw row, as in vLLM
//   5. greedy (temperature 0 or topK 1): argmax of the processed row, ties to the lowest id
//   6. min-p:  keep p >= minP * pmax
//   7. top-k:  keep the k best
//   8. top-p:  keep the best-first prefix of the renormalised survivors reaching topP
//   9. draw:   inverse CDF with u in [0, 1) over the survivors
// filters.ts implements 6-8 without sorting: a heap or quickselect for top-k; for top-p, mass
// buckets plus a weighted quickselect inside the crossing bucket. A step costs O(vocab), and
// the exp pass over the candidates dominates.
// min-p commutes with top-k (it compares ratios to the max), so only its place before top-p
// matters; vLLM applies it first. Determinism: every call draws exactly one rng.nextFloat(),
// greedy included, so a request's RNG position always equals its number of sampled tokens.
import { fillProbs, gatherMinP, keepTopK, keepTopP } from './filters.ts';
import { applyLogitsProcessors } from './logits_processors.ts';
import { logSumExp, topLogprobs, type TokenLogprob } from './logprobs.ts';
import { isGreedy, type SamplingParams } from './sampling_params.ts';
import type { SamplingState } from './sampling_state.ts';
import { argmax } from '../../common/select.ts';
import { EngineError } from '../../common/errors.ts';
import { applyTokenBitmask } from '../structured/token_bitmask.ts';

export interface SampledToken {
  readonly tokenId: number;
  /** Raw-logits logprob of tokenId; null unless params.logprobs is set (saves an O(vocab) pass). */
  readonly logprob: number | null;
  /** params.logprobs best alternatives, best first; null unless params.logprobs is set. */
  readonly topLogprobs: TokenLogprob[] | null;
}

/** Reusable scratch rows, grown to the vocab size on first use. One per thread is enough. */
export class SamplerWorkspace {
  logits = new Float32Array(0);
  ids = new Int32Array(0);
  /** probs[tokenId] = exp(l - lmax), valid only for the current candidates. */
  probs = new Float64Array(0);

  ensure(vocabSize: number): void {
    if (this.logits.length >= vocabSize) return;
    this.logits = new Float32Array(vocabSize);
    this.ids = new Int32Array(vocabSize);
    this.probs = new Float64Array(vocabSize);
  }
}

const defaultWorkspace = new SamplerWorkspace();

/**
 * Samples the next token of one sequence. Advances state.rng by exactly one nextFloat() and
 * does not record the token: the caller calls state.appendToken(tokenId) when it keeps it.
 * @param rawLogits the model's row for this sequence ([vocab]); left unchanged
 * @param bitmask allowed next tokens of a constrained request (bit i of word i >> 5 = token i)
 */
export function sampleToken(
  rawLogits: Float32Array,
  params: SamplingParams,
  state: SamplingState,
  workspace: SamplerWorkspace = defaultWorkspace,
  bitmask: Int32Array | null = null,
): SampledToken {
  const u = state.rng.nextFloat();
  workspace.ensure(rawLogits.length);
  const logits = workspace.logits.subarray(0, rawLogits.length);
  logits.set(rawLogits);
  if (bitmask !== null && applyTokenBitmask(logits, bitmask) === 0) {
    throw new EngineError('DSV_ERR_INTERNAL', 'the output grammar allows no next token');
  }
  applyLogitsProcessors(logits, params, state);
  const best = argmax(logits);
  const tokenId = isGreedy(params) ? best : sampleFromProcessed(logits, logits[best]!, params, u, workspace);
  if (params.logprobs === null) return { tokenId, logprob: null, topLogprobs: null };
  const lse = logSumExp(rawLogits);
  return { tokenId, logprob: rawLogits[tokenId]! - lse, topLogprobs: topLogprobs(rawLogits, params.logprobs, lse) };
}

/** Steps 6-9 on a processed (temperature-scaled) row whose max is lmax. */
function sampleFromProcessed(logits: Float32Array, lmax: number, params: SamplingParams, u: number, ws: SamplerWorkspace): number {
  const { ids, probs } = ws;
  // n = number of candidates in ids[0 .. n), or -1 while every token is still a candidate.
  let n = params.minP > 0 ? gatherMinP(logits, lmax, params.minP, ids) : -1;
  if (params.topK > 0 && params.topK < (n < 0 ? logits.length : n)) n = keepTopK(logits, ids, n, params.topK);
  if (n < 0 && params.topP === 1) return drawFromRow(logits, lmax, probs, u);
  if (n < 0) n = fillRange(ids, logits.length);
  if (params.topP < 1) n = keepTopP(logits, lmax, ids, n, probs, params.topP);
  else fillProbs(logits, lmax, ids, n, probs);
  return drawFrom(ids, n, probs, u);
}

// Hot loops live in small call-free functions: in a function that also makes calls, V8 reloads
// a typed array's bounds on every iteration (measured 2-5x slower).

function fillRange(ids: Int32Array, n: number): number {
  for (let i = 0; i < n; i++) ids[i] = i;
  return n;
}

/** Inverse CDF over ids[0 .. n) weighted by probs[id]. */
function drawFrom(ids: Int32Array, n: number, probs: Float64Array, u: number): number {
  let z = 0;
  for (let j = 0; j < n; j++) z += probs[ids[j]!]!;
  const target = u * z;
  let acc = 0;
  for (let j = 0; j < n; j++) {
    const id = ids[j]!;
    acc += probs[id]!;
    if (target < acc) return id;
  }
  // u * z rounded up to z: the last candidate with positive mass.
  for (let j = n - 1; j > 0; j--) if (probs[ids[j]!]! > 0) return ids[j]!;
  return ids[0]!;
}

/** Inverse CDF over the whole row in id order (no filter active). */
function drawFromRow(logits: Float32Array, lmax: number, probs: Float64Array, u: number): number {
  let z = 0;
  for (let i = 0; i < logits.length; i++) z += probs[i] = Math.exp(logits[i]! - lmax);
  const target = u * z;
  let acc = 0;
  for (let i = 0; i < logits.length; i++) {
    acc += probs[i]!;
    if (target < acc) return i;
  }
  for (let i = logits.length - 1; i > 0; i--) if (probs[i]! > 0) return i;
  return 0;
}
