// MLA (multi-head latent attention) graphs, absorbed form.
//
// Notation: N tokens in the step, D hidden, H heads, dn/dr/dv = qk_nope/qk_rope/v head dims,
// L = kv_lora_rank, C = L + dr (one cached latent row), B sequences, S query rows, K keys.
//
// 1. q = q_b_proj(RMSNorm(q_a_proj(x)))  (or q_proj(x))             [N, H, dn + dr], split [nope | rope]
// 2. q_lat = q_nope @ W_UK  (W_UK = kv_b_proj rows [h, 0:dn])          [N, H, L]
// 3. qc = [q_lat | rope_interleaved(q_pe)] * softmax_scale           [N, H, C]
// 4. kv = kv_a_proj_with_mqa(x) -> [RMSNorm(latent) | rope(k_pe)]     [N, C]   (cached)
// 5. attention over the selected cached rows: p = softmax(qc . kv^T + mask); o = p @ kv[:, 0:L]   [N, H, L]
// 6. out = o_proj(concat_h(o[h] @ W_UV[h]^T))  (W_UV = kv_b_proj rows [h, dn:dn+dv])  [N, D]
import { DataType, GraphBuilder } from '../onnx/graph_builder.ts';
import { linear, reshape, reshapeLike, rmsNorm, ropeInterleaved, slice } from '../onnx/ops.ts';
import { mlaSoftmaxScale } from './rope.ts';
import type { AttentionWeights, ModelConfig, Tensor } from './types.ts';
import { addIndexerProjections } from './indexer.ts';

/** Splits kv_b_proj [H * (dn + dv), L] into W_UK [H, dn, L] and W_UV^T [H, dv, L] (both row blocks, no transpose). */
function splitKvB(config: ModelConfig, kvBProj: Tensor): { wUK: Float32Array; wUVt: Float32Array } {
  const { numAttentionHeads: H, qkNopeHeadDim: dn, vHeadDim: dv, kvLoraRank: L } = config;
  const wUK = new Float32Array(H * dn * L);
  const wUVt = new Float32Array(H * dv * L);
  for (let h = 0; h < H; h++) {
    const base = h * (dn + dv) * L;
    wUK.set(kvBProj.data.subarray(base, base + dn * L), h * dn * L);
    wUVt.set(kvBProj.data.subarray(base + dn * L, base + (dn + dv) * L), h * dv * L);
  }
  return { wUK, wUVt };
}

/** Inputs h [N, D], cos/sin [N, dr/2]; outputs q [N, H, C], kv [N, C] (+ indexer iq, ik, iw). */
export function buildPreAttentionGraph(config: ModelConfig, layer: number, attn: AttentionWeights, inputLayernorm: Tensor, withIndexer: boolean): Uint8Array {
  const { hiddenSize: D, numAttentionHeads: H, qkNopeHeadDim: dn, qkRopeHeadDim: dr, kvLoraRank: L } = config;
  const g = new GraphBuilder(`pre_attention_${layer}`);
  const h = g.input('h', DataType.FLOAT, ['N', D]);
  const cos = g.input('cos', DataType.FLOAT, ['N', dr / 2]);
  const sin = g.input('sin', DataType.FLOAT, ['N', dr / 2]);
  const x = rmsNorm(g, h, inputLayernorm, config.rmsNormEps);

  let qr: string | null = null; // q_a_layernorm output, also the indexer's query input
  let q: string;
  if (attn.qAProj && attn.qALayernorm && attn.qBProj) {
    qr = rmsNorm(g, linear(g, x, attn.qAProj), attn.qALayernorm, config.rmsNormEps);
    q = linear(g, qr, attn.qBProj);
  } else {
    q = linear(g, x, attn.qProj!);
  }
  q = reshape(g, q, [0, H, dn + dr]); // [N, H, dn + dr]
  const qNope = g.node('Transpose', [slice(g, q, 2, 0, dn)], { perm: [1, 0, 2] }); // [H, N, dn]
  const { wUK } = splitKvB(config, attn.kvBProj);
  const qLat = g.node('Transpose', [g.node('MatMul', [qNope, g.initializer(wUK, [H, dn, L])])], { perm: [1, 0, 2] }); // [N, H, L]
  const qPe = ropeInterleaved(g, slice(g, q, 2, dn, dn + dr), cos, sin, dr); // [N, H, dr]
  const qc = g.node('Mul', [g.node('Concat', [qLat, qPe], { axis: -1 }), g.scalar(mlaSoftmaxScale(config))]);
  g.markOutput(qc, 'q', DataType.FLOAT, ['N', H, L + dr]);

  const kvA = linear(g, x, attn.kvAProjWithMqa); // [N, L + dr]
  const latent = rmsNorm(g, slice(g, kvA, 1, 0, L), attn.kvALayernorm, config.rmsNormEps);
  const kPe = reshape(g, ropeInterleaved(g, reshape(g, slice(g, kvA, 1, L, L + dr), [0, 1, dr]), cos, sin, dr), [0, dr]);
  g.markOutput(g.node('Concat', [latent, kPe], { axis: -1 }), 'kv', DataType.FLOAT, ['N', L + dr]);

  if (withIndexer && attn.indexer && qr) addIndexerProjections(g, config, attn.indexer, x, qr, cos, sin);
  return g.build();
}

/**
 * Sparse absorbed attention over gathered cache rows (shared by all layers).
 * Inputs q [B, S, H, C], cache [P, C] (the layer's whole latent pool, zero-copy), idx [B, K] int32 slots,
 * mask [B, S, K] (0 = attend, -1e30 = masked). Output o [B, S, H, L].
 */
export function buildAttentionGraph(config: ModelConfig): Uint8Array {
  const { numAttentionHeads: H, qkRopeHeadDim: dr, kvLoraRank: L } = config;
  const C = L + dr;
  const g = new GraphBuilder('sparse_mla');
  const q = g.input('q', DataType.FLOAT, ['B', 'S', H, C]);
  const cache = g.input('cache', DataType.FLOAT, ['P', C]);
  const idx = g.input('idx', DataType.INT32, ['B', 'K']);
  const mask = g.input('mask', DataType.FLOAT, ['B', 'S', 'K']);
  const kv = g.node('Gather', [cache, idx], { axis: 0 }); // [B, K, C]
  const qFlat = reshape(g, q, [0, -1, C]); // [B, S * H, C]
  const scores = g.node('MatMul', [qFlat, g.node('Transpose', [kv], { perm: [0, 2, 1] })]); // [B, S * H, K]
  const scores4 = reshapeLike(g, scores, [[mask, 0, 2], H, [mask, 2, 3]]); // [B, S, H, K]
  const masked = g.node('Add', [scores4, g.node('Unsqueeze', [mask, g.int64s([2])])]);
  const p = reshapeLike(g, g.node('Softmax', [masked], { axis: -1 }), [[mask, 0, 1], -1, [mask, 2, 3]]); // [B, S * H, K]
  const o = g.node('MatMul', [p, slice(g, kv, 2, 0, L)]); // [B, S * H, L]
  g.markOutput(reshape(g, o, [0, -1, H, L]), 'o', DataType.FLOAT, ['B', 'S', H, L]);
  return g.build();
}

/** o [N, H, L] -> W_UV, o_proj, residual; then RMSNorm_post. Dense layers finish the FFN here. */
export function buildPostAttentionGraph(config: ModelConfig, layer: number, attn: AttentionWeights, postNorm: Tensor, ffn: PostAttentionFfn): Uint8Array {
  const { hiddenSize: D, numAttentionHeads: H, vHeadDim: dv, kvLoraRank: L } = config;
  const g = new GraphBuilder(`post_attention_${layer}`);
  const h = g.input('h', DataType.FLOAT, ['N', D]);
  const o = g.input('o', DataType.FLOAT, ['N', H, L]);
  const { wUVt } = splitKvB(config, attn.kvBProj);
  const wUV = g.node('Transpose', [g.initializer(wUVt, [H, dv, L])], { perm: [0, 2, 1] }); // [H, L, dv], folded at load
  const ov = g.node('MatMul', [g.node('Transpose', [o], { perm: [1, 0, 2] }), wUV]); // [H, N, dv]
  const heads = reshape(g, g.node('Transpose', [ov], { perm: [1, 0, 2] }), [0, H * dv]); // [N, H * dv]
  const h2 = g.node('Add', [h, linear(g, heads, attn.oProj)]);
  const x2 = rmsNorm(g, h2, postNorm, config.rmsNormEps);
  ffn(g, h2, x2);
  return g.build();
}

/** Adds the FFN tail to the post-attention graph: h2 = residual after attention, x2 = its RMSNorm. */
export type PostAttentionFfn = (g: GraphBuilder, h2: string, x2: string) => void;
