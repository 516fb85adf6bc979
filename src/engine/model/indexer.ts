// DSA lightning indexer: THE numbered step list ("IDX n" elsewhere; MLA's is in mla.ts).
//
// Notation: Hi = index_n_heads, Di = index_head_dim, dr = qk_rope_head_dim, T visible keys; other
// letters as in mla.ts.
// IDX 1. iq = wq_b(qr)                      [N, Hi, Di], split [rope | nope] (rope FIRST, unlike MLA)
// IDX 2. ik = LayerNorm(wk(x))  (eps 1e-6)  [N, Di],     split [rope | nope]  (written to the paged indexer cache)
// IDX 3. half-split (non-interleaved) RoPE on the rope parts of iq and ik; same frequencies as MLA
// IDX 4. iw = weights_proj(x) * Hi^-0.5 * Di^-0.5         [N, Hi]
// IDX 5. score[t, s] = sum_h iw[t, h] * relu(iq[t, h] . ik[s])   [N, T]  (graphs below)
// IDX 6. selection: all visible keys when there are at most index_topk, else the index_topk best
//        scores, ties to the lower position (attention/sparse_mla.ts, quickselect in common/select.ts)
// Where: IDX 1-4 in the fused pre-attention graph (pre_attention.ts); IDX 5 below; IDX 6 in sparse_mla.ts.
// The Hadamard rotation of the reference is orthogonal and leaves every dot product unchanged: skipped.
// Ref: DeepSeek-V3.2-Exp inference/model.py (with the Nov-2025 indexer RoPE fix).
import { DataType, GraphBuilder } from '../onnx/graph_builder.ts';
import { reshape, reshapeLike } from '../onnx/ops.ts';
import type { IndexerConfig } from '../checkpoint/types.ts';

/**
 * Indexer scores over gathered key slots (shared by all layers).
 * Inputs iq [B, S, Hi, Di], cache [P, Di] (the layer's indexer key pool), idx [B, T] int32 slots, iw [B, S, Hi].
 * Output scores [B, S, T] (unmasked; the caller applies causality when selecting).
 */
export function buildIndexerScoreGraph(indexer: IndexerConfig): Uint8Array {
  const { nHeads: Hi, headDim: Di } = indexer;
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

/**
 * Decode form of the indexer scores (S = 1): keys stay the GEMM's streamed operand
 * (relu(K @ q^T) @ w), so the T x Di gathered keys are read once and never packed or transposed;
 * the query side is tiny. Same inputs and output shape as buildIndexerScoreGraph with S = 1.
 */
export function buildIndexerDecodeScoreGraph(indexer: IndexerConfig): Uint8Array {
  const { nHeads: Hi, headDim: Di } = indexer;
  const g = new GraphBuilder('indexer_scores_decode');
  const iq = g.input('iq', DataType.FLOAT, ['B', 1, Hi, Di]);
  const cache = g.input('cache', DataType.FLOAT, ['P', Di]);
  const idx = g.input('idx', DataType.INT32, ['B', 'T']);
  const iw = g.input('iw', DataType.FLOAT, ['B', 1, Hi]);
  const keys = g.node('Gather', [cache, idx], { axis: 0 }); // [B, T, Di]
  const qT = g.node('Transpose', [reshape(g, iq, [0, Hi, Di])], { perm: [0, 2, 1] }); // [B, Di, Hi]
  const logits = g.node('Relu', [g.node('MatMul', [keys, qT])]); // [B, T, Hi]
  const scores = g.node('MatMul', [logits, reshape(g, iw, [0, Hi, 1])]); // [B, T, 1]
  g.markOutput(reshapeLike(g, scores, [[idx, 0, 1], 1, [idx, 1, 2]]), 'scores', DataType.FLOAT, ['B', 1, 'T']);
  return g.build();
}
