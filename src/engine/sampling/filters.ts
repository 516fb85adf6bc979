// The sampling filters, each over a candidate list ids[0 .. n) of a processed logits row:
// min-p, top-k and top-p. None sorts its input; all keep ties deterministic (lower id first).
import { selectTopK, topKOfRow } from './select.ts';

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
    if (logits[i] >= cut && Math.exp(logits[i] - lmax) >= minP) ids[n++] = i;
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
 * Top-p over candidates ids[0 .. n) weighted by probs[id] = exp(logits[id] - lmax). The nucleus
 * is the shortest best-first prefix reaching topP * Z (Z = the candidates' mass): the token
 * ranked r is kept iff the mass ranked before it is < topP * Z, so the best token always is.
 * This is vLLM's rule (ascending cumsum of the renormalised probabilities, drop where
 * cumsum <= 1 - topP) without the sort.
 *
 * 1. Bin each candidate's mass by distance below lmax. Best-first order visits the buckets in
 *    turn, so the bucket b where the cumulative bucket mass reaches topP * Z holds the crossing.
 * 2. Buckets before b are kept whole, buckets after b + 1 dropped whole (b + 1 absorbs rounding
 *    between summation orders).
 * 3. Resolve the crossing inside the band b, b + 1 exactly by weighted quickselect.
 * On return ids[0 .. kept) is the nucleus, in no particular order. Returns kept (>= 1).
 */
export function keepTopP(logits: Float32Array, lmax: number, ids: Int32Array, n: number, probs: Float64Array, topP: number): number {
  let z = 0;
  for (let j = 0; j < n; j++) z += probs[ids[j]];
  const target = topP * z;
  if (n < MIN_BUCKETED) return keepMass(logits, ids, 0, n, probs, target);
  // Each loop lives in its own function: V8 optimises a long loop on entry (OSR) and would
  // deoptimise on reaching the next, not yet profiled, one.
  fillBucketMass(logits, lmax, ids, n, probs);
  let crossing = 0;
  let massBefore = 0;
  while (crossing < NUM_BUCKETS - 1 && massBefore + bucketMass[crossing] < target) massBefore += bucketMass[crossing++];
  const numSure = splitAtBucket(logits, lmax, ids, 0, n, crossing);
  const bandEnd = splitAtBucket(logits, lmax, ids, numSure, n, crossing + 2);
  return Math.max(1, keepMass(logits, ids, numSure, bandEnd, probs, target - massBefore));
}

function fillBucketMass(logits: Float32Array, lmax: number, ids: Int32Array, n: number, probs: Float64Array): void {
  bucketMass.fill(0);
  for (let j = 0; j < n; j++) bucketMass[bucketOf(logits, lmax, ids[j])] += probs[ids[j]];
}

/**
 * Moves ids[from .. n) in buckets < limit to the front of that range; returns their end.
 * floor(x) < limit iff x < limit, so this agrees with bucketOf exactly. Branch-free (the swap
 * is unconditional): on flat distributions the test is a coin flip the CPU cannot predict.
 */
function splitAtBucket(logits: Float32Array, lmax: number, ids: Int32Array, from: number, n: number, limit: number): number {
  let end = from;
  for (let j = from; j < n; j++) {
    const id = ids[j];
    ids[j] = ids[end];
    ids[end] = id;
    end += +((lmax - logits[id]) * INV_BUCKET_WIDTH < limit);
  }
  return end;
}

function bucketOf(logits: Float32Array, lmax: number, id: number): number {
  const bucket = Math.floor((lmax - logits[id]) * INV_BUCKET_WIDTH);
  return bucket < NUM_BUCKETS ? bucket : NUM_BUCKETS - 1;
}

/**
 * Weighted quickselect over ids[start .. end), all ranked after ids[0 .. start): keeps the
 * shortest best-first prefix whose mass reaches `target` (at least one token, counting
 * ids[0 .. start)). Partition around a pivot and continue only into the side holding the
 * crossing: O(end - start) expected. Returns the nucleus end: ids[0 .. kept) is kept.
 */
function keepMass(logits: Float32Array, ids: Int32Array, start: number, end: number, probs: Float64Array, target: number): number {
  if (start > 0 && target <= 0) return start;
  // Invariant: ids[start .. lo) rank before ids[lo .. hi], hold massBefore < target, and are
  // kept; ids(hi .. end) rank after and are dropped.
  let lo = start;
  let hi = end - 1;
  let massBefore = 0;
  while (lo <= hi) {
    const median = medianOfThree(logits, ids, lo, (lo + hi) >>> 1, hi);
    const pivotId = ids[median];
    ids[median] = ids[hi];
    ids[hi] = pivotId;
    // Lomuto partition: ids[lo .. pivotPos) rank before the pivot, ids(pivotPos .. hi] after.
    let pivotPos = lo;
    let massLeft = 0;
    const pivotValue = logits[pivotId];
    for (let j = lo; j < hi; j++) {
      // Branch-free like splitAtBucket: ranksBefore(id, pivotId) as 0/1.
      const id = ids[j];
      const x = logits[id];
      const before = +(x > pivotValue) | (+(x === pivotValue) & +(id < pivotId));
      ids[j] = ids[pivotPos];
      ids[pivotPos] = id;
      pivotPos += before;
      massLeft += before * probs[id];
    }
    ids[hi] = ids[pivotPos];
    ids[pivotPos] = pivotId;
    if (massBefore + massLeft >= target) {
      hi = pivotPos - 1;
    } else if (massBefore + massLeft + probs[pivotId] >= target) {
      return pivotPos + 1;
    } else {
      massBefore += massLeft + probs[pivotId];
      lo = pivotPos + 1;
    }
  }
  // Reached only when summation order rounds differently: ids[lo] (a former pivot that crossed
  // target) has mass before it < target, so it ends the nucleus.
  return Math.min(end, lo + 1);
}

function ranksBefore(logits: Float32Array, a: number, b: number): boolean {
  const va = logits[a];
  const vb = logits[b];
  return va > vb || (va === vb && a < b);
}

/** Position (i, j or k) of the median of ids[i], ids[j], ids[k]. */
function medianOfThree(logits: Float32Array, ids: Int32Array, i: number, j: number, k: number): number {
  const a = ids[i];
  const b = ids[j];
  const c = ids[k];
  if (ranksBefore(logits, a, b)) {
    if (ranksBefore(logits, b, c)) return j;
    return ranksBefore(logits, a, c) ? k : i;
  }
  if (ranksBefore(logits, a, c)) return i;
  return ranksBefore(logits, b, c) ? k : j;
}
