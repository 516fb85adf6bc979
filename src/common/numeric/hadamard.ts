// Orthonormal Walsh-Hadamard rotation (Sylvester order, scaled by n^-0.5), as DeepSeek-V3.2's
// indexer applies it to q and k before FP8 quantisation: orthogonal, so dot products are unchanged,
// while an outlier coordinate is spread over all n outputs (smaller amax, finer 8-bit steps).
//
// Any length n is accepted: the rotation is block diagonal over the binary decomposition of n,
// largest block first (n = 96 -> blocks of 64 and 32). For a power of two that is the single
// n x n Sylvester matrix of the reference; otherwise it is still exactly orthogonal and symmetric.

/** Block sizes of the rotation of length n (powers of two, descending, summing to n). */
export function hadamardBlocks(n: number): number[] {
  const blocks: number[] = [];
  for (let bit = 1 << 30; bit >= 1; bit >>>= 1) if (n & bit) blocks.push(bit);
  return blocks;
}

/**
 * In-place fast Walsh-Hadamard transform of each length-n row of `x` (x.length a multiple of n).
 * O(n log n) per row; computes in the array's precision (Float64Array for an exact-to-double reference).
 */
export function hadamardRotateRows(x: Float32Array | Float64Array, n: number): void {
  const blocks = hadamardBlocks(n);
  for (let row = 0; row < x.length; row += n) {
    let start = row;
    for (const size of blocks) {
      fwhtBlock(x, start, size);
      start += size;
    }
  }
}

// Every index below lies in [start, start + size), which the caller keeps within x (one row's block).
function fwhtBlock(x: Float32Array | Float64Array, start: number, size: number): void {
  for (let half = 1; half < size; half <<= 1) {
    for (let i = start; i < start + size; i += half << 1) {
      for (let j = i; j < i + half; j++) {
        const a = x[j]!;
        const b = x[j + half]!;
        x[j] = a + b;
        x[j + half] = a - b;
      }
    }
  }
  const scale = 1 / Math.sqrt(size);
  for (let j = start; j < start + size; j++) x[j]! *= scale;
}

/** The rotation as a dense row-major n x n matrix (symmetric: it is its own transpose and inverse). */
export function hadamardMatrix(n: number): Float32Array {
  const m = new Float32Array(n * n);
  let start = 0;
  for (const size of hadamardBlocks(n)) {
    const scale = 1 / Math.sqrt(size);
    for (let i = 0; i < size; i++) {
      // Sylvester: H[i][j] = (-1)^popcount(i & j)
      for (let j = 0; j < size; j++) m[(start + i) * n + start + j] = popcount(i & j) & 1 ? -scale : scale;
    }
    start += size;
  }
  return m;
}

function popcount(v: number): number {
  let c = 0;
  for (let x = v; x !== 0; x &= x - 1) c++;
  return c;
}
