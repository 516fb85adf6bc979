// Reading the paged caches inside a graph in their stored element type (--kv-cache-dtype): gather only
// the rows a step needs from the typed pools (kvcache/kv_dtype.ts), then widen those rows to float32.
// The whole pool is never converted.
//
// onnxruntime-node cannot pass FLOAT8E4M3FN or BFLOAT16 tensors, so the pools go in as UINT8 / UINT16:
// - bf16: Gather -> BitCast(BFLOAT16) -> Cast(FLOAT)  (BitCast needs opset 26)
// - e4m3: ORT's CPU provider has no BitCast for float8, so the gathered codes c are re-assembled into the
//   float32 bits s << 31 | (c & 0x7f) << 20, which read as a float32 are the code's value * 2^-120 (the
//   subnormal codes land on float32 subnormals exactly). The bits are built with float arithmetic, not
//   bitwise ops: ORT's CPU BitwiseAnd / BitShift run ~0.65 ms per 1M elements, a Cast or Clip ~0.1 ms.
//   With s = [c >= 128], the bits are 2^20 * (c + 1920 s), exact in float32 (<= 12 significant bits):
//     DequantizeLinear(c, 2^20, 0) + Clip(DequantizeLinear(c, 1920 * 2^20, 127), 0, 1920 * 2^20)
//   then Cast(UINT32) and BitCast(FLOAT). Measured by bench/kv_decode_probe.ts (Gather + decode + the
//   consuming MatMul, median CPU ms, loaded machine, bench-mini-dsa shapes):
//                                 f32 pool   bit ops (before)   256-entry table Gather   this
//     indexer 1 x 16384 keys         3.65         6.80                 7.18               4.61
//     latent K=256 rows, B=16        1.29         5.03                 4.54               2.46
//   (a Cast from FLOAT8E4M3FN exists but nothing can produce the float8 tensor from the codes; a
//   [65536, 2] pair table Gather over the UINT16 view was 2.8-4.8 ms.)
//   The 2^120 and the scales are applied where they are cheapest: for latent rows, one Mul by 2^120 and one
//   by the group scales (the DSA decode graph instead folds the 2^120 into the gathered scales and takes
//   the rows in two parts without a Concat, fp8LatentPartsInput); for indexer keys, on the small query
//   and per-key score tensors (IndexerKeyGather).
import { BITCAST_OPSET, DataType, type GraphBuilder } from '../onnx/graph_builder.ts';
import { floatTensor, int32Tensor, uint16Tensor, uint8Tensor, type Feed } from '../onnx/session.ts';
import { FP8_LATENT_GROUP, fp8LatentGroups, type IndexerKeyPool, type KVCacheDtype, type LatentPool } from '../../kvcache/kv_dtype.ts';

/** Opset of a graph that reads caches of this dtype (bf16 planes need BitCast). */
export function cacheGraphOpset(dtype: KVCacheDtype): number | undefined {
  return dtype === 'float32' ? undefined : BITCAST_OPSET;
}

export interface LatentSplit {
  readonly kvLoraRank: number; // L
  readonly qkRopeHeadDim: number; // dr
}

/** Gathers rows of a bf16 (UINT16) plane as float32. */
function gatherBf16(g: GraphBuilder, plane: string, idx: string): string {
  return widenBf16(g, g.node('Gather', [plane, idx], { axis: 0 }));
}

/** bf16 bits (UINT16) as float32. */
function widenBf16(g: GraphBuilder, bits: string): string {
  return g.node('Cast', [g.node('BitCast', [bits], { to: DataType.BFLOAT16 })], { to: DataType.FLOAT });
}

/** The factor between an e4m3 code's value and what gatherE4m3 returns for it. */
export const E4M3_GATHER_FACTOR = 2 ** 120;

/**
 * Gathers rows of an e4m3 (UINT8) plane as float32 code values * 2^-120 (scales not applied; see the file
 * comment). The NaN codes decode to 480 * 2^-120 here; the storage writes them only into groups whose
 * scale is NaN or infinite, so the scaled value is NaN all the same.
 */
function gatherE4m3(g: GraphBuilder, plane: string, idx: string): string {
  return widenE4m3(g, g.node('Gather', [plane, idx], { axis: 0 }));
}

/** e4m3 codes (UINT8) as float32 code values * 2^-120 (see gatherE4m3). */
function widenE4m3(g: GraphBuilder, codes: string): string {
  const signStep = 1920 * 2 ** 20; // s << 31 minus the 2^27 that c = 128 + (c & 0x7f) already carries
  const magnitude = g.node('DequantizeLinear', [codes, g.scalar(2 ** 20), g.initializer(Uint8Array.of(0), [])]);
  const sign = g.node('Clip', [
    g.node('DequantizeLinear', [codes, g.scalar(signStep), g.initializer(Uint8Array.of(127), [])]),
    g.scalar(0),
    g.scalar(signStep),
  ]);
  const bits = g.node('Cast', [g.node('Add', [magnitude, sign])], { to: DataType.UINT32 });
  return g.node('BitCast', [bits], { to: DataType.FLOAT });
}

/**
 * Declares one layer's latent pool as graph inputs ('cache' [P, C] f32 / bf16; fp8: 'cache' [P, L] e4m3,
 * 'cache_scale' [P, G], 'cache_rope' [P, dr] bf16) and returns a gather: idx [...] -> rows [..., C] float32.
 */
export function latentPoolInput(g: GraphBuilder, dtype: KVCacheDtype, split: LatentSplit): (idx: string) => string {
  const { kvLoraRank: L, qkRopeHeadDim: dr } = split;
  const C = L + dr;
  if (dtype === 'float32') {
    const cache = g.input('cache', DataType.FLOAT, ['P', C]);
    return (idx) => g.node('Gather', [cache, idx], { axis: 0 });
  }
  if (dtype === 'bfloat16') {
    const cache = g.input('cache', DataType.UINT16, ['P', C]);
    return (idx) => gatherBf16(g, cache, idx);
  }
  const planes = fp8LatentPlanes(g, split);
  return (idx) => {
    const values = g.node('Mul', [gatherE4m3(g, planes.nope, idx), g.scalar(E4M3_GATHER_FACTOR)]); // [..., L]
    const scaled = planes.scaleGroups(values, g.node('Gather', [planes.scale, idx], { axis: 0 }));
    return g.node('Concat', [scaled, gatherBf16(g, planes.rope, idx)], { axis: -1 });
  };
}

/** One layer's fp8 latent pool inputs, and the Mul of gathered values [B, K, L] by their group scales [B, K, G]. */
function fp8LatentPlanes(g: GraphBuilder, split: LatentSplit) {
  const { kvLoraRank: L, qkRopeHeadDim: dr } = split;
  const G = fp8LatentGroups(L);
  const nope = g.input('cache', DataType.UINT8, ['P', L]);
  const scale = g.input('cache_scale', DataType.FLOAT, ['P', G]);
  const rope = g.input('cache_rope', DataType.UINT16, ['P', dr]);
  // Per-column group of each latent value, for a ragged last group (L not a multiple of 128).
  const columnGroup =
    L % FP8_LATENT_GROUP === 0
      ? null
      : g.initializer(
          Int32Array.from({ length: L }, (_, j) => Math.floor(j / FP8_LATENT_GROUP)),
          [L],
        );
  const scaleGroups = (values: string, scales: string): string => {
    if (columnGroup !== null) return g.node('Mul', [values, g.node('Gather', [scales, columnGroup], { axis: -1 })]);
    const grouped = g.node('Reshape', [values, g.int64s([0, 0, G, FP8_LATENT_GROUP])]); // [B, K, G, 128]
    const product = g.node('Mul', [grouped, g.node('Unsqueeze', [scales, g.int64s([-1])])]);
    return g.node('Reshape', [product, g.int64s([0, 0, L])]);
  };
  return { nope, scale, rope, scaleGroups };
}

/** Gathered fp8 latent rows as two float32 parts: nope [B, K, L] (times a power of two) and rope [B, K, dr]. */
export interface LatentParts {
  readonly nope: string;
  readonly rope: string;
}

/**
 * The nope part of fp8LatentPartsInput's rows is its values times this: the 2^120 of gatherE4m3 is folded
 * into the gathered scales [B, K, G] (the small operand of the one Mul) only up to 2^60, so scales up to
 * 2^68 stay finite, and the caller takes the other 2^60 on its small query and output.
 */
export const FP8_LATENT_PARTS_FACTOR = 2 ** -60;

/**
 * Declares one layer's fp8 latent pool (the inputs latentPoolInput declares for fp8) and returns a gather
 * of idx [B, K] into the two parts without concatenating them, a copy of every value that the attention
 * can do without (fp8_latent_attention.ts); one Mul per value (the group scales) instead of two.
 */
export function fp8LatentPartsInput(g: GraphBuilder, split: LatentSplit): (idx: string) => LatentParts {
  const planes = fp8LatentPlanes(g, split);
  const factor = g.scalar(FP8_LATENT_PARTS_FACTOR * E4M3_GATHER_FACTOR);
  return (idx) => {
    const scales = g.node('Mul', [g.node('Gather', [planes.scale, idx], { axis: 0 }), factor]); // [B, K, G]
    return { nope: planes.scaleGroups(gatherE4m3(g, planes.nope, idx), scales), rope: gatherBf16(g, planes.rope, idx) };
  };
}

/**
 * Gathered indexer keys: `keys` [..., Di] float32; for fp8, `scale` [...] (>= 0) to multiply each key's
 * head-weighted score by, and `queryFactor` to multiply the query by first (1 otherwise). `keyRow` [B, T]
 * (span input only): the row of `keys` holding position t; absent, row t holds position t.
 */
export interface IndexerKeyGather {
  readonly keys: string;
  readonly scale: string | null;
  readonly queryFactor: number;
  readonly keyRow?: string;
}

/**
 * fp8 keys come out of gatherE4m3 as value * 2^-120. The 2^120 is split between the query (2^60) and the
 * per-key scale (2^60), both small tensors, so the dot products never touch float32 subnormals (a product
 * of q and value * 2^-120 would, for |q * value| < 2^-6, and lose bits there) and neither factor can
 * overflow: indexer keys and queries leave a LayerNorm / RoPE, far below 2^68.
 */
const FP8_QUERY_FACTOR = 2 ** 60;
const FP8_SCALE_FACTOR = E4M3_GATHER_FACTOR / FP8_QUERY_FACTOR;

/**
 * Declares one layer's indexer key pool as graph inputs ('index_cache' [P, Di]; fp8 adds 'index_cache_scale'
 * [P]: names apart from the latent pool's, so one graph can read both) and returns a gather. An fp8 key's
 * scale is left to the caller: it multiplies the key's score (relu commutes with a factor >= 0), which is
 * cheaper than scaling every key value or every head's dot product (and exact up to float32 rounding).
 */
export function indexerKeyPoolInput(g: GraphBuilder, dtype: KVCacheDtype, Di: number): (idx: string) => IndexerKeyGather {
  if (dtype === 'float32') {
    const cache = g.input('index_cache', DataType.FLOAT, ['P', Di]);
    return (idx) => ({ keys: g.node('Gather', [cache, idx], { axis: 0 }), scale: null, queryFactor: 1 });
  }
  if (dtype === 'bfloat16') {
    const cache = g.input('index_cache', DataType.UINT16, ['P', Di]);
    return (idx) => ({ keys: gatherBf16(g, cache, idx), scale: null, queryFactor: 1 });
  }
  const cache = g.input('index_cache', DataType.UINT8, ['P', Di]);
  const scale = g.input('index_cache_scale', DataType.FLOAT, ['P']);
  return (idx) => ({
    keys: gatherE4m3(g, cache, idx),
    scale: g.node('Mul', [g.node('Gather', [scale, idx], { axis: 0 }), g.scalar(FP8_SCALE_FACTOR)]),
    queryFactor: FP8_QUERY_FACTOR,
  });
}

/**
 * Batch-1 decode: one sequence's indexer keys scored in place over the span of pool slots that holds them
 * (first .. first + R - 1, fed as a zero-copy view: 'index_keys' [1, R, Di], fp8 adds 'index_keys_scale'
 * [1, R]) instead of gathered into a new [T, Di] tensor; `keyRow` [1, T] maps position t to its row of the
 * span (slot - first) for picking the T scores. At long context the Gather of all T keys is a large share of
 * the decode graph's cost (bench-mini-dsa, one layer's dsa_decode run, float32, quiet, interleaved medians of
 * 7: 522 -> 394 us at 16k keys, 1952 -> 1021 us at 64k; 204 -> 193 at 512), so this pays while the span is
 * not much longer than T (a long prompt's blocks are mostly consecutive; sparse_mla.ts decides).
 */
export function indexerKeySpanInput(g: GraphBuilder, dtype: KVCacheDtype, Di: number, idx: string): IndexerKeyGather {
  const keyRow = g.node('Sub', [idx, g.input('index_keys_first', DataType.INT32, [1])]);
  if (dtype === 'float32') return { keys: g.input('index_keys', DataType.FLOAT, [1, 'R', Di]), scale: null, queryFactor: 1, keyRow };
  if (dtype === 'bfloat16') return { keys: widenBf16(g, g.input('index_keys', DataType.UINT16, [1, 'R', Di])), scale: null, queryFactor: 1, keyRow };
  const scale = g.input('index_keys_scale', DataType.FLOAT, [1, 'R']);
  return {
    keys: widenE4m3(g, g.input('index_keys', DataType.UINT8, [1, 'R', Di])),
    scale: g.node('Mul', [scale, g.scalar(FP8_SCALE_FACTOR)]),
    queryFactor: FP8_QUERY_FACTOR,
    keyRow,
  };
}

/** The feed for indexerKeySpanInput's inputs: slots first .. first + count - 1 of the pool. */
export function indexerKeySpanFeed(pool: IndexerKeyPool, Di: number, first: number, count: number): Feed {
  const span = { index_keys_first: int32Tensor(Int32Array.of(first), [1]) };
  const [a, b] = [first * Di, (first + count) * Di];
  if (pool.dtype === 'float32') return { ...span, index_keys: floatTensor(pool.keys.subarray(a, b), [1, count, Di]) };
  if (pool.dtype === 'bfloat16') return { ...span, index_keys: uint16Tensor(pool.keys.subarray(a, b), [1, count, Di]) };
  return {
    ...span,
    index_keys: uint8Tensor(pool.keys.subarray(a, b), [1, count, Di]),
    index_keys_scale: floatTensor(pool.scales.subarray(first, first + count), [1, count]),
  };
}

/** The feed for latentPoolInput's inputs (zero-copy views of the live pool). */
export function latentPoolFeed(pool: LatentPool, split: LatentSplit): Feed {
  const C = split.kvLoraRank + split.qkRopeHeadDim;
  if (pool.dtype === 'float32') return { cache: floatTensor(pool.rows, [pool.rows.length / C, C]) };
  if (pool.dtype === 'bfloat16') return { cache: uint16Tensor(pool.rows, [pool.rows.length / C, C]) };
  const L = split.kvLoraRank;
  const P = pool.nope.length / L;
  return {
    cache: uint8Tensor(pool.nope, [P, L]),
    cache_scale: floatTensor(pool.nopeScales, [P, fp8LatentGroups(L)]),
    cache_rope: uint16Tensor(pool.rope, [P, split.qkRopeHeadDim]),
  };
}

/** The feed for indexerKeyPoolInput's inputs. */
export function indexerKeyPoolFeed(pool: IndexerKeyPool, Di: number): Feed {
  const P = pool.keys.length / Di;
  if (pool.dtype === 'float32') return { index_cache: floatTensor(pool.keys, [P, Di]) };
  if (pool.dtype === 'bfloat16') return { index_cache: uint16Tensor(pool.keys, [P, Di]) };
  return { index_cache: uint8Tensor(pool.keys, [P, Di]), index_cache_scale: floatTensor(pool.scales, [P]) };
}
