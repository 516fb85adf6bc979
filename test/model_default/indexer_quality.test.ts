// The engine's indexer-quality diagnostic reproduces the fixture's indexer KL losses (golden.json
// `indexer_kl_loss`, MaxText calculate_indexer_loss on prompt 3, dense and sparse variants) within 1e-4.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { indexerQuality } from '../../src/engine/diagnostics/indexer_quality.ts';
import { createModelExecutor, type ModelExecutor } from '../../src/engine/model_executor.ts';
import { FIXTURE_DIR, Golden } from '../helpers/golden.ts';

const TOL = 1e-4;
const golden = new Golden();

describe('indexer quality diagnostic on tiny-dsv32', () => {
  let exec: ModelExecutor;
  before(async () => {
    exec = await createModelExecutor(FIXTURE_DIR, { blockSize: 16, numKvBlocks: 64, enablePrefixCaching: false });
  });
  after(async () => {
    assert.equal(exec.kvCache.numFreeBlocks, exec.kvCache.numBlocks, 'all blocks returned');
    await exec.model.dispose();
  });

  for (const chunkSize of [undefined, 13]) {
    test(`KL per layer equals golden indexer_kl_loss (chunk ${chunkSize ?? 'full'})`, async () => {
      const { prompt_index: p, per_layer: expected } = golden.json.indexer_kl_loss;
      const prompt = golden.json.prompts[p];
      const res = await indexerQuality(exec, prompt, { chunkSize });
      assert.equal(res.numTokens, 120);
      assert.equal(res.layers.length, Object.keys(expected).length);
      for (const l of res.layers) {
        const g = expected[String(l.layer)];
        assert.ok(Math.abs(l.klDense - g.dense) < TOL, `layer ${l.layer} dense KL ${l.klDense} vs ${g.dense}`);
        assert.ok(Math.abs(l.klSparse - g.sparse) < TOL, `layer ${l.layer} sparse KL ${l.klSparse} vs ${g.sparse}`);
        assert.ok(l.recall > 0 && l.recall <= 1 + 1e-9, `layer ${l.layer} recall ${l.recall}`);
        assert.ok(l.recallSparseRows !== null && l.recallSparseRows <= l.recall);
      }
    });
  }

  test('rejects a model run with dense attention', async () => {
    const dense = await createModelExecutor(FIXTURE_DIR, { blockSize: 16, numKvBlocks: 8, denseAttention: true });
    try {
      await assert.rejects(indexerQuality(dense, [2, 3, 4]), /indexer/);
    } finally {
      await dense.model.dispose();
    }
  });
});
