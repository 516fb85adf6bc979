// Loads a checkpoint and sets up everything one engine needs to run it: the weights, the paged
// caches sized from a block count or a memory budget, the block manager and the compiled graphs.
import { EngineError } from '../common/errors.ts';
import { DeepseekModel, type ModelOptions } from './model/deepseek_model.ts';
import type { LoadedModel } from './checkpoint/types.ts';
import { loadModel } from './checkpoint/weights.ts';
import { KVCacheManager } from '../kvcache/kv_cache_manager.ts';
import { PagedKVStorage } from '../kvcache/paged_kv_storage.ts';
import type { StorageShape } from '../kvcache/types.ts';

export const DEFAULT_BLOCK_SIZE = 64;
export const DEFAULT_KV_CACHE_MEMORY = 2 ** 30; // 1 GiB

export interface ModelExecutorOptions extends ModelOptions {
  readonly blockSize?: number;
  /** Explicit number of KV blocks; wins over kvCacheMemory. */
  readonly numKvBlocks?: number;
  /** KV cache budget in bytes (latent + indexer caches of all layers). */
  readonly kvCacheMemory?: number;
  readonly enablePrefixCaching?: boolean;
}

export interface ModelExecutor {
  readonly loaded: LoadedModel;
  readonly model: DeepseekModel;
  readonly storage: PagedKVStorage;
  readonly kvCache: KVCacheManager;
}

export function storageShape(loaded: LoadedModel, blockSize: number, denseAttention = false): StorageShape {
  const c = loaded.config;
  return {
    numLayers: c.numHiddenLayers,
    blockSize,
    latentDim: c.kvLoraRank + c.qkRopeHeadDim,
    indexerDim: c.indexer && !denseAttention ? c.indexer.headDim : null,
  };
}

export async function createModelExecutor(modelDir: string, options: ModelExecutorOptions = {}): Promise<ModelExecutor> {
  const loaded = loadModel(modelDir);
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  const shape = storageShape(loaded, blockSize, options.denseAttention);
  const numBlocks = options.numKvBlocks ?? PagedKVStorage.numBlocksForBudget(options.kvCacheMemory ?? DEFAULT_KV_CACHE_MEMORY, shape);
  if (numBlocks < 1) {
    throw new EngineError('DSV_ERR_CONFIG', `the KV cache budget holds no block of ${PagedKVStorage.bytesPerBlock(shape)} bytes`);
  }
  const storage = new PagedKVStorage({ ...shape, numBlocks });
  const kvCache = new KVCacheManager({ numBlocks, blockSize, enablePrefixCaching: options.enablePrefixCaching ?? true });
  const model = await DeepseekModel.create(loaded, storage, options);
  return { loaded, model, storage, kvCache };
}
