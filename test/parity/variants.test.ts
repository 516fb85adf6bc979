// Architecture variants: the engine against an independent float64 reference (test/helpers/reference_model.ts)
// on small generated checkpoints. The reference is first validated against the shared fixture's golden data.
//
// Tolerance: 1e-4 absolute on logits everywhere (a correct float32 engine lands near 1e-5). Discrete decisions
// (indexer top-k, expert routing, greedy argmax) are never loosened: every run asserts that the reference's
// smallest decision margin is >= MIN_MARGIN (indexer: boundary gap relative to the row's max |score|; routing: in
// router score units; argmax: in logits, 10x TOL), far above the engine's float32 noise (~1e-6 relative), so a
// mismatch can only be a real discrepancy. Seeds were chosen for healthy margins (see VARIANTS).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import type { LoadedModel } from '../../src/engine/checkpoint/types.ts';
import { loadModel } from '../../src/engine/checkpoint/weights.ts';
import { namedTensors } from '../helpers/named_tensors.ts';
import { randomCheckpoint, tinyHfConfig, writeCheckpoint, type HostTensor, type TinyOptions, type WriteDType } from '../helpers/checkpoint_writer.ts';
import { FIXTURE_DIR, Golden } from '../helpers/golden.ts';
import { argmaxRow, referenceForward, type ReferenceResult } from '../helpers/reference_model.ts';
import { assertMargins, compareGreedy, GREEDY_STEPS, maxAbs, PROMPT, runEngine, TOL, VARIANTS, writeVariant } from '../helpers/variants.ts';

const root = mkdtempSync(path.join(tmpdir(), 'dsv-variants-'));
after(() => rmSync(root, { recursive: true, force: true }));

function rms(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * a[i]!;
  return Math.sqrt(s / a.length);
}

// ---------------------------------------------------------------------------------------------------------------
// 1. The reference itself against the golden fixture

describe('reference model vs tiny-dsv32 golden', () => {
  const golden = new Golden();
  const model = loadModel(FIXTURE_DIR);

  test('prefill logits of all five prompts (float64 vs float64-rounded-to-float32), indexer scores and top-k sets', () => {
    golden.json.prompts.forEach((prompt, p) => {
      const ref = referenceForward(model, prompt);
      const d = maxAbs(ref.logits, golden.floats(`prefill_logits.p${p}`));
      assert.ok(d < TOL, `prompt ${p}: reference prefill logits differ from golden by ${d}`);
      // Both sides are float64 computations of the same values; golden is rounded to float32 (|logit| < 16 here,
      // half an ulp <= 4.8e-7), so anything above 1e-6 would be a (small) modelling difference, not rounding.
      assert.ok(d < 1e-6, `prompt ${p}: ${d} is more than float32 rounding of the golden`);
      const expected = golden.json.topk_last[p]!;
      assert.equal(ref.lastSelections!.length, Object.keys(expected).length);
      ref.lastSelections!.forEach((sel, l) => assert.deepEqual(sel, expected[String(l)]!, `prompt ${p} layer ${l} top-k set`));
      // Raw indexer scores of the last position (content-dependent parts show only at ~1e-5 relative here).
      ref.lastIndexerScores!.forEach((scores, l) => {
        const g = golden.floats(`indexer_scores_last.p${p}.layer${l}`);
        const scale = Math.max(...Array.from(g, Math.abs));
        const ds = maxAbs(scores, g);
        assert.ok(ds <= 1e-6 * scale, `prompt ${p} layer ${l}: indexer scores differ by ${ds} (max |score| ${scale})`);
      });
    });
  });

  test('greedy step logits: reference on prompt + golden greedy tokens', () => {
    golden.json.prompts.forEach((prompt, p) => {
      const tokens = golden.ints(`greedy_tokens.p${p}`);
      const ref = referenceForward(model, [...prompt, ...tokens.slice(0, -1)]);
      const V = ref.vocab;
      const steps = golden.floats(`greedy_step_logits.p${p}`);
      const d = maxAbs(ref.logits, steps, (prompt.length - 1) * V, 0, steps.length);
      assert.ok(d < 1e-6, `prompt ${p}: reference greedy-step logits differ from golden by ${d}`);
      tokens.forEach((t, n) => assert.equal(argmaxRow(ref.logits, V, prompt.length - 1 + n), t, `prompt ${p} greedy token ${n}`));
    });
  });
});

// ---------------------------------------------------------------------------------------------------------------
// 2. Architecture variants: engine vs reference

describe('architecture variants: engine vs float64 reference', () => {
  for (const v of VARIANTS) {
    test(v.name, async (t) => {
      const dir = writeVariant(root, v, v.name);
      const loaded = loadModel(dir);
      v.check?.(loaded, dir);
      const hasIndexer = loaded.config.indexer !== null;
      const r = await runEngine(dir, PROMPT, GREEDY_STEPS, {}, hasIndexer);
      const ref = referenceForward(loaded, [...PROMPT, ...r.tokenIds.slice(0, -1)]);
      compareGreedy(t, r, ref, PROMPT, v.name);
      if (hasIndexer) {
        const topk = loaded.config.indexer!.topk;
        assert.ok(PROMPT.length > topk);
        const expected = ref.selections!.map((rows) => rows[PROMPT.length - 1]!);
        assert.deepEqual(
          r.selections!.map((s) => Array.from(s)),
          expected,
          `${v.name}: indexer selections at the last prompt position`,
        );
        assert.ok(
          expected.every((s) => s.length === topk),
          'the indexer drops keys',
        );
      }
    });
  }

  test('dense-attention switch equals the reference with the indexer skipped', async (t) => {
    const v = VARIANTS[0]!;
    const dir = writeVariant(root, v, 'dense');
    const loaded = loadModel(dir);
    const r = await runEngine(dir, PROMPT, GREEDY_STEPS, { denseAttention: true });
    const seq = [...PROMPT, ...r.tokenIds.slice(0, -1)];
    const ref = referenceForward(loaded, seq, { skipIndexer: true });
    assert.equal(ref.selections, null);
    compareGreedy(t, r, ref, PROMPT, 'dense attention');
    // The switch must matter on this prompt: the sparse (DSA) reference is far from the dense one.
    const sparse = referenceForward(loaded, seq);
    const gap = maxAbs(sparse.logits, ref.logits);
    assert.ok(gap > 1e-2, `dense and sparse reference logits differ by only ${gap}`);
  });

  test('a model without an indexer (deepseek_v3) with --kv-cache-dtype bfloat16 / fp8: latent cache only', async (t) => {
    const v = VARIANTS.find((x) => x.name === 'deepseek_v3 (no indexer)')!;
    const dir = writeVariant(root, v, 'v3-kv-dtype');
    const f32 = await runEngine(dir, PROMPT, GREEDY_STEPS);
    const V = loadModel(dir).config.vocabSize;
    const spread = Math.max(...f32.promptLogits!) - Math.min(...f32.promptLogits!);
    // Mean over prompt rows of the row's largest logit change, relative to the logit range. bf16 rounds each
    // latent value by <= 2^-8 relative, e4m3 by <= 2^-4; a MoE routing flip can move one row further (measured:
    // fp8 moves one of 40 rows by half the range, the others by 1-8%), hence the mean.
    for (const [dtype, bound] of [
      ['bfloat16', 2 ** -7],
      ['fp8', 2 ** -3],
    ] as const) {
      const r = await runEngine(dir, PROMPT, GREEDY_STEPS, { kvCacheDtype: dtype });
      let mean = 0;
      for (let row = 0; row < PROMPT.length; row++) mean += maxAbs(r.promptLogits!, f32.promptLogits!, row * V, row * V, V) / spread / PROMPT.length;
      t.diagnostic(`${dtype}: mean over rows of max |logit - float32| / logit range = ${mean.toExponential(2)}`);
      assert.ok(mean > 0 && mean < bound, `${dtype}: ${mean}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// 3. Storage dtypes: one random checkpoint written as F32, BF16 and FP8

// Per-weight rounding of each storage format (round to nearest even, p significant bits, unit roundoff 2^-p):
//  - BF16 has p = 8 (7 stored mantissa bits): |w_q - w| <= 2^-8 |w|. (2^-9 is the *typical* size; the worst case,
//    w just above a power of two, is 2^-8: e.g. 1 + 2^-8 rounds to 1.)
//  - FP8 e4m3 has p = 4: |w_q - w| <= 2^-4 |w| for normal codes; values below 2^-6 in block-scale units are
//    subnormal with absolute error <= 2^-10 * scale, scale = block amax / 448 (128x128 blocks, ragged at the edges).
//    Only 2-D projection weights are quantised; embeddings, lm_head, norms and the router gate stay F32.
const UNIT_ROUNDOFF: Record<'BF16' | 'F8_E4M3', number> = { BF16: 2 ** -8, F8_E4M3: 2 ** -4 };

/**
 * Checks every loaded weight against its F32 original within the format's per-weight bound and returns the
 * number K of tensors that the format actually rounded and that reach the logits (indexer tensors only steer the
 * top-k selection, which is pinned separately).
 */
function checkWeightRounding(original: ReadonlyMap<string, HostTensor>, loaded: LoadedModel, dtype: 'F32' | 'BF16' | 'F8_E4M3'): number {
  let rounded = 0;
  for (const [name, t] of namedTensors(loaded)) {
    const w = original.get(name)!.data;
    const q = t.data;
    assert.equal(q.length, w.length, name);
    let blockScale: (i: number) => number = () => 0;
    if (dtype === 'F8_E4M3' && t.shape.length === 2) {
      const [rows, cols] = t.shape as readonly [number, number];
      const bc = Math.ceil(cols / 128);
      const amax = new Float64Array(Math.ceil(rows / 128) * bc);
      for (let i = 0; i < w.length; i++) {
        const b = Math.floor(Math.floor(i / cols) / 128) * bc + Math.floor((i % cols) / 128);
        amax[b] = Math.max(amax[b]!, Math.abs(w[i]!));
      }
      blockScale = (i) => amax[Math.floor(Math.floor(i / cols) / 128) * bc + Math.floor((i % cols) / 128)]! / 448;
    }
    const u = dtype === 'F32' ? 0 : UNIT_ROUNDOFF[dtype];
    let changed = false;
    for (let i = 0; i < w.length; i++) {
      const err = Math.abs(q[i]! - w[i]!);
      // (1 + 2^-16): float32 rounding of the scale and of value * scale.
      const bound = (u * Math.abs(w[i]!) + 2 ** -10 * blockScale(i)) * (1 + 2 ** -16);
      if (!(err <= bound)) assert.fail(`${dtype} ${name}[${i}]: |${q[i]} - ${w[i]}| = ${err} > ${bound}`);
      if (err !== 0) changed = true;
    }
    if (changed && !name.includes('.indexer.')) rounded++;
  }
  return rounded;
}

describe('storage dtypes: F32 vs BF16 vs FP8 of one random checkpoint', () => {
  // The untouched tiny v3.2 config. The prompt is index_topk (8) tokens long, so every key is selected: the indexer
  // takes no decision that a perturbation could flip. Seed 36 (of the 27 seeds in 1..40 whose routing decisions
  // survive both roundings, one with large group-cut margins, >= 0.17 on all three weight sets): every routing
  // decision (per token, per MoE layer) is the same on the F32, BF16 and FP8 weights (asserted below).
  const opts: TinyOptions = { seed: 36 };
  const config = tinyHfConfig(opts);
  const tensors = randomCheckpoint(config, { seed: 36 });
  const prompt = PROMPT.slice(0, config.index_topk as number);

  test('exact against the reference on the dequantised weights; F32-agreement within the derived bound', async (t) => {
    const runs = new Map<WriteDType, { logits: Float32Array; ref: ReferenceResult; k: number }>();
    for (const dtype of ['F32', 'BF16', 'F8_E4M3'] as const) {
      const dir = mkdtempSync(path.join(root, `dtype-${dtype}-`));
      writeCheckpoint(dir, config, tensors, { dtype });
      const loaded = loadModel(dir);
      const k = checkWeightRounding(tensors, loaded, dtype);
      const r = await runEngine(dir, prompt, 1);
      const ref = referenceForward(loaded, prompt);
      assertMargins(ref, [prompt.length - 1], dtype);
      // The exactness check: the engine computes exactly what its (dequantised) weights define.
      const d = maxAbs(r.promptLogits!, ref.logits);
      assert.ok(d < TOL, `${dtype}: engine differs from the reference on its own weights by ${d}`);
      runs.set(dtype, { logits: r.promptLogits!, ref, k });
    }
    const f32 = runs.get('F32')!;
    assert.equal(f32.k, 0, 'F32 storage is lossless');
    const logitRms = rms(f32.logits);
    const N = f32.logits.length;
    for (const dtype of ['BF16', 'F8_E4M3'] as const) {
      const q = runs.get(dtype)!;
      // Precondition of a smooth bound: the same discrete decisions on both weight sets.
      assert.deepEqual(q.ref.experts, f32.ref.experts, `${dtype}: routing decisions differ from F32 (pick another seed)`);
      // Derived bound (first-order error propagation, rounding errors as independent noise):
      //  - a rounded weight has relative error <= u, uniform-like, so RMS <= u / sqrt(3) (checked above);
      //  - each of the K rounded tensors on the path to the logits perturbs the output of its op (y = W x, or
      //    the elementwise norm scale) by relative RMS <= u / sqrt(3): Var(sum_j d_ij W_ij x_j) <= u^2/3 sum_j W_ij^2 x_j^2;
      //  - these K independent perturbations add in quadrature and reach the logits with a gain <= G = 2
      //    (RMSNorm, softmax attention and SwiGLU with O(1) inputs are ~1-Lipschitz in relative terms; measured
      //    max-error gain on 27 seeds of these tiny random models: 0.3 .. 1.7), so RMS(dlogits) <= G sqrt(K/3) u rms(logits);
      //  - the max of N such (Gaussian) errors is <= Z RMS with Z = sqrt(2 ln(2N)) (union bound, probability 1/2;
      //    G's slack covers the rest).
      // The engine adds at most 2 * TOL on top (both runs are within TOL of their float64 references).
      const u = UNIT_ROUNDOFF[dtype];
      const Z = Math.sqrt(2 * Math.log(2 * N));
      const G = 2;
      const bound = Z * G * Math.sqrt(q.k / 3) * u * logitRms + 2 * TOL;
      const d = maxAbs(q.logits, f32.logits);
      t.diagnostic(
        `${dtype}: K = ${q.k} rounded tensors, max |logits - F32 logits| = ${d.toExponential(3)} (${(d / logitRms).toFixed(3)} x rms), bound ${bound.toExponential(3)} (measured / bound = ${(d / bound).toFixed(2)})`,
      );
      assert.ok(d <= bound, `${dtype}: logits differ from the F32 checkpoint's by ${d} > derived bound ${bound}`);
      assert.ok(d > 0, `${dtype}: storage rounding must be visible in the logits`);
    }
  });
});
