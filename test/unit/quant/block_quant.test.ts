import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { f16ToFloat32, float32ToF16 } from '../../../src/engine/checkpoint/dtype.ts';
import {
  dequantizeMatrix,
  kBlocks,
  quantizedBytes,
  quantizeMatrix,
  quantizeRowsInto,
  allocateQuantized,
  snapScale,
  type QuantBits,
} from '../../../src/engine/quant/block_quant.ts';
import { seededRandom } from '../../../tools/checkpoint/random_weights.ts';

// A plain reference written from the spec (MatMulNBits layout, Q8_0/Q4_0 scales), element by element.
function refSnap(s: number): number {
  const a = Math.abs(s);
  if (a < 2 ** -14 || a > 65504) return Math.fround(s);
  const h = f16ToFloat32(float32ToF16(Math.fround(s)));
  return Number.isFinite(h) ? h : Math.fround(s);
}

function roundHalfAway(v: number): number {
  return Math.sign(v) * Math.round(Math.abs(v)) || 0; // no -0
}

interface Ref {
  codes: number[][]; // [row][k] signed codes, padded to a multiple of 32
  scales: number[][]; // [row][block]
}

function refQuantize(data: Float32Array, rows: number, cols: number, bits: QuantBits): Ref {
  const nb = Math.ceil(cols / 32);
  const codes: number[][] = [];
  const scales: number[][] = [];
  for (let r = 0; r < rows; r++) {
    codes.push([]);
    scales.push([]);
    for (let b = 0; b < nb; b++) {
      const vals = Array.from({ length: 32 }, (_, i) => (b * 32 + i < cols ? data[r * cols + b * 32 + i]! : 0)); // r < rows, column < cols
      let m = 0;
      for (const v of vals) if (Math.abs(v) > Math.abs(m)) m = v;
      const s = m === 0 ? 0 : refSnap(bits === 8 ? Math.abs(m) / 127 : m / -8);
      scales[r]!.push(s);
      const [lo, hi] = bits === 8 ? [-127, 127] : [-8, 7];
      for (const v of vals) codes[r]!.push(s === 0 ? 0 : Math.min(hi, Math.max(lo, roundHalfAway(v / s))));
    }
  }
  return { codes, scales };
}

/** Unpacks MatMulNBits bytes back to signed codes, independently of the module's dequantiser. */
function unpack(packed: Uint8Array, rows: number, cols: number, bits: QuantBits): number[][] {
  const padded = Math.ceil(cols / 32) * 32;
  const out: number[][] = [];
  for (let r = 0; r < rows; r++) {
    const row: number[] = [];
    for (let k = 0; k < padded; k++) {
      if (bits === 8) row.push(packed[r * padded + k]! - 128);
      else {
        const byte = packed[(r * padded + k) >> 1]!;
        row.push((k % 2 === 0 ? byte & 15 : byte >> 4) - 8);
      }
    }
    out.push(row);
  }
  return out;
}

function randomMatrix(rows: number, cols: number, seed: number, scale = 1): Float32Array {
  const rng = seededRandom(seed);
  return Float32Array.from({ length: rows * cols }, () => rng.normal() * scale);
}

function checkBitExact(data: Float32Array, rows: number, cols: number, bits: QuantBits): void {
  const q = quantizeMatrix(data, rows, cols, bits);
  const ref = refQuantize(data, rows, cols, bits);
  assert.equal(q.packed.length + q.scales.byteLength, quantizedBytes(rows, cols, bits));
  assert.deepEqual(unpack(q.packed, rows, cols, bits), ref.codes, `codes bits=${bits} [${rows}, ${cols}]`);
  assert.deepEqual(Array.from(q.scales), ref.scales.flat(), `scales bits=${bits} [${rows}, ${cols}]`);
  const deq = dequantizeMatrix(q);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < cols; k++) {
      const want = Math.fround(ref.codes[r]![k]! * ref.scales[r]![(k / 32) | 0]!);
      assert.equal(deq[r * cols + k], want, `dequantised [${r}, ${k}]`);
    }
  }
}

describe('block quantisation (MatMulNBits layout)', () => {
  for (const bits of [8, 4] as const) {
    it(`int${bits}: bit-exact against the reference, K a multiple of 32 and ragged`, () => {
      for (const [rows, cols] of [
        [3, 64],
        [2, 37],
        [4, 5],
        [1, 100],
        [5, 32],
      ] as const) {
        checkBitExact(randomMatrix(rows, cols, rows * 100 + cols), rows, cols, bits);
      }
    });

    it(`int${bits}: all-zero blocks get scale 0 and the zero-point code`, () => {
      const data = randomMatrix(2, 96, 3);
      data.fill(0, 32, 64); // row 0, block 1
      data.fill(0, 96, 192); // all of row 1
      checkBitExact(data, 2, 96, bits);
      const q = quantizeMatrix(data, 2, 96, bits);
      assert.deepEqual([q.scales[1], q.scales[3], q.scales[4], q.scales[5]], [0, 0, 0, 0]);
      const blob = bits * 4;
      assert.ok(q.packed.subarray(blob, 2 * blob).every((b) => b === (bits === 8 ? 128 : 0x88)));
    });

    it(`int${bits}: extremes (huge, tiny, subnormal, one-hot blocks, ties) stay bit-exact`, () => {
      const cols = 32;
      const rows: number[][] = [
        Array.from({ length: cols }, (_, i) => (i === 7 ? 3.0e38 : i - 16)), // scale above float16 range
        Array.from({ length: cols }, (_, i) => (i === 3 ? -1e-30 : 1e-31 * i)), // scale below float16 range
        Array.from({ length: cols }, (_, i) => (i % 2 ? 1e-45 : -1e-45)), // float32 subnormals
        Array.from({ length: cols }, (_, i) => (i === 0 ? 5 : 0)), // one non-zero value
        Array.from({ length: cols }, (_, i) => (i === 31 ? -8 : i === 30 ? 8 : (i - 15) * 0.5)), // int4: +-max, halves
        Array.from({ length: cols }, (_, i) => (i === 0 ? 127 : i - 16 + 0.5)), // int8: exact .5 ties
        Array.from({ length: cols }, () => 65504 * 127), // scale at the float16 maximum
      ];
      const data = Float32Array.from(rows.flat());
      checkBitExact(data, rows.length, cols, bits);
    });

    // int4's range is [-8, 7]: a value of the opposite sign to the block's maximum may be a full step off.
    it(`int${bits}: the error is at most half a step (int4 clamped at +7: one step), plus the float16 snap`, () => {
      const [rows, cols] = [8, 200];
      const data = randomMatrix(rows, cols, 11, 0.02);
      const q = quantizeMatrix(data, rows, cols, bits);
      const deq = dequantizeMatrix(q);
      for (let i = 0; i < data.length; i++) {
        const s = q.scales[Math.floor(i / cols) * kBlocks(cols) + Math.floor((i % cols) / 32)]!;
        const step = bits === 4 && data[i]! / s > 7.5 ? 1 : 0.5;
        assert.ok(Math.abs(deq[i]! - data[i]!) <= Math.abs(s) * step + Math.abs(data[i]!) * 2 ** -10, `element ${i}`);
      }
    });
  }

  it('chunked rows give the same bytes as the whole matrix', () => {
    const [rows, cols] = [7, 70];
    const data = randomMatrix(rows, cols, 5);
    for (const bits of [8, 4] as const) {
      const whole = quantizeMatrix(data, rows, cols, bits);
      const chunked = allocateQuantized(rows, cols, bits);
      quantizeRowsInto(chunked, 0, data.subarray(0, 3 * cols));
      quantizeRowsInto(chunked, 3, data.subarray(3 * cols));
      assert.deepEqual(chunked.packed, whole.packed);
      assert.deepEqual(chunked.scales, whole.scales);
    }
  });

  it('int4 uses the signed value of largest magnitude: a negative maximum gives a positive scale', () => {
    const data = Float32Array.from({ length: 32 }, (_, i) => (i === 4 ? -2 : 1));
    const q = quantizeMatrix(data, 1, 32, 4);
    assert.equal(q.scales[0], 0.25);
    assert.equal(q.packed[2]! & 15, 0); // element 4 -> code -8 -> nibble 0
    assert.equal(dequantizeMatrix(q)[4], -2);
  });

  it('rejects non-finite values, naming the row and columns', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const data = new Float32Array(2 * 40).fill(1);
      data[40 + 33] = bad;
      for (const bits of [8, 4] as const) {
        assert.throws(() => quantizeMatrix(data, 2, 40, bits), /non-finite value in row 1, columns 32\.\.39/);
      }
    }
  });

  it('snapScale rounds to float16 only inside its normal range', () => {
    assert.equal(snapScale(1 + 2 ** -12), 1);
    assert.equal(snapScale(1 + 3 * 2 ** -12), 1 + 2 ** -10);
    assert.equal(snapScale(-(1 + 3 * 2 ** -12)), -(1 + 2 ** -10));
    assert.equal(snapScale(1e-6), Math.fround(1e-6));
    assert.equal(snapScale(70000.3), Math.fround(70000.3));
    assert.equal(snapScale(65503.9), 65504);
    assert.equal(snapScale(65519), 65519); // above float16's maximum: kept as float32
  });
});
