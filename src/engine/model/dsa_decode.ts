// DSA decode in one graph run per layer: the indexer's key selection (IDX 5-6, indexer.ts) and sparse
// absorbed MLA over the selected latent rows (MLA 5, mla.ts). At batch 1 a decode step is bound by the
// number of graph runs and nodes, not by FLOPs; selection and attention used to be two runs with a JS
// pass mapping the selected positions to cache slots in between. Here the mapping is a GatherElements.
import { DataType, GraphBuilder } from '../onnx/graph_builder.ts';
import { reshape } from '../onnx/ops.ts';
import type { IndexerConfig, ModelConfig } from '../checkpoint/types.ts';
import type { KVCacheDtype } from '../../kvcache/kv_dtype.ts';
import { indexerSelectNodes } from './indexer.ts';
import { cacheGraphOpset, indexerKeyPoolInput, indexerKeySpanInput } from './kv_cache_graph.ts';
import { causalMask, gatheredAttentionInput } from './mla.ts';

/**
 * Inputs (B decode rows, one per sequence): q [B, 1, H, C], iq [B, 1, Hi, Di], iw [B, 1, Hi], the layer's
 * latent and indexer key pools in their stored dtype (kv_cache_graph.ts names the inputs), idx [B, T] int32
 * slots of positions 0 .. T-1 (padded rows repeat a slot; their positions lie past the query and are
 * masked), qpos [B, 1] int32. Outputs o [B, 1, H, L] and sel [B, 1, topk] int32, the attended positions
 * (a sequence with fewer than topk visible keys also gets masked, invisible ones). Used when T > topk.
 *   sel = TopK(indexer scores) -> slots = idx[b, sel] -> rows = pool[slots] -> softmax(q . rows + mask) @ rows
 * keySpan: B = 1 and the indexer keys are scored in place over a span of the pool that holds the
 * sequence's (kv_cache_graph.ts indexerKeySpanInput) instead of gathered; the latent rows are still gathered.
 * The one row sits at position T - 1 and sees every key: no causal mask before TopK.
 */
export function buildDsaDecodeGraph(config: ModelConfig, indexer: IndexerConfig, dtype: KVCacheDtype = 'float32', keySpan = false): Uint8Array {
  const { numAttentionHeads: H, qkRopeHeadDim: dr, kvLoraRank: L } = config;
  const { nHeads: Hi, headDim: Di, topk } = indexer;
  const g = new GraphBuilder(keySpan ? 'dsa_decode_key_span' : 'dsa_decode', cacheGraphOpset(dtype));
  const q = g.input('q', DataType.FLOAT, ['B', 1, H, L + dr]);
  const iq = g.input('iq', DataType.FLOAT, ['B', 1, Hi, Di]);
  const iw = g.input('iw', DataType.FLOAT, ['B', 1, Hi]);
  const attend = gatheredAttentionInput(g, config, dtype);
  const idx = g.input('idx', DataType.INT32, ['B', 'T']);
  const gatherKeys = keySpan ? (i: string) => indexerKeySpanInput(g, dtype, Di, i) : indexerKeyPoolInput(g, dtype, Di);
  const qpos = g.node('Cast', [g.input('qpos', DataType.INT32, ['B', 1])], { to: DataType.INT64 }); // [B, 1]
  const sel = indexerSelectNodes(g, indexer, true, gatherKeys, { iq, iw, idx, qpos, allVisible: keySpan }); // [B, 1, k] int64
  const selected = reshape(g, sel, [0, -1]); // [B, k]
  const slots = g.node('GatherElements', [idx, selected], { axis: 1 }); // [B, k] int32
  const mask = causalMask(g, g.node('Unsqueeze', [qpos, g.int64s([2])]), g.node('Unsqueeze', [selected, g.int64s([1])])); // [B, 1, k]
  g.markOutput(attend(q, slots, mask), 'o', DataType.FLOAT, ['B', 1, H, L]);
  g.markOutput(g.node('Cast', [sel], { to: DataType.INT32 }), 'sel', DataType.INT32, ['B', 1, topk]);
  return g.build();
}
