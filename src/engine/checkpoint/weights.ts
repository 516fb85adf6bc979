// loadModel: config.json + safetensors -> LoadedModel. Every tensor the config implies must exist with exactly the
// derived shape and an allowed dtype; everything else in the checkpoint (MTP layers, rotary inv_freq, ...) is ignored.
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { CheckpointError } from '../../common/errors.ts';
import { readModelConfig } from './config.ts';
import { decodeToFloat32, dequantizeFp8Blocks, fp8ScaleShape, type FloatDType } from './dtype.ts';
import { Checkpoint, type DType, type TensorInfo } from './safetensors.ts';
import type {
  AttentionWeights,
  IndexerWeights,
  LayerWeights,
  LinearWeight,
  LoadedModel,
  ModelConfig,
  ModelWeights,
  MoeConfig,
  MoeWeights,
  MtpWeights,
  QueryProjection,
  SwiGluWeights,
  Tensor,
} from './types.ts';

const MATRIX_DTYPES: readonly DType[] = ['F32', 'BF16', 'F16', 'F8_E4M3'];
const VECTOR_DTYPES: readonly DType[] = ['F32', 'BF16', 'F16'];
const SCALE_DTYPES: readonly DType[] = ['F32', 'BF16'];

function fail(file: string, message: string): never {
  throw new CheckpointError('DSV_ERR_CHECKPOINT', file, message);
}

function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * Where the weight tree's tensors come from, by HF name: the checkpoint (loadModel) or a group the
 * streaming loader has read (quant/weight_stream.ts). `why` explains the expected shape in errors.
 */
export interface TensorSource<W extends LinearWeight> {
  /** A linear layer's weight (quantised by the streaming loader under --quantization). */
  matrix(name: string, shape: [number, number], why: string): W;
  /** A 2-D weight that stays float32: the MoE router gate, kv_b_proj. */
  f32Matrix(name: string, shape: [number, number], why: string): Tensor;
  /** A norm weight, bias or other 1-D tensor. */
  vector(name: string, length: number, why: string): Tensor;
}

/** Reads tensors by HF name, checking presence, shape and dtype, and counts what it loads. */
class TensorLoader implements TensorSource<Tensor> {
  numParameters = 0;
  constructor(private readonly ckpt: Checkpoint) {}

  /** A 2-D weight; may be FP8 with a `<name>_scale_inv` block-scale companion. */
  matrix(name: string, shape: [number, number], why: string): Tensor {
    return this.load(name, shape, why, MATRIX_DTYPES);
  }

  f32Matrix(name: string, shape: [number, number], why: string): Tensor {
    return this.matrix(name, shape, why);
  }

  /** A norm weight, bias or other 1-D tensor: never quantised. */
  vector(name: string, length: number, why: string): Tensor {
    return this.load(name, [length], why, VECTOR_DTYPES);
  }

  private info(name: string, shape: readonly number[], why: string, dtypes: readonly DType[]): TensorInfo {
    const info = this.ckpt.get(name);
    const expected = `${fmtShape(shape)} (${why})`;
    if (info === undefined) fail(this.ckpt.fileOf(name), `tensor "${name}" is missing (expected shape ${expected})`);
    if (!dtypes.includes(info.dtype)) fail(info.file, `tensor "${name}" has dtype ${info.dtype}, expected one of ${dtypes.join(', ')}`);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      fail(info.file, `tensor "${name}" has shape ${fmtShape(info.shape)}, expected ${expected}`);
    }
    return info;
  }

  private load(name: string, shape: readonly number[], why: string, dtypes: readonly DType[]): Tensor {
    const info = this.info(name, shape, why, dtypes);
    const data = info.dtype === 'F8_E4M3' ? this.loadFp8(info) : decodeToFloat32(this.ckpt.read(name), info.dtype as FloatDType);
    this.numParameters += data.length;
    return Object.freeze({ data, shape: Object.freeze([...shape]) });
  }

  private loadFp8(info: TensorInfo): Float32Array {
    const [rows, cols] = info.shape;
    if (rows === undefined || cols === undefined || info.shape.length !== 2) {
      fail(info.file, `tensor "${info.name}" is F8_E4M3 with shape ${fmtShape(info.shape)}; block-scaled FP8 needs a matrix`);
    }
    const scaleName = `${info.name}_scale_inv`;
    const scaleInfo = this.info(
      scaleName,
      fp8ScaleShape(rows, cols),
      `ceil(${rows} / 128), ceil(${cols} / 128): block scales of F8_E4M3 "${info.name}"`,
      SCALE_DTYPES,
    );
    const scaleInv = decodeToFloat32(this.ckpt.read(scaleName), scaleInfo.dtype as FloatDType);
    return dequantizeFp8Blocks(this.ckpt.read(info.name), rows, cols, scaleInv);
  }
}

/** The MoE config if layer `l` uses routed experts (HF DeepseekV3: l >= first_k_dense_replace and l % moe_layer_freq == 0). */
export function moeConfigOfLayer(config: ModelConfig, l: number): MoeConfig | null {
  const m = config.moe;
  return m !== null && l >= m.firstKDenseReplace && l % m.moeLayerFreq === 0 ? m : null;
}

function swiGlu<W extends LinearWeight>(t: TensorSource<W>, prefix: string, hidden: number, inter: number, interWhy: string): SwiGluWeights<W> {
  return {
    gateProj: t.matrix(`${prefix}gate_proj.weight`, [inter, hidden], `${interWhy}, hidden_size`),
    upProj: t.matrix(`${prefix}up_proj.weight`, [inter, hidden], `${interWhy}, hidden_size`),
    downProj: t.matrix(`${prefix}down_proj.weight`, [hidden, inter], `hidden_size, ${interWhy}`),
  };
}

function indexerWeights<W extends LinearWeight>(t: TensorSource<W>, c: ModelConfig, prefix: string): IndexerWeights<W> | null {
  if (c.indexer === null || c.qLoraRank === null) return null;
  const { nHeads, headDim } = c.indexer;
  return {
    wqB: t.matrix(`${prefix}wq_b.weight`, [nHeads * headDim, c.qLoraRank], 'index_n_heads * index_head_dim, q_lora_rank'),
    wk: t.matrix(`${prefix}wk.weight`, [headDim, c.hiddenSize], 'index_head_dim, hidden_size'),
    kNormWeight: t.vector(`${prefix}k_norm.weight`, headDim, 'index_head_dim'),
    kNormBias: t.vector(`${prefix}k_norm.bias`, headDim, 'index_head_dim'),
    weightsProj: t.matrix(`${prefix}weights_proj.weight`, [nHeads, c.hiddenSize], 'index_n_heads, hidden_size'),
  };
}

function attentionWeights<W extends LinearWeight>(t: TensorSource<W>, c: ModelConfig, prefix: string): AttentionWeights<W> {
  const heads = c.numAttentionHeads;
  const qkHeadDim = c.qkNopeHeadDim + c.qkRopeHeadDim;
  const qWhy = 'heads * (qk_nope_head_dim + qk_rope_head_dim)';
  const lora = c.qLoraRank;
  const query: QueryProjection<W> =
    lora === null
      ? { kind: 'direct', qProj: t.matrix(`${prefix}q_proj.weight`, [heads * qkHeadDim, c.hiddenSize], `${qWhy}, hidden_size`) }
      : {
          kind: 'lora',
          qAProj: t.matrix(`${prefix}q_a_proj.weight`, [lora, c.hiddenSize], 'q_lora_rank, hidden_size'),
          qALayernorm: t.vector(`${prefix}q_a_layernorm.weight`, lora, 'q_lora_rank'),
          qBProj: t.matrix(`${prefix}q_b_proj.weight`, [heads * qkHeadDim, lora], `${qWhy}, q_lora_rank`),
        };
  return {
    query,
    kvAProjWithMqa: t.matrix(
      `${prefix}kv_a_proj_with_mqa.weight`,
      [c.kvLoraRank + c.qkRopeHeadDim, c.hiddenSize],
      'kv_lora_rank + qk_rope_head_dim, hidden_size',
    ),
    kvALayernorm: t.vector(`${prefix}kv_a_layernorm.weight`, c.kvLoraRank, 'kv_lora_rank'),
    kvBProj: t.f32Matrix(
      `${prefix}kv_b_proj.weight`,
      [heads * (c.qkNopeHeadDim + c.vHeadDim), c.kvLoraRank],
      'heads * (qk_nope_head_dim + v_head_dim), kv_lora_rank',
    ),
    oProj: t.matrix(`${prefix}o_proj.weight`, [c.hiddenSize, heads * c.vHeadDim], 'hidden_size, heads * v_head_dim'),
    indexer: indexerWeights(t, c, `${prefix}indexer.`),
  };
}

function moeWeights<W extends LinearWeight>(t: TensorSource<W>, h: number, m: MoeConfig, prefix: string): MoeWeights<W> {
  const experts: SwiGluWeights<W>[] = [];
  for (let j = 0; j < m.nRoutedExperts; j++) {
    experts.push(swiGlu(t, `${prefix}experts.${j}.`, h, m.moeIntermediateSize, 'moe_intermediate_size'));
  }
  return {
    gate: t.f32Matrix(`${prefix}gate.weight`, [m.nRoutedExperts, h], 'n_routed_experts, hidden_size'),
    // Only noaux_tc routing reads the correction bias; V2-style gates have none.
    eScoreCorrectionBias: m.topkMethod === 'noaux_tc' ? t.vector(`${prefix}gate.e_score_correction_bias`, m.nRoutedExperts, 'n_routed_experts') : null,
    experts,
    sharedExperts:
      m.nSharedExperts === 0
        ? null
        : swiGlu(t, `${prefix}shared_experts.`, h, m.moeIntermediateSize * m.nSharedExperts, 'moe_intermediate_size * n_shared_experts'),
  };
}

/** Layer `l`'s weight tree, every tensor taken from `t` by HF name. */
export function layerWeights<W extends LinearWeight>(t: TensorSource<W>, c: ModelConfig, l: number): LayerWeights<W> {
  const prefix = `model.layers.${l}.`;
  const moe = moeConfigOfLayer(c, l);
  return {
    inputLayernorm: t.vector(`${prefix}input_layernorm.weight`, c.hiddenSize, 'hidden_size'),
    postAttentionLayernorm: t.vector(`${prefix}post_attention_layernorm.weight`, c.hiddenSize, 'hidden_size'),
    attn: attentionWeights(t, c, `${prefix}self_attn.`),
    mlp: moe
      ? { kind: 'moe', weights: moeWeights(t, c.hiddenSize, moe, `${prefix}mlp.`) }
      : { kind: 'dense', weights: swiGlu(t, `${prefix}mlp.`, c.hiddenSize, c.intermediateSize, 'intermediate_size') },
  };
}

/** MTP module i's weight tree (layer index numHiddenLayers + i; names as in manifest.ts mtpManifest). */
export function mtpWeights<W extends LinearWeight>(t: TensorSource<W>, c: ModelConfig, i: number): MtpWeights<W> {
  const l = c.numHiddenLayers + i;
  const p = `model.layers.${l}.`;
  const D = c.hiddenSize;
  return {
    enorm: t.vector(`${p}enorm.weight`, D, 'hidden_size'),
    hnorm: t.vector(`${p}hnorm.weight`, D, 'hidden_size'),
    ehProj: t.matrix(`${p}eh_proj.weight`, [D, 2 * D], 'hidden_size, 2 * hidden_size'),
    layer: layerWeights(t, c, l),
    sharedHeadNorm: t.vector(`${p}shared_head.norm.weight`, D, 'hidden_size'),
    sharedHead: t.matrix(`${p}shared_head.head.weight`, [c.vocabSize, D], 'vocab_size, hidden_size'),
  };
}

function buildWeights(t: TensorLoader, c: ModelConfig): ModelWeights {
  const embedTokens = t.matrix('model.embed_tokens.weight', [c.vocabSize, c.hiddenSize], 'vocab_size, hidden_size');
  const layers: LayerWeights[] = [];
  // MTP layers (index >= num_hidden_layers) are never requested, hence ignored.
  for (let l = 0; l < c.numHiddenLayers; l++) layers.push(layerWeights(t, c, l));
  return {
    embedTokens,
    norm: t.vector('model.norm.weight', c.hiddenSize, 'hidden_size'),
    lmHead: t.matrix('lm_head.weight', [c.vocabSize, c.hiddenSize], 'vocab_size, hidden_size'),
    layers,
  };
}

/** Freezes plain objects and arrays; typed arrays cannot be frozen and are owned by their Tensor. */
function freezeTree<T>(value: T): T {
  if (typeof value !== 'object' || value === null || ArrayBuffer.isView(value) || Object.isFrozen(value)) return value;
  for (const v of Object.values(value)) freezeTree(v);
  return Object.freeze(value);
}

/** Loads and validates a HF-layout model directory (config.json + model.safetensors or a sharded index). */
export function loadModel(dir: string): LoadedModel {
  const abs = path.resolve(dir);
  if (!existsSync(abs) || !statSync(abs).isDirectory()) {
    throw new CheckpointError('DSV_ERR_CONFIG', abs, 'model directory not found');
  }
  const config = readModelConfig(abs);
  const ckpt = Checkpoint.open(abs);
  try {
    const loader = new TensorLoader(ckpt);
    const weights = freezeTree(buildWeights(loader, config));
    return Object.freeze({ dir: abs, config, weights, numParameters: loader.numParameters });
  } finally {
    ckpt.close();
  }
}
