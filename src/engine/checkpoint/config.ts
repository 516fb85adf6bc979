// HF config.json -> frozen ModelConfig. Shape-defining keys are required (a guessed 7168-wide default would only
// surface later as a confusing tensor-shape error); behavioural keys default as in HF's DeepseekV3Config (v3, v3.2)
// and the DeepSeek-V2 remote-code DeepseekV2Config.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { CheckpointError } from '../../common/errors.ts';
import { resolveModelFile } from './safetensors.ts';
import type { IndexerConfig, ModelConfig, ModelType, MoeConfig, YarnScaling } from './types.ts';

export const CONFIG_FILE = 'config.json';
const MODEL_TYPES = ['deepseek_v32', 'deepseek_v3', 'deepseek_v2'] as const satisfies readonly ModelType[];

const posInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();

const hfSchema = z.object({
  vocab_size: posInt,
  hidden_size: posInt,
  intermediate_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  q_lora_rank: posInt.nullable(),
  kv_lora_rank: posInt,
  qk_nope_head_dim: posInt,
  qk_rope_head_dim: posInt,
  v_head_dim: posInt,
  rms_norm_eps: z.number().positive().optional(),
  rope_theta: z.number().positive().optional(),
  max_position_embeddings: posInt.optional(),
  rope_scaling: z.record(z.string(), z.unknown()).nullable().optional(),
  n_routed_experts: posInt.nullable().optional(),
  n_shared_experts: nonNegInt.nullable().optional(),
  num_experts_per_tok: posInt.nullable().optional(),
  moe_intermediate_size: posInt.optional(),
  n_group: posInt.nullable().optional(),
  topk_group: posInt.nullable().optional(),
  scoring_func: z.enum(['sigmoid', 'softmax']).optional(),
  // 'gready' is the DeepSeek-V2 remote-code default's spelling.
  topk_method: z.enum(['noaux_tc', 'greedy', 'gready', 'group_limited_greedy']).optional(),
  norm_topk_prob: z.boolean().optional(),
  routed_scaling_factor: z.number().positive().optional(),
  first_k_dense_replace: nonNegInt.optional(),
  moe_layer_freq: posInt.optional(),
  index_n_heads: posInt.optional(),
  index_head_dim: posInt.optional(),
  index_topk: posInt.optional(),
  bos_token_id: nonNegInt.nullable().optional(),
  eos_token_id: z
    .union([nonNegInt, z.array(nonNegInt)])
    .nullable()
    .optional(),
  torch_dtype: z.string().nullable().optional(),
  dtype: z.string().nullable().optional(),
  num_nextn_predict_layers: nonNegInt.nullable().optional(),
});
type HfConfig = z.infer<typeof hfSchema>;

const yarnSchema = z.object({
  factor: z.number().min(1),
  original_max_position_embeddings: posInt,
  beta_fast: z.number().positive().default(32),
  beta_slow: z.number().positive().default(1),
  mscale: z.number().default(1),
  mscale_all_dim: z.number().default(0),
});

interface TypeDefaults {
  readonly maxPositionEmbeddings: number;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly nSharedExperts: number;
  readonly numExpertsPerTok: number | null; // null: required for MoE models
  readonly nGroup: number;
  readonly topkGroup: number;
  readonly scoringFunc: MoeConfig['scoringFunc'];
  readonly topkMethod: MoeConfig['topkMethod'];
  readonly normTopkProb: boolean;
  readonly routedScalingFactor: number;
  readonly firstKDenseReplace: number;
}

const V3_DEFAULTS: TypeDefaults = {
  maxPositionEmbeddings: 4096,
  bosTokenId: 0,
  eosTokenId: 1,
  nSharedExperts: 1,
  numExpertsPerTok: 8,
  nGroup: 8,
  topkGroup: 4,
  scoringFunc: 'sigmoid',
  topkMethod: 'noaux_tc',
  normTopkProb: true,
  routedScalingFactor: 2.5,
  firstKDenseReplace: 3,
};

const V2_DEFAULTS: TypeDefaults = {
  maxPositionEmbeddings: 2048,
  bosTokenId: 100000,
  eosTokenId: 100001,
  nSharedExperts: 0,
  numExpertsPerTok: null,
  nGroup: 1,
  topkGroup: 1,
  scoringFunc: 'softmax',
  topkMethod: 'greedy',
  normTopkProb: false,
  routedScalingFactor: 1,
  firstKDenseReplace: 0,
};

function configError(file: string, message: string): never {
  throw new CheckpointError('DSV_ERR_CONFIG', file, message);
}

function valueAt(raw: unknown, keys: readonly PropertyKey[]): unknown {
  let v = raw;
  for (const k of keys) v = typeof v === 'object' && v !== null ? (v as Record<PropertyKey, unknown>)[k] : undefined;
  return v;
}

function zodMessage(error: z.ZodError, raw: unknown, prefix: string): string {
  return error.issues
    .map((issue) => {
      const key = prefix + issue.path.map(String).join('.');
      const value = valueAt(raw, issue.path);
      if (value === undefined) return `required key "${key}" is missing`;
      return `key "${key}" (${JSON.stringify(value)}) is invalid: ${issue.message}`;
    })
    .join('; ');
}

/** Reads and validates `<dir>/config.json`. */
export function readModelConfig(dir: string): ModelConfig {
  let text: string;
  try {
    text = readFileSync(resolveModelFile(dir, CONFIG_FILE, CONFIG_FILE, 'model config'), 'utf8');
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    configError(CONFIG_FILE, `cannot read (${(e as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    configError(CONFIG_FILE, `not valid JSON (${(e as Error).message})`);
  }
  return parseModelConfig(raw);
}

/** Validates an HF config object; `file` names the source in error messages. */
export function parseModelConfig(raw: unknown, file = CONFIG_FILE): ModelConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) configError(file, 'must be a JSON object');
  const modelType = (raw as Record<string, unknown>).model_type;
  if (!MODEL_TYPES.includes(modelType as ModelType)) {
    configError(file, `key "model_type" (${JSON.stringify(modelType)}) must be one of ${MODEL_TYPES.map((t) => `"${t}"`).join(', ')}`);
  }
  const parsed = hfSchema.safeParse(raw);
  if (!parsed.success) configError(file, zodMessage(parsed.error, raw, ''));
  const hf = parsed.data;
  const type = modelType as ModelType;
  const defaults = type === 'deepseek_v2' ? V2_DEFAULTS : V3_DEFAULTS;
  const eos = hf.eos_token_id === undefined ? defaults.eosTokenId : hf.eos_token_id;
  const config: ModelConfig = {
    modelType: type,
    vocabSize: hf.vocab_size,
    hiddenSize: hf.hidden_size,
    intermediateSize: hf.intermediate_size,
    numHiddenLayers: hf.num_hidden_layers,
    numAttentionHeads: hf.num_attention_heads,
    qLoraRank: hf.q_lora_rank,
    kvLoraRank: hf.kv_lora_rank,
    qkNopeHeadDim: hf.qk_nope_head_dim,
    qkRopeHeadDim: hf.qk_rope_head_dim,
    vHeadDim: hf.v_head_dim,
    rmsNormEps: hf.rms_norm_eps ?? 1e-6,
    ropeTheta: hf.rope_theta ?? 10000,
    ropeScaling: parseRopeScaling(file, hf.rope_scaling ?? null),
    maxPositionEmbeddings: hf.max_position_embeddings ?? defaults.maxPositionEmbeddings,
    moe: parseMoe(file, hf, defaults),
    indexer: parseIndexer(file, hf, type),
    bosTokenId: hf.bos_token_id === undefined ? defaults.bosTokenId : hf.bos_token_id,
    eosTokenIds: eos === null ? [] : Array.isArray(eos) ? [...eos] : [eos],
    torchDtype: hf.torch_dtype ?? hf.dtype ?? 'unknown',
    numNextnPredictLayers: hf.num_nextn_predict_layers ?? 0,
  };
  checkConsistency(file, config);
  return deepFreeze(config);
}

function parseRopeScaling(file: string, rs: Record<string, unknown> | null): YarnScaling | null {
  if (rs === null) return null;
  const type = rs.rope_type ?? rs.type;
  if (type === 'default') return null; // HF's spelling of "no scaling"
  if (type !== 'yarn') {
    const key = rs.rope_type !== undefined ? 'rope_scaling.rope_type' : 'rope_scaling.type';
    configError(file, `key "${key}" (${JSON.stringify(type)}) is not supported: only "yarn" rope scaling is implemented`);
  }
  const parsed = yarnSchema.safeParse(rs);
  if (!parsed.success) configError(file, zodMessage(parsed.error, rs, 'rope_scaling.'));
  const y = parsed.data;
  if (y.beta_fast <= y.beta_slow) {
    configError(file, `key "rope_scaling.beta_fast" (${y.beta_fast}) must be > rope_scaling.beta_slow (${y.beta_slow})`);
  }
  return {
    factor: y.factor,
    originalMaxPositionEmbeddings: y.original_max_position_embeddings,
    betaFast: y.beta_fast,
    betaSlow: y.beta_slow,
    mscale: y.mscale,
    mscaleAllDim: y.mscale_all_dim,
  };
}

function parseMoe(file: string, hf: HfConfig, d: TypeDefaults): MoeConfig | null {
  if (hf.n_routed_experts === undefined || hf.n_routed_experts === null) return null;
  const required = (key: 'moe_intermediate_size' | 'num_experts_per_tok', v: number | null): number =>
    v ?? configError(file, `required key "${key}" is missing (needed because n_routed_experts is set)`);
  const method = hf.topk_method ?? d.topkMethod;
  return {
    nRoutedExperts: hf.n_routed_experts,
    nSharedExperts: hf.n_shared_experts ?? d.nSharedExperts,
    numExpertsPerTok: required('num_experts_per_tok', hf.num_experts_per_tok ?? d.numExpertsPerTok),
    moeIntermediateSize: required('moe_intermediate_size', hf.moe_intermediate_size ?? null),
    nGroup: hf.n_group ?? d.nGroup,
    topkGroup: hf.topk_group ?? d.topkGroup,
    scoringFunc: hf.scoring_func ?? d.scoringFunc,
    topkMethod: method === 'gready' ? 'greedy' : method,
    normTopkProb: hf.norm_topk_prob ?? d.normTopkProb,
    routedScalingFactor: hf.routed_scaling_factor ?? d.routedScalingFactor,
    firstKDenseReplace: hf.first_k_dense_replace ?? d.firstKDenseReplace,
    moeLayerFreq: hf.moe_layer_freq ?? 1,
  };
}

function parseIndexer(file: string, hf: HfConfig, type: ModelType): IndexerConfig | null {
  if (type !== 'deepseek_v32') return null;
  const keys = ['index_n_heads', 'index_head_dim', 'index_topk'] as const;
  for (const k of keys) {
    if (hf[k] === undefined) configError(file, `required key "${k}" is missing (needed for model_type "deepseek_v32")`);
  }
  return { nHeads: hf.index_n_heads!, headDim: hf.index_head_dim!, topk: hf.index_topk! };
}

function checkConsistency(file: string, c: ModelConfig): void {
  const check = (ok: boolean, message: string): void => {
    if (!ok) configError(file, message);
  };
  check(c.qkRopeHeadDim % 2 === 0, `key "qk_rope_head_dim" (${c.qkRopeHeadDim}) must be even (RoPE rotates pairs)`);
  if (c.indexer !== null) {
    check(c.indexer.headDim >= c.qkRopeHeadDim, `key "index_head_dim" (${c.indexer.headDim}) must be >= qk_rope_head_dim (${c.qkRopeHeadDim})`);
    check(c.qLoraRank !== null, 'key "q_lora_rank" must not be null for model_type "deepseek_v32" (the indexer reads the q latent)');
  }
  const m = c.moe;
  if (m === null) return;
  check(m.numExpertsPerTok <= m.nRoutedExperts, `key "num_experts_per_tok" (${m.numExpertsPerTok}) must be <= n_routed_experts (${m.nRoutedExperts})`);
  check(m.nRoutedExperts % m.nGroup === 0, `key "n_routed_experts" (${m.nRoutedExperts}) must be divisible by n_group (${m.nGroup})`);
  check(m.topkGroup <= m.nGroup, `key "topk_group" (${m.topkGroup}) must be <= n_group (${m.nGroup})`);
  if (m.topkMethod !== 'greedy') {
    const selectable = m.topkGroup * (m.nRoutedExperts / m.nGroup);
    check(
      m.numExpertsPerTok <= selectable,
      `key "num_experts_per_tok" (${m.numExpertsPerTok}) must be <= topk_group * n_routed_experts / n_group (${selectable})`,
    );
  }
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
