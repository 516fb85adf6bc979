// What --kv-cache-dtype auto means, decided once at load from the checkpoint: vLLM's rule, the cache
// in the model's own dtype. A bfloat16, float16 or FP8-block checkpoint gets bfloat16 caches (on the
// quiet bench-mini-dsa run 1.4-1.5x the float32 decode rate, perplexity +0.012%: bench/results/
// latest-kv-dtype.md); a float32 checkpoint keeps float32 caches, so it computes exactly what its
// float32 reference does. float16 and FP8 map to bfloat16 because the cache has no float16 form and
// fp8 is a capacity choice the operator makes explicitly.
import type { DType } from './checkpoint/safetensors.ts';
import type { KVCacheDtype, KVCacheDtypeChoice } from '../kvcache/kv_dtype.ts';

/** What the cache dtype was resolved from: the flag as given, the result, and why (for the start-up log). */
export interface KVCacheDtypeResolution {
  readonly requested: KVCacheDtypeChoice;
  readonly dtype: KVCacheDtype;
  /** e.g. "checkpoint dtype bfloat16", "--kv-cache-dtype fp8". */
  readonly reason: string;
}

/** The checkpoint facts the rule reads (config.json's torch_dtype and the weight headers). */
export interface CheckpointDtypes {
  /** config.json's torch_dtype (or dtype); 'unknown' when absent. */
  readonly torchDtype: string;
  /** Parameters of the model's weight tensors by stored dtype. */
  readonly parametersByDtype: ReadonlyMap<DType, number>;
}

const HALF_TORCH_DTYPES = new Set(['bfloat16', 'bf16', 'float16', 'fp16', 'half', 'float8_e4m3fn', 'float8_e4m3', 'fp8']);
const FLOAT32_TORCH_DTYPES = new Set(['float32', 'fp32', 'float']);
const HALF_TENSOR_DTYPES: ReadonlySet<DType> = new Set<DType>(['BF16', 'F16', 'F8_E4M3']);

export function resolveKvCacheDtype(requested: KVCacheDtypeChoice, checkpoint: CheckpointDtypes): KVCacheDtypeResolution {
  if (requested !== 'auto') return { requested, dtype: requested, reason: `--kv-cache-dtype ${requested}` };
  const torch = checkpoint.torchDtype.replace(/^torch\./, '').toLowerCase();
  if (HALF_TORCH_DTYPES.has(torch)) return { requested, dtype: 'bfloat16', reason: `checkpoint dtype ${torch}` };
  if (FLOAT32_TORCH_DTYPES.has(torch)) return { requested, dtype: 'float32', reason: `checkpoint dtype ${torch}` };
  const stored = dominantDtype(checkpoint.parametersByDtype);
  const why = `checkpoint weights mostly ${stored ?? 'absent'}; config.json torch_dtype ${checkpoint.torchDtype}`;
  return { requested, dtype: stored !== null && HALF_TENSOR_DTYPES.has(stored) ? 'bfloat16' : 'float32', reason: why };
}

/** One line for logs: "auto -> bfloat16 (checkpoint dtype bfloat16)" or "fp8 (--kv-cache-dtype fp8)". */
export function describeKvCacheDtype(r: KVCacheDtypeResolution): string {
  return r.requested === 'auto' ? `auto -> ${r.dtype} (${r.reason})` : `${r.dtype} (${r.reason})`;
}

/** The stored dtype holding the most parameters; null for no tensors. */
function dominantDtype(byDtype: ReadonlyMap<DType, number>): DType | null {
  let best: DType | null = null;
  for (const [dtype, n] of byDtype) if (best === null || n > byDtype.get(best)!) best = dtype;
  return best;
}
