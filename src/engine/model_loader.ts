// From a model directory to a ready ModelRunner, in the order that keeps memory honest:
//   1. open the checkpoint and check every tensor's header (quant/weight_stream.ts): seconds;
//   2. check the memory plan (weights at the mode + KV cache + runtime) against the machine, refusing
//      with the numbers and the settings that would fit before anything large is allocated;
//   3. allocate the KV cache and compile the graphs, reading (and quantising, or taking from the
//      quantised-weights cache) one layer at a time: in this thread, or for a quantised model of 1e8+
//      weights in worker threads that read ahead (quant/group_pool.ts; starting a worker costs ~1 s);
//      before the load and before each layer, the rest of the plan is checked against the memory still
//      available (load_memory_guard.ts), so growth of other processes stops the load with the numbers.
import { availableParallelism } from 'node:os';
import { EngineError } from '../common/errors.ts';
import { PagedKVStorage } from '../kvcache/paged_kv_storage.ts';
import { DEFAULT_MAX_SCORE_ELEMENTS } from './attention/sparse_mla.ts';
import type { EngineCoreOptions } from './engine_core.ts';
import { LoadMemoryGuard } from './load_memory_guard.ts';
import { checkMemoryPlan, fittingLoaderThreads } from './memory_plan.ts';
import { nativeLayersPlanned, type ForwardHooks } from './model/deepseek_model.ts';
import { resolveKvCacheDtype } from './kv_cache_dtype_auto.ts';
import { ModelRunner, numKvBlocksFor } from './model_runner.ts';
import { GroupPool } from './quant/group_pool.ts';
import { WeightStream } from './quant/weight_stream.ts';

/** Below this many weights, quantising in this thread is faster than starting worker threads. */
const POOL_MIN_PARAMETERS = 1e8;

/** Worker threads of a quantised load (an unquantised one loads in this thread); the memory plan counts them at every mode. */
function quantLoaderThreads(options: EngineCoreOptions, numParameters: number): number {
  // At most 4: each thread holds one group read ahead.
  return options.runner.loadThreads ?? (numParameters >= POOL_MIN_PARAMETERS ? Math.min(4, availableParallelism()) : 0);
}

export async function loadModelRunner(modelDir: string, options: EngineCoreOptions, hooks: ForwardHooks): Promise<ModelRunner> {
  const quantization = options.runner.quantization ?? 'none';
  const cacheDir = options.runner.quantizedWeightsDir ?? null;
  const loadWarnings: string[] = [];
  const log = { info: () => {}, warn: (m: string) => void loadWarnings.push(m) };
  // Headers and config first, without the cache (the pool's workers open their own).
  const stream = WeightStream.open(modelDir, { quantization, cacheDir: null, log });
  let pool: GroupPool | null = null;
  try {
    const config = stream.config;
    const maxModelLen = options.scheduler.maxModelLen ?? config.maxPositionEmbeddings;
    if (maxModelLen > config.maxPositionEmbeddings) {
      throw new EngineError('DSV_ERR_CONFIG', `max-model-len ${maxModelLen} exceeds the model's max_position_embeddings ${config.maxPositionEmbeddings}`);
    }
    const speculative = options.speculative != null;
    if (speculative) checkMtpModule(stream);
    const kvCacheDtype = resolveKvCacheDtype(options.runner.kvCacheDtype ?? 'auto');
    const runnerOptions = { ...options.runner, speculative, kvCacheDtype: kvCacheDtype.dtype };
    const { shape, numBlocks } = numKvBlocksFor(config, runnerOptions);
    const planInput = {
      config,
      quantization,
      kvCacheBytes: numBlocks * PagedKVStorage.bytesPerBlock(shape),
      maxNumBatchedTokens: options.scheduler.maxNumBatchedTokens,
      maxAttentionScoreElements: options.runner.maxAttentionScoreElements ?? DEFAULT_MAX_SCORE_ELEMENTS,
      numMtpModules: speculative ? 1 : 0,
      nativeKernels: nativeLayersPlanned(options.runner, quantization),
    };
    const defaultThreads = quantLoaderThreads(options, stream.numParameters);
    // An explicit loadThreads (runner option) is kept; the default gives way to a plan that fits.
    const loaderThreads = options.runner.loadThreads !== undefined ? defaultThreads : fittingLoaderThreads(planInput, defaultThreads, options.machineMemory);
    const memoryPlan = checkMemoryPlan({ ...planInput, loaderThreads }, options.machineMemory);
    const guard = new LoadMemoryGuard(memoryPlan, options.availableMemory);
    guard.check('to load this model');
    const loaded = { dir: stream.dir, config, numParameters: stream.numParameters, quantization, memoryPlan, kvCacheDtype, loadWarnings };
    const threads = quantization === 'none' ? 0 : loaderThreads;
    if (threads === 0) {
      stream.close();
      const inThread = WeightStream.open(modelDir, { quantization, cacheDir, log });
      try {
        return await ModelRunner.create(guard.guard(inThread), loaded, runnerOptions, hooks);
      } finally {
        inThread.close();
      }
    }
    // MTP modules are read only when speculation will run them.
    const groups = stream.groupNames.filter((g) => speculative || !g.startsWith('mtp.'));
    pool = new GroupPool(config, quantization, groups, { dir: stream.dir, quantization, cacheDir }, threads);
    const runner = await ModelRunner.create(guard.guard(pool), loaded, runnerOptions, hooks);
    loadWarnings.push(...pool.warnings);
    return runner;
  } finally {
    stream.close();
    await pool?.close();
  }
}

/** --speculative-config needs MTP module 0 in the checkpoint (its tensors were checked when the stream opened). */
function checkMtpModule(stream: WeightStream): void {
  if (stream.numMtpModules > 0) return;
  const c = stream.config;
  const why =
    c.numNextnPredictLayers === 0
      ? 'its config.json has num_nextn_predict_layers 0'
      : `it has no tensor of the MTP layer (model.layers.${c.numHiddenLayers}.*), although num_nextn_predict_layers is ${c.numNextnPredictLayers}`;
  throw new EngineError('DSV_ERR_CONFIG', `--speculative-config: method "mtp" needs the checkpoint's MTP module, but ${why} (${stream.dir})`);
}
