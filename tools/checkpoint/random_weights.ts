// Seeded random-weight checkpoints of the DeepSeek V2/V3/V3.2 family, in HF tensor layout. Tensor
// naming here is written independently of the loader (weights.ts) on purpose, so tests are not circular.
import type { HfConfig, HostTensor } from './safetensors_writer.ts';

/** mulberry32 uniform [0, 1) with Box-Muller normals. */
export function seededRandom(seed: number): { uniform: () => number; normal: () => number } {
  let s = seed >>> 0;
  const uniform = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = (): number => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal };
}

type Gen = (name: string, shape: number[], kind?: 'weight' | 'norm' | 'bias') => void;

function attentionTensors(cfg: HfConfig, p: string, add: Gen): void {
  const n = (k: string): number => cfg[k] as number;
  const hidden = n('hidden_size');
  const heads = n('num_attention_heads');
  const qk = n('qk_nope_head_dim') + n('qk_rope_head_dim');
  const qLora = cfg.q_lora_rank as number | null;
  if (qLora === null) add(`${p}q_proj.weight`, [heads * qk, hidden]);
  else {
    add(`${p}q_a_proj.weight`, [qLora, hidden]);
    add(`${p}q_a_layernorm.weight`, [qLora], 'norm');
    add(`${p}q_b_proj.weight`, [heads * qk, qLora]);
  }
  add(`${p}kv_a_proj_with_mqa.weight`, [n('kv_lora_rank') + n('qk_rope_head_dim'), hidden]);
  add(`${p}kv_a_layernorm.weight`, [n('kv_lora_rank')], 'norm');
  add(`${p}kv_b_proj.weight`, [heads * (n('qk_nope_head_dim') + n('v_head_dim')), n('kv_lora_rank')]);
  add(`${p}o_proj.weight`, [hidden, heads * n('v_head_dim')]);
  if (cfg.model_type !== 'deepseek_v32') return;
  add(`${p}indexer.wq_b.weight`, [n('index_n_heads') * n('index_head_dim'), qLora!]);
  add(`${p}indexer.wk.weight`, [n('index_head_dim'), hidden]);
  add(`${p}indexer.k_norm.weight`, [n('index_head_dim')], 'norm');
  add(`${p}indexer.k_norm.bias`, [n('index_head_dim')], 'bias');
  add(`${p}indexer.weights_proj.weight`, [n('index_n_heads'), hidden]);
}

function mlpTensors(cfg: HfConfig, p: string, moe: boolean, add: Gen): void {
  const hidden = cfg.hidden_size as number;
  const swiglu = (q: string, inter: number): void => {
    add(`${q}gate_proj.weight`, [inter, hidden]);
    add(`${q}up_proj.weight`, [inter, hidden]);
    add(`${q}down_proj.weight`, [hidden, inter]);
  };
  if (!moe) return swiglu(p, cfg.intermediate_size as number);
  const experts = cfg.n_routed_experts as number;
  const inter = cfg.moe_intermediate_size as number;
  add(`${p}gate.weight`, [experts, hidden]);
  if (cfg.topk_method === 'noaux_tc') add(`${p}gate.e_score_correction_bias`, [experts], 'bias');
  for (let j = 0; j < experts; j++) swiglu(`${p}experts.${j}.`, inter);
  swiglu(`${p}shared_experts.`, inter * (cfg.n_shared_experts as number));
}

export interface RandomCheckpointOptions {
  readonly seed?: number;
  /** Adds a rotary inv_freq buffer (the loader must ignore it) and implies `mtp`. */
  readonly extraTensors?: boolean;
  /**
   * Adds config.num_nextn_predict_layers MTP modules (at least one) at layer indices num_hidden_layers + i,
   * named as DeepSeek-V3's HF checkpoints name them: enorm, hnorm, eh_proj, a decoder layer, shared_head.
   * Drawn after every main-model tensor, so the main weights are the same with or without them.
   */
  readonly mtp?: boolean;
}

function mtpTensors(config: HfConfig, l: number, add: Gen): void {
  const hidden = config.hidden_size as number;
  const p = `model.layers.${l}.`;
  add(`${p}enorm.weight`, [hidden], 'norm');
  add(`${p}hnorm.weight`, [hidden], 'norm');
  add(`${p}eh_proj.weight`, [hidden, 2 * hidden]);
  layerTensors(config, l, add);
  add(`${p}shared_head.norm.weight`, [hidden], 'norm');
  add(`${p}shared_head.head.weight`, [config.vocab_size as number, hidden]);
}

function layerTensors(config: HfConfig, l: number, add: Gen): void {
  const hidden = config.hidden_size as number;
  const p = `model.layers.${l}.`;
  add(`${p}input_layernorm.weight`, [hidden], 'norm');
  add(`${p}post_attention_layernorm.weight`, [hidden], 'norm');
  attentionTensors(config, `${p}self_attn.`, add);
  mlpTensors(config, `${p}mlp.`, l >= (config.first_k_dense_replace as number), add);
}

/** Seeded random weights (fan-in scaled normals; norm weights 1 + 0.1 N) in HF layout for any config of the family. */
export function randomCheckpoint(config: HfConfig, opts: RandomCheckpointOptions = {}): Map<string, HostTensor> {
  const rng = seededRandom(opts.seed ?? 1234);
  const tensors = new Map<string, HostTensor>();
  const add: Gen = (name, shape, kind = 'weight') => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const gain = kind === 'weight' ? 1 / Math.sqrt(shape[shape.length - 1]!) : 0.1;
    for (let i = 0; i < data.length; i++) data[i] = (kind === 'norm' ? 1 : 0) + gain * rng.normal();
    tensors.set(name, { data, shape });
  };
  const hidden = config.hidden_size as number;
  const layers = config.num_hidden_layers as number;
  add('model.embed_tokens.weight', [config.vocab_size as number, hidden]);
  for (let l = 0; l < layers; l++) layerTensors(config, l, add);
  if (opts.extraTensors) add('model.layers.0.self_attn.rotary_emb.inv_freq', [4], 'bias');
  add('model.norm.weight', [hidden], 'norm');
  add('lm_head.weight', [config.vocab_size as number, hidden]);
  if (opts.mtp || opts.extraTensors) {
    const n = Math.max(1, (config.num_nextn_predict_layers as number | undefined) ?? 1);
    for (let i = 0; i < n; i++) mtpTensors(config, layers + i, add);
  }
  return tensors;
}
