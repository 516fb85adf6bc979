// Constrained decoding in the engine loop, on random weights (the shared fixture with a trained
// tokenizer): only the grammar can make the output valid. Constrained and unconstrained requests
// share batches; unconstrained ones are unchanged (golden tokens) and cost no grammar time.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { EngineError } from '../../src/common/errors.ts';
import { EngineCore } from '../../src/engine/engine_core.ts';
import type { StructuredOutputSpec } from '../../src/engine/structured/grammar_spec.ts';
import { loadTokenizer } from '../../src/server/tokenizer/tokenizer.ts';
import { EngineDriver } from '../helpers/engine_driver.ts';
import { Golden } from '../helpers/golden.ts';
import { textModelDir } from '../helpers/text_model.ts';

const golden = new Golden();
const dir = textModelDir();
const tokenizer = loadTokenizer(dir)!;
const cores: EngineCore[] = [];
after(async () => {
  for (const c of cores) await c.dispose();
});

async function makeCore(numKvBlocks = 64): Promise<EngineCore> {
  const core = await EngineCore.create(dir, {
    runner: { blockSize: 16, numKvBlocks },
    scheduler: { maxNumSeqs: 16, maxNumBatchedTokens: 512, longPrefillTokenThreshold: 0, maxModelLen: 512, maxQueuedRequests: 64, maxQueuedTokens: 100000 },
    enablePrefixCaching: true,
  });
  cores.push(core);
  return core;
}

const VERSE: StructuredOutputSpec = {
  param: 'response_format',
  grammar: {
    kind: 'json_schema',
    schema: JSON.stringify({
      type: 'object',
      properties: { book: { enum: ['Genesis', 'John'] }, chapter: { type: 'integer', minimum: 1, maximum: 50 }, ok: { type: 'boolean' } },
      required: ['book', 'chapter', 'ok'],
      additionalProperties: false,
    }),
  },
};
const CHOICE: StructuredOutputSpec = { param: 'structured_outputs.choice', grammar: { kind: 'choice', choices: ['light', 'darkness'] } };

function textOf(driver: EngineDriver, id: string): string {
  return tokenizer.decode(driver.results.get(id)!.tokens, { skipSpecialTokens: true });
}

describe('structured outputs in the engine loop', () => {
  test('constrained and unconstrained requests in one batch', async () => {
    const core = await makeCore();
    const driver = new EngineDriver(core);
    golden.json.prompts.forEach((prompt, p) => driver.add(`p${p}`, prompt, { temperature: 0, maxTokens: 16, ignoreEos: true }));
    await driver.addConstrained('json-greedy', golden.prompt(0), { temperature: 0, maxTokens: 250 }, VERSE);
    await driver.addConstrained('json-sampled', golden.prompt(1), { temperature: 1, seed: 7, maxTokens: 250 }, VERSE);
    await driver.addConstrained('choice', golden.prompt(2), { temperature: 0.8, seed: 3, maxTokens: 20 }, CHOICE);
    assert.equal(core.structuredOutputs.numActive, 3);
    await driver.runToCompletion();
    golden.json.prompts.forEach((_, p) => assert.deepEqual(driver.results.get(`p${p}`)!.tokens, golden.greedyTokens(p), `unconstrained p${p}`));
    for (const id of ['json-greedy', 'json-sampled']) {
      assert.equal(driver.results.get(id)!.final?.finishReason, 'stop', `${id}: ${JSON.stringify(textOf(driver, id))}`);
      const value = JSON.parse(textOf(driver, id)) as { book: string; chapter: number; ok: boolean };
      assert.ok(['Genesis', 'John'].includes(value.book) && value.chapter >= 1 && value.chapter <= 50 && typeof value.ok === 'boolean', textOf(driver, id));
    }
    assert.ok(['light', 'darkness'].includes(textOf(driver, 'choice')), textOf(driver, 'choice'));
    assert.equal(core.structuredOutputs.numActive, 0, 'matchers are freed when requests finish');
    assert.ok(driver.stats.some((s) => s.timings.grammar > 0));
    driver.assertNoLeaks();
  });

  test('without constrained requests no grammar work runs', async () => {
    const driver = new EngineDriver(await makeCore());
    golden.json.prompts.forEach((prompt, p) => driver.add(`p${p}`, prompt, { temperature: 0, maxTokens: 8, ignoreEos: true }));
    await driver.runToCompletion();
    assert.ok(driver.stats.every((s) => s.timings.grammar === 0));
  });

  test('preemption recomputes a constrained request without losing its grammar position', async () => {
    // 10 blocks of 16 tokens: six requests of up to 9 blocks cannot all stay resident.
    const core = await makeCore(10);
    const driver = new EngineDriver(core);
    for (let i = 0; i < 6; i++) await driver.addConstrained(`c${i}`, [5 + i, 6, 7, 8, 9], { temperature: 0, maxTokens: 120 }, VERSE);
    await driver.runToCompletion();
    assert.ok(core.scheduler.numPreemptionsTotal > 0, 'the cache was small enough to preempt');
    let numValid = 0;
    for (let i = 0; i < 6; i++) {
      const final = driver.results.get(`c${i}`)!.final!;
      if (final.finishReason === 'stop') (JSON.parse(textOf(driver, `c${i}`)), numValid++);
      else assert.equal(final.finishReason, 'length');
    }
    assert.ok(numValid > 0);
    driver.assertNoLeaks();
  });

  test('a grammar that does not compile, or settings that fight it, are 400s; the engine goes on', async () => {
    const core = await makeCore();
    const params = { temperature: 0, maxTokens: 8 };
    const driver = new EngineDriver(core);
    await assert.rejects(
      driver.addConstrained('bad1', [5, 6], params, { param: 'response_format', grammar: { kind: 'json_schema', schema: '{"type": "nope"}' } }),
      (e: unknown) => e instanceof EngineError && e.code === 'DSV_ERR_INVALID_REQUEST' && /Unsupported type "nope"/.test(e.message),
    );
    await assert.rejects(
      driver.addConstrained('bad2', [5, 6], { ...params, minTokens: 2 }, CHOICE),
      (e: unknown) => e instanceof EngineError && e.param === 'min_tokens',
    );
    await assert.rejects(
      driver.addConstrained('bad3', [5, 6], { ...params, ignoreEos: true }, CHOICE),
      (e: unknown) => e instanceof EngineError && e.param === 'ignore_eos',
    );
    assert.equal(core.numRequests, 0);
    await driver.addConstrained('good', [5, 6], { temperature: 0, maxTokens: 20 }, CHOICE);
    await driver.runToCompletion();
    assert.ok(['light', 'darkness'].includes(textOf(driver, 'good')));
  });
});
