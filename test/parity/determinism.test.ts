// Bitwise determinism across fresh executors on a MoE model big enough for ONNX Runtime to thread
// its kernels: a race in a reduction (as ScatterND 'add' had on duplicate rows) shows up here as
// differing logits.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { greedy, openEngine } from '../helpers/offline.ts';
import { randomCheckpoint } from '../../tools/checkpoint/random_weights.ts';
import { writeCheckpoint } from '../../tools/checkpoint/safetensors_writer.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'dsv-determinism-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const config = {
  model_type: 'deepseek_v32',
  vocab_size: 2000,
  hidden_size: 512,
  intermediate_size: 1024,
  num_hidden_layers: 5,
  num_attention_heads: 8,
  num_key_value_heads: 8,
  q_lora_rank: 256,
  kv_lora_rank: 256,
  qk_nope_head_dim: 64,
  qk_rope_head_dim: 32,
  v_head_dim: 64,
  index_n_heads: 4,
  index_head_dim: 64,
  index_topk: 64,
  n_routed_experts: 16,
  n_shared_experts: 1,
  num_experts_per_tok: 2,
  moe_intermediate_size: 256,
  n_group: 1,
  topk_group: 1,
  scoring_func: 'sigmoid',
  topk_method: 'noaux_tc',
  norm_topk_prob: true,
  routed_scaling_factor: 2.5,
  first_k_dense_replace: 1,
  moe_layer_freq: 1,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  rope_scaling: null,
  max_position_embeddings: 1024,
  bos_token_id: 0,
  eos_token_id: 1,
  tie_word_embeddings: false,
};

test('the same batch gives bitwise-identical logits in fresh engines', async () => {
  writeCheckpoint(dir, config, randomCheckpoint(config, { seed: 5 }), { dtype: 'F32' });
  const prompts = [200, 90, 1, 33].map((n, p) => Array.from({ length: n }, (_, i) => ((i * 7919 + p * 104729) % 1990) + 2));
  let reference: Float32Array[] | null = null;
  for (let run = 0; run < 6; run++) {
    const engine = await openEngine(dir, { runner: { kvCacheMemory: 2 ** 26 }, chunkSize: 64 });
    const results = await greedy(engine, prompts, { maxTokens: 3 });
    await engine.dispose();
    const logits = results.flatMap((r) => r.stepLogits);
    if (reference === null) reference = logits;
    else logits.forEach((row, i) => assert.deepEqual(row, reference![i], `run ${run}, row ${i} differs`));
  }
});
