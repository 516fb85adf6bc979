// DSA attention for short chunks in one graph run per layer: B sequences with S query rows each (a
// speculative verification chunk = the last token + k drafts, the MTP module's rows of one step), the
// counterpart of dsa_decode.ts (S = 1). The prefill path (attention/sparse_mla.ts attendPrefill) takes
// one sequence and two runs per slice (indexer selection, then attention) with a JS pass between them;
// at batch 1 a step is bound by the number of graph runs, and at batch 16 one run per sequence and layer
// made a speculative step 5x the graph runs of a plain one.
import { DataType, GraphBuilder } from '../onnx/graph_builder.ts';
import { reshape, reshapeLike } from '../onnx/ops.ts';
import type { IndexerConfig, ModelConfig } from '../checkpoint/types.ts';
import type { KVCacheDtype } from '../../kvcache/kv_dtype.ts';
import { indexerSelectNodes } from './indexer.ts';
import { cacheGraphOpset, indexerKeyPoolInput } from './kv_cache_graph.ts';
import { causalMask, gatheredAttentionInput } from './mla.ts';

/**
 * Inputs: q [B, S, H, C], iq [B, S, Hi, Di], iw [B, S, Hi], the layer's latent and indexer key pools in their
 * stored dtype (kv_cache_graph.ts names the inputs), idx [B, T] int32 slots of positions 0 .. T-1 (padding
 * repeats a slot; its positions lie past every query and are masked), qpos [B, S] int32. Outputs o [B, S, H, L]
 * and sel [B, S, topk] int32, the positions each row attended (rows with fewer than topk visible keys also get
 * invisible ones, masked). Used when T > topk.
 *   sel = TopK(indexer scores) [B, S, k] -> slots = idx[b, sel] -> per row: softmax(q . rows + causal mask) @ rows
 * Each row attends exactly as a decode row of dsa_decode.ts does (the same gatheredAttentionInput on [B * S, 1, ...]);
 * the scores are the prefill form of IDX 5 (indexer.ts), as the prefill path computes them for these rows.
 */
export function buildDsaRowsGraph(config: ModelConfig, indexer: IndexerConfig, dtype: KVCacheDtype = 'float32'): Uint8Array {
  const { numAttentionHeads: H, qkRopeHeadDim: dr, kvLoraRank: L } = config;
  const { nHeads: Hi, headDim: Di, topk } = indexer;
  const C = L + dr;
  const g = new GraphBuilder('dsa_rows', cacheGraphOpset(dtype));
  const q = g.input('q', DataType.FLOAT, ['B', 'S', H, C]);
  const iq = g.input('iq', DataType.FLOAT, ['B', 'S', Hi, Di]);
  const iw = g.input('iw', DataType.FLOAT, ['B', 'S', Hi]);
  const attend = gatheredAttentionInput(g, config, dtype);
  const gatherKeys = indexerKeyPoolInput(g, dtype, Di);
  const idx = g.input('idx', DataType.INT32, ['B', 'T']);
  const qpos = g.node('Cast', [g.input('qpos', DataType.INT32, ['B', 'S'])], { to: DataType.INT64 }); // [B, S]
  const sel = indexerSelectNodes(g, indexer, false, gatherKeys, { iq, iw, idx, qpos }); // [B, S, k] int64
  const slots = g.node('GatherElements', [idx, reshape(g, sel, [0, -1])], { axis: 1 }); // [B, S * k] int32
  // One attention "sequence" per query row: [B * S, k] keys of its own.
  const rowSlots = reshape(g, slots, [-1, topk]); // [B * S, k]
  const rowSel = reshape(g, sel, [-1, 1, topk]); // [B * S, 1, k]
  const rowPos = reshape(g, qpos, [-1, 1, 1]); // [B * S, 1, 1]
  const mask = causalMask(g, rowPos, rowSel); // [B * S, 1, k]
  const rowQ = reshape(g, q, [-1, 1, H, C]); // [B * S, 1, H, C]
  const o = attend(rowQ, rowSlots, mask); // [B * S, 1, H, L]
  g.markOutput(reshapeLike(g, o, [[q, 0, 2], H, L]), 'o', DataType.FLOAT, ['B', 'S', H, L]);
  g.markOutput(g.node('Cast', [sel], { to: DataType.INT32 }), 'sel', DataType.INT32, ['B', 'S', topk]);
  return g.build();
}
