// DSA decode in one graph run per layer: the indexer's key selection (IDX 5-6, indexer.ts) and sparse
// absorbed MLA over the selected latent rows (MLA 5, mla.ts). At batch 1 a decode step is bound by the
// number of graph runs and nodes, not by FLOPs; selection and attention used to be two runs with a JS
// pass mapping the selected positions to cache slots in between. Here the mapping is a GatherElements.
import { DataType, GraphBuilder } from '../onnx/graph_builder.ts';
import { reshape } from '../onnx/ops.ts';
import type { IndexerConfig, ModelConfig } from '../checkpoint/types.ts';
import type { KVCacheDtype } from '../../kvcache/kv_dtype.ts';
import { indexerSelectNodes } from './indexer.ts';
import { attendGatheredPartsNodes } from './fp8_latent_attention.ts';
import { cacheGraphOpset, fp8LatentPartsInput, indexerKeyPoolInput, latentPoolInput } from './kv_cache_graph.ts';
import { attendGatheredNodes, causalMask } from './mla.ts';

/**
 * Inputs (B decode rows, one per sequence): q [B, 1, H, C], iq [B, 1, Hi, Di], iw [B, 1, Hi], the layer's
 * latent and indexer key pools in their stored dtype (kv_cache_graph.ts names the inputs), idx [B, T] int32
 * slots of positions 0 .. T-1 (padded rows repeat a slot; their positions lie past the query and are
 * masked), qpos [B, 1] int32. Outputs o [B, 1, H, L] and sel [B, 1, topk] int32, the attended positions
 * (a sequence with fewer than topk visible keys also gets masked, invisible ones). Used when T > topk.
 *   sel = TopK(indexer scores) -> slots = idx[b, sel] -> rows = pool[slots] -> softmax(q . rows + mask) @ rows
 */
export function buildDsaDecodeGraph(config: ModelConfig, indexer: IndexerConfig, dtype: KVCacheDtype = 'float32'): Uint8Array {
  const { numAttentionHeads: H, qkRopeHeadDim: dr, kvLoraRank: L } = config;
  const { nHeads: Hi, headDim: Di, topk } = indexer;
  const g = new GraphBuilder('dsa_decode', cacheGraphOpset(dtype));
  const q = g.input('q', DataType.FLOAT, ['B', 1, H, L + dr]);
  const iq = g.input('iq', DataType.FLOAT, ['B', 1, Hi, Di]);
  const iw = g.input('iw', DataType.FLOAT, ['B', 1, Hi]);
  // fp8 rows stay in their nope and rope parts (fp8_latent_attention.ts: no Concat copy).
  const gatherParts = dtype === 'fp8' ? fp8LatentPartsInput(g, config) : null;
  const gatherLatent = gatherParts === null ? latentPoolInput(g, dtype, config) : null;
  const gatherKeys = indexerKeyPoolInput(g, dtype, Di);
  const idx = g.input('idx', DataType.INT32, ['B', 'T']);
  const qpos = g.node('Cast', [g.input('qpos', DataType.INT32, ['B', 1])], { to: DataType.INT64 }); // [B, 1]
  const sel = indexerSelectNodes(g, indexer, true, gatherKeys, { iq, iw, idx, qpos }); // [B, 1, k] int64
  const selected = reshape(g, sel, [0, -1]); // [B, k]
  const slots = g.node('GatherElements', [idx, selected], { axis: 1 }); // [B, k] int32
  const mask = causalMask(g, g.node('Unsqueeze', [qpos, g.int64s([2])]), g.node('Unsqueeze', [selected, g.int64s([1])])); // [B, 1, k]
  const o = gatherParts
    ? attendGatheredPartsNodes(g, config, q, gatherParts(slots), slots, mask)
    : attendGatheredNodes(g, config, q, gatherLatent!(slots), slots, mask);
  g.markOutput(o, 'o', DataType.FLOAT, ['B', 1, H, L]);
  g.markOutput(g.node('Cast', [sel], { to: DataType.INT32 }), 'sel', DataType.INT32, ['B', 1, topk]);
  return g.build();
}
