// DSA lightning indexer: projections (part of the pre-attention graph) and the score graph.
//
// Notation: Hi = index_n_heads, Di = index_head_dim, dr = qk_rope_head_dim; other letters as in mla.ts.
// 1. iq = wq_b(qr)                      [N, Hi, Di], split [rope | nope] (rope FIRST, unlike MLA)
// 2. ik = LayerNorm(wk(x))  (eps 1e-6)  [N, Di],     split [rope | nope]
// 3. half-split (non-interleaved) RoPE on the rope parts; same frequencies as MLA
// 4. iw = weights_proj(x) * Hi^-0.5 * Di^-0.5         [N, Hi]
// 5. score[t, s] = sum_h iw[t, h] * relu(iq[t, h] . ik[s])
// The Hadamard rotation of the reference is orthogonal and leaves every dot product unchanged: skipped.
// Ref: DeepSeek-V3.2-Exp inference/model.py (with the Nov-2025 indexer RoPE fix).
import { DataType, GraphBuilder } from '../onnx/graph_builder.ts';
import { layerNorm, linear, reshape, reshapeLike, ropeHalfSplit } from '../onnx/ops.ts';
import type { IndexerWeights, ModelConfig } from './types.ts';

const INDEXER_LAYERNORM_EPS = 1e-6; // fixed by the reference, not from config

export function addIndexerProjections(g: GraphBuilder, config: ModelConfig, w: IndexerWeights, x: string, qr: string, cos: string, sin: string): void {
  const { nHeads: Hi, headDim: Di } = config.indexer!;
  const dr = config.qkRopeHeadDim;
  const iq = ropeHalfSplit(g, reshape(g, linear(g, qr, w.wqB), [0, Hi, Di]), cos, sin, dr, Di); // [N, Hi, Di]
  g.markOutput(iq, 'iq', DataType.FLOAT, ['N', Hi, Di]);
  const k = reshape(g, layerNorm(g, linear(g, x, w.wk), w.kNormWeight, w.kNormBias, INDEXER_LAYERNORM_EPS), [0, 1, Di]);
  g.markOutput(reshape(g, ropeHalfSplit(g, k, cos, sin, dr, Di), [0, Di]), 'ik', DataType.FLOAT, ['N', Di]);
  const iw = g.node('Mul', [linear(g, x, w.weightsProj), g.scalar(Math.pow(Hi, -0.5) * Math.pow(Di, -0.5))]);
  g.markOutput(iw, 'iw', DataType.FLOAT, ['N', Hi]);
}

/**
 * Indexer scores over gathered key slots (shared by all layers).
 * Inputs iq [B, S, Hi, Di], cache [P, Di] (the layer's indexer key pool), idx [B, T] int32 slots, iw [B, S, Hi].
 * Output scores [B, S, T] (unmasked; the caller applies causality when selecting).
 */
export function buildIndexerScoreGraph(config: ModelConfig): Uint8Array {
  const { nHeads: Hi, headDim: Di } = config.indexer!;
  const g = new GraphBuilder('indexer_scores');
  const iq = g.input('iq', DataType.FLOAT, ['B', 'S', Hi, Di]);
  const cache = g.input('cache', DataType.FLOAT, ['P', Di]);
  const idx = g.input('idx', DataType.INT32, ['B', 'T']);
  const iw = g.input('iw', DataType.FLOAT, ['B', 'S', Hi]);
  const keysT = g.node('Transpose', [g.node('Gather', [cache, idx], { axis: 0 })], { perm: [0, 2, 1] }); // [B, Di, T]
  const logits = g.node('Relu', [g.node('MatMul', [reshape(g, iq, [0, -1, Di]), keysT])]); // [B, S * Hi, T]
  const logits4 = reshapeLike(g, logits, [[iw, 0, 2], Hi, [idx, 1, 2]]); // [B, S, Hi, T]
  const weighted = g.node('Mul', [logits4, g.node('Unsqueeze', [iw, g.int64s([3])])]);
  g.markOutput(g.node('ReduceSum', [weighted, g.int64s([2])], { keepdims: 0 }), 'scores', DataType.FLOAT, ['B', 'S', 'T']);
  return g.build();
}
