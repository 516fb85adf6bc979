// The KV memory: per layer, a latent cache [numSlots, latentDim] and (DSA models) an indexer key
// cache [numSlots, indexerDim], float32, row-major, numSlots = numBlocks * blockSize. Both share the
// block ids of KVCacheManager: slot = blockId * blockSize + offset. The model code owns these arrays
// through this class and passes them zero-copy to ONNX Runtime; src/kvcache's other files never touch them.
import { assert } from '../common/errors.ts';
import type { BlockId, PagedKVStorageOptions, StorageShape } from './types.ts';

const BYTES_PER_FLOAT32 = 4;

/** Slot of each position start .. start+count-1 of a sequence; throws if the table is too short. */
export function slotMapping(blockTable: readonly BlockId[], blockSize: number, start: number, count: number): Int32Array {
  assert(Number.isInteger(start) && start >= 0 && Number.isInteger(count) && count >= 0, `slotMapping(${start}, ${count})`);
  assert(start + count <= blockTable.length * blockSize,
    `positions up to ${start + count} need ${Math.ceil((start + count) / blockSize)} blocks, table has ${blockTable.length}`);
  const slots = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const pos = start + i;
    slots[i] = blockTable[Math.floor(pos / blockSize)] * blockSize + (pos % blockSize);
  }
  return slots;
}

export class PagedKVStorage {
  readonly numLayers: number;
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly latentDim: number;
  readonly indexerDim: number | null;
  readonly numSlots: number;
  private readonly latents: Float32Array[];
  private readonly indexerKeys: Float32Array[] | null;

  constructor(options: PagedKVStorageOptions) {
    const { numLayers, numBlocks, blockSize, latentDim, indexerDim } = options;
    for (const [name, v] of Object.entries({ numLayers, numBlocks, blockSize, latentDim, indexerDim: indexerDim ?? 1 })) {
      assert(Number.isInteger(v) && v > 0, `PagedKVStorage: ${name} must be a positive integer, got ${v}`);
    }
    this.numLayers = numLayers;
    this.numBlocks = numBlocks;
    this.blockSize = blockSize;
    this.latentDim = latentDim;
    this.indexerDim = indexerDim;
    this.numSlots = numBlocks * blockSize;
    this.latents = Array.from({ length: numLayers }, () => new Float32Array(this.numSlots * latentDim));
    this.indexerKeys = indexerDim === null
      ? null
      : Array.from({ length: numLayers }, () => new Float32Array(this.numSlots * indexerDim));
  }

  /** Bytes of one token across all layers (latent + indexer key, float32). */
  static bytesPerToken(shape: Omit<StorageShape, 'blockSize'>): number {
    return shape.numLayers * (shape.latentDim + (shape.indexerDim ?? 0)) * BYTES_PER_FLOAT32;
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
    const perLayerToken = (dim: number): number => this.numLayers * this.blockSize * dim * BYTES_PER_FLOAT32;
    return { latent: perLayerToken(this.latentDim), indexer: perLayerToken(this.indexerDim ?? 0) };
  }

  /** Total bytes held by all arrays. */
  get numBytes(): number {
    return this.numSlots * this.bytesPerToken;
  }

  /** Latent cache of one layer, [numSlots, latentDim] row-major (the live array, not a copy). */
  latent(layer: number): Float32Array {
    this.checkLayer(layer);
    return this.latents[layer];
  }

  /** Indexer key cache of one layer, [numSlots, indexerDim] (the live array, not a copy). */
  indexerKey(layer: number): Float32Array {
    this.checkLayer(layer);
    assert(this.indexerKeys !== null, 'this model has no indexer key cache');
    return this.indexerKeys[layer];
  }

  /** Writes rows [count, latentDim] to the given slots of one layer's latent cache. */
  writeLatent(layer: number, slots: Int32Array, rows: Float32Array): void {
    writeRows(this.latent(layer), this.latentDim, this.numSlots, slots, rows);
  }

  /** Writes rows [count, indexerDim] to the given slots of one layer's indexer key cache. */
  writeIndexerKey(layer: number, slots: Int32Array, rows: Float32Array): void {
    writeRows(this.indexerKey(layer), this.indexerDim!, this.numSlots, slots, rows);
  }

  private checkLayer(layer: number): void {
    assert(Number.isInteger(layer) && layer >= 0 && layer < this.numLayers, `layer ${layer} out of range [0, ${this.numLayers})`);
  }
}

/**
 * cache[slots[i]] = rows[i]. Consecutive slots (positions within one block) are coalesced into one
 * TypedArray.set, so a prefill chunk costs about one copy per block, not one per row.
 */
function writeRows(cache: Float32Array, dim: number, numSlots: number, slots: Int32Array, rows: Float32Array): void {
  assert(rows.length === slots.length * dim, `${rows.length} floats for ${slots.length} slots of dim ${dim}`);
  let i = 0;
  while (i < slots.length) {
    let end = i + 1;
    while (end < slots.length && slots[end] === slots[end - 1] + 1) end++;
    const first = slots[i];
    assert(first >= 0 && slots[end - 1] < numSlots, `slots ${first}..${slots[end - 1]} out of range [0, ${numSlots})`);
    cache.set(rows.subarray(i * dim, end * dim), first * dim);
    i = end;
  }
}
