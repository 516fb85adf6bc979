// Engine loop on the shared fixture: continuous batching, chunked prefill, preemption, prefix
// caching, aborts, failure isolation and seeded sampling; integrity checked after every step.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { EngineCore } from '../../src/engine/engine_core.ts';
import type { StepPlan } from '../../src/engine/model/step_plan.ts';
import type { ModelRunnerOptions } from '../../src/engine/model_runner.ts';
import type { SchedulerConfig } from '../../src/engine/scheduler.ts';
import { logSumExp } from '../../src/engine/sampling/logprobs.ts';
import { EngineDriver } from '../helpers/engine_driver.ts';
import { FIXTURE_DIR, Golden } from '../helpers/golden.ts';
import { at } from '../helpers/at.ts';

const golden = new Golden();
const prompts = golden.json.prompts;
const STEPS = 16;
const VOCAB = 512;
const cores: EngineCore[] = [];

async function makeCore(runner: ModelRunnerOptions & { enablePrefixCaching?: boolean }, scheduler: Partial<SchedulerConfig> = {}): Promise<EngineCore> {
  const { enablePrefixCaching = true, ...runnerOptions } = runner;
  const core = await EngineCore.create(FIXTURE_DIR, {
    runner: { blockSize: 16, numKvBlocks: 64, ...runnerOptions },
    scheduler: {
      maxNumSeqs: 16,
      maxNumBatchedTokens: 512,
      longPrefillTokenThreshold: 0,
      maxModelLen: 512,
      maxQueuedRequests: 64,
      maxQueuedTokens: 100000,
      ...scheduler,
    },
    enablePrefixCaching,
  });
  cores.push(core);
  return core;
}

/** For each sequence of the plan (caller order), its execution rows. */
function rowsOfSequences(plan: StepPlan): number[][] {
  const rows: number[][] = [];
  for (const g of plan.groups) {
    g.seqIndex.forEach((seq, b) => (rows[seq] = Array.from({ length: g.queryLen }, (_, j) => g.rowStart + b * g.queryLen + j)));
  }
  return rows;
}

/** Golden logprob of token n of prompt p: log_softmax of the golden step logits. */
function goldenLogprob(p: number, n: number): number {
  const row = golden.floats(`greedy_step_logits.p${p}`).subarray(n * VOCAB, (n + 1) * VOCAB);
  return at(row, at(golden.greedyTokens(p), n, 'greedy token')) - logSumExp(row);
}

function addGoldenPrompts(driver: EngineDriver, suffix = '', extra: { logprobs?: number } = {}): void {
  prompts.forEach((prompt, p) => driver.add(`p${p}${suffix}`, prompt, { temperature: 0, maxTokens: STEPS, ignoreEos: true, logprobs: extra.logprobs ?? null }));
}

function assertGolden(driver: EngineDriver, suffix = '', withLogprobs = false): void {
  prompts.forEach((_, p) => {
    const r = driver.results.get(`p${p}${suffix}`)!;
    assert.deepEqual(r.tokens, golden.greedyTokens(p), `prompt ${p}${suffix} tokens`);
    assert.equal(r.final?.finishReason, 'length');
    if (!withLogprobs) return;
    const lps = r.deltas.flatMap((d) => d.logprobs ?? []);
    assert.equal(lps.length, STEPS);
    lps.forEach((lp, n) =>
      assert.ok(Math.abs(lp.logprob - goldenLogprob(p, n)) < 1e-4, `prompt ${p} step ${n} logprob ${lp.logprob} vs ${goldenLogprob(p, n)}`),
    );
  });
}

describe('engine core on the shared fixture', () => {
  after(async () => {
    for (const c of cores) await c.dispose();
  });

  test('five prompts concurrently with a 13-token budget: chunked prefill mixed with decodes', async () => {
    const driver = new EngineDriver(await makeCore({}, { maxNumBatchedTokens: 13 }));
    addGoldenPrompts(driver, '', { logprobs: 3 });
    await driver.runToCompletion();
    assertGolden(driver, '', true);
    assert.ok(
      driver.stats.some((s) => s.numDecodeTokens > 0 && s.numPrefillTokens > 0),
      'some step mixed prefill and decode',
    );
    assert.ok(driver.stats.every((s) => s.numScheduledTokens <= 13));
    driver.assertNoLeaks();
  });

  test('a KV cache too small for all five forces preemption; greedy output is unchanged', async () => {
    // Needs 2+2+4+9+20 = 37 blocks of 16 for everything at once; 24 fit the longest alone.
    const driver = new EngineDriver(await makeCore({ numKvBlocks: 24, enablePrefixCaching: false }, { maxNumBatchedTokens: 64 }));
    addGoldenPrompts(driver);
    await driver.runToCompletion();
    assert.ok(driver.core.scheduler.numPreemptionsTotal > 0, 'preemption happened');
    assertGolden(driver);
    driver.assertNoLeaks();
  });

  test('a second run of the same prompts is served from the prefix cache', async () => {
    const driver = new EngineDriver(await makeCore({ numKvBlocks: 96 }));
    addGoldenPrompts(driver, '-first');
    await driver.runToCompletion();
    addGoldenPrompts(driver, '-second');
    await driver.runToCompletion();
    assertGolden(driver, '-first');
    assertGolden(driver, '-second');
    const cached = prompts.map((_, p) => driver.results.get(`p${p}-second`)!.final!.numCachedTokens);
    assert.ok(at(cached, 4) >= 288 && at(cached, 3) >= 112, `cached tokens ${cached}`);
    cached.forEach((c, p) => assert.ok(c < golden.prompt(p).length, 'a hit never covers the last prompt token'));
    driver.assertNoLeaks();
  });

  test('aborts at random points free everything; the other requests still match golden', async () => {
    const driver = new EngineDriver(await makeCore({ numKvBlocks: 48 }, { maxNumBatchedTokens: 32 }));
    addGoldenPrompts(driver);
    for (let i = 0; i < 6; i++) driver.add(`victim${i}`, golden.prompt(4).slice(i * 7, i * 7 + 150), { temperature: 0, maxTokens: 40, ignoreEos: true });
    let step = 0;
    await driver.runToCompletion(() => {
      step++;
      if (step % 3 === 0) driver.absorb(driver.core.finishRequests([`victim${step / 3 - 1}`]));
    });
    assertGolden(driver);
    for (let i = 0; i < 6; i++) assert.ok(['abort', 'length'].includes(driver.results.get(`victim${i}`)!.final!.finishReason!));
    assert.ok([...driver.results.values()].some((r) => r.final?.finishReason === 'abort'));
    driver.assertNoLeaks();
  });

  test('a request whose forward pass fails ends with "error"; the batch goes on', async () => {
    const core = await makeCore({});
    const model = core.runner.model;
    const realForward = model.forward.bind(model);
    const used = new Set([...prompts.flat(), ...golden.json.greedy_tokens.flat()]);
    const POISON = [...Array(VOCAB).keys()].find((id) => id > 1 && !used.has(id))!;
    model.forward = async (plan, profiler, hooks) => {
      if (plan.tokenIds.includes(POISON)) throw new Error('injected failure');
      return realForward(plan, profiler, hooks);
    };
    const driver = new EngineDriver(core);
    addGoldenPrompts(driver);
    driver.add('poisoned', [at(golden.prompt(2), 0), POISON, at(golden.prompt(2), 1)], { temperature: 0, maxTokens: 4 });
    await driver.runToCompletion();
    model.forward = realForward;
    assert.equal(driver.results.get('poisoned')!.final!.finishReason, 'error');
    assert.match(driver.results.get('poisoned')!.final!.errorMessage!, /injected failure/);
    assertGolden(driver);
    driver.assertNoLeaks();
  });

  test('NaN logits end that request with "error"; the others match golden', async () => {
    const core = await makeCore({});
    const model = core.runner.model;
    const realForward = model.forward.bind(model);
    const used = new Set([...prompts.flat(), ...golden.json.greedy_tokens.flat()]);
    const MARK = [...Array(VOCAB).keys()].find((id) => id > 1 && !used.has(id))!;
    model.forward = async (plan, profiler, hooks) => {
      const out = await realForward(plan, profiler, hooks);
      rowsOfSequences(plan).forEach((rows, i) => {
        if (rows.some((r) => plan.tokenIds[r] === MARK)) out.logits.fill(NaN, out.logitOffsets[i]! * VOCAB, out.logitOffsets[i + 1]! * VOCAB);
      });
      return out;
    };
    const driver = new EngineDriver(core);
    addGoldenPrompts(driver);
    driver.add('nan', [at(golden.prompt(2), 0), MARK], { temperature: 0.7, maxTokens: 4 });
    await driver.runToCompletion();
    model.forward = realForward;
    assert.equal(driver.results.get('nan')!.final!.finishReason, 'error');
    assertGolden(driver);
    driver.assertNoLeaks();
  });

  test('seeded sampling is reproducible whatever else is batched', async () => {
    const params = { temperature: 1.0, topP: 0.9, seed: 1234, maxTokens: 12, ignoreEos: true };
    const alone = new EngineDriver(await makeCore({}));
    alone.add('s', golden.prompt(2), params);
    await alone.runToCompletion();
    const crowded = new EngineDriver(await makeCore({}, { maxNumBatchedTokens: 17 }));
    addGoldenPrompts(crowded);
    crowded.add('s', golden.prompt(2), params);
    crowded.add('other', golden.prompt(3), { ...params, seed: 99 });
    await crowded.runToCompletion();
    assert.deepEqual(crowded.results.get('s')!.tokens, alone.results.get('s')!.tokens);
    assert.notDeepEqual(crowded.results.get('other')!.tokens.slice(0, 12), crowded.results.get('s')!.tokens);
    assertGolden(crowded);
  });

  test('prompt logprobs match the golden prefill logits', async () => {
    const driver = new EngineDriver(await makeCore({}, { maxNumBatchedTokens: 50 }));
    driver.add('pl', golden.prompt(3), { temperature: 0, maxTokens: 2, promptLogprobs: 2 });
    await driver.runToCompletion();
    const pl = driver.results.get('pl')!.deltas.find((d) => d.promptLogprobs)!.promptLogprobs!;
    assert.equal(pl.length, golden.prompt(3).length);
    assert.equal(pl[0], null);
    const g = golden.floats('prefill_logits.p3');
    for (const [t, token] of golden.prompt(3).entries()) {
      if (t === 0) continue;
      const row = g.subarray((t - 1) * VOCAB, t * VOCAB);
      assert.ok(Math.abs(pl[t]!.logprob - (at(row, token) - logSumExp(row))) < 1e-4, `position ${t}`);
      assert.equal(pl[t]!.topLogprobs.length, 2);
    }
    driver.assertNoLeaks();
  });

  test('prompt logprobs stay exact when the request is preempted during its prefill', async () => {
    // Issue 14's reproduction: 24 blocks of 16, a 64-token budget, three long decodes crowding a
    // 300-token echo request (admitted last, so it is the preemption victim while it prefills).
    const driver = new EngineDriver(await makeCore({ numKvBlocks: 24, enablePrefixCaching: false }, { maxNumBatchedTokens: 64 }));
    for (let i = 0; i < 3; i++) driver.add(`long${i}`, golden.prompt(2), { temperature: 0, maxTokens: 120, ignoreEos: true });
    driver.add('pl', golden.prompt(4), { temperature: 0, maxTokens: 2, promptLogprobs: 1 });
    let preemptedMidPrefill = 0;
    await driver.runToCompletion((d) => {
      const r = d.core.scheduler.getRequest('pl');
      if (r && r.numPreemptions > 0 && r.numComputedTokens < r.numPromptTokens) preemptedMidPrefill++;
    });
    assert.ok(preemptedMidPrefill > 0, 'the echo request was preempted during its prefill');
    const deltas = driver.results.get('pl')!.deltas.filter((d) => d.promptLogprobs);
    assert.equal(deltas.length, 1, 'prompt logprobs are sent once');
    const pl = deltas[0]!.promptLogprobs!;
    assert.equal(pl.length, golden.prompt(4).length);
    assert.equal(pl[0], null);
    const g = golden.floats('prefill_logits.p4');
    for (let t = 1; t < golden.prompt(4).length; t++) {
      const row = g.subarray((t - 1) * VOCAB, t * VOCAB);
      assert.equal(pl[t]!.tokenId, golden.prompt(4)[t]);
      assert.ok(Math.abs(pl[t]!.logprob - (row[golden.prompt(4)[t]!]! - logSumExp(row))) < 1e-4, `position ${t}`);
    }
    driver.assertNoLeaks();
  });

  test('n > 1 samples of one prompt share its cached blocks', async () => {
    const driver = new EngineDriver(await makeCore({}));
    for (let i = 0; i < 3; i++) driver.add(`g-${i}`, golden.prompt(4), { temperature: 0.8, seed: 10 + i, maxTokens: 4, ignoreEos: true }, { groupId: 'g' });
    await driver.runToCompletion();
    const cached = [0, 1, 2].map((i) => driver.results.get(`g-${i}`)!.final!.numCachedTokens);
    assert.deepEqual(cached, [0, 288, 288]);
    driver.assertNoLeaks();
  });

  test('admission control: queue bounds give QUEUE_FULL, over-long prompts CONTEXT_LENGTH', async () => {
    const core = await makeCore({}, { maxQueuedRequests: 2, maxQueuedTokens: 400, maxModelLen: 320 });
    const driver = new EngineDriver(core);
    driver.add('a', golden.prompt(3), { maxTokens: 4 });
    driver.add('b', golden.prompt(3), { maxTokens: 4 });
    assert.throws(() => driver.add('c', golden.prompt(1), { maxTokens: 4 }), { code: 'DSV_ERR_QUEUE_FULL' });
    await driver.runToCompletion();
    driver.add('d', golden.prompt(3), { maxTokens: 4 });
    assert.throws(() => driver.add('e', golden.prompt(4), { maxTokens: 4 }), { code: 'DSV_ERR_QUEUE_FULL' }); // 120 + 300 queued tokens > 400
    assert.throws(() => driver.add('f', golden.prompt(4), { maxTokens: 30 }), { code: 'DSV_ERR_CONTEXT_LENGTH', message: /320.*300.*30/ });
    assert.throws(() => driver.add('g', [1, 2, VOCAB], { maxTokens: 4 }), { code: 'DSV_ERR_INVALID_REQUEST' });
    await driver.runToCompletion();
    driver.assertNoLeaks();
  });
});
