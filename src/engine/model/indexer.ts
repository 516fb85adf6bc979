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
// The Hadamard rotation of the reference is orthogonal and leaves every dot product unchanged: skipped in
// float32 and bfloat16; with an fp8 cache the keys are stored rotated (kvcache/kv_row_codec.ts) and iq is
// rotated to match at the end of IDX 3 (pre_attention.ts), as the reference quantises them.
// Ref: DeepSeek-V3.2-Exp inference/model.py (with the Nov-2025 indexer RoPE fix).
import { assert } from '../../common/errors.ts';
import { DataType, GraphBuilder } from '../onnx/graph_builder.ts';
import { reshape, reshapeLike } from '../onnx/ops.ts';
import type { IndexerConfig } from '../checkpoint/types.ts';
import type { KVCacheDtype } from '../../kvcache/kv_dtype.ts';
import { cacheGraphOpset, indexerKeyPoolInput, type IndexerKeyGather } from './kv_cache_graph.ts';

/**
 * IDX 5-6 (shared by all layers): scores over the gathered keys, causally masked, then the topk best
 * positions per query row (ONNX TopK: ties to the lower index, as the reference's selection).
 * Inputs iq [B, S, Hi, Di], the layer's indexer key pool in its stored dtype (kv_cache_graph.ts names the
 * inputs; only the gathered keys are widened to float32), idx [B, T] int32 slots of
 * positions 0 .. T-1, iw [B, S, Hi], qpos [B, S] int32. Output sel [B, S, topk] int32 positions; a row
 * with fewer than topk visible keys gets all of them plus masked (invisible) ones, which the attention
 * graph masks again. Callers use it only when T > topk.
 * decodeForm (S = 1): keys stay the GEMM's streamed operand (relu(K @ q^T) @ w), so the T x Di gathered
 * keys are read once and never packed or transposed; the query side is tiny.
 */
export function buildIndexerSelectGraph(indexer: IndexerConfig, decodeForm: boolean, dtype: KVCacheDtype = 'float32'): Uint8Array {
  const { nHeads: Hi, headDim: Di, topk } = indexer;
  const g = new GraphBuilder(decodeForm ? 'indexer_select_decode' : 'indexer_select', cacheGraphOpset(dtype));
  const S = decodeForm ? 1 : 'S';
  const iq = g.input('iq', DataType.FLOAT, ['B', S, Hi, Di]);
  const gatherKeys = indexerKeyPoolInput(g, dtype, Di);
  const idx = g.input('idx', DataType.INT32, ['B', 'T']);
  const iw = g.input('iw', DataType.FLOAT, ['B', S, Hi]);
  const qpos = g.node('Cast', [g.input('qpos', DataType.INT32, ['B', S])], { to: DataType.INT64 });
  const sel = indexerSelectNodes(g, indexer, decodeForm, gatherKeys, { iq, iw, idx, qpos });
  g.markOutput(g.node('Cast', [sel], { to: DataType.INT32 }), 'sel', DataType.INT32, ['B', S, topk]);
  return g.build();
}

/** Graph values IDX 5-6 reads: iq [B, S, Hi, Di], iw [B, S, Hi], idx [B, T] int32 slots, qpos [B, S] int64. */
export interface IndexerSelectValues {
  readonly iq: string;
  readonly iw: string;
  readonly idx: string;
  readonly qpos: string;
  /** One sequence's decode row at position T - 1: every key is visible, so no causal mask. */
  readonly allVisible?: boolean;
}

/** Scores [B, S, T] with key position t hidden (-inf) from a row at position p unless t <= p. */
function causallyMasked(g: GraphBuilder, scores: string, idx: string, qpos: string): string {
  const T = g.node('Gather', [g.node('Shape', [idx]), g.int64Scalar(1)]);
  const kpos = g.node('Unsqueeze', [g.node('Range', [g.int64Scalar(0), T, g.int64Scalar(1)]), g.int64s([0, 1])]); // [1, 1, T]
  const visible = g.node('LessOrEqual', [kpos, g.node('Unsqueeze', [qpos, g.int64s([2])])]); // [B, S, T]
  return g.node('Where', [visible, scores, g.scalar(-Infinity)]);
}

/** IDX 5-6 as nodes of g (see buildIndexerSelectGraph); returns sel [B, S, topk] int64 positions. */
export function indexerSelectNodes(
  g: GraphBuilder,
  indexer: IndexerConfig,
  decodeForm: boolean,
  gatherKeys: (idx: string) => IndexerKeyGather,
  v: IndexerSelectValues,
): string {
  const { nHeads: Hi, headDim: Di, topk } = indexer;
  const { iw, idx, qpos } = v;
  const { keys, scale, queryFactor, keyRow } = gatherKeys(idx); // [B, T, Di], fp8: [B, T]; a span: [1, R, Di], [1, R]
  const iq = queryFactor === 1 ? v.iq : g.node('Mul', [v.iq, g.scalar(queryFactor)]);
  // An fp8 key's scale s >= 0 multiplies its head-weighted score: sum_h w_h relu(s q_h . k) =
  // s sum_h w_h relu(q_h . k), one Mul per key instead of one per key and head (or per key value).
  const scaled = (perKey: string, axis: number): string => (scale ? g.node('Mul', [perKey, g.node('Unsqueeze', [scale, g.int64s([axis])])]) : perKey);
  let scores: string; // [B, S, T]
  if (decodeForm) {
    const qT = g.node('Transpose', [reshape(g, iq, [0, Hi, Di])], { perm: [0, 2, 1] }); // [B, Di, Hi]
    const logits = g.node('Relu', [g.node('MatMul', [keys, qT])]); // [B, T or R, Hi]
    const weighted = scaled(g.node('MatMul', [logits, reshape(g, iw, [0, Hi, 1])]), 2); // [B, T or R, 1]
    const rowScores = reshape(g, weighted, [0, 1, -1]); // [B, 1, T or R]
    scores = keyRow === undefined ? rowScores : g.node('GatherElements', [rowScores, g.node('Unsqueeze', [keyRow, g.int64s([1])])], { axis: 2 });
  } else {
    assert(keyRow === undefined, 'indexer prefill form: keys are gathered per position');
    const keysT = g.node('Transpose', [keys], { perm: [0, 2, 1] }); // [B, Di, T]
    const logits = g.node('Relu', [g.node('MatMul', [reshape(g, iq, [0, -1, Di]), keysT])]); // [B, S * Hi, T]
    const logits4 = reshapeLike(g, logits, [[iw, 0, 2], Hi, [idx, 1, 2]]); // [B, S, Hi, T]
    scores = scaled(g.node('ReduceSum', [g.node('Mul', [logits4, g.node('Unsqueeze', [iw, g.int64s([3])])]), g.int64s([2])], { keepdims: 0 }), 1);
  }
  const masked = v.allVisible ? scores : causallyMasked(g, scores, idx, qpos);
  const [, sel] = g.nodeN('TopK', [masked, g.int64s([topk])], 2, { axis: -1, largest: 1, sorted: 0 });
  return sel!;
}
