// The routed-experts graph against a plain float64 reference, on a batch where every token's k rows
// must be summed (repeated: a racy reduction would make some runs differ).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildRoutedExpertsGraph, dispatch, dispatchGroup, expertGroups, type ExpertDispatch } from '../../../src/engine/model/moe.ts';
import type { MoeConfig, MoeWeights, Tensor } from '../../../src/engine/checkpoint/types.ts';
import { floatTensor, GraphSession, int32Tensor, int64Tensor } from '../../../src/engine/onnx/session.ts';
import { seededRandom } from '../../../tools/checkpoint/random_weights.ts';
import { at } from '../../helpers/at.ts';

const D = 256;
const I = 128;
const E = 8;
const K = 2;
const N = 400;
const rng = seededRandom(3);
const tensor = (shape: [number, number]): Tensor => ({
  data: Float32Array.from({ length: shape[0] * shape[1] }, () => rng.normal() / Math.sqrt(shape[1])),
  shape,
});

test('routed experts equal a float64 reference, run after run', async () => {
  const moe = { moeIntermediateSize: I, numExpertsPerTok: K } as MoeConfig;
  const experts = Array.from({ length: E }, () => ({ gateProj: tensor([I, D]), upProj: tensor([I, D]), downProj: tensor([D, I]) }));
  const weights = { gate: tensor([E, D]), eScoreCorrectionBias: null, experts, sharedExperts: null } as MoeWeights;
  const session = await GraphSession.create('routed', buildRoutedExpertsGraph(D, moe, 0, weights));
  const x = Float32Array.from({ length: N * D }, () => rng.normal());
  const h = Float32Array.from({ length: N * D }, () => rng.normal());
  const chosen = Int32Array.from({ length: N * K }, (_, i) => ((i >> 1) * 5 + (i & 1) * 3) % E); // two distinct experts per token
  const routeWeights = Float32Array.from({ length: N * K }, () => rng.uniform());
  const d = dispatch(chosen, routeWeights, E, K);
  const expected = new Float64Array(h);
  for (let t = 0; t < N; t++) {
    for (let j = 0; j < K; j++) {
      const e = experts[chosen[t * K + j]!]!;
      const act = new Float64Array(I);
      for (let r = 0; r < I; r++) {
        let g = 0;
        let u = 0;
        for (let c = 0; c < D; c++) {
          g += e.gateProj.data[r * D + c]! * x[t * D + c]!;
          u += e.upProj.data[r * D + c]! * x[t * D + c]!;
        }
        act[r] = (g / (1 + Math.exp(-g))) * u;
      }
      for (let c = 0; c < D; c++) {
        let y = 0;
        for (let r = 0; r < I; r++) y += e.downProj.data[c * I + r]! * act[r]!;
        expected[t * D + c]! += routeWeights[t * K + j]! * y;
      }
    }
  }
  const M = d.rows.length;
  const feed = {
    x: floatTensor(x, [N, D]),
    h: floatTensor(h, [N, D]),
    rows: int32Tensor(d.rows, [M]),
    sizes: int64Tensor(d.sizes, [E]),
    w: floatTensor(d.weights, [M, 1]),
    inverse: int32Tensor(d.inverse, [M]),
  };
  let first: Float32Array | null = null;
  for (let run = 0; run < 8; run++) {
    const [out] = await session.run(feed, ['h_out']);
    assert.ok(out);
    let maxDiff = 0;
    for (let i = 0; i < out.length; i++) maxDiff = Math.max(maxDiff, Math.abs(out[i]! - expected[i]!));
    assert.ok(maxDiff < 1e-4, `run ${run}: max |diff| ${maxDiff}`);
    if (first === null) first = out;
    else assert.deepEqual(out, first, `run ${run} differs bitwise from run 0`);
  }
  await session.release();
});

test("a layer split into expert ranges (protobuf 2 GiB limit) gives the single graph's output", async () => {
  const moe = { moeIntermediateSize: I, numExpertsPerTok: K } as MoeConfig;
  const experts = Array.from({ length: E }, () => ({ gateProj: tensor([I, D]), upProj: tensor([I, D]), downProj: tensor([D, I]) }));
  const weights = { gate: tensor([E, D]), eScoreCorrectionBias: null, experts, sharedExperts: null } as MoeWeights;
  const perExpert = 3 * I * D * 4;
  const ranges = expertGroups(weights, 3 * perExpert); // 8 experts, 3 per graph
  assert.deepEqual(ranges, [
    [0, 3],
    [3, 6],
    [6, 8],
  ]);
  assert.deepEqual(expertGroups(weights), [[0, E]]);
  const n = 50;
  const x = Float32Array.from({ length: n * D }, () => rng.normal());
  const h = Float32Array.from({ length: n * D }, () => rng.normal());
  const chosen = Int32Array.from({ length: n * K }, (_, i) => ((i >> 1) * 3 + (i & 1) * 5) % E);
  const d = dispatch(
    chosen,
    Float32Array.from({ length: n * K }, () => rng.uniform()),
    E,
    K,
  );
  const feed = (part: ExpertDispatch, hIn: Float32Array) => ({
    x: floatTensor(x, [n, D]),
    h: floatTensor(hIn, [n, D]),
    rows: int32Tensor(part.rows, [part.rows.length]),
    sizes: int64Tensor(part.sizes, [part.sizes.length]),
    w: floatTensor(part.weights, [part.rows.length, 1]),
    inverse: int32Tensor(part.inverse, [part.inverse.length]),
  });
  const whole = await GraphSession.create('whole', buildRoutedExpertsGraph(D, moe, 0, weights));
  const [want] = await whole.run(feed(d, h), ['h_out']);
  await whole.release();
  let out: Float32Array = h;
  for (const [e0, e1] of ranges) {
    const part = dispatchGroup(d, e0, e1);
    assert.ok(part.inverse.every((r) => r <= part.rows.length));
    const s = await GraphSession.create(`part_${e0}`, buildRoutedExpertsGraph(D, moe, 0, weights, [e0, e1]));
    out = at(await s.run(feed(part, out), ['h_out']), 0, 'output');
    await s.release();
  }
  let maxDiff = 0;
  for (let i = 0; i < out.length; i++) maxDiff = Math.max(maxDiff, Math.abs(out[i]! - want![i]!));
  assert.ok(maxDiff < 1e-5, `max |split - whole| ${maxDiff}`);
});
