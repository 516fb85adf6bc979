// MLA 2 and MLA 6's per-head products with kv_b_proj (mla.ts): q_lat = q_nope @ W_UK (* softmax scale)
// and o @ W_UV^T. Float32 weights run as one batched MatMul over the heads. Quantised (--quantization),
// MatMulNBits takes one 2-D weight, so each head is its own MatMulNBits node: W_UK[h] is applied along
// qk_nope, so its blocks run along qk_nope (kv_b_proj's rows of head h, transposed: llama.cpp's attn_k_b),
// W_UV[h] along kv_lora (kv_b_proj's rows as they are: attn_v_b). Quantised without the softmax scale,
// which then multiplies the block scales, so the weight is exactly scale * dequant(quant(W_UK)).
import type { QuantBits } from '../../common/quantized.ts';
import type { GraphBuilder } from '../onnx/graph_builder.ts';
import { linear, reshape } from '../onnx/ops.ts';
import { quantizeMatrix } from '../quant/block_quant.ts';
import { selectRows } from '../quant/rows.ts';
import type { ModelConfig, Tensor } from '../checkpoint/types.ts';

/** Rows [first, first + n) of kv_b_proj's head h block ([dn + dv, L] per head). */
function headRows(config: ModelConfig, h: number, first: number, n: number): [number, number] {
  const start = h * (config.qkNopeHeadDim + config.vHeadDim) + first;
  return [start, start + n];
}

/** W_UK[h]^T as [L, dn] (kv_b_proj rows [h, 0:dn] transposed). */
export function keyUpTransposed(config: ModelConfig, kvBProj: Tensor, h: number): Float32Array {
  const { qkNopeHeadDim: dn, kvLoraRank: L } = config;
  const [r0] = headRows(config, h, 0, dn);
  const out = new Float32Array(L * dn);
  for (let d = 0; d < dn; d++) for (let c = 0; c < L; c++) out[c * dn + d] = kvBProj.data[(r0 + d) * L + c]!;
  return out;
}

/** W_UK * scale as [H, dn, L] (kv_b_proj rows [h, 0:dn]): the float32 form of MLA 2's weight. */
export function keyUpScaled(config: ModelConfig, kvBProj: Tensor, scale: number): Float32Array {
  const { numAttentionHeads: H, qkNopeHeadDim: dn } = config;
  return (
    selectRows(
      kvBProj,
      Array.from({ length: H }, (_, h) => headRows(config, h, 0, dn)),
      scale,
    ) as Tensor
  ).data;
}

/** W_UV as [H, dv, L] (kv_b_proj rows [h, dn:dn + dv]): the float32 form of MLA 6's head products. */
export function valueUpRows(config: ModelConfig, kvBProj: Tensor): Float32Array {
  const { numAttentionHeads: H, qkNopeHeadDim: dn, vHeadDim: dv } = config;
  return (
    selectRows(
      kvBProj,
      Array.from({ length: H }, (_, h) => headRows(config, h, dn, dv)),
    ) as Tensor
  ).data;
}

/** MLA 2 (+ the softmax scale): qNope [N, H * dn] -> q_lat [N, H, L]. */
export function absorbedQuery(g: GraphBuilder, config: ModelConfig, qNope: string, kvBProj: Tensor, scale: number, bits: QuantBits | null): string {
  const { numAttentionHeads: H, qkNopeHeadDim: dn, kvLoraRank: L } = config;
  if (bits === null) {
    const qNopeH = g.node('Transpose', [reshape(g, qNope, [0, H, dn])], { perm: [1, 0, 2] }); // [H, N, dn]
    return g.node('Transpose', [g.node('MatMul', [qNopeH, g.initializer(keyUpScaled(config, kvBProj, scale), [H, dn, L])])], { perm: [1, 0, 2] }); // [N, H, L]
  }
  const heads = H === 1 ? [qNope] : g.nodeN('Split', [qNope, g.int64s(Array<number>(H).fill(dn))], H, { axis: 1 }); // H x [N, dn]
  const lat = heads.map((qh, h) => {
    const q = quantizeMatrix(keyUpTransposed(config, kvBProj, h), L, dn, bits);
    q.scales.forEach((s, i) => (q.scales[i] = s * scale));
    return linear(g, qh, q); // [N, L]
  });
  return reshape(g, H === 1 ? lat[0]! : g.node('Concat', lat, { axis: 1 }), [0, H, L]);
}

/** MLA 6's head products: o [N, H, L] -> [N, H * dv] (before o_proj). */
export function valueUp(g: GraphBuilder, config: ModelConfig, o: string, kvBProj: Tensor, bits: QuantBits | null): string {
  const { numAttentionHeads: H, qkNopeHeadDim: dn, vHeadDim: dv, kvLoraRank: L } = config;
  const ranges = Array.from({ length: H }, (_, h) => headRows(config, h, dn, dv));
  if (bits === null) {
    const wUV = g.node('Transpose', [g.initializer(valueUpRows(config, kvBProj), [H, dv, L])], { perm: [0, 2, 1] }); // [H, L, dv], folded at load
    const ov = g.node('MatMul', [g.node('Transpose', [o], { perm: [1, 0, 2] }), wUV]); // [H, N, dv]
    return reshape(g, g.node('Transpose', [ov], { perm: [1, 0, 2] }), [0, H * dv]); // [N, H * dv]
  }
  const flat = reshape(g, o, [0, H * L]);
  const heads = H === 1 ? [flat] : g.nodeN('Split', [flat, g.int64s(Array<number>(H).fill(L))], H, { axis: 1 }); // H x [N, L]
  const out = heads.map((oh, h) => {
    const rows = selectRows(kvBProj, [ranges[h]!]) as Tensor; // [dv, L]
    return linear(g, oh, quantizeMatrix(rows.data, dv, L, bits)); // [N, dv]
  });
  return H === 1 ? out[0]! : g.node('Concat', out, { axis: 1 });
}
