import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hadamardBlocks, hadamardMatrix, hadamardRotateRows } from '../../../src/common/numeric/hadamard.ts';
import { spreadValues } from './ort_cast.ts';

/** y = x @ M (row vectors), the plain O(n^2) reference. */
function matVec(m: Float32Array, x: Float64Array, n: number): Float64Array {
  const y = new Float64Array(n);
  for (let j = 0; j < n; j++) for (let i = 0; i < n; i++) y[j]! += x[i]! * m[i * n + j]!;
  return y;
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
};

describe('Hadamard rotation', () => {
  it('is the Sylvester matrix scaled by n^-0.5 for a power of two', () => {
    const h4 = hadamardMatrix(4);
    const s = 0.5;
    assert.deepEqual([...h4], [s, s, s, s, s, -s, s, -s, s, s, -s, -s, s, -s, -s, s]);
  });

  for (const n of [1, 2, 8, 16, 64, 128, 96, 80, 3]) {
    it(`n = ${n}: orthogonal, symmetric, and the fast transform equals the matrix product`, () => {
      const m = hadamardMatrix(n);
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          let dot = 0;
          for (let k = 0; k < n; k++) dot += m[i * n + k]! * m[j * n + k]!;
          assert.ok(Math.abs(dot - (i === j ? 1 : 0)) < 1e-6, `(H H^T)[${i}][${j}] = ${dot}`);
          assert.equal(m[i * n + j], m[j * n + i]);
        }
      }
      const rows = 3;
      const x = Float64Array.from(spreadValues(rows * n, -4, 4, n));
      const fast = Float64Array.from(x);
      hadamardRotateRows(fast, n);
      for (let r = 0; r < rows; r++) {
        const ref = matVec(m, x.subarray(r * n, (r + 1) * n), n);
        assert.ok(maxAbsDiff(fast.subarray(r * n, (r + 1) * n), ref) < 1e-5, `row ${r}`);
      }
      hadamardRotateRows(fast, n);
      assert.ok(maxAbsDiff(fast, x) < 1e-12, 'its own inverse');
    });
  }

  it('decomposes any length into descending powers of two', () => {
    assert.deepEqual(hadamardBlocks(128), [128]);
    assert.deepEqual(hadamardBlocks(96), [64, 32]);
    assert.deepEqual(hadamardBlocks(7), [4, 2, 1]);
  });

  it('spreads an outlier over every coordinate and keeps dot products', () => {
    const n = 64;
    const x = new Float64Array(n);
    x[5] = 10;
    hadamardRotateRows(x, n);
    for (const v of x) assert.ok(Math.abs(Math.abs(v) - 10 / 8) < 1e-12);
    const a = Float64Array.from(spreadValues(n, -2, 2, 11));
    const b = Float64Array.from(spreadValues(n, -2, 2, 12));
    const dot = (p: Float64Array, q: Float64Array): number => p.reduce((s, v, i) => s + v * q[i]!, 0);
    const before = dot(a, b);
    hadamardRotateRows(a, n);
    hadamardRotateRows(b, n);
    assert.ok(Math.abs(dot(a, b) - before) < 1e-9 * Math.max(1, Math.abs(before)));
  });
});
