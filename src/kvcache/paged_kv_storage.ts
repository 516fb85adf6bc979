// The KV memory: per layer, a latent cache over numSlots = numBlocks * blockSize token slots and (DSA
// models) an indexer key cache, in the element type of --kv-cache-dtype (kv_dtype.ts lays out the
// planes). Both share the block ids of KVCacheManager: slot = blockId * blockSize + offset. The model
// code owns these arrays through this class and passes them zero-copy to ONNX Runtime; src/kvcache's
// other files never touch them. Writes take float32 rows and quantise each token on its own
// (kv_row_codec.ts), so a block's bytes do not depend on how its tokens were batched.
import { assert } from '../common/errors.ts';
import {
  allocateIndexerKeyPool,
  allocateLatentPool,
  indexerBytesPerToken,
  latentBytesPerToken,
  poolBytes,
  type IndexerKeyPool,
  type KVCacheDtype,
  type KVRowShape,
  type LatentPool,
} from './kv_dtype.ts';
import { readIndexerKeyRows, readLatentRows, writeIndexerKeyRows, writeLatentRows } from './kv_row_codec.ts';
import type { BlockId, PagedKVStorageOptions, StorageDims, StorageDtype, StorageShape } from './types.ts';

type TokenShape = Omit<StorageDims, 'blockSize'> & StorageDtype;

/**
 * Slot of each position start .. start+count-1 of a sequence, into `out` (a new array by default); throws if the
 * table is too short. Block by block, no division per position: a 64k-token context's slots are rebuilt every
 * decode step (step_plan.ts), 0.23-0.57 -> 0.08-0.22 ms in a node probe.
 */
export function slotMapping(blockTable: readonly BlockId[], blockSize: number, start: number, count: number, out = new Int32Array(count)): Int32Array {
  assert(Number.isInteger(start) && start >= 0 && Number.isInteger(count) && count >= 0, `slotMapping(${start}, ${count})`);
  assert(
    start + count <= blockTable.length * blockSize,
    `positions up to ${start + count} need ${Math.ceil((start + count) / blockSize)} blocks, table has ${blockTable.length}`,
  );
  assert(out.length >= count, `slotMapping: ${count} slots into ${out.length}`);
  for (let i = 0, pos = start; i < count;) {
    const block = Math.floor(pos / blockSize);
    const offset = pos - block * blockSize;
    const first = blockTable[block]! * blockSize + offset; // in range: asserted above
    const n = Math.min(blockSize - offset, count - i);
    for (let j = 0; j < n; j++) out[i + j] = first + j;
    i += n;
    pos += n;
  }
  return out;
}

function rowShape(shape: TokenShape): KVRowShape {
  const ropeDim = shape.ropeDim ?? 0;
  return { kvLoraRank: shape.latentDim - ropeDim, qkRopeHeadDim: ropeDim, indexerDim: shape.indexerDim };
}

export class PagedKVStorage {
  readonly numLayers: number;
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly latentDim: number;
  readonly indexerDim: number | null;
  readonly dtype: KVCacheDtype;
  /** Width of the latent row's RoPE tail (qkRopeHeadDim); 0 when the caller did not say (float32/bfloat16). */
  readonly ropeDim: number;
  /** Latent row split: [kvLoraRank | qkRopeHeadDim] (ropeDim 0 when the dtype does not care). */
  readonly rows: KVRowShape;
  readonly numSlots: number;
  /** fp8 stores indexer keys Hadamard-rotated: the indexer query must be rotated the same way. */
  readonly indexerKeysRotated: boolean;
  private readonly latents: LatentPool[];
  private readonly indexerKeys: IndexerKeyPool[] | null;

  constructor(options: PagedKVStorageOptions) {
    const { numLayers, numBlocks, blockSize, latentDim, indexerDim } = options;
    for (const [name, v] of Object.entries({ numLayers, numBlocks, blockSize, latentDim, indexerDim: indexerDim ?? 1 })) {
      assert(Number.isInteger(v) && v > 0, `PagedKVStorage: ${name} must be a positive integer, got ${v}`);
    }
    const ropeDim = options.ropeDim ?? 0;
    assert(Number.isInteger(ropeDim) && ropeDim >= 0 && ropeDim < latentDim, `PagedKVStorage: ropeDim ${ropeDim} must be in [0, latentDim ${latentDim})`);
    this.numLayers = numLayers;
    this.numBlocks = numBlocks;
    this.blockSize = blockSize;
    this.latentDim = latentDim;
    this.indexerDim = indexerDim;
    this.dtype = options.dtype ?? 'float32';
    this.ropeDim = ropeDim;
    this.rows = rowShape(options);
    this.numSlots = numBlocks * blockSize;
    this.indexerKeysRotated = options.dtype === 'fp8' && indexerDim !== null && (options.rotateIndexerKeys ?? true);
    this.latents = Array.from({ length: numLayers }, () => allocateLatentPool(this.dtype, this.rows, this.numSlots));
    this.indexerKeys = indexerDim === null ? null : Array.from({ length: numLayers }, () => allocateIndexerKeyPool(this.dtype, indexerDim, this.numSlots));
  }

  /** Bytes of one token's latent rows across all layers. */
  static latentBytesPerToken(shape: TokenShape): number {
    return shape.numLayers * latentBytesPerToken(shape.dtype ?? 'float32', rowShape(shape));
  }

  /** Bytes of one token's indexer keys across all layers (0 without an indexer cache). */
  static indexerBytesPerToken(shape: TokenShape): number {
    return shape.numLayers * indexerBytesPerToken(shape.dtype ?? 'float32', rowShape(shape));
  }

  /** Bytes of one token across all layers (latent + indexer key). */
  static bytesPerToken(shape: TokenShape): number {
    return PagedKVStorage.latentBytesPerToken(shape) + PagedKVStorage.indexerBytesPerToken(shape);
  }

  static bytesPerBlock(shape: StorageShape): number {
    return shape.blockSize * PagedKVStorage.bytesPerToken(shape);
  }

  /** How many blocks fit in a memory budget (--kv-cache-memory), rounded down. */
  static numBlocksForBudget(bytes: number, shape: StorageShape): number {
    assert(bytes >= 0, `negative KV cache budget ${bytes}`);
    return Math.floor(bytes / PagedKVStorage.bytesPerBlock(shape));
  }

  get bytesPerToken(): number {
    return PagedKVStorage.bytesPerToken(this);
  }

  /** Bytes of one block across all layers, per cache (what dsv:kv_cache_bytes_in_use reports). */
  get bytesPerBlockByCache(): { readonly latent: number; readonly indexer: number } {
    return { latent: this.blockSize * PagedKVStorage.latentBytesPerToken(this), indexer: this.blockSize * PagedKVStorage.indexerBytesPerToken(this) };
  }

  /** Total bytes held by all pools (= numSlots * bytesPerToken). */
  get numBytes(): number {
    let n = 0;
    for (const p of this.latents) n += poolBytes(p);
    for (const p of this.indexerKeys ?? []) n += poolBytes(p);
    return n;
  }

  /** One layer's latent pool (live typed planes, not copies): what the attention graphs read. */
  latentPool(layer: number): LatentPool {
    this.checkLayer(layer);
    return this.latents[layer]!;
  }

  /** One layer's indexer key pool (live typed planes). */
  indexerKeyPool(layer: number): IndexerKeyPool {
    this.checkLayer(layer);
    assert(this.indexerKeys !== null, 'this model has no indexer key cache');
    return this.indexerKeys[layer]!;
  }

  /** float32 latent cache of one layer, [numSlots, latentDim] (the live array); only for dtype float32. */
  latent(layer: number): Float32Array {
    const pool = this.latentPool(layer);
    assert(pool.dtype === 'float32', `latent(): the cache is ${pool.dtype}; read it through latentPool()`);
    return pool.rows;
  }

  /** float32 indexer key cache of one layer, [numSlots, indexerDim]; only for dtype float32. */
  indexerKey(layer: number): Float32Array {
    const pool = this.indexerKeyPool(layer);
    assert(pool.dtype === 'float32', `indexerKey(): the cache is ${pool.dtype}; read it through indexerKeyPool()`);
    return pool.keys;
  }

  /** Quantises rows [count, latentDim] into the given slots of one layer's latent cache. */
  writeLatent(layer: number, slots: Int32Array, rows: Float32Array): void {
    writeLatentRows(this.latentPool(layer), this.rows, this.numSlots, slots, rows);
  }

  /** Quantises keys [count, indexerDim] into the given slots of one layer's indexer key cache. */
  writeIndexerKey(layer: number, slots: Int32Array, rows: Float32Array): void {
    writeIndexerKeyRows(this.indexerKeyPool(layer), this.indexerDim!, this.numSlots, slots, rows, this.indexerKeysRotated);
  }

  /** Dequantised latent rows [count, latentDim] of the given slots (a copy). */
  readLatent(layer: number, slots: Int32Array): Float32Array {
    this.checkSlots(slots);
    return readLatentRows(this.latentPool(layer), this.rows, slots);
  }

  /** Dequantised indexer keys [count, indexerDim] of the given slots, in the model's (unrotated) basis. */
  readIndexerKey(layer: number, slots: Int32Array): Float32Array {
    this.checkSlots(slots);
    return readIndexerKeyRows(this.indexerKeyPool(layer), this.indexerDim!, slots, this.indexerKeysRotated);
  }

  private checkLayer(layer: number): void {
    assert(Number.isInteger(layer) && layer >= 0 && layer < this.numLayers, `layer ${layer} out of range [0, ${this.numLayers})`);
  }

  private checkSlots(slots: Int32Array): void {
    for (const s of slots) assert(s >= 0 && s < this.numSlots, `slot ${s} out of range [0, ${this.numSlots})`);
  }
}
