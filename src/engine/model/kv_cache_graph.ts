// Reading the paged caches inside a graph in their stored element type (--kv-cache-dtype): gather only
// the rows a step needs from the typed pools (kvcache/kv_dtype.ts), then widen those rows to float32.
// The whole pool is never converted.
//
// onnxruntime-node cannot pass FLOAT8E4M3FN or BFLOAT16 tensors, so the pools go in as UINT8 / UINT16:
// - bf16: Gather -> BitCast(BFLOAT16) -> Cast(FLOAT)  (BitCast needs opset 26)
// - e4m3: ORT's CPU provider has no BitCast for float8, so the gathered codes are re-assembled into
//   float32 bits: sign << 24 | magnitude << 20 reinterpreted is the value * 2^-120 (subnormal codes
//   land on float32 subnormals exactly), then * 2^120. Measured (bench/kv_dtype_probe.ts) against a
//   Gather from the 256-entry value table, which costs ~3x more per value on ORT's CPU provider.
//   Then the scales: one per 128 latent values, one per indexer key.
import { BITCAST_OPSET, DataType, type GraphBuilder } from '../onnx/graph_builder.ts';
import { floatTensor, uint16Tensor, uint8Tensor, type Feed } from '../onnx/session.ts';
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
  const bits = g.node('Gather', [plane, idx], { axis: 0 });
  return g.node('Cast', [g.node('BitCast', [bits], { to: DataType.BFLOAT16 })], { to: DataType.FLOAT });
}

/**
 * Gathers rows of an e4m3 (UINT8) plane as float32 code values (scales not applied). The NaN codes decode
 * to 480 here; the storage writes them only into groups whose scale is NaN or infinite, so the scaled
 * value is NaN all the same.
 */
function gatherE4m3(g: GraphBuilder, plane: string, idx: string): string {
  const u32 = (v: number): string => g.node('Cast', [g.initializer(Int32Array.of(v), [])], { to: DataType.UINT32 });
  const codes = g.node('Cast', [g.node('Gather', [plane, idx], { axis: 0 })], { to: DataType.UINT32 });
  const sign = g.node('BitShift', [g.node('BitwiseAnd', [codes, u32(0x80)]), u32(24)], { direction: 'LEFT' });
  const magnitude = g.node('BitShift', [g.node('BitwiseAnd', [codes, u32(0x7f)]), u32(20)], { direction: 'LEFT' });
  const tiny = g.node('BitCast', [g.node('BitwiseOr', [sign, magnitude])], { to: DataType.FLOAT }); // value * 2^-120
  return g.node('Mul', [tiny, g.scalar(2 ** 120)]);
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
  return (idx) => {
    const values = gatherE4m3(g, nope, idx); // [..., L]
    const scales = g.node('Gather', [scale, idx], { axis: 0 }); // [..., G]
    let scaled: string;
    if (columnGroup === null) {
      const grouped = g.node('Reshape', [values, g.int64s([0, 0, G, FP8_LATENT_GROUP])]); // [B, K, G, 128]
      const product = g.node('Mul', [grouped, g.node('Unsqueeze', [scales, g.int64s([-1])])]);
      scaled = g.node('Reshape', [product, g.int64s([0, 0, L])]);
    } else {
      scaled = g.node('Mul', [values, g.node('Gather', [scales, columnGroup], { axis: -1 })]);
    }
    return g.node('Concat', [scaled, gatherBf16(g, rope, idx)], { axis: -1 });
  };
}

/** Gathered indexer keys: `keys` [..., Di] float32 and, for fp8, `scale` [...] to multiply each key's scores by. */
export interface IndexerKeyGather {
  readonly keys: string;
  readonly scale: string | null;
}

/**
 * Declares one layer's indexer key pool as graph inputs ('index_cache' [P, Di]; fp8 adds 'index_cache_scale'
 * [P]: names apart from the latent pool's, so one graph can read both) and returns a gather. An fp8 key's
 * scale is left to the caller: it multiplies whole dot products, which is cheaper than scaling every key
 * value (and exact up to float32 rounding).
 */
export function indexerKeyPoolInput(g: GraphBuilder, dtype: KVCacheDtype, Di: number): (idx: string) => IndexerKeyGather {
  if (dtype === 'float32') {
    const cache = g.input('index_cache', DataType.FLOAT, ['P', Di]);
    return (idx) => ({ keys: g.node('Gather', [cache, idx], { axis: 0 }), scale: null });
  }
  if (dtype === 'bfloat16') {
    const cache = g.input('index_cache', DataType.UINT16, ['P', Di]);
    return (idx) => ({ keys: gatherBf16(g, cache, idx), scale: null });
  }
  const cache = g.input('index_cache', DataType.UINT8, ['P', Di]);
  const scale = g.input('index_cache_scale', DataType.FLOAT, ['P']);
  return (idx) => ({ keys: gatherE4m3(g, cache, idx), scale: g.node('Gather', [scale, idx], { axis: 0 }) });
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
