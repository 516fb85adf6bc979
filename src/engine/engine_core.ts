// EngineCore: one step = schedule -> execute (one batched forward) -> update (sample, stop checks,
// free finished). Runs inside the engine worker; talks in plain data (RequestOutputDelta, StepStats).
import { EngineError } from '../common/errors.ts';
import type { ModelExecutor } from './model_executor.ts';
import { emptySparsity, emptyTimings, type SparsityCounters, type StepTimings } from './attention/sparse_mla.ts';
import type { StepResult } from './model/deepseek_model.ts';
import type { StepSequence } from './model/step_plan.ts';
import { finishReason, isFinished, Request, RequestStatus, type RequestInit, type RequestOutputDelta, type SampledLogprobs } from './request.ts';
import { scorePromptRows } from './sampling/prompt_logprobs.ts';
import { sampleToken, SamplerWorkspace } from './sampling/sampler.ts';
import { Scheduler, type SchedulerConfig, type SchedulerOutput } from './scheduler.ts';

export type EngineConfig = SchedulerConfig;

export interface StepStats {
  readonly numRunning: number;
  readonly numWaiting: number;
  readonly numScheduledTokens: number;
  readonly numPrefillTokens: number;
  readonly numDecodeTokens: number;
  /** Tokens sampled in this step (one per request that reached the end of its known tokens). */
  readonly numGeneratedTokens: number;
  readonly numPreemptionsTotal: number;
  readonly kvCacheUsage: number; // fraction of blocks in use
  readonly kvCacheBytesInUse: { readonly latent: number; readonly indexer: number };
  readonly prefixCacheQueryTokens: number; // cumulative
  readonly prefixCacheHitTokens: number; // cumulative
  readonly stepMs: number;
  /** Milliseconds per part: the model's split plus scheduling and sampling. */
  readonly timings: StepTimings & { schedule: number; sampling: number };
  readonly sparsity: SparsityCounters;
}

interface RowPlan {
  readonly scheduled: SchedulerOutput['scheduled'][number];
  readonly samples: boolean; // the step reaches the request's last known token: sample the next one
  readonly promptRows: boolean; // rows of this chunk score prompt tokens (prompt logprobs)
}

export class EngineCore {
  readonly scheduler: Scheduler;
  private readonly requests = new Map<string, Request>();
  private readonly promptLogprobs = new Map<string, (SampledLogprobs | null)[]>();
  private readonly workspace = new SamplerWorkspace();

  constructor(
    readonly exec: ModelExecutor,
    readonly config: EngineConfig,
  ) {
    this.scheduler = new Scheduler(config, exec.kvCache);
  }

  hasWork(): boolean {
    return this.scheduler.hasWork();
  }

  get numRequests(): number {
    return this.requests.size;
  }

  /** Validates and queues a request; throws EngineError (400/429 classes) when it cannot be served. */
  addRequest(init: RequestInit): void {
    const { vocabSize, eosTokenIds } = this.exec.loaded.config;
    const prompt = init.promptTokenIds;
    if (this.requests.has(init.requestId)) throw new EngineError('DSV_ERR_INVALID_REQUEST', `duplicate request id ${init.requestId}`);
    if (prompt.length === 0) throw new EngineError('DSV_ERR_INVALID_REQUEST', 'the prompt is empty');
    for (const id of prompt) {
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new EngineError('DSV_ERR_INVALID_REQUEST', `prompt token id ${id} is outside the vocabulary [0, ${vocabSize})`);
      }
    }
    const maxLen = this.config.maxModelLen;
    if (prompt.length + init.params.maxTokens > maxLen) {
      throw new EngineError(
        'DSV_ERR_CONTEXT_LENGTH',
        `this model's maximum context length is ${maxLen} tokens; the prompt has ${prompt.length} tokens and max_tokens is ${init.params.maxTokens} (${prompt.length + init.params.maxTokens} in total)`,
      );
    }
    const capacity = this.exec.kvCache.numBlocks * this.exec.kvCache.blockSize;
    if (prompt.length + init.params.maxTokens > capacity) {
      throw new EngineError('DSV_ERR_CONTEXT_LENGTH', `the KV cache holds ${capacity} tokens; ${prompt.length} prompt tokens + max_tokens ${init.params.maxTokens} can never fit`);
    }
    const request = new Request(init, eosTokenIds);
    this.scheduler.addRequest(request); // may throw DSV_ERR_QUEUE_FULL
    this.requests.set(request.requestId, request);
  }

  /** Finishes requests now (abort, or stop when the server matched a stop string); returns their final deltas. */
  finishRequests(requestIds: readonly string[], status: RequestStatus = RequestStatus.FINISHED_ABORTED, errorMessage?: string): RequestOutputDelta[] {
    const out: RequestOutputDelta[] = [];
    for (const id of requestIds) {
      const request = this.requests.get(id);
      if (!request) continue;
      if (errorMessage !== undefined) request.errorMessage = errorMessage;
      this.scheduler.finishRequest(request, status);
      out.push(this.delta(request, [], null));
      this.requests.delete(id);
      this.promptLogprobs.delete(id);
    }
    return out;
  }

  async step(): Promise<{ outputs: RequestOutputDelta[]; stats: StepStats }> {
    const t0 = performance.now();
    const schedulerOutput = this.scheduler.schedule();
    const plans = schedulerOutput.scheduled.map((s) => this.rowPlan(s));
    const tModel = performance.now();
    const results = await this.execute(plans);
    const tSample = performance.now();
    this.scheduler.updateAfterStep(schedulerOutput);
    const outputs = this.update(plans, results);
    const tEnd = performance.now();
    const timings = { ...results.timings, schedule: tModel - t0, sampling: tEnd - tSample };
    const generated = outputs.reduce((n, o) => n + o.newTokenIds.length, 0);
    return { outputs, stats: this.stats(schedulerOutput, tEnd - t0, timings, results.sparsity, generated) };
  }

  private rowPlan(scheduled: SchedulerOutput['scheduled'][number]): RowPlan {
    const { request, numNewTokens } = scheduled;
    const end = request.numComputedTokens + numNewTokens;
    return { scheduled, samples: end === request.numTokens, promptRows: request.wantsPromptLogprobs && request.numComputedTokens < request.numPromptTokens };
  }

  private toSequence(plan: RowPlan): StepSequence {
    const { request, numNewTokens } = plan.scheduled;
    const start = request.numComputedTokens;
    return {
      tokenIds: request.tokenIds.slice(start, start + numNewTokens),
      numComputedTokens: start,
      blockTable: this.exec.kvCache.getBlockTable(request.requestId),
      logits: plan.promptRows ? 'all' : plan.samples ? 'last' : 'none',
    };
  }

  /**
   * One batched forward. If it throws, each request runs alone so only the failing ones end with
   * 'error' (re-running rewrites the same cache slots with the same values).
   */
  private async execute(plans: readonly RowPlan[]): Promise<{ perRequest: (Float32Array | Error)[]; timings: StepTimings; sparsity: SparsityCounters }> {
    const vocab = this.exec.loaded.config.vocabSize;
    const seqs = plans.map((p) => this.toSequence(p));
    if (seqs.length === 0) return { perRequest: [], timings: emptyTimings(), sparsity: emptySparsity() };
    const split = (r: StepResult, i: number) => r.logits.subarray(r.logitOffsets[i] * vocab, r.logitOffsets[i + 1] * vocab);
    try {
      const r = await this.exec.model.step(seqs);
      return { perRequest: seqs.map((_, i) => split(r, i)), timings: r.timings, sparsity: r.sparsity };
    } catch {
      const perRequest: (Float32Array | Error)[] = [];
      for (const seq of seqs) {
        try {
          perRequest.push(split(await this.exec.model.step([seq]), 0));
        } catch (err) {
          perRequest.push(err instanceof Error ? err : new Error(String(err)));
        }
      }
      return { perRequest, timings: emptyTimings(), sparsity: emptySparsity() };
    }
  }

  private update(plans: readonly RowPlan[], results: { perRequest: (Float32Array | Error)[] }): RequestOutputDelta[] {
    const vocab = this.exec.loaded.config.vocabSize;
    const outputs: RequestOutputDelta[] = [];
    plans.forEach((plan, i) => {
      const { request, numNewTokens } = plan.scheduled;
      if (isFinished(request.status)) return;
      const logits = results.perRequest[i];
      try {
        if (logits instanceof Error) throw logits;
        const start = request.numComputedTokens - numNewTokens; // updateAfterStep already advanced it
        let promptDone: (SampledLogprobs | null)[] | null = null;
        if (plan.promptRows) promptDone = this.collectPromptLogprobs(request, logits, start, vocab);
        if (!plan.samples) {
          if (promptDone) outputs.push(this.delta(request, [], null, promptDone));
          return;
        }
        const row = logits.subarray(logits.length - vocab);
        const sampled = sampleToken(row, request.params, request.sampling, this.workspace); // throws on NaN logits
        request.appendOutputToken(sampled.tokenId);
        const status = this.checkStop(request, sampled.tokenId);
        const logprobs = sampled.logprob === null ? null : [{ tokenId: sampled.tokenId, logprob: sampled.logprob, topLogprobs: sampled.topLogprobs ?? [] }];
        if (status !== null) this.scheduler.finishRequest(request, status);
        outputs.push(this.delta(request, [sampled.tokenId], logprobs, promptDone));
      } catch (err) {
        request.errorMessage = err instanceof Error ? err.message : String(err);
        this.scheduler.finishRequest(request, RequestStatus.FINISHED_ERROR);
        outputs.push(this.delta(request, [], null));
      }
      if (isFinished(request.status)) {
        this.requests.delete(request.requestId);
        this.promptLogprobs.delete(request.requestId);
      }
    });
    return outputs;
  }

  /** Scores the prompt tokens this chunk's rows predict; returns the full list once the prompt is done. */
  private collectPromptLogprobs(request: Request, logits: Float32Array, start: number, vocab: number): (SampledLogprobs | null)[] | null {
    const acc = this.promptLogprobs.get(request.requestId) ?? [null];
    const numRows = Math.min(logits.length / vocab, request.numPromptTokens - 1 - start);
    if (numRows > 0) acc.push(...scorePromptRows(logits.subarray(0, numRows * vocab), vocab, request.promptTokenIds, request.params.promptLogprobs!, start));
    if (request.numComputedTokens < request.numPromptTokens) {
      this.promptLogprobs.set(request.requestId, acc);
      return null;
    }
    this.promptLogprobs.delete(request.requestId);
    request.promptLogprobsDone = true;
    return acc;
  }

  private checkStop(request: Request, tokenId: number): RequestStatus | null {
    const { params } = request;
    const numOutput = request.numOutputTokens;
    if (numOutput >= params.minTokens) {
      if (!params.ignoreEos && this.exec.loaded.config.eosTokenIds.includes(tokenId)) return RequestStatus.FINISHED_STOPPED;
      if (params.stopTokenIds.includes(tokenId)) {
        request.stopReason = tokenId;
        return RequestStatus.FINISHED_STOPPED;
      }
    }
    if (numOutput >= params.maxTokens || request.numTokens >= this.config.maxModelLen) return RequestStatus.FINISHED_LENGTH;
    return null;
  }

  private delta(request: Request, newTokenIds: number[], logprobs: SampledLogprobs[] | null, promptLogprobs: (SampledLogprobs | null)[] | null = null): RequestOutputDelta {
    return {
      requestId: request.requestId,
      newTokenIds,
      logprobs,
      promptLogprobs,
      finishReason: finishReason(request.status),
      stopReason: request.stopReason,
      numPromptTokens: request.numPromptTokens,
      numCachedTokens: request.numCachedTokens,
      numOutputTokens: request.numOutputTokens,
      queueTimeMs: request.firstScheduledTime === null ? null : request.firstScheduledTime - request.arrivalTime,
      errorMessage: request.errorMessage,
    };
  }

  /** Stats between steps (after aborts): gauges only, no step work. */
  idleStats(): StepStats {
    const timings = { ...emptyTimings(), schedule: 0, sampling: 0 };
    return this.stats({ scheduled: [], numScheduledTokens: 0, preempted: [] }, 0, timings, emptySparsity(), 0);
  }

  private stats(out: SchedulerOutput, stepMs: number, timings: StepStats['timings'], sparsity: SparsityCounters, numGeneratedTokens: number): StepStats {
    const kv = this.exec.kvCache;
    const storage = this.exec.storage;
    const blocksInUse = kv.numBlocks - kv.numFreeBlocks;
    const latentBytesPerBlock = storage.numLayers * storage.blockSize * storage.latentDim * 4;
    const indexerBytesPerBlock = storage.numLayers * storage.blockSize * (storage.indexerDim ?? 0) * 4;
    let numDecodeTokens = 0;
    for (const s of out.scheduled) if (s.request.numComputedTokens > s.request.numPromptTokens) numDecodeTokens += s.numNewTokens === 1 ? 1 : 0;
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
      kvCacheBytesInUse: { latent: blocksInUse * latentBytesPerBlock, indexer: blocksInUse * indexerBytesPerBlock },
      prefixCacheQueryTokens: prefix.numQueryTokens,
      prefixCacheHitTokens: prefix.numHitTokens,
      stepMs,
      timings,
      sparsity,
    };
  }
}
