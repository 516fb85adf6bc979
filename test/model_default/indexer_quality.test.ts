// The engine's indexer-quality diagnostic reproduces the fixture's indexer KL losses (golden.json
// `indexer_kl_loss`, MaxText calculate_indexer_loss on prompt 3, dense and sparse variants) within 1e-4.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { indexerQuality } from '../../src/engine/diagnostics/indexer_quality.ts';
import { FIXTURE_DIR, Golden } from '../helpers/golden.ts';

const TOL = 1e-4;
const golden = new Golden();

describe('indexer quality diagnostic on tiny-dsv32', () => {
  const runner = { blockSize: 16, numKvBlocks: 64 };
  for (const chunkSize of [undefined, 13]) {
    test(`KL per layer equals golden indexer_kl_loss (chunk ${chunkSize ?? 'full'})`, async () => {
      const { prompt_index: p, per_layer: expected } = golden.json.indexer_kl_loss;
      const prompt = golden.prompt(p)!;
      const res = await indexerQuality(FIXTURE_DIR, prompt, { chunkSize, runner });
      assert.equal(res.numTokens, 120);
      assert.equal(res.layers.length, Object.keys(expected).length);
      for (const l of res.layers) {
        const g = expected[String(l.layer)]!;
        assert.ok(Math.abs(l.klDense - g.dense) < TOL, `layer ${l.layer} dense KL ${l.klDense} vs ${g.dense}`);
        assert.ok(Math.abs(l.klSparse - g.sparse) < TOL, `layer ${l.layer} sparse KL ${l.klSparse} vs ${g.sparse}`);
        assert.ok(l.recall > 0 && l.recall <= 1 + 1e-9, `layer ${l.layer} recall ${l.recall}`);
        assert.ok(l.recallSparseRows !== null && l.recallSparseRows <= l.recall);
      }
    });
  }

  test('rejects a model run with dense attention', async () => {
    await assert.rejects(indexerQuality(FIXTURE_DIR, [2, 3, 4], { runner: { blockSize: 16, numKvBlocks: 8, denseAttention: true } }), /indexer/);
  });
});
