// Row operations on float32 and quantised linear weights agree: selecting or stacking rows of a
// quantised weight gives exactly the quantisation of the selected float32 rows (blocks run along rows).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dequantizeMatrix, quantizeMatrix, type QuantizedMatrix } from '../../../src/engine/quant/block_quant.ts';
import { gatherRows, selectRows, stackRows } from '../../../src/engine/quant/rows.ts';
import { seededRandom } from '../../../tools/checkpoint/random_weights.ts';
import { isQuantized, type LinearWeight } from '../../../src/common/quantized.ts';
import { f16ToFloat32, float32ToF16, float32ToF16Into } from '../../../src/engine/checkpoint/dtype.ts';

const rng = seededRandom(21);
const f32 = (rows: number, cols: number): { data: Float32Array; shape: number[] } => ({
  data: Float32Array.from({ length: rows * cols }, () => rng.normal()),
  shape: [rows, cols],
});
const q = (w: { data: Float32Array; shape: readonly number[] }, bits: 4 | 8): QuantizedMatrix => quantizeMatrix(w.data, w.shape[0]!, w.shape[1]!, bits);
const asQ = (w: LinearWeight): QuantizedMatrix => {
  assert.ok(isQuantized(w));
  return w;
};
const asF = (w: LinearWeight): Float32Array => {
  assert.ok(!isQuantized(w));
  return w.data;
};

describe('row operations on linear weights', () => {
  const w = f32(10, 70); // a ragged last block per row
  const ranges = [
    [6, 9],
    [0, 2],
    [9, 10],
  ] as const;
  const picked = { data: Float32Array.from([6, 7, 8, 0, 1, 9].flatMap((r) => [...w.data.subarray(r * 70, (r + 1) * 70)])), shape: [6, 70] };

  it('selectRows: float32 rows in range order; quantised rows equal the quantised selection', () => {
    assert.deepEqual(asF(selectRows(w, ranges)), picked.data);
    for (const bits of [8, 4] as const) {
      const got = asQ(selectRows(q(w, bits), ranges));
      const want = q(picked, bits);
      assert.deepEqual([got.rows, got.cols, got.bits], [6, 70, bits]);
      assert.deepEqual(got.packed, want.packed);
      assert.deepEqual(got.scales, want.scales);
    }
  });

  it('selectRows with a scale: float32 values and quantised block scales are multiplied', () => {
    assert.deepEqual(
      asF(selectRows(w, ranges, 0.5)),
      picked.data.map((v) => v * 0.5),
    );
    const got = asQ(selectRows(q(w, 4), ranges, 0.37));
    const want = dequantizeMatrix(q(picked, 4)).map((v) => v * 0.37);
    const deq = dequantizeMatrix(got);
    for (let i = 0; i < want.length; i++) assert.ok(Math.abs(deq[i]! - want[i]!) <= 1e-6 * Math.abs(want[i]!) + 1e-12, `element ${i}`);
  });

  it('stackRows concatenates rows of float32 or of quantised weights, and refuses mixtures', () => {
    const a = f32(3, 70);
    const b = f32(2, 70);
    const both = { data: Float32Array.from([...a.data, ...b.data]), shape: [5, 70] };
    assert.deepEqual(asF(stackRows([a, b])), both.data);
    const got = asQ(stackRows([q(a, 8), q(b, 8)]));
    assert.deepEqual(got.packed, q(both, 8).packed);
    assert.deepEqual(got.scales, q(both, 8).scales);
    assert.throws(() => stackRows([a, q(b, 8)]), /mixed widths or kinds/);
    assert.throws(() => stackRows([q(a, 8), q(b, 4)]), /mixed bits/);
  });

  it('stackRows of weights adjacent in one buffer is a view of it; anything else is a copy', () => {
    const a = q(f32(3, 70), 4);
    const b = q(f32(2, 70), 4);
    const packed = new Uint8Array(a.packed.length + b.packed.length + 8);
    const scales = new Float32Array(a.scales.length + b.scales.length + 2);
    packed.set([...a.packed, ...b.packed], 8);
    scales.set([...a.scales, ...b.scales], 2);
    const inBuffer = (m: QuantizedMatrix, p: number, s: number): QuantizedMatrix => ({
      ...m,
      packed: packed.subarray(p, p + m.packed.length),
      scales: scales.subarray(s, s + m.scales.length),
    });
    const [va, vb] = [inBuffer(a, 8, 2), inBuffer(b, 8 + a.packed.length, 2 + a.scales.length)];
    const copied = asQ(stackRows([a, b]));
    const viewed = asQ(stackRows([va, vb]));
    assert.deepEqual([viewed.rows, viewed.cols, viewed.bits], [5, 70, 4]);
    assert.deepEqual(viewed.packed, copied.packed);
    assert.deepEqual(viewed.scales, copied.scales);
    assert.equal(viewed.packed.buffer, packed.buffer);
    assert.equal(viewed.scales.buffer, scales.buffer);
    // Out of order (b before a) or with a gap: copied, and still the rows in argument order.
    const swapped = asQ(stackRows([vb, va]));
    assert.notEqual(swapped.packed.buffer, packed.buffer);
    assert.deepEqual(swapped.packed, asQ(stackRows([b, a])).packed);
    const gap = asQ(stackRows([inBuffer(a, 0, 0), vb]));
    assert.notEqual(gap.packed.buffer, packed.buffer);
    const f = f32(5, 70);
    const fv = stackRows([
      { data: f.data.subarray(0, 210), shape: [3, 70] },
      { data: f.data.subarray(210), shape: [2, 70] },
    ]);
    assert.equal(asF(fv).buffer, f.data.buffer);
    assert.deepEqual(asF(fv), f.data);
  });

  it('gatherRows dequantises exactly the rows MatMulNBits would see', () => {
    for (const bits of [8, 4] as const) {
      const table = q(w, bits);
      const deq = dequantizeMatrix(table);
      const ids = [4, 0, 9, 4];
      const got = gatherRows(table, ids);
      ids.forEach((r, t) => assert.deepEqual(got.subarray(t * 70, (t + 1) * 70), deq.subarray(r * 70, (r + 1) * 70)));
    }
    assert.deepEqual(gatherRows(w, [2]), w.data.subarray(140, 210));
    const half = new Uint16Array(w.data.length);
    float32ToF16Into(w.data, half);
    const widened = gatherRows({ half, shape: [10, 70] }, [7, 1]);
    [7, 1].forEach((r, t) =>
      assert.deepEqual(
        widened.subarray(t * 70, (t + 1) * 70),
        w.data.subarray(r * 70, (r + 1) * 70).map((v) => f16ToFloat32(float32ToF16(v))),
      ),
    );
  });
});
