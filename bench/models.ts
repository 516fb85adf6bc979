// Random-weight benchmark checkpoints (HF config.json contents). Shapes are fixed by the issues
// so results compare across runs and against the peer engine on the same weights.

export type HfConfig = Record<string, unknown>;

const common = {
  architectures: ['DeepseekV32ForCausalLM'],
  torch_dtype: 'float32',
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  rope_scaling: null,
  max_position_embeddings: 32768,
  bos_token_id: 0,
  eos_token_id: 1,
  tie_word_embeddings: false,
  first_k_dense_replace: 1,
  moe_layer_freq: 1,
  scoring_func: 'sigmoid',
  topk_method: 'noaux_tc',
  norm_topk_prob: true,
  routed_scaling_factor: 2.5,
  n_group: 1,
  topk_group: 1,
  num_nextn_predict_layers: 0,
};

/** bench-mini: the engine-core issue's shape (decode is bandwidth-bound at ~140 MB of weights per token). */
export const benchMini: HfConfig = {
  ...common,
  model_type: 'deepseek_v32',
  index_n_heads: 4,
  index_head_dim: 64,
  index_topk: 256,
  vocab_size: 32000,
  hidden_size: 512,
  num_hidden_layers: 8,
  intermediate_size: 1408,
  num_attention_heads: 8,
  num_key_value_heads: 8,
  q_lora_rank: 256,
  kv_lora_rank: 256,
  qk_nope_head_dim: 64,
  qk_rope_head_dim: 32,
  v_head_dim: 64,
  n_routed_experts: 16,
  n_shared_experts: 1,
  num_experts_per_tok: 2,
  moe_intermediate_size: 256,
};

/** bench-mini-dsa: the benchmark issue's variant with a wider indexer (8 heads x 64). */
export const benchMiniDsa: HfConfig = { ...benchMini, index_n_heads: 8 };

/**
 * bench-base: the bandwidth-bound regime (~3 GB of F32 weights, ~0.9 GB read per decode token). Dense first
 * layer (first_k_dense_replace 1) and the same DSA indexer as bench-mini-dsa (8 heads x 64, index_topk 256),
 * so llama.cpp runs it as deepseek32 like the -dsa model.
 */
export const benchBase: HfConfig = {
  ...common,
  model_type: 'deepseek_v32',
  index_n_heads: 8,
  index_head_dim: 64,
  index_topk: 256,
  vocab_size: 32000,
  hidden_size: 1024,
  num_hidden_layers: 12,
  intermediate_size: 2816,
  num_attention_heads: 16,
  num_key_value_heads: 16,
  q_lora_rank: 768,
  kv_lora_rank: 512,
  qk_nope_head_dim: 128,
  qk_rope_head_dim: 64,
  v_head_dim: 128,
  n_routed_experts: 32,
  n_shared_experts: 1,
  num_experts_per_tok: 4,
  moe_intermediate_size: 512,
};

/**
 * bench-lite: DeepSeek-V2-Lite's published config.json (deepseek-ai/DeepSeek-V2-Lite) exactly, for random
 * BF16 weights: 27 layers, hidden 2048, 16 heads, direct q_proj (no q-LoRA), kv_lora_rank 512, qk_nope 128,
 * qk_rope 64, v_head 128, 64 routed experts of 1408 + 2 shared, top-6 softmax greedy routing without
 * normalisation, first layer dense (10944), vocab 102400, YaRN factor 40 (mscale = mscale_all_dim = 0.707).
 * 15.7B parameters: 31.4 GB in BF16.
 */
export const benchLite: HfConfig = {
  architectures: ['DeepseekV2ForCausalLM'],
  model_type: 'deepseek_v2',
  torch_dtype: 'bfloat16',
  vocab_size: 102400,
  hidden_size: 2048,
  intermediate_size: 10944,
  moe_intermediate_size: 1408,
  num_hidden_layers: 27,
  num_attention_heads: 16,
  num_key_value_heads: 16,
  n_shared_experts: 2,
  n_routed_experts: 64,
  num_experts_per_tok: 6,
  routed_scaling_factor: 1.0,
  topk_method: 'greedy',
  n_group: 1,
  topk_group: 1,
  scoring_func: 'softmax',
  norm_topk_prob: false,
  aux_loss_alpha: 0.001,
  seq_aux: true,
  first_k_dense_replace: 1,
  moe_layer_freq: 1,
  q_lora_rank: null,
  kv_lora_rank: 512,
  qk_nope_head_dim: 128,
  qk_rope_head_dim: 64,
  v_head_dim: 128,
  max_position_embeddings: 163840,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  rope_scaling: { type: 'yarn', factor: 40, original_max_position_embeddings: 4096, beta_fast: 32, beta_slow: 1, mscale: 0.707, mscale_all_dim: 0.707 },
  bos_token_id: 100000,
  eos_token_id: 100001,
  tie_word_embeddings: false,
  attention_bias: false,
  hidden_act: 'silu',
  use_cache: true,
};

export const BENCH_MODELS: Readonly<Record<string, HfConfig>> = {
  'bench-mini': benchMini,
  'bench-mini-dsa': benchMiniDsa,
  'bench-base': benchBase,
};

/** The config of bench model `name`; throws naming the known ones for any other name. */
export function benchModel(name: string): HfConfig {
  const config = BENCH_MODELS[name];
  if (!config) throw new Error(`unknown bench model "${name}" (have: ${Object.keys(BENCH_MODELS).join(', ')})`);
  return config;
}

/** Parameter count of a bench config (the tensors tools/checkpoint/random_weights.ts writes). */
export function countParams(cfg: HfConfig): number {
  const n = (k: string): number => cfg[k] as number;
  const hidden = n('hidden_size');
  const heads = n('num_attention_heads');
  const qk = n('qk_nope_head_dim') + n('qk_rope_head_dim');
  const qLora = cfg.q_lora_rank as number | null;
  let attn = qLora === null ? heads * qk * hidden : qLora * hidden + qLora + heads * qk * qLora;
  attn += (n('kv_lora_rank') + n('qk_rope_head_dim')) * hidden + n('kv_lora_rank');
  attn += heads * (n('qk_nope_head_dim') + n('v_head_dim')) * n('kv_lora_rank') + hidden * heads * n('v_head_dim');
  if (cfg.model_type === 'deepseek_v32') {
    const ih = n('index_n_heads');
    const id = n('index_head_dim');
    attn += ih * id * (qLora ?? 0) + id * hidden + 2 * id + ih * hidden;
  }
  const swiglu = (inter: number): number => 3 * inter * hidden;
  const experts = n('n_routed_experts');
  const moe =
    experts * hidden +
    (cfg.topk_method === 'noaux_tc' ? experts : 0) +
    experts * swiglu(n('moe_intermediate_size')) +
    swiglu(n('moe_intermediate_size') * n('n_shared_experts'));
  const dense = swiglu(n('intermediate_size'));
  const layers = n('num_hidden_layers');
  const firstDense = Math.min(layers, n('first_k_dense_replace'));
  return 2 * n('vocab_size') * hidden + hidden + layers * (attn + 2 * hidden) + firstDense * dense + (layers - firstDense) * moe;
}
