// Test-side checkpoint helpers: the tiny config family (dims not multiples of 128, so FP8 blocks are
// ragged) and raw header surgery for the corruption tests. Writing lives in tools/checkpoint.
import { readFileSync, writeFileSync } from 'node:fs';
import { randomCheckpoint, seededRandom } from '../../tools/checkpoint/random_weights.ts';
import {
  safetensorsBytes,
  writeCheckpoint,
  type HfConfig,
  type HostTensor,
  type RawTensor,
  type WriteDType,
  type WriteOptions,
} from '../../tools/checkpoint/safetensors_writer.ts';

export { randomCheckpoint, safetensorsBytes, seededRandom, writeCheckpoint };
export type { HfConfig, HostTensor, RawTensor, WriteDType, WriteOptions };

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

export interface TinyOptions {
  readonly modelType?: 'deepseek_v32' | 'deepseek_v3' | 'deepseek_v2';
  readonly qLoraRank?: number | null; // default 136 (v2 default: null)
  readonly ropeScaling?: boolean; // default true
  /** noaux_tc (sigmoid, grouped, bias) or V2-Lite greedy softmax; default by model type. */
  readonly routing?: 'noaux_tc' | 'greedy_softmax';
  readonly normTopkProb?: boolean;
  /** Adds an MTP module and a rotary inv_freq buffer (which the loader must ignore). */
  readonly extraTensors?: boolean;
  /** Adds an MTP module (num_nextn_predict_layers 1). */
  readonly mtp?: boolean;
  readonly seed?: number;
}

/** Tiny HF config; dims are deliberately not multiples of 128 so FP8 has ragged edge blocks. */
export function tinyHfConfig(opts: TinyOptions = {}): HfConfig {
  const modelType = opts.modelType ?? 'deepseek_v32';
  const routing = opts.routing ?? (modelType === 'deepseek_v2' ? 'greedy_softmax' : 'noaux_tc');
  const v2Lite = routing === 'greedy_softmax';
  return {
    architectures: ['DeepseekForCausalLM'],
    model_type: modelType,
    torch_dtype: 'bfloat16',
    vocab_size: 300,
    hidden_size: 160,
    intermediate_size: 200,
    num_hidden_layers: 3,
    num_attention_heads: 2,
    num_key_value_heads: 2,
    q_lora_rank: opts.qLoraRank !== undefined ? opts.qLoraRank : modelType === 'deepseek_v2' ? null : 136,
    kv_lora_rank: 48,
    qk_nope_head_dim: 16,
    qk_rope_head_dim: 8,
    v_head_dim: 16,
    moe_intermediate_size: 72,
    n_routed_experts: 4,
    n_shared_experts: v2Lite ? 2 : 1,
    num_experts_per_tok: 2,
    n_group: v2Lite ? 1 : 2,
    topk_group: 1,
    scoring_func: v2Lite ? 'softmax' : 'sigmoid',
    topk_method: v2Lite ? 'greedy' : 'noaux_tc',
    norm_topk_prob: opts.normTopkProb ?? !v2Lite,
    routed_scaling_factor: v2Lite ? 1.0 : 2.5,
    first_k_dense_replace: 1,
    moe_layer_freq: 1,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    max_position_embeddings: 256,
    rope_scaling:
      opts.ropeScaling === false
        ? null
        : { type: 'yarn', factor: 4, original_max_position_embeddings: 64, beta_fast: 32, beta_slow: 1, mscale: 1, mscale_all_dim: 1 },
    ...(modelType === 'deepseek_v32' ? { index_n_heads: 2, index_head_dim: 16, index_topk: 8 } : {}),
    bos_token_id: 0,
    eos_token_id: [1],
    tie_word_embeddings: false,
    num_nextn_predict_layers: opts.extraTensors || opts.mtp ? 1 : 0,
  };
}

/** Seeded random weights for `tinyHfConfig(opts)`. */
export function randomTinyCheckpoint(opts: TinyOptions = {}): { config: HfConfig; tensors: Map<string, HostTensor> } {
  const config = tinyHfConfig(opts);
  return { config, tensors: randomCheckpoint(config, { seed: opts.seed, extraTensors: opts.extraTensors, mtp: opts.mtp }) };
}
