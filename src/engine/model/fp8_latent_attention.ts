// MLA 5 (as mla.ts attendGatheredNodes) over gathered fp8 latent rows kept in two parts, nope [B, K, L]
// and rope [B, K, dr] (kv_cache_graph.ts fp8LatentPartsInput), instead of one concatenated [B, K, C]:
//   scores = q_nope . nope + q_rope . rope        two MatMuls (ORT fuses the key transposes into them)
//   o      = softmax(scores + mask) @ nope        only the L output columns are computed; no Slice
// which saves the Concat copy of every gathered value. The nope part arrives times
// FP8_LATENT_PARTS_FACTOR (2^-60); the query and the output, both small, carry the inverse.
import type { GraphBuilder } from '../onnx/graph_builder.ts';
import { reshape, reshapeLike, slice } from '../onnx/ops.ts';
import type { ModelConfig } from '../checkpoint/types.ts';
import { FP8_LATENT_PARTS_FACTOR, type LatentParts } from './kv_cache_graph.ts';

/** q [B, S, H, C], rows gathered at idx [B, K], additive mask [B, S, K]. Returns o [B, S, H, L]. */
export function attendGatheredPartsNodes(g: GraphBuilder, config: ModelConfig, q: string, rows: LatentParts, idx: string, mask: string): string {
  const { numAttentionHeads: H, qkRopeHeadDim: dr, kvLoraRank: L } = config;
  const C = L + dr;
  const inverse = g.scalar(1 / FP8_LATENT_PARTS_FACTOR);
  const qFlat = reshape(g, q, [0, -1, C]); // [B, S * H, C]
  const qNope = g.node('Mul', [slice(g, qFlat, 2, 0, L), inverse]); // [B, S * H, L]
  const nopeScores = g.node('MatMul', [qNope, g.node('Transpose', [rows.nope], { perm: [0, 2, 1] })]); // [B, S * H, K]
  const ropeScores = g.node('MatMul', [slice(g, qFlat, 2, L, C), g.node('Transpose', [rows.rope], { perm: [0, 2, 1] })]);
  const scores4 = reshapeLike(g, g.node('Add', [nopeScores, ropeScores]), [[q, 0, 2], H, [idx, 1, 2]]); // [B, S, H, K]
  const masked = g.node('Add', [scores4, g.node('Unsqueeze', [mask, g.int64s([2])])]);
  const p = reshapeLike(g, g.node('Softmax', [masked], { axis: -1 }), [[q, 0, 1], -1, [idx, 1, 2]]); // [B, S * H, K]
  const o = g.node('Mul', [g.node('MatMul', [p, rows.nope]), inverse]); // [B, S * H, L]
  return reshape(g, o, [0, -1, H, L]);
}
