// Every tensor the model loads, derived from config.json alone: name, shape and how the engine holds
// it. The memory plan sizes the weights from this list before any tensor is read, and the quantising
// loader decides per tensor what to quantise. Must name exactly the tensors weights.ts loads (a test
// checks both against the checkpoints of every model variant).
import { moeConfigOfLayer } from './weights.ts';
import type { ModelConfig } from './types.ts';

/**
 * linear:    2-D weight applied as x @ W^T (attention projections, MLPs, experts, lm_head): quantisable.
 * embedding: the token table, read by row (a gather, never a GEMM).
 * router:    MoE gate; its logits pick experts, so it stays float32.
 * vector:    norm weights and biases: float32.
 */
export type WeightRole = 'linear' | 'embedding' | 'router' | 'vector';

export interface WeightSpec {
  readonly name: string;
  readonly shape: readonly [number] | readonly [number, number];
  readonly role: WeightRole;
}

export function numel(spec: WeightSpec): number {
  return spec.shape.reduce((a, b) => a * b, 1);
}

function swiGlu(out: WeightSpec[], prefix: string, hidden: number, inter: number): void {
  out.push({ name: `${prefix}gate_proj.weight`, shape: [inter, hidden], role: 'linear' });
  out.push({ name: `${prefix}up_proj.weight`, shape: [inter, hidden], role: 'linear' });
  out.push({ name: `${prefix}down_proj.weight`, shape: [hidden, inter], role: 'linear' });
}

function attention(out: WeightSpec[], c: ModelConfig, p: string): void {
  const H = c.numAttentionHeads;
  const D = c.hiddenSize;
  const linear = (name: string, rows: number, cols: number): void => void out.push({ name: `${p}${name}`, shape: [rows, cols], role: 'linear' });
  const vector = (name: string, n: number): void => void out.push({ name: `${p}${name}`, shape: [n], role: 'vector' });
  if (c.qLoraRank === null) {
    linear('q_proj.weight', H * (c.qkNopeHeadDim + c.qkRopeHeadDim), D);
  } else {
    linear('q_a_proj.weight', c.qLoraRank, D);
    vector('q_a_layernorm.weight', c.qLoraRank);
    linear('q_b_proj.weight', H * (c.qkNopeHeadDim + c.qkRopeHeadDim), c.qLoraRank);
  }
  linear('kv_a_proj_with_mqa.weight', c.kvLoraRank + c.qkRopeHeadDim, D);
  vector('kv_a_layernorm.weight', c.kvLoraRank);
  linear('kv_b_proj.weight', H * (c.qkNopeHeadDim + c.vHeadDim), c.kvLoraRank);
  linear('o_proj.weight', D, H * c.vHeadDim);
  if (c.indexer !== null && c.qLoraRank !== null) {
    const { nHeads, headDim } = c.indexer;
    linear('indexer.wq_b.weight', nHeads * headDim, c.qLoraRank);
    linear('indexer.wk.weight', headDim, D);
    vector('indexer.k_norm.weight', headDim);
    vector('indexer.k_norm.bias', headDim);
    linear('indexer.weights_proj.weight', nHeads, D);
  }
}

function moe(out: WeightSpec[], c: ModelConfig, p: string): void {
  const m = c.moe!;
  const D = c.hiddenSize;
  for (let j = 0; j < m.nRoutedExperts; j++) swiGlu(out, `${p}experts.${j}.`, D, m.moeIntermediateSize);
  out.push({ name: `${p}gate.weight`, shape: [m.nRoutedExperts, D], role: 'router' });
  if (m.topkMethod === 'noaux_tc') out.push({ name: `${p}gate.e_score_correction_bias`, shape: [m.nRoutedExperts], role: 'vector' });
  if (m.nSharedExperts > 0) swiGlu(out, `${p}shared_experts.`, D, m.moeIntermediateSize * m.nSharedExperts);
}

function layerSpecs(out: WeightSpec[], c: ModelConfig, l: number): void {
  const p = `model.layers.${l}.`;
  out.push({ name: `${p}input_layernorm.weight`, shape: [c.hiddenSize], role: 'vector' });
  out.push({ name: `${p}post_attention_layernorm.weight`, shape: [c.hiddenSize], role: 'vector' });
  attention(out, c, `${p}self_attn.`);
  if (moeConfigOfLayer(c, l) !== null) moe(out, c, `${p}mlp.`);
  else swiGlu(out, `${p}mlp.`, c.hiddenSize, c.intermediateSize);
}

/** The tensors of `config`'s model, layer by layer (embedding first, final norm and lm_head last); no MTP module. */
export function weightManifest(c: ModelConfig): WeightSpec[] {
  const out: WeightSpec[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, c.hiddenSize], role: 'embedding' }];
  for (let l = 0; l < c.numHiddenLayers; l++) layerSpecs(out, c, l);
  out.push({ name: 'model.norm.weight', shape: [c.hiddenSize], role: 'vector' });
  out.push({ name: 'lm_head.weight', shape: [c.vocabSize, c.hiddenSize], role: 'linear' });
  return out;
}

/** HF layer index of MTP module i. */
export function mtpLayerIndex(c: ModelConfig, i: number): number {
  return c.numHiddenLayers + i;
}

/**
 * The tensors of MTP module i (layer index numHiddenLayers + i): a decoder layer by the usual rules (MoE
 * when the index says so) plus enorm, hnorm, eh_proj and the shared head. The module's copy of
 * embed_tokens, when a checkpoint has one, is not listed: the main model's embedding is used.
 */
export function mtpManifest(c: ModelConfig, i: number): WeightSpec[] {
  const l = mtpLayerIndex(c, i);
  const p = `model.layers.${l}.`;
  const D = c.hiddenSize;
  const out: WeightSpec[] = [
    { name: `${p}enorm.weight`, shape: [D], role: 'vector' },
    { name: `${p}hnorm.weight`, shape: [D], role: 'vector' },
    { name: `${p}eh_proj.weight`, shape: [D, 2 * D], role: 'linear' },
  ];
  layerSpecs(out, c, l);
  out.push({ name: `${p}shared_head.norm.weight`, shape: [D], role: 'vector' });
  out.push({ name: `${p}shared_head.head.weight`, shape: [c.vocabSize, D], role: 'linear' });
  return out;
}
