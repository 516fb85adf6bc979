// Writes HF-layout test checkpoints (config.json + safetensors, optionally sharded and/or FP8) and generates
// seeded random tiny DeepSeek checkpoints. Tensor naming here is written independently of weights.ts on purpose.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { encodeFromFloat32, quantizeFp8Blocks } from '../../src/engine/model/dtype.ts';

export type WriteDType = 'F32' | 'BF16' | 'F16' | 'F8_E4M3';

export interface HostTensor {
  readonly data: Float32Array;
  readonly shape: readonly number[];
}

export interface RawTensor {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

export type HfConfig = Record<string, unknown>;

/** Serialises tensors in the given order; the JSON header is space-padded to a multiple of 8 like the reference writer. */
export function safetensorsBytes(entries: readonly RawTensor[], metadata: Record<string, string> = { format: 'pt' }): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const e of entries) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + e.bytes.length] };
    offset += e.bytes.length;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const headerLen = Math.ceil(json.length / 8) * 8;
  const out = Buffer.alloc(8 + headerLen + offset, 0x20);
  out.writeBigUInt64LE(BigInt(headerLen), 0);
  json.copy(out, 8);
  let at = 8 + headerLen;
  for (const e of entries) {
    out.set(e.bytes, at);
    at += e.bytes.length;
  }
  return out;
}

/** Reads a safetensors file's header JSON and data section (test-side, no validation). */
export function readRawSafetensors(file: string): { header: Record<string, any>; data: Buffer } {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  return { header: JSON.parse(buf.subarray(8, 8 + n).toString('utf8')), data: buf.subarray(8 + n) };
}

/** Rewrites a file's header through `mutate`, keeping the data section byte-for-byte. */
export function rewriteHeader(file: string, mutate: (header: Record<string, any>) => void): void {
  const { header, data } = readRawSafetensors(file);
  mutate(header);
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([len, json, data]));
}

// Real DeepSeek FP8 checkpoints quantise linear weights only; these stay in high precision.
function staysFullPrecision(name: string, shape: readonly number[]): boolean {
  return shape.length !== 2 || /norm/.test(name) || name.endsWith('mlp.gate.weight')
    || name === 'model.embed_tokens.weight' || name === 'lm_head.weight';
}

function encodeTensor(name: string, t: HostTensor, dtype: WriteDType): RawTensor[] {
  if (dtype !== 'F8_E4M3') return [{ name, dtype, shape: t.shape, bytes: encodeFromFloat32(t.data, dtype) }];
  if (staysFullPrecision(name, t.shape)) return [{ name, dtype: 'F32', shape: t.shape, bytes: encodeFromFloat32(t.data, 'F32') }];
  const [rows, cols] = t.shape;
  const { q, scaleInv } = quantizeFp8Blocks(t.data, rows, cols);
  return [
    { name, dtype: 'F8_E4M3', shape: t.shape, bytes: q },
    { name: `${name}_scale_inv`, dtype: 'F32', shape: [Math.ceil(rows / 128), Math.ceil(cols / 128)], bytes: encodeFromFloat32(scaleInv, 'F32') },
  ];
}

function splitShards(entries: RawTensor[], shards: number): RawTensor[][] {
  const total = entries.reduce((s, e) => s + e.bytes.length, 0);
  const out: RawTensor[][] = Array.from({ length: shards }, () => []);
  let acc = 0;
  for (const e of entries) {
    out[Math.min(shards - 1, Math.floor((acc * shards) / total))].push(e);
    acc += e.bytes.length;
  }
  return out;
}

export interface WriteOptions {
  readonly dtype: WriteDType;
  readonly shards?: number;
}

/** Writes config.json plus model.safetensors, or N shards and model.safetensors.index.json when shards > 1. */
export function writeCheckpoint(dir: string, hfConfig: HfConfig, tensors: ReadonlyMap<string, HostTensor>, opts: WriteOptions): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(hfConfig, null, 2));
  const entries = [...tensors].flatMap(([name, t]) => encodeTensor(name, t, opts.dtype));
  const shards = opts.shards ?? 1;
  if (shards <= 1) {
    writeFileSync(path.join(dir, 'model.safetensors'), safetensorsBytes(entries));
    return;
  }
  const weightMap: Record<string, string> = {};
  splitShards(entries, shards).forEach((group, i) => {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    writeFileSync(path.join(dir, file), safetensorsBytes(group));
    for (const e of group) weightMap[e.name] = file;
  });
  const totalSize = entries.reduce((s, e) => s + e.bytes.length, 0);
  writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2));
}

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

export interface TinyOptions {
  readonly modelType?: 'deepseek_v32' | 'deepseek_v3' | 'deepseek_v2';
  readonly qLoraRank?: number | null; // default 136 (v2 default: null)
  readonly ropeScaling?: boolean; // default true
  /** noaux_tc (sigmoid, grouped, bias) or V2-Lite greedy softmax; default by model type. */
  readonly routing?: 'noaux_tc' | 'greedy_softmax';
  readonly normTopkProb?: boolean;
  /** Adds tensors the loader must ignore: an MTP layer and a rotary inv_freq buffer. */
  readonly extraTensors?: boolean;
  readonly seed?: number;
}

/** Tiny HF config; dims are deliberately not multiples of 128 so FP8 has ragged edge blocks. */
export function tinyHfConfig(opts: TinyOptions = {}): HfConfig {
  const modelType = opts.modelType ?? 'deepseek_v32';
  const routing = opts.routing ?? (modelType === 'deepseek_v2' ? 'greedy_softmax' : 'noaux_tc');
  const v2Lite = routing === 'greedy_softmax';
  return {
    architectures: ['DeepseekForCausalLM'], model_type: modelType, torch_dtype: 'bfloat16',
    vocab_size: 300, hidden_size: 160, intermediate_size: 200, num_hidden_layers: 3, num_attention_heads: 2,
    num_key_value_heads: 2, q_lora_rank: opts.qLoraRank !== undefined ? opts.qLoraRank : modelType === 'deepseek_v2' ? null : 136,
    kv_lora_rank: 48, qk_nope_head_dim: 16, qk_rope_head_dim: 8, v_head_dim: 16,
    moe_intermediate_size: 72, n_routed_experts: 4, n_shared_experts: v2Lite ? 2 : 1, num_experts_per_tok: 2,
    n_group: v2Lite ? 1 : 2, topk_group: 1, scoring_func: v2Lite ? 'softmax' : 'sigmoid', topk_method: v2Lite ? 'greedy' : 'noaux_tc',
    norm_topk_prob: opts.normTopkProb ?? !v2Lite, routed_scaling_factor: v2Lite ? 1.0 : 2.5,
    first_k_dense_replace: 1, moe_layer_freq: 1, rms_norm_eps: 1e-6, rope_theta: 10000, max_position_embeddings: 256,
    rope_scaling: opts.ropeScaling === false ? null
      : { type: 'yarn', factor: 4, original_max_position_embeddings: 64, beta_fast: 32, beta_slow: 1, mscale: 1, mscale_all_dim: 1 },
    ...(modelType === 'deepseek_v32' ? { index_n_heads: 2, index_head_dim: 16, index_topk: 8 } : {}),
    bos_token_id: 0, eos_token_id: [1], tie_word_embeddings: false, num_nextn_predict_layers: opts.extraTensors ? 1 : 0,
  };
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

/** Seeded random weights (fan-in scaled normals; norm weights 1 + 0.1 N) in HF layout for `tinyHfConfig(opts)`. */
export function randomTinyCheckpoint(opts: TinyOptions = {}): { config: HfConfig; tensors: Map<string, HostTensor> } {
  const config = tinyHfConfig(opts);
  const rng = seededRandom(opts.seed ?? 1234);
  const tensors = new Map<string, HostTensor>();
  const add: Gen = (name, shape, kind = 'weight') => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const gain = kind === 'weight' ? 1 / Math.sqrt(shape[shape.length - 1]) : 0.1;
    for (let i = 0; i < data.length; i++) data[i] = (kind === 'norm' ? 1 : 0) + gain * rng.normal();
    tensors.set(name, { data, shape });
  };
  const hidden = config.hidden_size as number;
  const layers = config.num_hidden_layers as number;
  add('model.embed_tokens.weight', [config.vocab_size as number, hidden]);
  for (let l = 0; l < layers + (opts.extraTensors ? 1 : 0); l++) {
    const p = `model.layers.${l}.`;
    add(`${p}input_layernorm.weight`, [hidden], 'norm');
    add(`${p}post_attention_layernorm.weight`, [hidden], 'norm');
    attentionTensors(config, `${p}self_attn.`, add);
    mlpTensors(config, `${p}mlp.`, l >= (config.first_k_dense_replace as number), add);
  }
  if (opts.extraTensors) add('model.layers.0.self_attn.rotary_emb.inv_freq', [4], 'bias');
  add('model.norm.weight', [hidden], 'norm');
  add('lm_head.weight', [config.vocab_size as number, hidden]);
  return { config, tensors };
}
