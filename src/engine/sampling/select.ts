// Partial selection over a logits row without sorting the vocabulary. Order everywhere: larger
// value first, ties to the lower token id (so every choice is deterministic); NaN ranks last.
import { EngineError } from '../errors.ts';

/** a ranks strictly before b: a strict total order over ids, NaN below every number. */
function better(values: Float32Array, a: number, b: number): boolean {
  const va = values[a];
  const vb = values[b];
  if (va > vb) return true;
  if (va < vb) return false;
  if (va === vb) return a < b;
  return va !== va ? vb !== vb && a < b : true;
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
    const x = values[i];
    // One comparison on the common path: !(x <= bestValue) holds for a new max or for NaN.
    if (!(x <= bestValue)) {
      if (x !== x) numNaN++;
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
  let rootValue = values[out[0]];
  // Scanning ids upwards, an equal value never beats the root, so ties keep the lower id.
  for (let i = nextNotBelow(values, n, rootValue); i < values.length; i = nextNotBelow(values, i + 1, rootValue)) {
    if (better(values, i, out[0])) {
      out[0] = i;
      siftDown(values, out, n, 0);
      rootValue = values[out[0]];
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
  while (i < values.length && values[i] <= threshold) i++;
  return i;
}

/** Min-heap (worst at the root) over out[0 .. n). */
function siftDown(values: Float32Array, heap: Int32Array, n: number, i: number): void {
  const item = heap[i];
  for (;;) {
    const left = 2 * i + 1;
    if (left >= n) break;
    const right = left + 1;
    const worse = right < n && better(values, heap[left], heap[right]) ? right : left;
    if (!better(values, item, heap[worse])) break;
    heap[i] = heap[worse];
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
    const pivot = medianOfThree(values, ids[lo], ids[(lo + hi) >>> 1], ids[hi]);
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (better(values, ids[i], pivot)) i++;
      while (better(values, pivot, ids[j])) j--;
      if (i <= j) {
        const t = ids[i];
        ids[i++] = ids[j];
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

function medianOfThree(values: Float32Array, a: number, b: number, c: number): number {
  if (better(values, a, b)) {
    if (better(values, b, c)) return b;
    return better(values, a, c) ? c : a;
  }
  if (better(values, a, c)) return a;
  return better(values, b, c) ? c : b;
}

/** Sorts ids[0 .. n) best first. */
export function sortBest(values: Float32Array, ids: Int32Array, n: number): void {
  ids.subarray(0, n).sort((a, b) => (better(values, a, b) ? -1 : better(values, b, a) ? 1 : 0));
}
