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

export const BENCH_MODELS: Readonly<Record<string, HfConfig>> = {
  'bench-mini': benchMini,
  'bench-mini-dsa': benchMiniDsa,
};
