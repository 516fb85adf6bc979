// MLA (multi-head latent attention), absorbed form: THE numbered step list. Other files refer to
// these steps as "MLA n" (the indexer's list is in indexer.ts as "IDX n").
//
// Notation: N tokens in the step, D hidden, H heads, dn/dr/dv = qk_nope/qk_rope/v head dims,
// L = kv_lora_rank, C = L + dr (one cached latent row), B sequences, S query rows, K keys.
//
// MLA 1. q = q_b_proj(RMSNorm(q_a_proj(x)))  (or q_proj(x))           [N, H, dn + dr], split [nope | rope]
// MLA 2. q_lat = q_nope @ W_UK  (W_UK = kv_b_proj rows [h, 0:dn])        [N, H, L]
// MLA 3. qc = [q_lat | rope_interleaved(q_pe)] * softmax_scale         [N, H, C]
// MLA 4. kv = kv_a_proj_with_mqa(x) -> [RMSNorm(latent) | rope(k_pe)]   [N, C]   (written to the paged cache)
// MLA 5. attention over the selected cached rows: p = softmax(qc . kv^T + mask); o = p @ kv[:, 0:L]   [N, H, L]
// MLA 6. out = o_proj(concat_h(o[h] @ W_UV[h]^T))  (W_UV = kv_b_proj rows [h, dn:dn+dv])   [N, D]
//
// Where each step runs: MLA 1-4 in the fused pre-attention graph (pre_attention.ts); MLA 5 in the
// sparse attention graph below, fed by attention/sparse_mla.ts; MLA 6 in the post-attention graph below.
import { DataType, GraphBuilder } from '../onnx/graph_builder.ts';
import { linear, reshape, reshapeLike, rmsNorm, slice } from '../onnx/ops.ts';
import type { QuantBits } from '../../common/quantized.ts';
import { valueUp } from './absorbed.ts';
import type { AttentionWeights, LinearWeight, ModelConfig, Tensor } from '../checkpoint/types.ts';
import type { KVCacheDtype } from '../../kvcache/kv_dtype.ts';
import { attendGatheredPartsNodes } from './fp8_latent_attention.ts';
import { cacheGraphOpset, fp8LatentPartsInput, latentPoolInput } from './kv_cache_graph.ts';

/** Finite, so a fully masked (padding) row can never turn into NaN. */
export const MASKED = -1e30;

/** Additive causal mask [B, S, K]: 0 where key position <= query position, else MASKED. qpos [B, S, 1], kpos [B or 1, 1, K] int64. */
export function causalMask(g: GraphBuilder, qpos: string, kpos: string): string {
  return g.node('Where', [g.node('LessOrEqual', [kpos, qpos]), g.scalar(0), g.scalar(MASKED)]);
}

/**
 * Which keys an attention run sees:
 * - 'dense': idx holds the slots of positions 0 .. K-1 (padded rows repeat a slot; their positions lie
 *   past every query, so they are masked): every visible key.
 * - 'prefill-selected' (DSA, one sequence): as 'dense', further restricted per row to the positions in
 *   sel [B, S, k] int32 (IDX 6): mask = causal AND selected, built in the graph.
 * (DSA decode gathers only the selected rows: dsa_decode.ts; long DSA prefill too: buildGatheredPrefillAttentionGraph.)
 */
export type AttentionKeys = 'dense' | 'prefill-selected';

/**
 * MLA 5 for a DSA prefill slice that attends only its selected keys (B = 1): each query row gathers its own
 * topk latent rows, so the cost per row is ~topk keys instead of the whole context (the dense-masked form
 * 'prefill-selected' computes scores for every context key and masks all but topk of them).
 * Inputs q [1, S, H, C], the layer's latent pool, idx [1, T] int32 slots of positions 0 .. T-1,
 * sel [1, S, k] int32 selected positions (IDX 6; a row with fewer than k visible keys also holds
 * invisible ones, masked here), qpos [1, S] int32. Output o [1, S, H, L].
 *   slots [S, k] = idx[sel] -> kv [S, k, C] -> scores [S, H, k] (+ causal mask) -> softmax -> p @ kv
 */
export function buildGatheredPrefillAttentionGraph(config: ModelConfig, dtype: KVCacheDtype = 'float32'): Uint8Array {
  const { numAttentionHeads: H, qkRopeHeadDim: dr, kvLoraRank: L } = config;
  const C = L + dr;
  const g = new GraphBuilder('sparse_mla_prefill_gathered', cacheGraphOpset(dtype));
  const q = g.input('q', DataType.FLOAT, [1, 'S', H, C]);
  const gatherLatent = latentPoolInput(g, dtype, config);
  const idx = g.input('idx', DataType.INT32, [1, 'T']);
  const sel = g.input('sel', DataType.INT32, [1, 'S', 'k']);
  const qpos = g.input('qpos', DataType.INT32, [1, 'S']);
  const slots = g.node('Gather', [g.node('Squeeze', [idx, g.int64s([0])]), g.node('Squeeze', [sel, g.int64s([0])])], { axis: 0 }); // [S, k]
  const kv = gatherLatent(slots); // [S, k, C]
  const q3 = reshape(g, q, [-1, H, C]); // [S, H, C]
  const scores = g.node('MatMul', [q3, g.node('Transpose', [kv], { perm: [0, 2, 1] })]); // [S, H, k]
  const kpos = g.node('Cast', [g.node('Transpose', [sel], { perm: [1, 0, 2] })], { to: DataType.INT64 }); // [S, 1, k]
  const qpos3 = g.node('Cast', [reshape(g, qpos, [-1, 1, 1])], { to: DataType.INT64 }); // [S, 1, 1]
  const masked = g.node('Add', [scores, causalMask(g, qpos3, kpos)]);
  const o = slice(g, g.node('MatMul', [g.node('Softmax', [masked], { axis: -1 }), kv]), 2, 0, L); // [S, H, L]
  g.markOutput(reshape(g, o, [1, -1, H, L]), 'o', DataType.FLOAT, [1, 'S', H, L]);
  return g.build();
}

/**
 * MLA 5 over gathered cache rows (shared by all layers). Inputs q [B, S, H, C], the layer's whole latent
 * pool in its stored dtype (zero-copy; kv_cache_graph.ts names the inputs, and only the gathered rows are
 * widened to float32), idx [B, K] int32 slots, qpos [B, S] int32 positions of the query rows
 * (+ sel for prefill-selected, see AttentionKeys). Output o [B, S, H, L].
 */
export function buildAttentionGraph(config: ModelConfig, keys: AttentionKeys, dtype: KVCacheDtype = 'float32'): Uint8Array {
  const { numAttentionHeads: H, qkRopeHeadDim: dr, kvLoraRank: L } = config;
  const C = L + dr;
  const g = new GraphBuilder(`sparse_mla_${keys}`, cacheGraphOpset(dtype));
  const q = g.input('q', DataType.FLOAT, ['B', 'S', H, C]);
  const attend = gatheredAttentionInput(g, config, dtype);
  const idx = g.input('idx', DataType.INT32, ['B', 'K']);
  const qpos = g.node('Unsqueeze', [g.node('Cast', [g.input('qpos', DataType.INT32, ['B', 'S'])], { to: DataType.INT64 }), g.int64s([2])]); // [B, S, 1]
  const K = g.node('Gather', [g.node('Shape', [idx]), g.int64Scalar(1)]);
  const kpos = g.node('Unsqueeze', [g.node('Range', [g.int64Scalar(0), K, g.int64Scalar(1)]), g.int64s([0, 1])]); // [1, 1, K]
  let mask = causalMask(g, qpos, kpos); // [B, S, K]
  if (keys === 'prefill-selected') {
    const sel = g.input('sel', DataType.INT32, ['B', 'S', 'k']);
    const none = g.node('Expand', [g.scalar(MASKED), g.node('Shape', [mask])]);
    const zeros = g.node('ConstantOfShape', [g.node('Shape', [sel])]); // float 0
    mask = g.node('Add', [mask, g.node('ScatterElements', [none, sel, zeros], { axis: 2 })]);
  }
  g.markOutput(attend(q, idx, mask), 'o', DataType.FLOAT, ['B', 'S', H, L]);
  return g.build();
}

/**
 * Declares the layer's latent pool inputs (kv_cache_graph.ts) and returns MLA 5 over the rows gathered at
 * idx [B, K]: attend(q [B, S, H, C], idx, mask [B, S, K]) -> o [B, S, H, L]. fp8 rows stay in their nope and
 * rope parts (fp8_latent_attention.ts: no Concat copy); other dtypes are gathered as whole rows.
 */
export function gatheredAttentionInput(g: GraphBuilder, config: ModelConfig, dtype: KVCacheDtype): (q: string, idx: string, mask: string) => string {
  if (dtype === 'fp8') {
    const gatherParts = fp8LatentPartsInput(g, config);
    return (q, idx, mask) => attendGatheredPartsNodes(g, config, q, gatherParts(idx), idx, mask);
  }
  const gatherLatent = latentPoolInput(g, dtype, config);
  return (q, idx, mask) => attendGatheredNodes(g, config, q, gatherLatent(idx), idx, mask);
}

/**
 * MLA 5 proper, as nodes of g: q [B, S, H, C] over gathered latent rows kv [B, K, C] with an additive mask
 * [B, S, K]; `idx` is any [B, K] value (it only lends K to the reshapes). Returns o [B, S, H, L].
 */
export function attendGatheredNodes(g: GraphBuilder, config: ModelConfig, q: string, kv: string, idx: string, mask: string): string {
  const { numAttentionHeads: H, qkRopeHeadDim: dr, kvLoraRank: L } = config;
  const C = L + dr;
  const qFlat = reshape(g, q, [0, -1, C]); // [B, S * H, C]
  const scores = g.node('MatMul', [qFlat, g.node('Transpose', [kv], { perm: [0, 2, 1] })]); // [B, S * H, K]
  const scores4 = reshapeLike(g, scores, [[q, 0, 2], H, [idx, 1, 2]]); // [B, S, H, K]
  const masked = g.node('Add', [scores4, g.node('Unsqueeze', [mask, g.int64s([2])])]);
  const p = reshapeLike(g, g.node('Softmax', [masked], { axis: -1 }), [[q, 0, 1], -1, [idx, 1, 2]]); // [B, S * H, K]
  // p @ kv, then drop the rope columns of the small result: slicing V out of kv first would copy
  // the whole gathered block again.
  const o = slice(g, g.node('MatMul', [p, kv]), 2, 0, L); // [B, S * H, L]
  return reshape(g, o, [0, -1, H, L]);
}

/** o [N, H, L] -> W_UV, o_proj, residual; then RMSNorm_post. Dense layers finish the FFN here. */
export function buildPostAttentionGraph(
  config: ModelConfig,
  layer: number,
  attn: AttentionWeights<LinearWeight>,
  postNorm: Tensor,
  ffn: PostAttentionFfn,
  quant: QuantBits | null = null,
): Uint8Array {
  const { hiddenSize: D, numAttentionHeads: H, kvLoraRank: L } = config;
  const g = new GraphBuilder(`post_attention_${layer}`);
  const h = g.input('h', DataType.FLOAT, ['N', D]);
  const o = g.input('o', DataType.FLOAT, ['N', H, L]);
  const heads = valueUp(g, config, o, attn.kvBProj, quant); // [N, H * dv]
  const h2 = g.node('Add', [h, linear(g, heads, attn.oProj)]);
  const x2 = rmsNorm(g, h2, postNorm, config.rmsNormEps);
  ffn(g, h2, x2);
  return g.build();
}

/** Adds the FFN tail to the post-attention graph: h2 = residual after attention, x2 = its RMSNorm. */
export type PostAttentionFfn = (g: GraphBuilder, h2: string, x2: string) => void;
