// MatMulNBits graphs against the same graphs with the dequantised float32 weights: accuracy level 0
// must agree to float32 rounding (this pins the layout: block order, nibble order, zero points, padding);
// level 4 quantises the activations to int8 per block, so it agrees to ~1e-2 relative.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DataType, GraphBuilder } from '../../../src/engine/onnx/graph_builder.ts';
import { linear, QUANT_ACCURACY_LEVEL, quantizedLinear, type AccuracyLevel } from '../../../src/engine/onnx/ops.ts';
import { floatTensor, GraphSession } from '../../../src/engine/onnx/session.ts';
import { dequantizeMatrix, quantizeMatrix, type QuantBits, type QuantizedMatrix } from '../../../src/engine/quant/block_quant.ts';
import { seededRandom } from '../../../tools/checkpoint/random_weights.ts';
import type { Tensor } from '../../../src/common/tensor.ts';
import { at } from '../../helpers/at.ts';
import { relativeRms } from '../../helpers/relative_rms.ts';

const rng = seededRandom(17);
const matrix = (rows: number, cols: number): Tensor => ({
  data: Float32Array.from({ length: rows * cols }, () => rng.normal() / Math.sqrt(cols)),
  shape: [rows, cols],
});

interface SwiGlu<W> {
  readonly gate: W;
  readonly up: W;
  readonly down: W;
}

/** down(silu(gate(x)) * up(x)) with x [M, D]; `lin` decides how each weight is applied. */
function swiGluGraph<W>(D: number, w: SwiGlu<W>, lin: (g: GraphBuilder, x: string, w: W) => string): Uint8Array {
  const g = new GraphBuilder('swiglu');
  const x = g.input('x', DataType.FLOAT, ['M', D]);
  const a = lin(g, x, w.gate);
  const act = g.node('Mul', [g.node('Mul', [a, g.node('Sigmoid', [a])]), lin(g, x, w.up)]);
  g.markOutput(lin(g, act, w.down), 'y', DataType.FLOAT, ['M', D]);
  return g.build();
}

async function run(model: Uint8Array, x: Float32Array, M: number, D: number): Promise<Float32Array> {
  const session = await GraphSession.create('t', model, { numThreads: 1 });
  try {
    return at(await session.run({ x: floatTensor(x, [M, D]) }, ['y']), 0, 'output');
  } finally {
    await session.release();
  }
}

describe('MatMulNBits vs Gemm on the dequantised weights', () => {
  // D and I not multiples of 32: every row ends in a padded block.
  for (const [D, I] of [
    [96, 160],
    [100, 75],
  ] as const) {
    for (const bits of [8, 4] as const satisfies readonly QuantBits[]) {
      const f32 = { gate: matrix(I, D), up: matrix(I, D), down: matrix(D, I) };
      const q = {
        gate: quantizeMatrix(f32.gate.data, I, D, bits),
        up: quantizeMatrix(f32.up.data, I, D, bits),
        down: quantizeMatrix(f32.down.data, D, I, bits),
      };
      const deq = (m: QuantizedMatrix): Tensor => ({ data: dequantizeMatrix(m), shape: [m.rows, m.cols] });
      const reference = swiGluGraph(D, { gate: deq(q.gate), up: deq(q.up), down: deq(q.down) }, linear);
      for (const level of [0, 4] as const satisfies readonly AccuracyLevel[]) {
        const quantized = swiGluGraph<QuantizedMatrix>(D, q, (g, x, w) => quantizedLinear(g, x, w, level));
        for (const M of [1, 37]) {
          it(`D=${D} I=${I} int${bits} accuracy_level ${level} M=${M}`, async () => {
            const x = Float32Array.from({ length: M * D }, () => rng.normal());
            const want = await run(reference, x, M, D);
            const got = await run(quantized, x, M, D);
            const rel = relativeRms(got, want);
            assert.ok(rel < (level === 0 ? 1e-5 : 2e-2), `relative error ${rel}`);
          });
        }
      }
    }
  }
});

describe('linear() on a quantised weight', () => {
  it('is MatMulNBits at QUANT_ACCURACY_LEVEL (same output as quantizedLinear at that level)', async () => {
    const [D, I] = [64, 96];
    const w = quantizeMatrix(matrix(I, D).data, I, D, 4);
    const build = (apply: (g: GraphBuilder, x: string) => string): Uint8Array => {
      const g = new GraphBuilder('one');
      g.markOutput(apply(g, g.input('x', DataType.FLOAT, ['M', D])), 'y', DataType.FLOAT, ['M', I]);
      return g.build();
    };
    const x = Float32Array.from({ length: 3 * D }, () => rng.normal());
    const viaLinear = await run(
      build((g, xi) => linear(g, xi, w)),
      x,
      3,
      D,
    );
    const direct = await run(
      build((g, xi) => quantizedLinear(g, xi, w, QUANT_ACCURACY_LEVEL)),
      x,
      3,
      D,
    );
    assert.equal(viaLinear.length, 3 * I);
    assert.deepEqual(viaLinear, direct);
  });
});
