// Partial selection over a logits row without sorting the vocabulary: argmax, top-k by heap or
// quickselect, and the weighted quickselect behind top-p. Order everywhere: larger value first,
// ties to the lower token id (so every choice is deterministic); NaN ranks last.
import { EngineError } from './errors.ts';

/** a ranks strictly before b: a strict total order over ids, NaN below every number. */
function better(values: Float32Array, a: number, b: number): boolean {
  const va = values[a]!;
  const vb = values[b]!;
  if (va > vb) return true;
  if (va < vb) return false;
  if (va === vb) return a < b;
  return Number.isNaN(va) ? Number.isNaN(vb) && a < b : true;
}

/**
 * Index of the largest value, lowest id on ties. A row holding NaN or +Infinity, or nothing above
 * -Infinity, is a model or masking bug, not a token: throws DSV_ERR_INTERNAL.
 */
export function argmax(values: Float32Array): number {
  let best = -1;
  let bestValue = -Infinity;
  let numNaN = 0;
  for (let i = 0; i < values.length; i++) {
    const x = values[i]!;
    // One comparison on the common path: !(x <= bestValue) holds for a new max or for NaN.
    if (!(x <= bestValue)) {
      if (Number.isNaN(x)) numNaN++;
      else {
        bestValue = x;
        best = i;
      }
    }
  }
  if (best < 0 || numNaN > 0 || bestValue === Infinity) {
    throw new EngineError('DSV_ERR_INTERNAL', `cannot sample: logits row has ${numNaN} NaN of ${values.length} and maximum ${bestValue}`);
  }
  return best;
}

/**
 * Writes into out[0 .. k) the ids of the k best entries of the whole row, in heap order (not
 * sorted). A size-k min-heap keeps the worst kept entry at the root, so most entries cost one
 * comparison: O(V) for small k, O(V log k) worst case. Returns min(k, values.length).
 */
export function topKOfRow(values: Float32Array, k: number, out: Int32Array): number {
  const n = Math.min(k, values.length);
  if (n === 0) return 0;
  for (let i = 0; i < n; i++) out[i] = i;
  for (let i = (n >> 1) - 1; i >= 0; i--) siftDown(values, out, n, i);
  let rootValue = values[out[0]!]!;
  // Scanning ids upwards, an equal value never beats the root, so ties keep the lower id.
  for (let i = nextNotBelow(values, n, rootValue); i < values.length; i = nextNotBelow(values, i + 1, rootValue)) {
    if (better(values, i, out[0]!)) {
      out[0] = i;
      siftDown(values, out, n, 0);
      rootValue = values[out[0]]!;
    }
  }
  return n;
}

/**
 * First i >= from with !(values[i] <= threshold): above it, or NaN. A separate call-free loop:
 * with the heap update in the same loop V8 reloads the typed array's bounds every iteration,
 * which measured 5x slower.
 */
function nextNotBelow(values: Float32Array, from: number, threshold: number): number {
  let i = from;
  while (i < values.length && values[i]! <= threshold) i++;
  return i;
}

/** Min-heap (worst at the root) over out[0 .. n). */
function siftDown(values: Float32Array, heap: Int32Array, n: number, i: number): void {
  const item = heap[i]!;
  for (;;) {
    const left = 2 * i + 1;
    if (left >= n) break;
    const right = left + 1;
    const worse = right < n && better(values, heap[left]!, heap[right]!) ? right : left;
    if (!better(values, item, heap[worse]!)) break;
    heap[i] = heap[worse]!;
    i = worse;
  }
  heap[i] = item;
}

/**
 * Reorders ids[0 .. n) so that ids[0 .. k) are the k best (in no particular order), by
 * quickselect: O(n) expected. Returns min(k, n).
 */
export function selectTopK(values: Float32Array, ids: Int32Array, n: number, k: number): number {
  if (k >= n) return n;
  let lo = 0;
  let hi = n - 1;
  // Invariant: the k best lie in ids[0 .. hi] and ids[0 .. lo) are among them.
  while (lo < hi) {
    const pivot = ids[medianOfThree(values, ids, lo, (lo + hi) >>> 1, hi)]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (better(values, ids[i]!, pivot)) i++;
      while (better(values, pivot, ids[j]!)) j--;
      if (i <= j) {
        const t = ids[i]!;
        ids[i++] = ids[j]!;
        ids[j--] = t;
      }
    }
    // Now ids[lo .. j] rank at or before the pivot and ids[i .. hi] at or after it.
    if (k - 1 <= j) hi = j;
    else if (k - 1 >= i) lo = i;
    else break;
  }
  return k;
}

/**
 * Weighted quickselect over ids[start .. end), all ranked after ids[0 .. start): keeps the
 * shortest best-first prefix whose mass (probs[id]) reaches `target`, i.e. a token is kept iff
 * the mass ranked before it (from ids[start]) is < target; at least one token counting
 * ids[0 .. start). Partitions around a pivot and continues only into the side holding the
 * crossing: O(end - start) expected. Returns kept: ids[0 .. kept) is the prefix, unordered.
 * The rows must be NaN-free (argmax has rejected NaN before any filter runs).
 */
export function selectMassPrefix(values: Float32Array, ids: Int32Array, start: number, end: number, probs: Float64Array, target: number): number {
  if (start > 0 && target <= 0) return start;
  // Invariant: ids[start .. lo) rank before ids[lo .. hi], hold massBefore < target, and are
  // kept; ids(hi .. end) rank after and are dropped.
  let lo = start;
  let hi = end - 1;
  let massBefore = 0;
  while (lo <= hi) {
    const median = medianOfThree(values, ids, lo, (lo + hi) >>> 1, hi);
    const pivotId = ids[median]!;
    ids[median] = ids[hi]!;
    ids[hi] = pivotId;
    const pivotPos = partitionBefore(values, ids, lo, hi, pivotId);
    ids[hi] = ids[pivotPos]!;
    ids[pivotPos] = pivotId;
    const massLeft = sumMass(ids, lo, pivotPos, probs);
    if (massBefore + massLeft >= target) {
      hi = pivotPos - 1;
    } else if (massBefore + massLeft + probs[pivotId]! >= target) {
      return pivotPos + 1;
    } else {
      massBefore += massLeft + probs[pivotId]!;
      lo = pivotPos + 1;
    }
  }
  // Reached only when summation order rounds differently: ids[lo] (a former pivot that crossed
  // target) has mass before it < target, so it ends the prefix.
  return Math.min(end, lo + 1);
}

/**
 * Lomuto partition of ids[lo .. hi) around pivotId: returns p with ids[lo .. p) ranked before
 * the pivot and ids[p .. hi) after. Branch-free (the swap is unconditional, the test only moves
 * p): on flat distributions the test is a coin flip the CPU cannot predict.
 */
function partitionBefore(values: Float32Array, ids: Int32Array, lo: number, hi: number, pivotId: number): number {
  const pivotValue = values[pivotId]!;
  let p = lo;
  for (let j = lo; j < hi; j++) {
    const id = ids[j]!;
    const x = values[id]!;
    ids[j] = ids[p]!;
    ids[p] = id;
    p += +(x > pivotValue) | (+(x === pivotValue) & +(id < pivotId));
  }
  return p;
}

function sumMass(ids: Int32Array, from: number, to: number, probs: Float64Array): number {
  let z = 0;
  for (let j = from; j < to; j++) z += probs[ids[j]!]!;
  return z;
}

/** Position (i, j or k) of the median of ids[i], ids[j], ids[k]. */
function medianOfThree(values: Float32Array, ids: Int32Array, i: number, j: number, k: number): number {
  const a = ids[i]!;
  const b = ids[j]!;
  const c = ids[k]!;
  if (better(values, a, b)) {
    if (better(values, b, c)) return j;
    return better(values, a, c) ? k : i;
  }
  if (better(values, a, c)) return i;
  return better(values, b, c) ? k : j;
}

/** Sorts ids[0 .. n) best first. */
export function sortBest(values: Float32Array, ids: Int32Array, n: number): void {
  ids.subarray(0, n).sort((a, b) => (better(values, a, b) ? -1 : better(values, b, a) ? 1 : 0));
}
