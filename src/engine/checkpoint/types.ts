// The typed, validated view of a checkpoint that the rest of the engine trusts.
// Produced only by `loadModel` (config.ts + weights.ts); everything here is readonly.

import type { LinearWeight } from '../../common/quantized.ts';
import type { Tensor } from '../../common/tensor.ts';

export type { LinearWeight, Tensor };

export type ModelType = 'deepseek_v32' | 'deepseek_v3' | 'deepseek_v2';

/** YaRN rope scaling (HF `rope_scaling` with type/rope_type "yarn"). */
export interface YarnScaling {
  readonly factor: number;
  readonly originalMaxPositionEmbeddings: number;
  readonly betaFast: number;
  readonly betaSlow: number;
  readonly mscale: number;
  readonly mscaleAllDim: number;
}

/** DSA lightning indexer hyper-parameters (`index_*` keys); null for models without one. */
export interface IndexerConfig {
  readonly nHeads: number; // index_n_heads
  readonly headDim: number; // index_head_dim
  readonly topk: number; // index_topk
}

/** Routed-expert hyper-parameters; the layer is MoE iff l >= firstKDenseReplace && l % moeLayerFreq == 0. */
export interface MoeConfig {
  readonly nRoutedExperts: number;
  readonly nSharedExperts: number; // 0 = none
  readonly numExpertsPerTok: number;
  readonly moeIntermediateSize: number;
  readonly nGroup: number;
  readonly topkGroup: number;
  readonly scoringFunc: 'sigmoid' | 'softmax';
  /** noaux_tc: group score = sum of top-2 (biased) scores; group_limited_greedy: max; greedy: no groups. */
  readonly topkMethod: 'noaux_tc' | 'greedy' | 'group_limited_greedy';
  readonly normTopkProb: boolean;
  readonly routedScalingFactor: number;
  readonly firstKDenseReplace: number;
  readonly moeLayerFreq: number;
}

export interface ModelConfig {
  readonly modelType: ModelType;
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number; // dense MLP layers
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  readonly qLoraRank: number | null; // null: direct q_proj
  readonly kvLoraRank: number;
  readonly qkNopeHeadDim: number;
  readonly qkRopeHeadDim: number;
  readonly vHeadDim: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly ropeScaling: YarnScaling | null;
  readonly maxPositionEmbeddings: number;
  readonly moe: MoeConfig | null; // null: every layer dense
  readonly indexer: IndexerConfig | null;
  readonly bosTokenId: number | null;
  readonly eosTokenIds: readonly number[];
  /** Original dtype of most weights, for logs (weights are held as float32 or quantised, see --quantization). */
  readonly torchDtype: string;
  /** MTP modules after the last layer (num_nextn_predict_layers), at layer indices numHiddenLayers + i. */
  readonly numNextnPredictLayers: number;
}

// The weight tree. W is how linear weights are held: float32 Tensors (loadModel, the default) or
// LinearWeight (the streaming loader: quantised with --quantization). Norms, biases, the MoE router and
// kv_b_proj (applied only in derived per-head forms) are float32 Tensors either way.

export interface IndexerWeights<W extends LinearWeight = Tensor> {
  readonly wqB: W; // [nHeads * headDim, qLoraRank]
  readonly wk: W; // [headDim, hidden]
  readonly kNormWeight: Tensor; // [headDim]
  readonly kNormBias: Tensor; // [headDim]
  readonly weightsProj: W; // [nHeads, hidden]
}

/** The query projection: low-rank (q_lora_rank set: V2.5/V3/V3.2) or one direct matrix (V2-Lite). */
export type QueryProjection<W extends LinearWeight = Tensor> =
  | {
      readonly kind: 'lora';
      readonly qAProj: W; // [qLoraRank, hidden]
      readonly qALayernorm: Tensor; // [qLoraRank]
      readonly qBProj: W; // [heads * (nope + rope), qLoraRank]
    }
  | {
      readonly kind: 'direct';
      readonly qProj: W; // [heads * (nope + rope), hidden]
    };

export interface AttentionWeights<W extends LinearWeight = Tensor> {
  readonly query: QueryProjection<W>;
  readonly kvAProjWithMqa: W; // [kvLoraRank + rope, hidden]
  readonly kvALayernorm: Tensor; // [kvLoraRank]
  readonly kvBProj: Tensor; // [heads * (nope + v), kvLoraRank]
  readonly oProj: W; // [hidden, heads * v]
  readonly indexer: IndexerWeights<W> | null;
}

export interface SwiGluWeights<W extends LinearWeight = Tensor> {
  readonly gateProj: W; // [inter, hidden]
  readonly upProj: W; // [inter, hidden]
  readonly downProj: W; // [hidden, inter]
}

export interface MoeWeights<W extends LinearWeight = Tensor> {
  readonly gate: Tensor; // [nRoutedExperts, hidden]
  readonly eScoreCorrectionBias: Tensor | null; // [nRoutedExperts]
  readonly experts: readonly SwiGluWeights<W>[];
  readonly sharedExperts: SwiGluWeights<W> | null; // intermediate = moeIntermediateSize * nSharedExperts
}

export interface LayerWeights<W extends LinearWeight = Tensor> {
  readonly inputLayernorm: Tensor; // [hidden]
  readonly postAttentionLayernorm: Tensor; // [hidden]
  readonly attn: AttentionWeights<W>;
  readonly mlp: { readonly kind: 'dense'; readonly weights: SwiGluWeights<W> } | { readonly kind: 'moe'; readonly weights: MoeWeights<W> };
}

/**
 * One multi-token-prediction module (HF layer index numHiddenLayers + i; vLLM's deepseek_mtp.py names):
 * h' = eh_proj([enorm(embed(t_next)); hnorm(h)]) -> a decoder layer -> shared_head.norm -> shared_head.head.
 * The token embedding is the main model's (checkpoints may carry a copy, which is ignored).
 */
export interface MtpWeights<W extends LinearWeight = Tensor> {
  readonly enorm: Tensor; // [hidden]
  readonly hnorm: Tensor; // [hidden]
  readonly ehProj: W; // [hidden, 2 * hidden], input [embedding | hidden state]
  readonly layer: LayerWeights<W>;
  readonly sharedHeadNorm: Tensor; // [hidden]
  readonly sharedHead: W; // [vocab, hidden]
}

export interface ModelWeights<W extends LinearWeight = Tensor> {
  readonly embedTokens: W; // [vocab, hidden]
  readonly norm: Tensor; // [hidden]
  readonly lmHead: W; // [vocab, hidden]
  readonly layers: readonly LayerWeights<W>[];
}

export interface LoadedModel {
  readonly dir: string;
  readonly config: ModelConfig;
  readonly weights: ModelWeights;
  /** Parameter count as stored in the checkpoint (excluding scale tensors). */
  readonly numParameters: number;
}
