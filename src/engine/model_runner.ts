// The ModelRunner: owns the paged KV storage and the model's compiled graphs, turns the scheduler's
// output into step inputs (token ids, positions, slots, attention groups) and runs one batched
// forward per step. It returns raw logits rows; sampling happens in EngineCore.
import { EngineError } from '../common/errors.ts';
import { PagedKVStorage } from '../kvcache/paged_kv_storage.ts';
import type { StorageShape } from '../kvcache/types.ts';
import type { KVCacheDtype, KVCacheDtypeChoice } from '../kvcache/kv_dtype.ts';
import type { KVCacheDtypeResolution } from './kv_cache_dtype_auto.ts';
import type { LinearWeight, ModelConfig, MtpWeights } from './checkpoint/types.ts';
import type { MemoryPlan } from './memory_plan.ts';
import { DeepseekModel, type ForwardHooks, type ModelOptions, type ModelWeightSource } from './model/deepseek_model.ts';
import type { QuantizationMode } from './quant/quant_mode.ts';
import { planStep, type StepSequence } from './model/step_plan.ts';
import { MtpModule } from './model/mtp.ts';
import { MtpProposer, type DraftChooser, type DraftSequence, type LastStep } from './speculative/mtp_proposer.ts';
import type { SchedulerOutput, ScheduledRequest } from './scheduler.ts';
import type { StepProfiler } from './step_profiler.ts';

export const DEFAULT_BLOCK_SIZE = 64;
export const DEFAULT_KV_CACHE_MEMORY = 2 ** 30; // 1 GiB

export interface ModelRunnerOptions extends ModelOptions {
  readonly blockSize?: number;
  /** Explicit number of KV blocks; wins over kvCacheMemory. */
  readonly numKvBlocks?: number;
  /** KV cache budget in bytes (latent + indexer caches of all layers). */
  readonly kvCacheMemory?: number;
  /** Element type of both caches (kvcache/kv_dtype.ts); absent = 'auto', resolved against the checkpoint at load (kv_cache_dtype_auto.ts). */
  readonly kvCacheDtype?: KVCacheDtypeChoice;
  /** fp8 only: Hadamard-rotate the indexer keys (and queries), as DeepSeek-V3.2 does (default). false is for A/B measurements. */
  readonly fp8IndexerRotation?: boolean;
  /** Weight quantisation at load time (--quantization; default none). */
  readonly quantization?: QuantizationMode;
  /** Cache of quantised weights (--quantized-weights-dir); null or absent: none. */
  readonly quantizedWeightsDir?: string | null;
  /** Speculative decoding: load MTP module 0 and give it a cache layer (--speculative-config). */
  readonly speculative?: boolean;
  /** Worker threads that read and quantise weights ahead of graph compilation (0: this thread); default by model size. */
  readonly loadThreads?: number;
}

/** The options once --kv-cache-dtype is resolved (model_loader.ts): what the storage is built with. */
export type ResolvedRunnerOptions = Omit<ModelRunnerOptions, 'kvCacheDtype'> & { readonly kvCacheDtype: KVCacheDtype };

/** The weights, plus the MTP modules the checkpoint carries (quant/weight_stream.ts). */
export interface RunnerWeightSource extends ModelWeightSource {
  readonly numMtpModules: number;
  mtp(i: number): Promise<MtpWeights<LinearWeight>>;
}

/** What was loaded: the model's identity and the memory plan it was admitted with. */
export interface LoadedModelInfo {
  readonly dir: string;
  readonly config: ModelConfig;
  /** Parameter count as stored in the checkpoint (excluding scale tensors). */
  readonly numParameters: number;
  readonly quantization: QuantizationMode;
  readonly memoryPlan: MemoryPlan;
  /** The caches' element type and why (auto resolved against the checkpoint). */
  readonly kvCacheDtype: KVCacheDtypeResolution;
  /** Warnings while loading (the quantised-weights cache), for the start-up log. */
  readonly loadWarnings: readonly string[];
}

export interface RunnerOutput {
  /**
   * Per scheduled request (same order): its logits rows [rows, vocab] (every row of the chunk when
   * it scores prompt tokens, else the last row when it samples, else none), or the error its
   * forward pass ended with.
   */
  readonly logits: readonly (Float32Array | Error)[];
  /** Per scheduled request, per layer: key positions selected for its last row (hooks.recordSelections). */
  readonly selections: readonly (readonly Int32Array[])[] | null;
  /** Wall time of the forward pass(es). */
  readonly forwardMs: number;
}

/** Cache layers numHiddenLayers + i belong to MTP module i (only module 0 runs: one extra layer with speculation). */
export function storageShape(
  config: ModelConfig,
  blockSize: number,
  denseAttention = false,
  dtype: KVCacheDtype = 'float32',
  fp8IndexerRotation = true,
  speculative = false,
): StorageShape {
  const dims = {
    numLayers: config.numHiddenLayers + (speculative ? 1 : 0),
    blockSize,
    latentDim: config.kvLoraRank + config.qkRopeHeadDim,
    indexerDim: config.indexer && !denseAttention ? config.indexer.headDim : null,
    ropeDim: config.qkRopeHeadDim,
  };
  return dtype === 'fp8' ? { ...dims, dtype, rotateIndexerKeys: fp8IndexerRotation } : { ...dims, dtype };
}

/** KV blocks the options ask for: numKvBlocks, or as many as fit in kvCacheMemory. */
export function numKvBlocksFor(config: ModelConfig, options: ResolvedRunnerOptions): { shape: StorageShape; numBlocks: number } {
  const shape = storageShape(
    config,
    options.blockSize ?? DEFAULT_BLOCK_SIZE,
    options.denseAttention,
    options.kvCacheDtype,
    options.fp8IndexerRotation,
    options.speculative,
  );
  const numBlocks = options.numKvBlocks ?? PagedKVStorage.numBlocksForBudget(options.kvCacheMemory ?? DEFAULT_KV_CACHE_MEMORY, shape);
  if (numBlocks < 1) {
    throw new EngineError('DSV_ERR_CONFIG', `the KV cache budget holds no block of ${PagedKVStorage.bytesPerBlock(shape)} bytes`);
  }
  return { shape, numBlocks };
}

export class ModelRunner {
  /** The batched forward of the last step (speculative decoding only), for the MTP module's pass. */
  private lastStep: LastStep | null = null;

  private constructor(
    readonly loaded: LoadedModelInfo,
    readonly storage: PagedKVStorage,
    readonly model: DeepseekModel,
    private readonly hooks: ForwardHooks,
    private readonly mtp: { readonly module: MtpModule; readonly proposer: MtpProposer } | null,
  ) {}

  /**
   * Sizes the paged storage from a block count or a memory budget, then compiles the graphs from the
   * weights, one layer at a time (the caller has checked the memory plan in `loaded`).
   */
  static async create(source: RunnerWeightSource, loaded: LoadedModelInfo, options: ResolvedRunnerOptions, hooks: ForwardHooks = {}): Promise<ModelRunner> {
    const { shape, numBlocks } = numKvBlocksFor(loaded.config, options);
    const storage = new PagedKVStorage({ ...shape, numBlocks });
    const model = await DeepseekModel.create(source, storage, options);
    let mtp = null;
    if (options.speculative) {
      // model_loader.ts checked that the checkpoint has the module.
      const module = await MtpModule.create(loaded.config, 0, await source.mtp(0), storage, source.quantBits, options);
      mtp = { module, proposer: new MtpProposer(model, module, storage.blockSize) };
    }
    return new ModelRunner(loaded, storage, model, hooks, mtp);
  }

  get speculative(): boolean {
    return this.mtp !== null;
  }

  /**
   * Draft tokens from the MTP module for sequences of the last execute() (DraftSequence.stepIndex
   * indexes its scheduled requests); none when that step fell back to one forward per request.
   */
  async propose(seqs: readonly DraftSequence[], choose: DraftChooser, profiler: StepProfiler): Promise<number[][] | null> {
    const last = this.lastStep;
    this.lastStep = null;
    if (this.mtp === null || last === null) return null;
    return this.mtp.proposer.propose(last, seqs, choose, profiler);
  }

  get config(): ModelConfig {
    return this.loaded.config;
  }

  /**
   * One batched forward over every scheduled request. If it throws, each request runs alone so only
   * the failing ones end with an error (re-running rewrites the same cache slots with the same values).
   */
  async execute(output: SchedulerOutput, profiler: StepProfiler): Promise<RunnerOutput> {
    const t0 = performance.now();
    this.lastStep = null;
    const seqs = output.scheduled.map(toSequence);
    if (seqs.length === 0) return { logits: [], selections: null, forwardMs: 0 };
    try {
      const out = await this.forward(seqs, profiler, this.mtp !== null);
      return { ...out, forwardMs: performance.now() - t0 };
    } catch {
      const logits: (Float32Array | Error)[] = [];
      const selections: (readonly Int32Array[])[] = [];
      for (const seq of seqs) {
        try {
          const one = await this.forward([seq], profiler);
          logits.push(one.logits[0]!);
          selections.push(one.selections?.[0] ?? []);
        } catch (err) {
          logits.push(err instanceof Error ? err : new Error(String(err)));
          selections.push([]);
        }
      }
      return { logits, selections: this.hooks.recordSelections ? selections : null, forwardMs: performance.now() - t0 };
    }
  }

  private async forward(
    seqs: readonly StepSequence[],
    profiler: StepProfiler,
    keepHidden = false,
  ): Promise<Omit<RunnerOutput, 'forwardMs'> & { logits: Float32Array[] }> {
    const vocab = this.config.vocabSize;
    const plan = profiler.time('other', () => planStep(seqs, this.storage.blockSize, this.config.maxPositionEmbeddings));
    const out = await this.model.forward(plan, profiler, this.hooks);
    if (keepHidden) this.lastStep = { plan, hidden: out.hidden, numSeqs: seqs.length };
    const logits = seqs.map((_, i) => out.logits.subarray(out.logitOffsets[i]! * vocab, out.logitOffsets[i + 1]! * vocab));
    return { logits, selections: out.selections };
  }

  async dispose(): Promise<void> {
    await this.mtp?.module.dispose();
    await this.model.dispose();
  }
}

/** A verification chunk (last token + drafts) returns the logits of every row, like prompt scoring. */
function toSequence(s: ScheduledRequest): StepSequence {
  const start = s.numComputedTokens;
  const numDrafts = s.draftTokenIds.length;
  const known = s.request.tokenIds.slice(start, start + s.numNewTokens - numDrafts);
  return {
    tokenIds: numDrafts === 0 ? known : [...known, ...s.draftTokenIds],
    numComputedTokens: start,
    blockTable: s.blockTable,
    logits: s.scoresPrompt || numDrafts > 0 ? 'all' : s.samples ? 'last' : 'none',
  };
}
