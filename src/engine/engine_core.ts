// EngineCore: the one step loop. A step is schedule -> execute (one batched forward in the
// ModelRunner) -> sample -> scheduler.updateFromOutput (append tokens, stop checks, free finished).
// Runs inside the engine worker (and in-process for the offline driver); talks in plain data.
import { EngineError } from '../common/errors.ts';
import type { ModelConfig } from './checkpoint/types.ts';
import type { MachineMemory } from '../common/machine_memory.ts';
import type { LayerCapture } from './model/deepseek_model.ts';
import { loadModelRunner } from './model_loader.ts';
import type { ModelRunner, ModelRunnerOptions, RunnerOutput } from './model_runner.ts';
import { graphRunCount, graphRunTime } from './onnx/session.ts';
import { Request, RequestStatus, type RequestInit, type RequestOutputDelta, type SampledLogprobs } from './request.ts';
import { scorePromptRows } from './sampling/prompt_logprobs.ts';
import { sampleToken, SamplerWorkspace } from './sampling/sampler.ts';
import { Scheduler, type RequestStepResult, type ScheduledRequest, type SchedulerConfig, type SchedulerOutput } from './scheduler.ts';
import type { StepStats } from './step_stats.ts';
import { StepProfiler } from './step_profiler.ts';
import type { GrammarMatcher } from './structured/grammar_matcher.ts';
import { StructuredOutputs } from './structured/structured_outputs.ts';
import { proposeDrafts, type DraftingContext, type DraftObserver } from './speculative/drafting.ts';
import type { SpeculativeConfig } from './speculative/speculative_config.ts';
import { verifyDrafts } from './speculative/verify.ts';
import { addSpecDecodeCounts, emptySpecDecodeCounts, type SpecDecodeCounts } from './step_stats.ts';

export interface EngineCoreOptions {
  readonly runner: ModelRunnerOptions;
  /** maxModelLen defaults to the model's max_position_embeddings. */
  readonly scheduler: Omit<SchedulerConfig, 'maxModelLen'> & { readonly maxModelLen?: number };
  readonly enablePrefixCaching: boolean;
  /** The memory the plan is checked against (tests); default: the cgroup limit or total memory. */
  readonly machineMemory?: MachineMemory;
  /** What the kernel can still give, read before the load and each layer (tests); default: common/machine_memory.ts availableMemory. */
  readonly availableMemory?: () => MachineMemory | null;
  /** Speculative decoding with the checkpoint's MTP module (--speculative-config); null or absent: off. */
  readonly speculative?: SpeculativeConfig | null;
}

/** Observers for the offline driver, parity tests and diagnostics; serving runs without them. */
export interface EngineObserver {
  /** Raw logits rows [rows, vocab] of one request in a step, before sampling; row r is position firstPosition + r. */
  readonly onLogits?: (requestId: string, firstPosition: number, logits: Float32Array) => void;
  /** Per layer, the key positions selected for the request's last row in a step (at lastPosition). */
  readonly onSelections?: (requestId: string, lastPosition: number, selections: readonly Int32Array[]) => void;
  /** Per layer, the pre-attention outputs of all rows of a step. */
  readonly onLayer?: (layer: number, capture: LayerCapture) => void;
  /** Speculative decoding: each MTP draft row; may replace a greedy request's draft (tests of the verifier). */
  readonly onDraft?: DraftObserver;
}

export class EngineCore {
  private readonly workspace = new SamplerWorkspace();
  private readonly drafting: DraftingContext | null;

  private constructor(
    readonly runner: ModelRunner,
    readonly scheduler: Scheduler,
    /** Grammar matchers of constrained requests (structured outputs, forced tool calls). */
    readonly structuredOutputs: StructuredOutputs,
    private readonly observer: EngineObserver,
  ) {
    const k = scheduler.config.numSpeculativeTokens ?? 0;
    this.drafting =
      runner.speculative && k > 0
        ? {
            runner,
            scheduler,
            numSpeculativeTokens: k,
            workspace: this.workspace,
            excluded: (r) => structuredOutputs.matcherOf(r.requestId) !== undefined,
            ...(observer.onDraft && { onDraft: observer.onDraft }),
          }
        : null;
  }

  /** Checks the memory plan, sizes the KV cache, compiles the graphs (streaming the weights): model_loader.ts. */
  static async create(modelDir: string, options: EngineCoreOptions, observer: EngineObserver = {}): Promise<EngineCore> {
    const hooks = { recordSelections: observer.onSelections !== undefined, ...(observer.onLayer && { onLayer: observer.onLayer }) };
    const runner = await loadModelRunner(modelDir, options, hooks);
    const loaded = runner.loaded;
    const maxModelLen = options.scheduler.maxModelLen ?? loaded.config.maxPositionEmbeddings;
    const { numBlocks, blockSize } = runner.storage;
    const spec = options.speculative ?? null;
    const schedulerConfig = {
      ...options.scheduler,
      maxModelLen,
      ...(spec && { numSpeculativeTokens: spec.numSpeculativeTokens, disableByBatchSize: spec.disableByBatchSize }),
    };
    const scheduler = new Scheduler(schedulerConfig, { numBlocks, blockSize, enablePrefixCaching: options.enablePrefixCaching }, loaded.config.eosTokenIds);
    const structuredOutputs = new StructuredOutputs(modelDir, loaded.config.vocabSize, loaded.config.eosTokenIds);
    return new EngineCore(runner, scheduler, structuredOutputs, observer);
  }

  get config(): ModelConfig {
    return this.runner.config;
  }

  hasWork(): boolean {
    return this.scheduler.hasWork();
  }

  get numRequests(): number {
    return this.scheduler.numRequests;
  }

  /**
   * addRequest for any request: compiles its output grammar first (XGrammar; cached per spec), so a
   * grammar that cannot compile is the request's 400 before it is queued.
   */
  async addRequestAsync(init: RequestInit): Promise<void> {
    if (!init.structuredOutput) return this.addRequest(init);
    checkGrammarCompatible(init);
    const matcher = await this.structuredOutputs.createMatcher(init.structuredOutput);
    try {
      this.addRequest(init, matcher);
    } catch (err) {
      matcher.dispose();
      throw err;
    }
  }

  /**
   * The engine's edge: validates and queues a request; throws EngineError (400/429 classes) when it
   * cannot be served. A request with a structuredOutput spec needs its compiled matcher (addRequestAsync).
   */
  addRequest(init: RequestInit, grammar: GrammarMatcher | null = null): void {
    if ((init.structuredOutput !== undefined) !== (grammar !== null))
      throw new EngineError('DSV_ERR_INTERNAL', 'a structured-output request needs its grammar matcher (use addRequestAsync)');
    const { vocabSize, eosTokenIds } = this.config;
    const prompt = init.promptTokenIds;
    if (prompt.length === 0) throw new EngineError('DSV_ERR_INVALID_REQUEST', 'the prompt is empty');
    for (const id of prompt) {
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new EngineError('DSV_ERR_INVALID_REQUEST', `prompt token id ${id} is outside the vocabulary [0, ${vocabSize})`);
      }
    }
    const maxLen = this.scheduler.config.maxModelLen;
    const total = prompt.length + init.params.maxTokens;
    if (total > maxLen) {
      throw new EngineError(
        'DSV_ERR_CONTEXT_LENGTH',
        `this model's maximum context length is ${maxLen} tokens; the prompt has ${prompt.length} tokens and max_tokens is ${init.params.maxTokens} (${total} in total)`,
      );
    }
    const { numBlocks, blockSize } = this.scheduler.kvCache;
    if (total > numBlocks * blockSize) {
      throw new EngineError(
        'DSV_ERR_CONTEXT_LENGTH',
        `the KV cache holds ${numBlocks * blockSize} tokens; ${prompt.length} prompt tokens + max_tokens ${init.params.maxTokens} can never fit`,
      );
    }
    this.scheduler.addRequest(new Request(init, eosTokenIds)); // may throw DSV_ERR_QUEUE_FULL
    if (grammar) this.structuredOutputs.attach(init.requestId, grammar);
  }

  /** Finishes requests now (abort, or stop when the server matched a stop string); returns their final deltas. */
  finishRequests(requestIds: readonly string[], status: RequestStatus = RequestStatus.FINISHED_ABORTED, errorMessage?: string): RequestOutputDelta[] {
    const outputs = this.scheduler.finishRequests(requestIds, status, errorMessage);
    this.structuredOutputs.release(requestIds);
    return outputs;
  }

  async step(): Promise<{ outputs: RequestOutputDelta[]; stats: StepStats }> {
    const t0 = performance.now();
    const runs0 = graphRunCount(); // the forward pass and, with speculation, the MTP drafts
    const runMs0 = graphRunTime();
    const profiler = new StepProfiler();
    const scheduled = profiler.time('schedule', () => this.scheduler.schedule());
    const run = await this.runner.execute(scheduled, profiler);
    const masks = this.structuredOutputs.numActive === 0 ? null : await profiler.timeAsync('grammar', () => this.grammarBitmasks(scheduled));
    const spec = emptySpecDecodeCounts(this.scheduler.config.numSpeculativeTokens ?? 0);
    const results = profiler.time('sampling', () => this.sample(scheduled, run, masks, spec));
    const outputs = profiler.time('schedule', () => this.scheduler.updateFromOutput(scheduled, results));
    if (this.drafting) {
      // Its own profiler: the MTP pass runs after the forward, so its parts must not eat into the forward's `other`.
      const drafting = this.drafting;
      await profiler.timeAsync('draft', () => proposeDrafts(drafting, scheduled, scheduled.speculative === true, new StepProfiler(profiler.sparsity)));
    }
    this.structuredOutputs.release(outputs.filter((o) => o.finishReason !== null).map((o) => o.requestId));
    const generated = outputs.reduce((n, o) => n + o.newTokenIds.length, 0);
    const stats = {
      ...this.stats(scheduled, performance.now() - t0, profiler, run, generated, { count: graphRunCount() - runs0, ms: graphRunTime() - runMs0 }),
      ...(this.drafting && { specDecode: spec }),
    };
    return { outputs, stats };
  }

  /** Next-token bitmasks of the constrained requests that sample this step, by scheduled index. */
  private async grammarBitmasks(output: SchedulerOutput): Promise<Map<number, Int32Array>> {
    const masks = new Map<number, Int32Array>();
    for (let i = 0; i < output.scheduled.length; i++) {
      const s = output.scheduled[i]!;
      const matcher = s.samples ? this.structuredOutputs.matcherOf(s.request.requestId) : undefined;
      if (matcher) masks.set(i, await matcher.nextTokenBitmask());
    }
    return masks;
  }

  /** Turns each request's logits rows into its prompt logprobs and sampled token. */
  private sample(output: SchedulerOutput, run: RunnerOutput, masks: ReadonlyMap<number, Int32Array> | null, spec: SpecDecodeCounts): RequestStepResult[] {
    return output.scheduled.map((s, i): RequestStepResult => {
      const logits = run.logits[i]!;
      if (logits instanceof Error) return { kind: 'failed', message: logits.message };
      const selections = run.selections?.[i];
      if (selections && selections.length > 0) this.observer.onSelections?.(s.request.requestId, s.numComputedTokens + s.numNewTokens - 1, selections);
      if (s.draftTokenIds.length > 0) return this.verify(s, logits, spec);
      const firstPosition = s.scoresPrompt ? s.numComputedTokens : s.numComputedTokens + s.numNewTokens - 1;
      if (logits.length > 0) this.observer.onLogits?.(s.request.requestId, firstPosition, logits);
      try {
        const sampled = s.samples ? [this.sampleLast(s, logits, masks?.get(i) ?? null)] : null;
        return { kind: 'computed', promptLogprobs: s.scoresPrompt ? this.promptLogprobs(s, logits) : null, sampled };
      } catch (err) {
        return { kind: 'failed', message: err instanceof Error ? err.message : String(err) }; // e.g. NaN logits
      }
    });
  }

  /** A verification chunk: its rows behind the emitted tokens go to the observer, as plain steps' rows would. */
  private verify(s: ScheduledRequest, logits: Float32Array, spec: SpecDecodeCounts): RequestStepResult {
    const vocab = this.config.vocabSize;
    try {
      const v = verifyDrafts(logits, vocab, s.request, s.draftTokenIds, this.workspace);
      addSpecDecodeCounts(spec, s.draftTokenIds.length, v.numAcceptedDrafts);
      this.observer.onLogits?.(s.request.requestId, s.numComputedTokens, logits.subarray(0, v.tokens.length * vocab));
      return { kind: 'computed', promptLogprobs: null, sampled: v.tokens };
    } catch (err) {
      return { kind: 'failed', message: err instanceof Error ? err.message : String(err) };
    }
  }

  private promptLogprobs(s: ScheduledRequest, logits: Float32Array): SampledLogprobs[] {
    const vocab = this.config.vocabSize;
    const { request } = s;
    const numRows = Math.min(logits.length / vocab, request.numPromptTokens - 1 - s.numComputedTokens);
    if (numRows <= 0) return [];
    return scorePromptRows(logits.subarray(0, numRows * vocab), vocab, request.promptTokenIds, request.params.promptLogprobs ?? 0, s.numComputedTokens);
  }

  private sampleLast(s: ScheduledRequest, logits: Float32Array, bitmask: Int32Array | null): { tokenId: number; logprobs: SampledLogprobs | null } {
    const row = logits.subarray(logits.length - this.config.vocabSize);
    const sampled = sampleToken(row, s.request.params, s.request.sampling, this.workspace, bitmask); // throws on NaN logits
    if (bitmask !== null && !this.structuredOutputs.matcherOf(s.request.requestId)?.acceptToken(sampled.tokenId)) {
      throw new EngineError('DSV_ERR_INTERNAL', `the output grammar rejected token ${sampled.tokenId} that its own bitmask allowed`);
    }
    const logprobs = sampled.logprob === null ? null : { tokenId: sampled.tokenId, logprob: sampled.logprob, topLogprobs: sampled.topLogprobs ?? [] };
    return { tokenId: sampled.tokenId, logprobs };
  }

  /** Stats between steps (after aborts): gauges only, no step work. */
  idleStats(): StepStats {
    const none = { count: 0, ms: 0 };
    return this.stats({ scheduled: [], numScheduledTokens: 0, preempted: [] }, 0, new StepProfiler(), { logits: [], selections: null, forwardMs: 0 }, 0, none);
  }

  /** Scheduler and block-manager invariants (tests run it after every step). */
  checkIntegrity(): void {
    this.scheduler.kvCache.checkIntegrity();
  }

  async dispose(): Promise<void> {
    await this.structuredOutputs.dispose();
    await this.runner.dispose();
  }

  private stats(
    out: SchedulerOutput,
    stepMs: number,
    profiler: StepProfiler,
    run: RunnerOutput,
    numGeneratedTokens: number,
    graphRuns: { readonly count: number; readonly ms: number },
  ): StepStats {
    const kv = this.scheduler.kvCache;
    const blocksInUse = kv.numBlocks - kv.numFreeBlocks;
    const perBlock = this.runner.storage.bytesPerBlockByCache;
    let numDecodeTokens = 0;
    for (const s of out.scheduled) {
      // A verification chunk (last token + drafts) is decode work, not prefill.
      if (s.draftTokenIds.length > 0) numDecodeTokens += s.numNewTokens;
      else if (s.numNewTokens === 1 && s.numComputedTokens >= s.request.numPromptTokens) numDecodeTokens++;
    }
    const prefix = kv.prefixCacheStats;
    return {
      numRunning: this.scheduler.numRunning,
      numWaiting: this.scheduler.numWaiting,
      numScheduledTokens: out.numScheduledTokens,
      numPrefillTokens: out.numScheduledTokens - numDecodeTokens,
      numDecodeTokens,
      numGeneratedTokens,
      numPreemptionsTotal: this.scheduler.numPreemptionsTotal,
      kvCacheUsage: kv.usage,
      kvCacheBytesInUse: { latent: blocksInUse * perBlock.latent, indexer: blocksInUse * perBlock.indexer },
      prefixCacheQueryTokens: prefix.numQueryTokens,
      prefixCacheHitTokens: prefix.numHitTokens,
      stepMs,
      numGraphRuns: graphRuns.count,
      graphRunMs: graphRuns.ms,
      timings: profiler.timings(run.forwardMs),
      sparsity: profiler.sparsity,
    };
  }
}

/** Settings that would fight a grammar: its end is EOS, so EOS can be neither masked nor ignored. */
function checkGrammarCompatible(init: RequestInit): void {
  const param = init.structuredOutput!.param;
  if (init.params.minTokens > 0)
    throw new EngineError('DSV_ERR_INVALID_REQUEST', `min_tokens cannot be combined with ${param}: the grammar decides where the output ends`, {
      param: 'min_tokens',
    });
  if (init.params.ignoreEos)
    throw new EngineError('DSV_ERR_INVALID_REQUEST', `ignore_eos cannot be combined with ${param}: the grammar decides where the output ends`, {
      param: 'ignore_eos',
    });
}
