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

/**
 * Top-p over candidates ids[0 .. n) weighted by probs[id] (unnormalised; Z = their sum). The
 * nucleus is the shortest best-first prefix reaching topP * Z: the token ranked r is kept iff
 * the mass ranked before it is < topP * Z, so the best token always is. This equals vLLM's rule
 * (ascending cumsum of the renormalised probabilities, drop where cumsum <= 1 - topP).
 *
 * Weighted quickselect instead of a sort: partition around a pivot, and recurse only into the
 * side holding the token where the best-first cumulative mass crosses topP * Z. O(n) expected.
 * On return ids[0 .. kept) is the nucleus, in no particular order. Returns kept (>= 1).
 */
export function keepTopP(logits: Float32Array, ids: Int32Array, n: number, probs: Float64Array, topP: number): number {
  let z = 0;
  for (let j = 0; j < n; j++) z += probs[ids[j]];
  const target = topP * z;
  // Invariant: ids[0 .. lo) rank before ids[lo .. hi], hold massBefore < target, and are kept;
  // ids(hi .. n) rank after and are dropped.
  let lo = 0;
  let hi = n - 1;
  let massBefore = 0;
  while (lo <= hi) {
    const median = medianOfThree(logits, ids, lo, (lo + hi) >>> 1, hi);
    const pivotId = ids[median];
    ids[median] = ids[hi];
    ids[hi] = pivotId;
    // Lomuto partition: ids[lo .. pivotPos) rank before the pivot, ids(pivotPos .. hi] after.
    let pivotPos = lo;
    let massLeft = 0;
    for (let j = lo; j < hi; j++) {
      const id = ids[j];
      if (ranksBefore(logits, id, pivotId)) {
        ids[j] = ids[pivotPos];
        ids[pivotPos++] = id;
        massLeft += probs[id];
      }
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
  return Math.min(n, lo + 1);
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
