// The typed, validated view of a checkpoint that the rest of the engine trusts.
// Produced only by `loadModel` (config.ts + weights.ts); everything here is readonly.

import type { Tensor } from '../../common/tensor.ts';

export type { Tensor };

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
  /** Original dtype of most weights, for logs (weights are always held as float32). */
  readonly torchDtype: string;
}

export interface IndexerWeights {
  readonly wqB: Tensor; // [nHeads * headDim, qLoraRank]
  readonly wk: Tensor; // [headDim, hidden]
  readonly kNormWeight: Tensor; // [headDim]
  readonly kNormBias: Tensor; // [headDim]
  readonly weightsProj: Tensor; // [nHeads, hidden]
}

/** The query projection: low-rank (q_lora_rank set: V2.5/V3/V3.2) or one direct matrix (V2-Lite). */
export type QueryProjection =
  | {
      readonly kind: 'lora';
      readonly qAProj: Tensor; // [qLoraRank, hidden]
      readonly qALayernorm: Tensor; // [qLoraRank]
      readonly qBProj: Tensor; // [heads * (nope + rope), qLoraRank]
    }
  | {
      readonly kind: 'direct';
      readonly qProj: Tensor; // [heads * (nope + rope), hidden]
    };

export interface AttentionWeights {
  readonly query: QueryProjection;
  readonly kvAProjWithMqa: Tensor; // [kvLoraRank + rope, hidden]
  readonly kvALayernorm: Tensor; // [kvLoraRank]
  readonly kvBProj: Tensor; // [heads * (nope + v), kvLoraRank]
  readonly oProj: Tensor; // [hidden, heads * v]
  readonly indexer: IndexerWeights | null;
}

export interface SwiGluWeights {
  readonly gateProj: Tensor; // [inter, hidden]
  readonly upProj: Tensor; // [inter, hidden]
  readonly downProj: Tensor; // [hidden, inter]
}

export interface MoeWeights {
  readonly gate: Tensor; // [nRoutedExperts, hidden]
  readonly eScoreCorrectionBias: Tensor | null; // [nRoutedExperts]
  readonly experts: readonly SwiGluWeights[];
  readonly sharedExperts: SwiGluWeights | null; // intermediate = moeIntermediateSize * nSharedExperts
}

export interface LayerWeights {
  readonly inputLayernorm: Tensor; // [hidden]
  readonly postAttentionLayernorm: Tensor; // [hidden]
  readonly attn: AttentionWeights;
  readonly mlp: { readonly kind: 'dense'; readonly weights: SwiGluWeights } | { readonly kind: 'moe'; readonly weights: MoeWeights };
}

export interface ModelWeights {
  readonly embedTokens: Tensor; // [vocab, hidden]
  readonly norm: Tensor; // [hidden]
  readonly lmHead: Tensor; // [vocab, hidden]
  readonly layers: readonly LayerWeights[];
}

export interface LoadedModel {
  readonly dir: string;
  readonly config: ModelConfig;
  readonly weights: ModelWeights;
  /** Parameter count as stored in the checkpoint (excluding scale tensors). */
  readonly numParameters: number;
}
