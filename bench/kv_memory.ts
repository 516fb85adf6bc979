// KV cache memory per token and how many sequences a fixed budget holds (pure; test/bench/kv_memory.test.ts).
// Ours: PagedKVStorage.bytesPerToken (per layer the MLA latent row kv_lora + rope, plus the indexer key with
// DSA on; float32). llama.cpp: what it reports when it creates the context (bench/peer_llama.ts parses it).
// MHA: what a standard multi-head cache of the same model would hold, per layer heads * ((nope + rope) for K
// + v for V) floats.
import { PagedKVStorage } from '../src/kvcache/paged_kv_storage.ts';
import type { KVCacheDtype } from '../src/kvcache/kv_dtype.ts';
import type { HfConfig } from './models.ts';

export interface KvShape {
  readonly layers: number;
  readonly heads: number;
  readonly kvLoraRank: number;
  readonly nope: number;
  readonly rope: number;
  readonly v: number;
  /** Indexer key dims per token and layer (null: no indexer). */
  readonly indexerDim: number | null;
}

export function kvShape(cfg: HfConfig): KvShape {
  const n = (k: string): number => cfg[k] as number;
  return {
    layers: n('num_hidden_layers'),
    heads: n('num_attention_heads'),
    kvLoraRank: n('kv_lora_rank'),
    nope: n('qk_nope_head_dim'),
    rope: n('qk_rope_head_dim'),
    v: n('v_head_dim'),
    indexerDim: cfg.model_type === 'deepseek_v32' ? n('index_head_dim') : null,
  };
}

/** Our cache: latent (+ indexer key when DSA is on), in a --kv-cache-dtype (default float32). */
export function oursKvBytesPerToken(s: KvShape, dsa: boolean, dtype: KVCacheDtype = 'float32'): number {
  const dims = { numLayers: s.layers, latentDim: s.kvLoraRank + s.rope, indexerDim: dsa ? s.indexerDim : null, ropeDim: s.rope };
  return PagedKVStorage.bytesPerToken(dtype === 'fp8' ? { ...dims, dtype } : { ...dims, dtype });
}

/** Tokens a GiB of KV cache holds (whole 64-token blocks). */
export function tokensPerGiB(bytesPerToken: number, blockSize = 64): number {
  return Math.floor(2 ** 30 / (bytesPerToken * blockSize)) * blockSize;
}

/** A plain MHA cache of the same model: K (nope + rope) and V (v) per head and layer. */
export function mhaKvBytesPerToken(s: KvShape, bytesPerElement = 4): number {
  return s.layers * s.heads * (s.nope + s.rope + s.v) * bytesPerElement;
}

/**
 * Sequences of `tokensPerSequence` that fit in `budgetBytes`; with a block size the tokens are rounded up
 * to whole blocks (our paged cache), without one the cache is counted per token.
 */
export function maxSequences(budgetBytes: number, bytesPerToken: number, tokensPerSequence: number, blockSize = 1): number {
  if (!(bytesPerToken > 0) || !(tokensPerSequence > 0)) throw new RangeError('bytesPerToken and tokensPerSequence must be positive');
  const tokens = Math.ceil(tokensPerSequence / blockSize) * blockSize;
  return Math.floor(budgetBytes / (tokens * bytesPerToken));
}
