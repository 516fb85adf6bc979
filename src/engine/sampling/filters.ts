// The sampling filters, each over a candidate list ids[0 .. n) of a processed logits row:
// min-p, top-k and top-p. None sorts its input; all keep ties deterministic (lower id first).
import { selectMassPrefix, selectTopK, topKOfRow } from '../../common/select.ts';

// Above this k, quickselect over the row beats the heap's O(V log k) worst case.
const MAX_HEAP_TOP_K = 4096;

/**
 * Min-p over the whole row: ids[0 .. n) := tokens with p >= minP * pmax, in id order.
 * p / pmax = exp(l - lmax), so no normalisation is needed. Returns n (>= 1: the max passes).
 */
export function gatherMinP(logits: Float32Array, lmax: number, minP: number, ids: Int32Array): number {
  // A log-space pre-test with slack skips the exp for most tokens; the exact test decides.
  const cut = lmax + Math.log(minP) - 1e-6;
  let n = 0;
  for (let i = 0; i < logits.length; i++) {
    if (logits[i]! >= cut && Math.exp(logits[i]! - lmax) >= minP) ids[n++] = i;
  }
  return n;
}

/**
 * Top-k: leaves the k best candidates in ids[0 .. k), in no particular order. n < 0 means every
 * token of the row is a candidate (ids is then overwritten). Returns the new candidate count.
 */
export function keepTopK(logits: Float32Array, ids: Int32Array, n: number, k: number): number {
  if (n >= 0) return selectTopK(logits, ids, n, k);
  if (k <= MAX_HEAP_TOP_K) return topKOfRow(logits, k, ids);
  for (let i = 0; i < logits.length; i++) ids[i] = i;
  return selectTopK(logits, ids, logits.length, k);
}

// Top-p bins candidates by distance below lmax: NUM_BUCKETS buckets of 1 / INV_BUCKET_WIDTH nats,
// the last one open-ended. Lists shorter than MIN_BUCKETED skip the binning.
const NUM_BUCKETS = 256;
const INV_BUCKET_WIDTH = 8; // 1/8-nat buckets
const MIN_BUCKETED = 2048;
const bucketMass = new Float64Array(NUM_BUCKETS);

/**
 * Top-p over candidates ids[0 .. n). Fills probs[id] = exp(logits[id] - lmax) for them (the
 * caller draws from those). The nucleus is the shortest best-first prefix reaching topP * Z
 * (Z = the candidates' mass): the token ranked r is kept iff the mass ranked before it is
 * < topP * Z, so the best token always is. This is vLLM's rule (ascending cumsum of the
 * renormalised probabilities, drop where cumsum <= 1 - topP), without the sort:
 * 1. Bin each candidate's mass by distance below lmax. Best-first order visits the buckets in
 *    turn, so the bucket b where the cumulative bucket mass reaches topP * Z holds the crossing.
 * 2. Buckets before b are kept whole, buckets after b + 1 dropped whole (b + 1 absorbs rounding
 *    between summation orders).
 * 3. Resolve the crossing inside the band b, b + 1 by weighted quickselect.
 * On return ids[0 .. kept) is the nucleus, in no particular order. Returns kept (>= 1).
 */
export function keepTopP(logits: Float32Array, lmax: number, ids: Int32Array, n: number, probs: Float64Array, topP: number): number {
  if (n < MIN_BUCKETED) {
    fillProbs(logits, lmax, ids, n, probs);
    return selectMassPrefix(logits, ids, 0, n, probs, topP * massOf(ids, n, probs));
  }
  // Hot loops live in small call-free functions: in a function that also makes calls, V8
  // reloads a typed array's bounds on every iteration (measured 2-5x slower).
  const target = topP * fillProbsAndBuckets(logits, lmax, ids, n, probs);
  let crossing = 0;
  let massBefore = 0;
  while (crossing < NUM_BUCKETS - 1 && massBefore + bucketMass[crossing]! < target) massBefore += bucketMass[crossing++]!;
  const numSure = crossing === 0 ? 0 : splitAtBucket(logits, lmax, ids, 0, n, crossing);
  // The last bucket is open-ended, so a band reaching it takes everything left.
  const bandLimit = crossing + 2 < NUM_BUCKETS ? crossing + 2 : Infinity;
  const bandEnd = splitAtBucket(logits, lmax, ids, numSure, n, bandLimit);
  return Math.max(1, selectMassPrefix(logits, ids, numSure, bandEnd, probs, target - massBefore));
}

/** probs[id] := exp(logits[id] - lmax) for the candidates ids[0 .. n). */
export function fillProbs(logits: Float32Array, lmax: number, ids: Int32Array, n: number, probs: Float64Array): void {
  for (let j = 0; j < n; j++) probs[ids[j]!] = Math.exp(logits[ids[j]!]! - lmax);
}

/** Σ probs[id] over ids[0 .. n). */
function massOf(ids: Int32Array, n: number, probs: Float64Array): number {
  let z = 0;
  for (let j = 0; j < n; j++) z += probs[ids[j]!]!;
  return z;
}

/** probs[id] := exp(logits[id] - lmax) for the candidates, binned into bucketMass; returns Z. */
function fillProbsAndBuckets(logits: Float32Array, lmax: number, ids: Int32Array, n: number, probs: Float64Array): number {
  bucketMass.fill(0);
  let z = 0;
  for (let j = 0; j < n; j++) {
    const id = ids[j]!;
    const d = lmax - logits[id]!;
    const p = Math.exp(-d);
    probs[id] = p;
    z += p;
    bucketMass[Math.min(NUM_BUCKETS - 1, Math.floor(d * INV_BUCKET_WIDTH))]! += p;
  }
  return z;
}

/**
 * Moves ids[from .. n) in buckets < limit to the front of that range; returns their end.
 * floor(x) < limit iff x < limit, so this agrees with fillProbsAndBuckets exactly. Branch-free
 * like partitionBefore in select.ts.
 */
function splitAtBucket(logits: Float32Array, lmax: number, ids: Int32Array, from: number, n: number, limit: number): number {
  let end = from;
  for (let j = from; j < n; j++) {
    const id = ids[j]!;
    ids[j] = ids[end]!;
    ids[end] = id;
    end += +((lmax - logits[id]!) * INV_BUCKET_WIDTH < limit);
  }
  return end;
}
