// Bounded stress run of the engine loop (issue 14): requests arrive over time and mix greedy decodes
// with logprobs, echo + prompt logprobs, n > 1 groups sharing a prompt, and aborts at random steps,
// in a KV cache small enough to preempt repeatedly. Every request that is not aborted must match the
// golden tokens, logprobs and prompt logprobs exactly (1e-4); integrity holds after every step and
// nothing leaks at the end.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { EngineCore } from '../../src/engine/engine_core.ts';
import { logSumExp } from '../../src/engine/sampling/logprobs.ts';
import { EngineDriver } from '../helpers/engine_driver.ts';
import { FIXTURE_DIR, Golden } from '../helpers/golden.ts';

const golden = new Golden();
const prompts = golden.json.prompts;
const VOCAB = 512;
const TOL = 1e-4;

/** xorshift32: the workload is the same on every run. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

interface Spec {
  readonly id: string;
  readonly prompt: number;
  readonly maxTokens: number;
  readonly echo: boolean;
  readonly abortAtStep: number | null;
}

function goldenStepLogprob(p: number, n: number): number {
  const row = golden.floats(`greedy_step_logits.p${p}`).subarray(n * VOCAB, (n + 1) * VOCAB);
  return row[golden.greedyTokens(p)![n]!]! - logSumExp(row);
}

function goldenPromptLogprob(p: number, t: number): number {
  const row = golden.floats(`prefill_logits.p${p}`).subarray((t - 1) * VOCAB, t * VOCAB);
  return row[prompts[p]![t]!]! - logSumExp(row);
}

const cores: EngineCore[] = [];
after(async () => {
  for (const c of cores) await c.dispose();
});

test('stress: preemption, aborts, echo + logprobs and n > 1 together stay golden and leak nothing', { timeout: 60_000 }, async (t) => {
  const core = await EngineCore.create(FIXTURE_DIR, {
    runner: { blockSize: 16, numKvBlocks: 24 }, // the 300-token prompt alone needs 20
    scheduler: { maxNumSeqs: 12, maxNumBatchedTokens: 48, longPrefillTokenThreshold: 0, maxModelLen: 512, maxQueuedRequests: 256, maxQueuedTokens: 1 << 20 },
    enablePrefixCaching: true,
  });
  cores.push(core);
  const driver = new EngineDriver(core);
  const rand = rng(20261206);
  const specs: Spec[] = [];
  const arrivals = new Map<number, Spec[]>();
  const abortsAt = new Map<number, string[]>();
  for (let i = 0; i < 48; i++) {
    const prompt = Math.floor(rand() * prompts.length);
    const group = rand() < 0.25 ? 1 + Math.floor(rand() * 3) : 1; // n > 1: siblings share the prompt
    const arrival = Math.floor(rand() * 60);
    const echo = rand() < 0.3;
    for (let k = 0; k < group; k++) {
      const abortAtStep = rand() < 0.2 ? arrival + 1 + Math.floor(rand() * 30) : null;
      const spec: Spec = { id: `r${i}-${k}`, prompt, maxTokens: 1 + Math.floor(rand() * 16), echo, abortAtStep };
      specs.push(spec);
      arrivals.set(arrival, [...(arrivals.get(arrival) ?? []), spec]);
      if (abortAtStep !== null) abortsAt.set(abortAtStep, [...(abortsAt.get(abortAtStep) ?? []), spec.id]);
    }
  }
  const groupOf = (id: string): string => id.split('-')[0]!;
  let step = 0;
  const admit = (): void => {
    for (const s of arrivals.get(step) ?? []) {
      const params = { temperature: 0, maxTokens: s.maxTokens, ignoreEos: true, logprobs: 2, promptLogprobs: s.echo ? 1 : null };
      driver.add(s.id, prompts[s.prompt]!, params, { groupId: groupOf(s.id) });
    }
  };
  admit();
  while (core.hasWork() || step < 61) {
    if (core.hasWork()) await driver.step();
    step++;
    admit();
    const aborts = abortsAt.get(step) ?? [];
    if (aborts.length > 0) driver.absorb(core.finishRequests(aborts));
  }

  let checked = 0;
  for (const s of specs) {
    const r = driver.results.get(s.id)!;
    assert.ok(r.final, `${s.id} finished`);
    if (r.final.finishReason === 'abort') continue;
    assert.equal(r.final.finishReason, 'length', `${s.id}: ${r.final.errorMessage ?? ''}`);
    assert.deepEqual(r.tokens, golden.json.greedy_tokens[s.prompt]!.slice(0, s.maxTokens), `${s.id} tokens`);
    const lps = r.deltas.flatMap((d) => d.logprobs ?? []);
    assert.equal(lps.length, s.maxTokens);
    lps.forEach((lp, n) => assert.ok(Math.abs(lp.logprob - goldenStepLogprob(s.prompt, n)) < TOL, `${s.id} token ${n} logprob`));
    const pl = r.deltas.filter((d) => d.promptLogprobs);
    if (!s.echo) {
      assert.equal(pl.length, 0);
    } else {
      assert.equal(pl.length, 1, `${s.id}: prompt logprobs sent once`);
      const entries = pl[0]!.promptLogprobs!;
      assert.equal(entries.length, prompts[s.prompt]!.length);
      for (let t = 1; t < entries.length; t++)
        assert.ok(Math.abs(entries[t]!.logprob - goldenPromptLogprob(s.prompt, t)) < TOL, `${s.id} prompt position ${t}`);
    }
    checked++;
  }
  const aborted = specs.length - checked;
  const last = driver.stats[driver.stats.length - 1]!;
  assert.ok(core.scheduler.numPreemptionsTotal > 0, 'the cache ran out and preempted');
  assert.ok(last.prefixCacheHitTokens > 0, 'prefix hits happened');
  assert.ok(aborted > 0 && checked > 20, `checked ${checked}, aborted ${aborted}`);
  t.diagnostic(
    `${specs.length} requests: ${checked} checked golden, ${aborted} aborted, ${core.scheduler.numPreemptionsTotal} preemptions, ${last.prefixCacheHitTokens} prefix-hit tokens, ${driver.numSteps} steps`,
  );
  driver.assertNoLeaks();
});
