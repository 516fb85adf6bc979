// From a model directory to a ready ModelRunner, in the order that keeps memory honest:
//   1. open the checkpoint and check every tensor's header (quant/weight_stream.ts): seconds;
//   2. check the memory plan (weights at the mode + KV cache + runtime) against the machine, refusing
//      with the numbers and the settings that would fit before anything large is allocated;
//   3. allocate the KV cache and compile the graphs, reading (and quantising, or taking from the
//      quantised-weights cache) one layer at a time.
import { EngineError } from '../common/errors.ts';
import { PagedKVStorage } from '../kvcache/paged_kv_storage.ts';
import { DEFAULT_MAX_SCORE_ELEMENTS } from './attention/sparse_mla.ts';
import type { EngineCoreOptions } from './engine_core.ts';
import { checkMemoryPlan } from './memory_plan.ts';
import type { ForwardHooks } from './model/deepseek_model.ts';
import { ModelRunner, numKvBlocksFor } from './model_runner.ts';
import { WeightStream } from './quant/weight_stream.ts';

export async function loadModelRunner(modelDir: string, options: EngineCoreOptions, hooks: ForwardHooks): Promise<ModelRunner> {
  const quantization = options.runner.quantization ?? 'none';
  const loadWarnings: string[] = [];
  const log = { info: () => {}, warn: (m: string) => void loadWarnings.push(m) };
  const stream = WeightStream.open(modelDir, { quantization, cacheDir: options.runner.quantizedWeightsDir ?? null, log });
  try {
    const config = stream.config;
    const maxModelLen = options.scheduler.maxModelLen ?? config.maxPositionEmbeddings;
    if (maxModelLen > config.maxPositionEmbeddings) {
      throw new EngineError('DSV_ERR_CONFIG', `max-model-len ${maxModelLen} exceeds the model's max_position_embeddings ${config.maxPositionEmbeddings}`);
    }
    const speculative = options.speculative != null;
    if (speculative) checkMtpModule(stream);
    const runnerOptions = { ...options.runner, speculative };
    const { shape, numBlocks } = numKvBlocksFor(config, runnerOptions);
    const memoryPlan = checkMemoryPlan(
      {
        config,
        quantization,
        kvCacheBytes: numBlocks * PagedKVStorage.bytesPerBlock(shape),
        maxNumBatchedTokens: options.scheduler.maxNumBatchedTokens,
        maxAttentionScoreElements: options.runner.maxAttentionScoreElements ?? DEFAULT_MAX_SCORE_ELEMENTS,
        numMtpModules: speculative ? 1 : 0,
      },
      options.machineMemory,
    );
    const loaded = { dir: stream.dir, config, numParameters: stream.numParameters, quantization, memoryPlan, loadWarnings };
    return await ModelRunner.create(stream, loaded, runnerOptions, hooks);
  } finally {
    stream.close();
  }
}

/** --speculative-config needs MTP module 0 in the checkpoint (its tensors were checked when the stream opened). */
function checkMtpModule(stream: WeightStream): void {
  if (stream.numMtpModules > 0) return;
  const c = stream.config;
  const why = c.numNextnPredictLayers === 0
    ? 'its config.json has num_nextn_predict_layers 0'
    : `it has no tensor of the MTP layer (model.layers.${c.numHiddenLayers}.*), although num_nextn_predict_layers is ${c.numNextnPredictLayers}`;
  throw new EngineError('DSV_ERR_CONFIG', `--speculative-config: method "mtp" needs the checkpoint's MTP module, but ${why} (${stream.dir})`);
}
