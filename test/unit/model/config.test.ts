import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { CheckpointError } from '../../../src/common/errors.ts';
import { parseModelConfig } from '../../../src/engine/checkpoint/config.ts';
import { tinyHfConfig } from '../../helpers/checkpoint_writer.ts';

const fixture = JSON.parse(readFileSync(new URL('../../fixtures/tiny-dsv32/config.json', import.meta.url), 'utf8'));

function withKeys(base: Record<string, unknown>, patch: Record<string, unknown>, drop: string[] = []): Record<string, unknown> {
  const out = { ...base, ...patch };
  for (const k of drop) delete out[k];
  return out;
}

function expectConfigError(raw: unknown, exact: string | null, ...parts: string[]): void {
  assert.throws(
    () => parseModelConfig(raw),
    (e: unknown) => {
      assert.ok(e instanceof CheckpointError, `expected CheckpointError, got ${String(e)}`);
      assert.equal(e.code, 'DSV_ERR_CONFIG');
      assert.ok(e.message.startsWith('config.json: '), e.message);
      if (exact !== null) assert.equal(e.message, exact);
      for (const p of parts) assert.ok(e.message.includes(p), `"${e.message}" lacks "${p}"`);
      return true;
    },
  );
}

describe('parseModelConfig', () => {
  it('maps the fixture config to camelCase and freezes it', () => {
    const c = parseModelConfig(fixture);
    assert.equal(c.modelType, 'deepseek_v32');
    assert.equal(c.qLoraRank, 32);
    assert.deepEqual(c.indexer, { nHeads: 4, headDim: 16, topk: 16 });
    assert.deepEqual(c.ropeScaling, { factor: 8, originalMaxPositionEmbeddings: 64, betaFast: 32, betaSlow: 1, mscale: 1, mscaleAllDim: 1 });
    assert.deepEqual(c.eosTokenIds, [1]);
    assert.equal(c.moe!.routedScalingFactor, 2.5);
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.moe) && Object.isFrozen(c.eosTokenIds));
  });

  it('applies V2 defaults (softmax, greedy, no normalisation, one group, scale 1)', () => {
    const raw = withKeys(tinyHfConfig({ modelType: 'deepseek_v2' }), {}, [
      'scoring_func',
      'topk_method',
      'norm_topk_prob',
      'n_group',
      'topk_group',
      'routed_scaling_factor',
      'moe_layer_freq',
      'first_k_dense_replace',
      'rope_scaling',
      'n_shared_experts',
    ]);
    const c = parseModelConfig(raw);
    assert.equal(c.qLoraRank, null);
    assert.equal(c.indexer, null);
    assert.equal(c.ropeScaling, null);
    assert.deepEqual(
      { ...c.moe },
      {
        nRoutedExperts: 4,
        nSharedExperts: 0,
        numExpertsPerTok: 2,
        moeIntermediateSize: 72,
        nGroup: 1,
        topkGroup: 1,
        scoringFunc: 'softmax',
        topkMethod: 'greedy',
        normTopkProb: false,
        routedScalingFactor: 1,
        firstKDenseReplace: 0,
        moeLayerFreq: 1,
      },
    );
  });

  it('applies V3 defaults and YaRN defaults (beta 32/1, mscale 1, mscale_all_dim 0)', () => {
    const raw = withKeys(
      tinyHfConfig({ modelType: 'deepseek_v3' }),
      {
        n_routed_experts: 16,
        rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 64 },
      },
      ['scoring_func', 'topk_method', 'norm_topk_prob', 'n_group', 'topk_group', 'routed_scaling_factor', 'first_k_dense_replace', 'eos_token_id'],
    );
    const c = parseModelConfig(raw);
    assert.equal(c.moe!.scoringFunc, 'sigmoid');
    assert.equal(c.moe!.topkMethod, 'noaux_tc');
    assert.equal(c.moe!.normTopkProb, true);
    assert.equal(c.moe!.nGroup, 8);
    assert.equal(c.moe!.topkGroup, 4);
    assert.equal(c.moe!.firstKDenseReplace, 3);
    assert.deepEqual(c.eosTokenIds, [1]);
    assert.deepEqual(c.ropeScaling, { factor: 4, originalMaxPositionEmbeddings: 64, betaFast: 32, betaSlow: 1, mscale: 1, mscaleAllDim: 0 });
  });

  it('treats absent or null n_routed_experts as all-dense and accepts eos lists', () => {
    assert.equal(parseModelConfig(withKeys(fixture, {}, ['n_routed_experts'])).moe, null);
    assert.equal(parseModelConfig(withKeys(fixture, { n_routed_experts: null })).moe, null);
    assert.deepEqual(parseModelConfig(withKeys(fixture, { eos_token_id: [1, 2] })).eosTokenIds, [1, 2]);
  });

  it('rejects an unknown model_type naming the allowed values', () => {
    expectConfigError(
      withKeys(fixture, { model_type: 'llama' }),
      'config.json: key "model_type" ("llama") must be one of "deepseek_v32", "deepseek_v3", "deepseek_v2"',
    );
  });

  it('names missing and mistyped keys', () => {
    expectConfigError(withKeys(fixture, {}, ['hidden_size']), 'config.json: required key "hidden_size" is missing');
    expectConfigError(withKeys(fixture, { kv_lora_rank: '32' }), null, 'key "kv_lora_rank" ("32")');
    expectConfigError(withKeys(fixture, { scoring_func: 'relu' }), null, 'key "scoring_func" ("relu")');
    expectConfigError(withKeys(fixture, {}, ['index_topk']), null, 'key "index_topk"', 'deepseek_v32');
    expectConfigError(withKeys(fixture, {}, ['moe_intermediate_size']), null, 'key "moe_intermediate_size"');
    expectConfigError('[]', null, 'JSON object');
  });

  it('rejects contradictions with the key and both values', () => {
    expectConfigError(withKeys(fixture, { num_experts_per_tok: 9 }), 'config.json: key "num_experts_per_tok" (9) must be <= n_routed_experts (8)');
    expectConfigError(withKeys(fixture, { n_group: 3 }), null, 'key "n_routed_experts" (8) must be divisible by n_group (3)');
    expectConfigError(withKeys(fixture, { topk_group: 5 }), null, 'key "topk_group" (5) must be <= n_group (4)');
    expectConfigError(withKeys(fixture, { topk_group: 1, num_experts_per_tok: 3 }), null, 'key "num_experts_per_tok" (3)', 'topk_group');
    expectConfigError(withKeys(fixture, { qk_rope_head_dim: 7 }), null, 'key "qk_rope_head_dim" (7) must be even');
    expectConfigError(withKeys(fixture, { index_head_dim: 4 }), null, 'key "index_head_dim" (4) must be >= qk_rope_head_dim (8)');
    expectConfigError(withKeys(fixture, { q_lora_rank: null }), null, 'key "q_lora_rank"', 'deepseek_v32');
  });

  it('validates rope_scaling', () => {
    const yarn = fixture.rope_scaling as Record<string, unknown>;
    expectConfigError(withKeys(fixture, { rope_scaling: { type: 'linear', factor: 2 } }), null, 'key "rope_scaling.type" ("linear")', 'yarn');
    expectConfigError(withKeys(fixture, { rope_scaling: withKeys(yarn, {}, ['factor']) }), 'config.json: required key "rope_scaling.factor" is missing');
    expectConfigError(
      withKeys(fixture, { rope_scaling: withKeys(yarn, {}, ['original_max_position_embeddings']) }),
      null,
      'rope_scaling.original_max_position_embeddings',
    );
    expectConfigError(withKeys(fixture, { rope_scaling: withKeys(yarn, { beta_fast: 1, beta_slow: 2 }) }), null, 'rope_scaling.beta_fast');
    assert.equal(parseModelConfig(withKeys(fixture, { rope_scaling: null })).ropeScaling, null);
  });
});
