// KV cache element types (--kv-cache-dtype) and what one token occupies in each.
//
// Per token and layer (L = kvLoraRank, dr = qkRopeHeadDim, Di = indexHeadDim, G = ceil(L / 128)):
//   float32   latent [L + dr] f32                                   indexer key [Di] f32
//   bfloat16  latent [L + dr] bf16                                  indexer key [Di] bf16
//   fp8       latent [L] e4m3 + [G] f32 scales + [dr] bf16 (RoPE)   indexer key [Di] e4m3 + 1 f32 scale,
//             stored after an orthonormal Hadamard rotation (hadamard.ts)
// fp8 is DeepSeek-V3.2's own cache content: 512 + 4 * 4 + 64 * 2 = 656 bytes of latent for L = 512,
// dr = 64, and 128 + 4 bytes of indexer key. Scales are amax / 448 over each group of 128 latent values
// (the last group may be shorter) and over the whole indexer key; all-zero groups get scale 1.
// Each plane is its own typed array (ONNX Runtime reads each with its own element type); the bytes
// per token are exactly those of the packed V3.2 row.

export const KV_CACHE_DTYPES = ['float32', 'bfloat16', 'fp8'] as const;
export type KVCacheDtype = (typeof KV_CACHE_DTYPES)[number];
/** --kv-cache-dtype values (vLLM's flag name); 'auto' is resolved against the checkpoint at load (engine/kv_cache_dtype_auto.ts). */
export const KV_CACHE_DTYPE_CHOICES = ['auto', ...KV_CACHE_DTYPES] as const;
export type KVCacheDtypeChoice = (typeof KV_CACHE_DTYPE_CHOICES)[number];

/** Latent values sharing one float32 scale in the fp8 layout (DeepSeek-V3.2: 4 scales for 512 values). */
export const FP8_LATENT_GROUP = 128;

/** The dims that decide a token's size in the latent and indexer caches of one layer. */
export interface KVRowShape {
  readonly kvLoraRank: number;
  readonly qkRopeHeadDim: number;
  /** null: no indexer cache (V2/V3 models, or --dense-attention). */
  readonly indexerDim: number | null;
}

export function fp8LatentGroups(kvLoraRank: number): number {
  return Math.ceil(kvLoraRank / FP8_LATENT_GROUP);
}

/** Bytes of one token's latent row in one layer. */
export function latentBytesPerToken(dtype: KVCacheDtype, shape: KVRowShape): number {
  const { kvLoraRank: L, qkRopeHeadDim: dr } = shape;
  if (dtype === 'float32') return 4 * (L + dr);
  if (dtype === 'bfloat16') return 2 * (L + dr);
  return L + 4 * fp8LatentGroups(L) + 2 * dr;
}

/** Bytes of one token's indexer key in one layer (0 without an indexer cache). */
export function indexerBytesPerToken(dtype: KVCacheDtype, shape: KVRowShape): number {
  const Di = shape.indexerDim;
  if (Di === null) return 0;
  if (dtype === 'float32') return 4 * Di;
  if (dtype === 'bfloat16') return 2 * Di;
  return Di + 4;
}

/** One layer's latent pool over P slots; the union is what the attention graphs read. */
export type LatentPool =
  | { readonly dtype: 'float32'; readonly rows: Float32Array } // [P, L + dr]
  | { readonly dtype: 'bfloat16'; readonly rows: Uint16Array } // [P, L + dr] bf16 bits
  | {
      readonly dtype: 'fp8';
      readonly nope: Uint8Array; // [P, L] e4m3 codes
      readonly nopeScales: Float32Array; // [P, G]
      readonly rope: Uint16Array; // [P, dr] bf16 bits
    };

/** One layer's indexer key pool over P slots. */
export type IndexerKeyPool =
  | { readonly dtype: 'float32'; readonly keys: Float32Array } // [P, Di]
  | { readonly dtype: 'bfloat16'; readonly keys: Uint16Array } // [P, Di] bf16 bits
  | {
      readonly dtype: 'fp8';
      readonly keys: Uint8Array; // [P, Di] e4m3 codes of the Hadamard-rotated key
      readonly scales: Float32Array; // [P]
    };

/** One layer's latent pool, every plane carved from a single zeroed allocation. */
export function allocateLatentPool(dtype: KVCacheDtype, shape: KVRowShape, numSlots: number): LatentPool {
  const { kvLoraRank: L, qkRopeHeadDim: dr } = shape;
  const C = L + dr;
  if (dtype === 'float32') return { dtype, rows: new Float32Array(numSlots * C) };
  if (dtype === 'bfloat16') return { dtype, rows: new Uint16Array(numSlots * C) };
  const G = fp8LatentGroups(L);
  // Planes in descending alignment order (f32, u16, u8), so every view starts aligned.
  const buffer = new ArrayBuffer(numSlots * latentBytesPerToken(dtype, shape));
  const nopeScales = new Float32Array(buffer, 0, numSlots * G);
  const rope = new Uint16Array(buffer, nopeScales.byteLength, numSlots * dr);
  const nope = new Uint8Array(buffer, nopeScales.byteLength + rope.byteLength, numSlots * L);
  return { dtype, nope, nopeScales, rope };
}

/** One layer's indexer key pool (the model has an indexer cache: shape.indexerDim is not null). */
export function allocateIndexerKeyPool(dtype: KVCacheDtype, indexerDim: number, numSlots: number): IndexerKeyPool {
  if (dtype === 'float32') return { dtype, keys: new Float32Array(numSlots * indexerDim) };
  if (dtype === 'bfloat16') return { dtype, keys: new Uint16Array(numSlots * indexerDim) };
  const buffer = new ArrayBuffer(numSlots * (indexerDim + 4));
  const scales = new Float32Array(buffer, 0, numSlots);
  return { dtype, keys: new Uint8Array(buffer, scales.byteLength, numSlots * indexerDim), scales };
}

/** Bytes held by a pool's planes. */
export function poolBytes(pool: LatentPool | IndexerKeyPool): number {
  return Object.values(pool).reduce((n: number, v) => n + (ArrayBuffer.isView(v) ? v.byteLength : 0), 0);
}
