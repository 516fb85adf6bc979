// What --kv-cache-dtype auto means on this server: float32, for every checkpoint. vLLM's auto is the
// model's dtype because a GPU reads bf16 as fast as it reads anything; ONNX Runtime's CPU provider has no
// bf16 or float8 arithmetic, so every 16- or 8-bit row a step reads is first widened to float32 inside the
// graph (kv_cache_graph.ts: two to six extra passes over the rows), and that costs more than the bytes it
// saves. Quiet bench-mini-dsa run, rotated order, 3 rounds (bench/results/latest-kv-dtype.md): batch-1
// decode at 16k context bfloat16 0.82x and fp8 0.62x of float32; 16 concurrent sequences 0.87x and 0.75x.
// bfloat16 (2x the tokens, perplexity +0.01%) and fp8 (3.56x) are capacity choices the operator makes.
import type { KVCacheDtype, KVCacheDtypeChoice } from '../kvcache/kv_dtype.ts';

/** What the cache dtype was resolved from: the flag as given, the result, and why (for the start-up log). */
export interface KVCacheDtypeResolution {
  readonly requested: KVCacheDtypeChoice;
  readonly dtype: KVCacheDtype;
  /** e.g. "the fastest on the CPU", "--kv-cache-dtype fp8". */
  readonly reason: string;
}

export const AUTO_KV_CACHE_DTYPE: KVCacheDtype = 'float32';

export function resolveKvCacheDtype(requested: KVCacheDtypeChoice): KVCacheDtypeResolution {
  if (requested !== 'auto') return { requested, dtype: requested, reason: `--kv-cache-dtype ${requested}` };
  return { requested, dtype: AUTO_KV_CACHE_DTYPE, reason: 'the fastest on the CPU' };
}

/** One line for logs: "auto -> float32 (the fastest on the CPU)" or "fp8 (--kv-cache-dtype fp8)". */
export function describeKvCacheDtype(r: KVCacheDtypeResolution): string {
  return r.requested === 'auto' ? `auto -> ${r.dtype} (${r.reason})` : `${r.dtype} (${r.reason})`;
}
