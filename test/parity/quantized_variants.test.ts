// --quantization int8 (and int4 on two variants) through the serving path against the float64 reference
// run on the dequantised weights (test/helpers/dequantized_model.ts), for every architecture variant of
// variants.test.ts. At MatMulNBits accuracy level 0 the engine computes with exactly those weights, so
// the float32 tolerance and margin checks of the float32 suite apply unchanged (1e-4 on logits): this pins
// the quantising loader, the row operations, the per-head W_UK/W_UV graphs and the int8 embedding rows.
// The serving level (4, int8 activations) is checked against the same reference with a wider bound.
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
    const level4 = (await runEngine(dir, prompt, 1, { quantization: 'int8' }, false)).promptLogits!;
    let err = 0;
    let ref = 0;
    for (let i = 0; i < level0.length; i++) {
      err += (level4[i]! - level0[i]!) ** 2;
      ref += level0[i]! ** 2;
    }
    const rel = Math.sqrt(err / ref);
    t.diagnostic(`relative rms difference ${rel.toExponential(2)}`);
    assert.ok(rel > 0 && rel < 2e-2, `relative rms difference ${rel}`);
  });
});
