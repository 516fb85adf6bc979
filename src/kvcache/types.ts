// Small shared vocabulary of src/kvcache. The cache hands out block ids, never arrays; the arrays
// live in PagedKVStorage, owned by the model code.
import type { KVCacheDtype } from './kv_dtype.ts';

/** Index of a block in the pool and in every per-layer array of PagedKVStorage. */
export type BlockId = number;

/** Hex string of a truncated sha256 (128 bits), chained over the parent block; see block_hash.ts. */
export type BlockHash = string;

/** Token ids of a sequence or of one block (number[] from the tokenizer or a typed array). */
export type TokenIds = ArrayLike<number>;

/** Result of a prefix-cache lookup; pass it unchanged to `allocateSlots` in the same step. */
export interface ComputedBlocks {
  /** Cached full blocks covering the prompt prefix, in order. */
  readonly blockIds: readonly BlockId[];
  /** blockIds.length * blockSize; always < the number of prompt tokens. */
  readonly numComputedTokens: number;
}

/** Prefix-cache counters in tokens, monotonically increasing (vLLM's prefix_cache_queries/hits). */
export interface PrefixCacheStats {
  readonly numQueryTokens: number;
  readonly numHitTokens: number;
  readonly numQueries: number;
}

export interface KVCacheManagerOptions {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly enablePrefixCaching: boolean;
}

export interface StorageDims {
  readonly numLayers: number;
  readonly blockSize: number;
  /** kvLoraRank + qkRopeHeadDim (576 for DeepSeek-V3.x). */
  readonly latentDim: number;
  /** indexHeadDim (128 for V3.2); null for models without a DSA indexer (or run with dense attention). */
  readonly indexerDim: number | null;
}

/** Element type of both caches (kv_dtype.ts); fp8 needs the RoPE tail width of the latent row (kept in bf16). */
export type StorageDtype =
  | { readonly dtype?: Exclude<KVCacheDtype, 'fp8'>; readonly ropeDim?: number }
  | {
      readonly dtype: 'fp8';
      /** qkRopeHeadDim */
      readonly ropeDim: number;
      /** Hadamard-rotate indexer keys before quantising (DeepSeek-V3.2 does; default true). false only for A/B measurements. */
      readonly rotateIndexerKeys?: boolean;
    };

/** Everything that decides the bytes of one block. dtype defaults to float32. */
export type StorageShape = StorageDims & StorageDtype;

export type PagedKVStorageOptions = StorageShape & { readonly numBlocks: number };
