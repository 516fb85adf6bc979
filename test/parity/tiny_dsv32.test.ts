// Golden parity on the shared tiny DeepSeek-V3.2 fixture (float64 oracle, logits stored as float32).
// Tolerance 1e-4 absolute on logits: a correct float32 implementation lands near 1e-5 (fixture README).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { generateGreedy, type GreedyResult } from '../../src/engine/greedy_generate.ts';
import { createModelExecutor, type ModelExecutor } from '../../src/engine/model_executor.ts';
import { concatRows, FIXTURE_DIR, Golden, maxAbsDiff } from '../helpers/golden.ts';

const TOL = 1e-4;
const STEPS = 16;
const golden = new Golden();
const prompts = golden.json.prompts;

function checkAgainstGolden(results: readonly GreedyResult[], label: string, promptLogits: boolean): void {
  results.forEach((r, p) => {
    assert.deepEqual(r.tokens, golden.ints(`greedy_tokens.p${p}`), `${label}: greedy tokens of prompt ${p}`);
    const stepDiff = maxAbsDiff(concatRows(r.stepLogits), golden.floats(`greedy_step_logits.p${p}`));
    assert.ok(stepDiff < TOL, `${label}: prompt ${p} greedy step logits differ by ${stepDiff}`);
    if (promptLogits) {
      const d = maxAbsDiff(r.promptLogits!, golden.floats(`prefill_logits.p${p}`));
      assert.ok(d < TOL, `${label}: prompt ${p} prefill logits differ by ${d}`);
    }
  });
}

describe('tiny-dsv32 golden parity', () => {
  let exec: ModelExecutor;
  before(async () => {
    // Block size 16 so every long prompt spans several non-adjacent blocks.
    exec = await createModelExecutor(FIXTURE_DIR, { blockSize: 16, numKvBlocks: 128, enablePrefixCaching: false });
  });
  after(async () => {
    exec.kvCache.checkIntegrity();
    assert.equal(exec.kvCache.numFreeBlocks, exec.kvCache.numBlocks, 'all blocks returned');
    await exec.model.dispose();
  });

  test('(a, b) full prefill logits at every position and 16-step greedy decode, each prompt alone', async () => {
    const results: GreedyResult[] = [];
    for (const prompt of prompts) results.push(...(await generateGreedy(exec, [prompt], { maxTokens: STEPS, promptLogits: true })));
    checkAgainstGolden(results, 'alone', true);
  });

  for (const chunkSize of [13, 1]) {
    test(`(c) chunked prefill, chunk ${chunkSize}`, async () => {
      const results: GreedyResult[] = [];
      for (const prompt of prompts) results.push(...(await generateGreedy(exec, [prompt], { maxTokens: STEPS, chunkSize, promptLogits: true })));
      checkAgainstGolden(results, `chunk ${chunkSize}`, true);
    });
  }

  test('(d) indexer top-k sets at the last prompt position equal topk_last', async () => {
    const results = await generateGreedy(exec, prompts, { maxTokens: 1, recordSelections: true });
    results.forEach((r, p) => {
      const expected = golden.json.topk_last[p];
      assert.equal(r.selections!.length, Object.keys(expected).length);
      r.selections!.forEach((sel, layer) => assert.deepEqual(Array.from(sel), expected[String(layer)], `prompt ${p} layer ${layer}`));
    });
  });

  test('(e) all five prompts batched in every step (mixed prefill chunks and decodes) match golden', async () => {
    // Chunk 13: the short prompts decode while the long ones are still prefilling in the same steps.
    const batched = await generateGreedy(exec, prompts, { maxTokens: STEPS, chunkSize: 13, promptLogits: true });
    checkAgainstGolden(batched, 'batched', true);
    const whole = await generateGreedy(exec, prompts, { maxTokens: STEPS, promptLogits: true });
    checkAgainstGolden(whole, 'batched, whole prompts', true);
  });

  test('prefill attention sliced into small query-row runs (bounded score memory) matches golden', async () => {
    // 4 heads x 300 keys: a 2000-element budget forces slices of 1 row on the longest prompt.
    const sliced = await createModelExecutor(FIXTURE_DIR, { blockSize: 16, numKvBlocks: 64, maxAttentionScoreElements: 2000 });
    try {
      const results: GreedyResult[] = [];
      for (const p of [2, 4]) results.push(...(await generateGreedy(sliced, [prompts[p]], { maxTokens: STEPS, promptLogits: true, chunkSize: 100 })));
      [2, 4].forEach((p, i) => {
        assert.deepEqual(results[i].tokens, golden.ints(`greedy_tokens.p${p}`));
        assert.ok(maxAbsDiff(results[i].promptLogits!, golden.floats(`prefill_logits.p${p}`)) < TOL);
      });
    } finally {
      await sliced.model.dispose();
    }
  });

  test('indexer is really used: dense attention matches golden only while every key is selected', async () => {
    const dense = await createModelExecutor(FIXTURE_DIR, { blockSize: 16, numKvBlocks: 64, denseAttention: true });
    try {
      const topk = exec.loaded.config.indexer!.topk;
      const [short] = await generateGreedy(dense, [prompts[1]], { maxTokens: 1, promptLogits: true });
      assert.ok(prompts[1].length <= topk);
      assert.ok(maxAbsDiff(short.promptLogits!, golden.floats('prefill_logits.p1')) < TOL);
      const [long] = await generateGreedy(dense, [prompts[3]], { maxTokens: 1, promptLogits: true });
      assert.ok(maxAbsDiff(long.promptLogits!, golden.floats('prefill_logits.p3')) > 1e-2, 'dense attention must differ from DSA on a 120-token prompt');
    } finally {
      await dense.model.dispose();
    }
  });
});
