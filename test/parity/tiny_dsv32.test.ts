// Golden parity on the shared tiny DeepSeek-V3.2 fixture (float64 oracle, logits stored as float32).
// Tolerance 1e-4 absolute on logits: a correct float32 implementation lands near 1e-5 (fixture README).
// Everything runs through the offline driver, i.e. the serving path (EngineCore, scheduler, sampler).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { OfflineEngine, OfflineOutput } from '../../src/engine/offline.ts';
import { concatRows, FIXTURE_DIR, Golden, maxAbsDiff } from '../helpers/golden.ts';
import { assertDrained, greedy, openEngine } from '../helpers/offline.ts';

const TOL = 1e-4;
const STEPS = 16;
const golden = new Golden();
const prompts = golden.json.prompts;

function checkAgainstGolden(results: readonly OfflineOutput[], label: string, promptLogits: boolean): void {
  results.forEach((r, p) => {
    assert.deepEqual(r.tokenIds, golden.ints(`greedy_tokens.p${p}`), `${label}: greedy tokens of prompt ${p}`);
    const stepDiff = maxAbsDiff(concatRows(r.stepLogits), golden.floats(`greedy_step_logits.p${p}`));
    assert.ok(stepDiff < TOL, `${label}: prompt ${p} greedy step logits differ by ${stepDiff}`);
    if (promptLogits) {
      const d = maxAbsDiff(r.promptLogits!, golden.floats(`prefill_logits.p${p}`));
      assert.ok(d < TOL, `${label}: prompt ${p} prefill logits differ by ${d}`);
    }
  });
}

describe('tiny-dsv32 golden parity', () => {
  // Block size 16 so every long prompt spans several non-adjacent blocks.
  const runner = { blockSize: 16, numKvBlocks: 128 };
  let engine: OfflineEngine;
  before(async () => {
    engine = await openEngine(FIXTURE_DIR, { runner, enablePrefixCaching: false, recordSelections: true });
  });
  after(async () => {
    assertDrained(engine);
    await engine.dispose();
  });

  test('(a, b) full prefill logits at every position and 16-step greedy decode, each prompt alone', async () => {
    const results: OfflineOutput[] = [];
    for (const prompt of prompts) results.push(...(await greedy(engine, [prompt], { maxTokens: STEPS, promptLogits: true })));
    checkAgainstGolden(results, 'alone', true);
  });

  test('(a, b) with --native-kernels off: the ONNX Runtime graphs decode one row to the same golden', async () => {
    const graphs = await openEngine(FIXTURE_DIR, { runner: { ...runner, nativeKernels: 'off' }, enablePrefixCaching: false });
    try {
      const results: OfflineOutput[] = [];
      for (const prompt of prompts) results.push(...(await greedy(graphs, [prompt], { maxTokens: STEPS, promptLogits: true })));
      checkAgainstGolden(results, 'alone, onnx', true);
    } finally {
      await graphs.dispose();
    }
  });

  for (const chunkSize of [13, 1]) {
    test(`(c) chunked prefill, chunk ${chunkSize}`, async () => {
      const chunked = await openEngine(FIXTURE_DIR, { runner, enablePrefixCaching: false, chunkSize });
      try {
        const results: OfflineOutput[] = [];
        for (const prompt of prompts) results.push(...(await greedy(chunked, [prompt], { maxTokens: STEPS, promptLogits: true })));
        checkAgainstGolden(results, `chunk ${chunkSize}`, true);
        assertDrained(chunked);
      } finally {
        await chunked.dispose();
      }
    });
  }

  test('(d) indexer top-k sets at the last prompt position equal topk_last', async () => {
    const results = await greedy(engine, prompts, { maxTokens: 1 });
    results.forEach((r, p) => {
      const expected = golden.json.topk_last[p]!;
      assert.equal(r.selections!.length, Object.keys(expected).length);
      r.selections!.forEach((sel, layer) => assert.deepEqual(Array.from(sel), expected[String(layer)]!, `prompt ${p} layer ${layer}`));
    });
  });

  test('(e) all five prompts batched in every step (mixed prefill chunks and decodes) match golden', async () => {
    // Chunk 13: the short prompts decode while the long ones are still prefilling in the same steps.
    const chunked = await openEngine(FIXTURE_DIR, { runner, enablePrefixCaching: false, chunkSize: 13 });
    try {
      let mixedSteps = 0;
      const params = { temperature: 0, maxTokens: STEPS, ignoreEos: true, promptLogprobs: 0 };
      const batched = await chunked.generate(
        prompts.map((promptTokenIds) => ({ promptTokenIds, params })),
        (stats) => (mixedSteps += Number(stats.numDecodeTokens > 0 && stats.numPrefillTokens > 0)),
      );
      checkAgainstGolden(batched, 'batched', true);
      assert.ok(mixedSteps > 0, 'some steps mix prefill chunks and decodes');
    } finally {
      await chunked.dispose();
    }
    const whole = await greedy(engine, prompts, { maxTokens: STEPS, promptLogits: true });
    checkAgainstGolden(whole, 'batched, whole prompts', true);
  });

  test('prefill attention sliced into small query-row runs (bounded score memory) matches golden', async () => {
    // 4 heads x 300 keys: a 2000-element budget forces slices of 1 row on the longest prompt.
    const sliced = await openEngine(FIXTURE_DIR, { runner: { blockSize: 16, numKvBlocks: 64, maxAttentionScoreElements: 2000 }, chunkSize: 100 });
    try {
      const results: OfflineOutput[] = [];
      for (const p of [2, 4]) results.push(...(await greedy(sliced, [prompts[p]!], { maxTokens: STEPS, promptLogits: true })));
      [2, 4].forEach((p, i) => {
        assert.deepEqual(results[i]!.tokenIds, golden.ints(`greedy_tokens.p${p}`));
        assert.ok(maxAbsDiff(results[i]!.promptLogits!, golden.floats(`prefill_logits.p${p}`)) < TOL);
      });
    } finally {
      await sliced.dispose();
    }
  });

  test('indexer is really used: dense attention matches golden only while every key is selected', async () => {
    const dense = await openEngine(FIXTURE_DIR, { runner: { blockSize: 16, numKvBlocks: 64, denseAttention: true } });
    try {
      const topk = engine.core.config.indexer!.topk;
      const [short] = await greedy(dense, [prompts[1]!], { maxTokens: 1, promptLogits: true });
      assert.ok(short);
      assert.ok(prompts[1]!.length <= topk);
      assert.ok(maxAbsDiff(short.promptLogits!, golden.floats('prefill_logits.p1')) < TOL);
      const [long] = await greedy(dense, [prompts[3]!], { maxTokens: 1, promptLogits: true });
      assert.ok(long);
      assert.ok(maxAbsDiff(long.promptLogits!, golden.floats('prefill_logits.p3')) > 1e-2, 'dense attention must differ from DSA on a 120-token prompt');
    } finally {
      await dense.dispose();
    }
  });
});
