// Speculative decoding with the MTP module on random-weight test checkpoints (with MTP tensors): the
// module's draft logits against a float64 reference; greedy output token for token and logprobs within
// 1e-4 of the same engine without speculation, under chunked prefill, preemption and prefix hits, with
// drafts from the module (mostly rejected: random weights) and from an oracle (accepted prefixes of
// every length); seeded sampling reproducible; the start-up error. Block integrity after every step.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EngineError } from '../../src/common/errors.ts';
import type { MtpWeights } from '../../src/engine/checkpoint/types.ts';
import { loadModel } from '../../src/engine/checkpoint/weights.ts';
import type { OfflineEngine, OfflineOptions, OfflineOutput } from '../../src/engine/offline.ts';
import { WeightStream } from '../../src/engine/quant/weight_stream.ts';
import type { SamplingParamsInit } from '../../src/engine/sampling/sampling_params.ts';
import type { SpeculativeConfig } from '../../src/engine/speculative/speculative_config.ts';
import type { StepStats } from '../../src/engine/step_stats.ts';
import { randomCheckpoint, tinyHfConfig, writeCheckpoint, type HfConfig, type TinyOptions } from '../helpers/checkpoint_writer.ts';
import { assertDrained, openEngine } from '../helpers/offline.ts';
import { referenceMtp } from '../helpers/reference_model.ts';
import { CHUNK, maxAbs, PROMPT, TOL, VARIANTS, writeVariant } from '../helpers/variants.ts';

const root = mkdtempSync(path.join(tmpdir(), 'dsv-spec-'));
after(() => rmSync(root, { recursive: true, force: true }));

const spec = (k: number, disableByBatchSize = 64): SpeculativeConfig => ({ method: 'mtp', numSpeculativeTokens: k, disableByBatchSize });
const MAX_TOKENS = 16;

/** A parity variant's checkpoint (test/helpers/variants.ts) with an MTP module. */
function withMtp(variantName: string): string {
  const v = VARIANTS.find((x) => x.name === variantName)!;
  return writeVariant(root, { ...v, opts: { ...v.opts, mtp: true } }, variantName);
}

/** config.json declares an MTP layer; `mtp` says whether its tensors are written. */
function writeMtpCheckpoint(name: string, opts: TinyOptions, overrides: HfConfig, seed: number, mtp = true): string {
  const config = { ...tinyHfConfig({ ...opts, mtp: true }), ...overrides };
  const dir = mkdtempSync(path.join(root, `${name}-`));
  writeCheckpoint(dir, config, randomCheckpoint(config, { seed, mtp }), { dtype: 'BF16' });
  return dir;
}

interface Run {
  readonly outs: OfflineOutput[];
  readonly stats: StepStats[];
}

async function run(dir: string, prompts: readonly (readonly number[])[], params: SamplingParamsInit, options: OfflineOptions = {}, repeat = 1): Promise<Run> {
  const engine: OfflineEngine = await openEngine(dir, { runner: { blockSize: 16, numKvBlocks: 64 }, chunkSize: CHUNK, ...options });
  try {
    const stats: StepStats[] = [];
    let outs: OfflineOutput[] = [];
    for (let i = 0; i < repeat; i++) {
      outs = await engine.generate(
        prompts.map((promptTokenIds) => ({ promptTokenIds, params })),
        (s) => stats.push(s),
      );
      assertDrained(engine);
    }
    return { outs, stats };
  } finally {
    await engine.dispose();
  }
}

const greedyParams: SamplingParamsInit = { temperature: 0, maxTokens: MAX_TOKENS, ignoreEos: true, logprobs: 2 };
const PROMPTS: readonly (readonly number[])[] = [PROMPT, PROMPT.slice(0, 9), PROMPT.slice(5, 38)];

function assertSameGreedy(a: readonly OfflineOutput[], b: readonly OfflineOutput[], label: string): void {
  a.forEach((o, i) => {
    assert.deepEqual(b[i]!.tokenIds, o.tokenIds, `${label}: request ${i} tokens`);
    assert.equal(b[i]!.logprobs.length, o.logprobs.length, `${label}: request ${i} logprobs`);
    o.logprobs.forEach((lp, n) => {
      const other = b[i]!.logprobs[n]!;
      assert.ok(Math.abs(lp.logprob - other.logprob) < TOL, `${label}: request ${i} token ${n} logprob ${other.logprob} vs ${lp.logprob}`);
      assert.deepEqual(
        other.topLogprobs.map((t) => t.tokenId),
        lp.topLogprobs.map((t) => t.tokenId),
        `${label}: request ${i} token ${n} top logprobs`,
      );
    });
  });
}

function specTotals(stats: readonly StepStats[]): { drafts: number; draftTokens: number; accepted: number; perPos: number[] } {
  const t = { drafts: 0, draftTokens: 0, accepted: 0, perPos: [] as number[] };
  for (const s of stats) {
    if (!s.specDecode) continue;
    t.drafts += s.specDecode.numDrafts;
    t.draftTokens += s.specDecode.numDraftTokens;
    t.accepted += s.specDecode.numAcceptedTokens;
    s.specDecode.acceptedPerPos.forEach((n, i) => (t.perPos[i] = (t.perPos[i] ?? 0) + n));
  }
  return t;
}

/**
 * Greedy drafts from the plain run's output: position p's draft is the true token p + 2 except at
 * positions where `wrong(p)`, so verification sees accepted prefixes of every length.
 */
function oracle(prompts: readonly (readonly number[])[], plain: readonly OfflineOutput[], wrong: (p: number) => boolean): OfflineOptions['onDraft'] {
  const truth = plain.map((o, i) => [...prompts[i]!, ...o.tokenIds]);
  return (requestId, position, _logits, draft) => {
    // The offline driver numbers requests offline-0, offline-1, ... in the order they are added.
    const seq = truth[Number(requestId.split('-')[1]) % truth.length]!;
    const t = seq[position + 2];
    return t === undefined || wrong(position) ? draft : t;
  };
}

describe('speculative decoding (MTP)', () => {
  let dsa: string;
  let fp8: string;
  let v3: string;
  let v2: string;
  before(() => {
    dsa = withMtp('deepseek_v32, BF16');
    fp8 = withMtp('deepseek_v32, FP8 e4m3 with ragged 128-blocks');
    v3 = withMtp('deepseek_v3 (no indexer)');
    v2 = withMtp('deepseek_v2, softmax greedy, norm_topk_prob true (normalised, no scaling factor)');
  });

  test('the MTP draft logits equal a float64 reference of the module (embedding first, position 0 masked)', async (t) => {
    for (const [name, dir] of [
      ['deepseek_v32', dsa],
      ['deepseek_v3', v3],
    ] as const) {
      const rows = new Map<number, Float32Array>();
      const r = await run(dir, [PROMPT], greedyParams, {
        speculative: spec(1),
        onDraft: (_id, position, logits, draft) => (rows.set(position, logits.slice()), draft),
      });
      const tokens = [...PROMPT, ...r.outs[0]!.tokenIds];
      const stream = WeightStream.open(dir, { quantization: 'none' });
      const mtp = (await stream.mtp(0)) as MtpWeights;
      stream.close();
      const ref = referenceMtp(loadModel(dir), mtp, tokens);
      const V = 300;
      let worst = 0;
      for (const [p, row] of rows) worst = Math.max(worst, maxAbs(row, ref, 0, p * V, V));
      assert.ok(rows.size >= MAX_TOKENS - 2, `${name}: ${rows.size} draft rows`);
      assert.ok(worst < TOL, `${name}: MTP logits differ from the reference by ${worst}`);
      t.diagnostic(`${name}: ${rows.size} draft rows, max |engine - reference| ${worst.toExponential(2)}`);
    }
  });

  for (const [name, dirOf] of [
    ['deepseek_v32', () => dsa],
    ['deepseek_v32 FP8', () => fp8],
    ['deepseek_v3', () => v3],
    ['deepseek_v2', () => v2],
  ] as const) {
    test(`${name}: greedy output and logprobs unchanged, with module drafts (k 1, 3) and oracle drafts (k 1-4)`, async (t) => {
      const dir = dirOf();
      const plain = await run(dir, PROMPTS, greedyParams);
      for (const k of [1, 3]) {
        const r = await run(dir, PROMPTS, greedyParams, { speculative: spec(k) });
        assertSameGreedy(plain.outs, r.outs, `module drafts, k ${k}`);
        const s = specTotals(r.stats);
        assert.ok(s.draftTokens > 0, 'drafts were verified');
        t.diagnostic(`module drafts k ${k}: ${s.accepted} / ${s.draftTokens} accepted`);
      }
      for (const k of [1, 2, 4]) {
        const r = await run(dir, PROMPTS, greedyParams, { speculative: spec(k), onDraft: oracle(PROMPTS, plain.outs, (p) => p % 5 === 3) });
        assertSameGreedy(plain.outs, r.outs, `oracle drafts, k ${k}`);
        const s = specTotals(r.stats);
        assert.ok(s.accepted > s.draftTokens / 2 && s.accepted < s.draftTokens, `k ${k}: ${s.accepted} / ${s.draftTokens} accepted`);
        assert.ok(
          s.perPos.every((n) => n > 0),
          `k ${k}: every draft position accepted sometimes (${s.perPos})`,
        );
        const steps = r.stats.filter((x) => x.numGeneratedTokens > 0).length;
        t.diagnostic(`oracle k ${k}: ${s.accepted} / ${s.draftTokens} accepted, per position ${s.perPos}; ${steps} sampling steps`);
      }
    });
  }

  test('preemption (a cache too small for all three) and prefix-cache hits keep greedy output unchanged', async () => {
    const many = [...PROMPTS, PROMPT.slice(3, 36), PROMPT.slice(1, 30)];
    const tight = { runner: { blockSize: 16, numKvBlocks: 9 } };
    const plain = await run(v3, many, greedyParams, tight);
    for (const onDraft of [undefined, oracle(many, plain.outs, (p) => p % 4 === 1)]) {
      const r = await run(v3, many, greedyParams, { ...tight, speculative: spec(2), ...(onDraft && { onDraft }) });
      assertSameGreedy(plain.outs, r.outs, onDraft ? 'oracle, preempted' : 'module, preempted');
      assert.ok(r.stats.at(-1)!.numPreemptionsTotal > 0, 'preemption happened');
    }
    // The second generate() of the same prompts hits the prefix cache (blocks cached by the first).
    const twice = await run(
      dsa,
      PROMPTS,
      greedyParams,
      { speculative: spec(2), onDraft: oracle(PROMPTS, (await run(dsa, PROMPTS, greedyParams)).outs, (p) => p % 3 === 0) },
      2,
    );
    assert.ok(twice.outs[0]!.numCachedTokens > 0, 'prefix hit');
    assertSameGreedy((await run(dsa, PROMPTS, greedyParams)).outs, twice.outs, 'prefix hits');
  });

  test('--quantization int4 and a bfloat16 KV cache: the MTP module is quantised too; greedy output unchanged', async () => {
    const runner = { blockSize: 16, numKvBlocks: 64, quantization: 'int4' as const, quantAccuracyLevel: 0 as const, kvCacheDtype: 'bfloat16' as const };
    const plain = await run(dsa, PROMPTS, greedyParams, { runner });
    for (const onDraft of [undefined, oracle(PROMPTS, plain.outs, (p) => p % 3 === 2)]) {
      const r = await run(dsa, PROMPTS, greedyParams, { runner, speculative: spec(2), ...(onDraft && { onDraft }) });
      assertSameGreedy(plain.outs, r.outs, onDraft ? 'int4, oracle' : 'int4, module');
    }
  });

  test('stops inside an accepted draft chain: max_tokens, stop token ids and EOS end where plain decoding ends', async () => {
    const plain = await run(dsa, PROMPTS, { ...greedyParams, maxTokens: 7 });
    const stopAt = plain.outs[0]!.tokenIds[3]!;
    const cases: SamplingParamsInit[] = [
      { ...greedyParams, maxTokens: 7 },
      { ...greedyParams, stopTokenIds: [stopAt] },
    ];
    for (const params of cases) {
      const want = await run(dsa, PROMPTS, params);
      const got = await run(dsa, PROMPTS, params, {
        speculative: spec(4),
        onDraft: oracle(PROMPTS, (await run(dsa, PROMPTS, greedyParams)).outs, () => false),
      });
      assertSameGreedy(want.outs, got.outs, JSON.stringify(params.stopTokenIds ?? params.maxTokens));
      want.outs.forEach((o, i) => assert.equal(got.outs[i]!.finishReason, o.finishReason));
    }
  });

  test('sampling: seeded runs are reproducible, penalties and filters included; unseeded ones still finish', async () => {
    const params: SamplingParamsInit = {
      temperature: 1.2,
      topP: 0.95,
      topK: 50,
      minP: 0.01,
      presencePenalty: 0.5,
      repetitionPenalty: 1.1,
      seed: 11,
      maxTokens: 24,
      ignoreEos: true,
      logprobs: 1,
    };
    const a = await run(dsa, PROMPTS, params, { speculative: spec(2) });
    const b = await run(dsa, PROMPTS, params, { speculative: spec(2) });
    a.outs.forEach((o, i) => assert.deepEqual(b.outs[i]!.tokenIds, o.tokenIds, `request ${i}`));
    const s = specTotals(a.stats);
    assert.ok(s.accepted > 0, `some sampled drafts were accepted (${s.accepted} / ${s.draftTokens})`);
    const unseeded = await run(dsa, PROMPTS, { ...params, seed: null }, { speculative: spec(2) });
    assert.ok(unseeded.outs.every((o) => o.tokenIds.length === 24));
  });

  test('graph runs per step include the MTP draft passes', async () => {
    // One request, so every decode step has the same forward pass with and without drafts (random weights
    // accept almost nothing; verification rows stay one attention group); the draft pass adds at least the
    // module's pre-attention, post-attention and head graphs.
    const perStep = (r: Run): number => {
      const decode = r.stats.filter((s) => s.numPrefillTokens === 0 && s.numGeneratedTokens > 0);
      return decode.reduce((n, s) => n + s.numGraphRuns, 0) / decode.length;
    };
    const plain = perStep(await run(dsa, [PROMPT], greedyParams));
    const drafted = perStep(await run(dsa, [PROMPT], greedyParams, { speculative: spec(1) }));
    assert.ok(drafted >= plain + 3, `graph runs per decode step: ${drafted} with drafts vs ${plain} without`);
  });

  test('disable_by_batch_size: no drafts while more requests run than the limit', async () => {
    const r = await run(dsa, PROMPTS, greedyParams, { speculative: spec(2, 2) });
    for (const s of r.stats) if (s.numRunning + s.numWaiting > 2) assert.equal(s.specDecode?.numDrafts ?? 0, 0);
    assert.ok(specTotals(r.stats).drafts > 0, 'drafts once the batch shrank');
  });

  test('a checkpoint without MTP tensors is refused at start-up, naming --speculative-config', async () => {
    const bare = writeMtpCheckpoint('bare', {}, { index_n_heads: 8 }, 22, false);
    await assert.rejects(run(bare, [PROMPT], greedyParams, { speculative: spec(1) }), (e: unknown) => {
      assert.ok(e instanceof EngineError && e.code === 'DSV_ERR_CONFIG');
      assert.match(
        e.message,
        /^--speculative-config: method "mtp" needs the checkpoint's MTP module, but it has no tensor of the MTP layer \(model\.layers\.3\.\*\)/,
      );
      return true;
    });
    const plain = await run(bare, [PROMPT], greedyParams); // serves fine without speculation
    assert.equal(plain.outs[0]!.tokenIds.length, MAX_TOKENS);
  });
});
