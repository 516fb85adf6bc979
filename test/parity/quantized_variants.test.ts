// --quantization int8 (and int4 on two variants) through the serving path against the float64 reference
// run on the dequantised weights (test/helpers/dequantized_model.ts), for every architecture variant of
// variants.test.ts. At MatMulNBits accuracy level 0 the engine computes with exactly those weights, so
// the float32 tolerance and margin checks of the float32 suite apply unchanged (1e-4 on logits): this pins
// the quantising loader, the row operations, the per-head W_UK/W_UV graphs and the int8 embedding rows.
// The serving level (4, int8 activations) is checked against level 0 with a wider bound, and the native
// kernels' quantised steps against ONNX Runtime at level 4.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { loadModel } from '../../src/engine/checkpoint/weights.ts';
import { dequantizedModel } from '../helpers/dequantized_model.ts';
import { referenceForward } from '../helpers/reference_model.ts';
import { compareGreedy, GREEDY_STEPS, PROMPT, runEngine, VARIANTS, writeVariant } from '../helpers/variants.ts';
import { greedy, openEngine } from '../helpers/offline.ts';
import { relativeRms } from '../helpers/relative_rms.ts';
import type { OfflineOutput } from '../../src/engine/offline.ts';
import { loadNativeKernels } from '../../src/engine/native/native_kernels.ts';

const nativeLoad = loadNativeKernels();
const nativeSkip = nativeLoad.kernels === null ? `native kernels unavailable: ${nativeLoad.reason}` : false;

const root = mkdtempSync(path.join(tmpdir(), 'dsv-qvariants-'));
after(() => rmSync(root, { recursive: true, force: true }));

// Quantisation moves the reference's decision margins, so some variants need another seed: the first
// (1..80) whose dequantised reference has every margin >= MIN_MARGIN on this prompt (found by search).
const INT8_SEEDS: Readonly<Record<number, number>> = { 0: 45, 1: 43, 2: 45, 3: 23, 6: 3, 7: 3, 10: 1 };
const INT4_SEEDS: Readonly<Record<number, number>> = { 0: 21, 6: 3 };

describe('int8 variants: engine (accuracy level 0) vs float64 reference on the dequantised weights', () => {
  VARIANTS.forEach((variant, i) => {
    const v = { ...variant, seed: INT8_SEEDS[i] ?? variant.seed };
    test(v.name, async (t) => {
      const dir = writeVariant(root, v, v.name);
      const reference = dequantizedModel(loadModel(dir), 8);
      const hasIndexer = reference.config.indexer !== null;
      const r = await runEngine(dir, PROMPT, GREEDY_STEPS, { quantization: 'int8', quantAccuracyLevel: 0 }, hasIndexer);
      const ref = referenceForward(reference, [...PROMPT, ...r.tokenIds.slice(0, -1)]);
      compareGreedy(t, r, ref, PROMPT, `${v.name}, int8`);
      if (hasIndexer) {
        const expected = ref.selections!.map((rows) => rows[PROMPT.length - 1]);
        assert.deepEqual(
          r.selections!.map((s) => Array.from(s)),
          expected,
          `${v.name}: indexer selections at the last prompt position`,
        );
      }
    });
  });
});

describe('int4 and the serving accuracy level', () => {
  for (const i of [0, 6]) {
    test(`int4, accuracy level 0: ${VARIANTS[i]!.name}`, async (t) => {
      const v = { ...VARIANTS[i]!, seed: INT4_SEEDS[i]! };
      const dir = writeVariant(root, v, `int4 ${v.name}`);
      const r = await runEngine(dir, PROMPT, GREEDY_STEPS, { quantization: 'int4', quantAccuracyLevel: 0 }, false);
      const ref = referenceForward(dequantizedModel(loadModel(dir), 4), [...PROMPT, ...r.tokenIds.slice(0, -1)]);
      compareGreedy(t, r, ref, PROMPT, `${v.name}, int4`);
    });
  }

  // Random tiny models amplify any perturbation (int8 weights alone move their logits by 4-15% rms), so the
  // activation rounding of level 4 is measured on the trained default model: ~0.5% rms of its logits.
  test('int8 at the serving accuracy level 4 vs level 0 on the trained default model: logits within 2% rms', async (t) => {
    const dir = fileURLToPath(new URL('../../models/default/', import.meta.url));
    const prompt = PROMPT.map((id) => ((id * 13) % 4000) + 2);
    const level0 = (await runEngine(dir, prompt, 1, { quantization: 'int8', quantAccuracyLevel: 0 }, false)).promptLogits!;
    const level4 = (await runEngine(dir, prompt, 1, { quantization: 'int8', nativeKernels: 'off' }, false)).promptLogits!;
    const rel = relativeRms(level4, level0);
    t.diagnostic(`relative rms difference ${rel.toExponential(2)}`);
    assert.ok(rel > 0 && rel < 2e-2, `relative rms difference ${rel}`);
  });

  // Steps of up to 16 rows of a quantised model run in C (src/native/quant_gemm.h: the same int8 inputs per
  // block of 32 as level 4, unit-tested against float64 in native_kernels.test.ts), and so do its routed
  // experts in every step; here the whole layer (stacked projections, per-head W_UK / W_UV groups, experts,
  // lm_head) against ONNX Runtime at level 4: a 48-token prompt in one chunk (graphs, experts in C), then
  // decode steps (all in C).
  for (const quantization of ['int8', 'int4'] as const) {
    test(
      `${quantization} steps in C vs ONNX Runtime at level 4 on the trained default model: same tokens, logits within 2% rms`,
      { skip: nativeSkip },
      async (t) => {
        const dir = fileURLToPath(new URL('../../models/default/', import.meta.url));
        const prompt = Array.from({ length: 48 }, (_, i) => ((i * 211 + 7) % 4000) + 2);
        const run = async (nativeKernels: 'auto' | 'off'): Promise<{ out: OfflineOutput; status: string }> => {
          const engine = await openEngine(dir, { runner: { blockSize: 16, numKvBlocks: 64, quantization, nativeKernels }, chunkSize: 64 });
          try {
            const [out] = await greedy(engine, [prompt], { maxTokens: GREEDY_STEPS, promptLogits: true });
            return { out: out!, status: engine.core.runner.model.nativeStatus };
          } finally {
            await engine.dispose();
          }
        };
        const native = await run('auto');
        const onnx = await run('off');
        const layers = loadModel(dir).config.numHiddenLayers;
        assert.match(native.status, new RegExp(`^${layers} of ${layers} layers decode in C`));
        assert.deepEqual(native.out.tokenIds, onnx.out.tokenIds);
        const rel = relativeRms(native.out.promptLogits!, onnx.out.promptLogits!);
        t.diagnostic(`relative rms difference ${rel.toExponential(2)}`);
        assert.ok(rel > 0 && rel < 2e-2, `relative rms difference ${rel}`);
      },
    );
  }
});
