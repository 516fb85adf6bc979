// Top-k selection for the DSA indexer, in TypeScript: quickselect is O(T) per query row and was
// measured at ~33 us for 2048 of 8192 keys (DESIGN.md §2), cheaper than a graph round trip.

/**
 * Writes into `out` the positions of the k largest of scores[offset .. offset + count) (relative to
 * offset), in no particular order. Ties are broken towards the lower position so the choice is
 * deterministic. `work` must hold at least `count` entries. Returns k (clamped to count).
 */
export function selectTopK(scores: Float32Array, offset: number, count: number, k: number, work: Int32Array, out: Int32Array): number {
  const n = Math.min(k, count);
  for (let i = 0; i < count; i++) work[i] = i;
  if (n < count) {
    // better(a, b): a ranks before b.
    const better = (a: number, b: number) => {
      const sa = scores[offset + a];
      const sb = scores[offset + b];
      return sa > sb || (sa === sb && a < b);
    };
    let lo = 0;
    let hi = count - 1;
    // Invariant: the n best are work[0 .. n) once the partition point lands on n.
    while (lo < hi) {
      const pivot = work[(lo + hi) >>> 1];
      let i = lo;
      let j = hi;
      while (i <= j) {
        while (better(work[i], pivot)) i++;
        while (better(pivot, work[j])) j--;
        if (i <= j) {
          const t = work[i];
          work[i++] = work[j];
          work[j--] = t;
        }
      }
      if (n - 1 <= j) hi = j;
      else if (n - 1 >= i) lo = i;
      else break;
    }
  }
  for (let i = 0; i < n; i++) out[i] = work[i];
  return n;
}
