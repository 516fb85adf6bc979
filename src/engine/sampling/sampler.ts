// Picks one token from one logits row. Steps (vLLM v1's order, see logits_processors.ts for 1-4):
//   5. greedy (temperature 0 or topK 1): argmax of the processed row, ties to the lowest id
//   6. min-p:  keep p >= minP * pmax, i.e. exp(l - lmax) >= minP (no normalisation needed)
//   7. top-k:  keep the k best (heap or quickselect, never a full sort)
//   8. top-p:  over the survivors renormalised, sorted best first, keep token r while the mass
//              ranked before it is < topP * Z (so at least one token); only the candidates that
//              can reach the nucleus are sorted (bucket pruning, see nucleusPrefix)
//   9. draw:   inverse CDF with u in [0, 1) over the survivors
// min-p commutes with top-k (it compares ratios to the max), so only its place before top-p
// matters; vLLM applies it first. Determinism: every call draws exactly one rng.nextFloat(),
// greedy included, so a request's RNG position always equals its number of sampled tokens.
import { applyLogitsProcessors } from './logits_processors.ts';
import { logSumExp, topLogprobs, type TokenLogprob } from './logprobs.ts';
import { isGreedy, type SamplingParams } from './sampling_params.ts';
import type { SamplingState } from './sampling_state.ts';
import { argmax, selectTopK, sortBest, topKOfRow } from './select.ts';

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

// Above this many top-k survivors, quickselect beats the heap's O(V log k) worst case.
const MAX_HEAP_TOP_K = 4096;
// Top-p sorts a candidate list this short directly; longer ones are pruned first.
const MAX_DIRECT_SORT = 1024;

/**
 * Samples the next token of one sequence. Advances state.rng by exactly one nextFloat() and
 * does not record the token: the caller calls state.appendToken(tokenId) when it keeps it.
 * @param rawLogits the model's row for this sequence ([vocab]); left unchanged
 */
export function sampleToken(
  rawLogits: Float32Array,
  params: SamplingParams,
  state: SamplingState,
  workspace: SamplerWorkspace = defaultWorkspace,
): SampledToken {
  const u = state.rng.nextFloat();
  workspace.ensure(rawLogits.length);
  const logits = workspace.logits.subarray(0, rawLogits.length);
  logits.set(rawLogits);
  applyLogitsProcessors(logits, params, state);
  const best = argmax(logits);
  const tokenId = isGreedy(params) ? best : sampleFromProcessed(logits, logits[best], params, u, workspace);
  if (params.logprobs === null) return { tokenId, logprob: null, topLogprobs: null };
  const lse = logSumExp(rawLogits);
  return { tokenId, logprob: rawLogits[tokenId] - lse, topLogprobs: topLogprobs(rawLogits, params.logprobs, lse) };
}

/** Steps 6-9 on a processed (temperature-scaled) row whose max is lmax. */
function sampleFromProcessed(logits: Float32Array, lmax: number, params: SamplingParams, u: number, ws: SamplerWorkspace): number {
  const ids = ws.ids;
  const probs = ws.probs;
  const vocab = logits.length;
  // n = number of candidates in ids[0 .. n), or -1 while every token is still a candidate.
  let n = params.minP > 0 ? gatherMinP(logits, lmax, params.minP, ids) : -1;
  const topK = params.topK;
  if (topK > 0 && topK < (n < 0 ? vocab : n)) {
    if (n >= 0) n = selectTopK(logits, ids, n, topK);
    else if (topK <= MAX_HEAP_TOP_K) n = topKOfRow(logits, topK, ids);
    else n = selectTopK(logits, fillRange(ids, vocab), vocab, topK);
  }
  if (params.topP < 1) {
    if (n < 0) n = fillRange(ids, vocab).length;
    n = nucleusPrefix(logits, lmax, params.topP, ids, n, probs);
    return drawFrom(ids, n, probs, u);
  }
  if (n < 0) return drawFromRow(logits, lmax, probs, u);
  for (let j = 0; j < n; j++) probs[ids[j]] = Math.exp(logits[ids[j]] - lmax);
  return drawFrom(ids, n, probs, u);
}

/** ids[0 .. n) := tokens with exp(l - lmax) >= minP, in id order. Returns n. */
function gatherMinP(logits: Float32Array, lmax: number, minP: number, ids: Int32Array): number {
  // Cheap log-space pre-test with slack; the exact test decides.
  const cut = lmax + Math.log(minP) - 1e-6;
  let n = 0;
  for (let i = 0; i < logits.length; i++) {
    if (logits[i] >= cut && Math.exp(logits[i] - lmax) >= minP) ids[n++] = i;
  }
  return n;
}

/** ids[0 .. n) := 0 .. n - 1; returns that prefix. */
function fillRange(ids: Int32Array, n: number): Int32Array {
  for (let i = 0; i < n; i++) ids[i] = i;
  return ids.subarray(0, n);
}

// Bucket pruning for top-p: buckets of BUCKET_WIDTH nats below lmax; the last one is open.
const NUM_BUCKETS = 64;
const BUCKET_WIDTH = 0.5;
const bucketMass = new Float64Array(NUM_BUCKETS);

/**
 * Top-p over candidates ids[0 .. n): on return ids[0 .. kept) is the nucleus, best first, and
 * probs[id] = exp(l - lmax) for it. Returns kept (>= 1).
 *
 * Sorting only what can reach the nucleus: one pass bins each candidate's mass by its distance
 * below lmax. The best-first order visits whole buckets in turn, so once the top b buckets hold
 * >= topP * Z, no token below them can be in the nucleus (the mass ranked before it already
 * reaches topP * Z). One extra bucket absorbs rounding between the two summation orders.
 */
function nucleusPrefix(logits: Float32Array, lmax: number, topP: number, ids: Int32Array, n: number, probs: Float64Array): number {
  let z = 0;
  if (n > MAX_DIRECT_SORT) {
    bucketMass.fill(0);
    for (let j = 0; j < n; j++) {
      const id = ids[j];
      const d = lmax - logits[id];
      const p = Math.exp(-d);
      probs[id] = p;
      z += p;
      bucketMass[Math.min(NUM_BUCKETS - 1, Math.floor(d / BUCKET_WIDTH))] += p;
    }
    let b = 0;
    for (let cum = bucketMass[0]; cum < topP * z && b < NUM_BUCKETS - 1; cum += bucketMass[++b]);
    if (b + 1 < NUM_BUCKETS - 1) {
      const cut = lmax - (b + 2) * BUCKET_WIDTH;
      let m = 0;
      for (let j = 0; j < n; j++) if (logits[ids[j]] > cut) ids[m++] = ids[j];
      n = m;
    }
  } else {
    for (let j = 0; j < n; j++) z += probs[ids[j]] = Math.exp(logits[ids[j]] - lmax);
  }
  sortBest(logits, ids, n);
  const target = topP * z;
  let before = probs[ids[0]];
  let kept = 1;
  while (kept < n && before < target) before += probs[ids[kept++]];
  return kept;
}

/** Inverse CDF over ids[0 .. n) weighted by probs[id]. */
function drawFrom(ids: Int32Array, n: number, probs: Float64Array, u: number): number {
  let z = 0;
  for (let j = 0; j < n; j++) z += probs[ids[j]];
  const target = u * z;
  let acc = 0;
  for (let j = 0; j < n; j++) {
    acc += probs[ids[j]];
    if (target < acc) return ids[j];
  }
  // u * z rounded up to z: the last candidate with positive mass.
  for (let j = n - 1; j > 0; j--) if (probs[ids[j]] > 0) return ids[j];
  return ids[0];
}

/** Inverse CDF over the whole row in id order (no filter active). */
function drawFromRow(logits: Float32Array, lmax: number, probs: Float64Array, u: number): number {
  let z = 0;
  for (let i = 0; i < logits.length; i++) z += probs[i] = Math.exp(logits[i] - lmax);
  const target = u * z;
  let acc = 0;
  for (let i = 0; i < logits.length; i++) {
    acc += probs[i];
    if (target < acc) return i;
  }
  for (let i = logits.length - 1; i > 0; i--) if (probs[i] > 0) return i;
  return 0;
}
