// The scheduler (vLLM v1's shape): no phases, only counts. Each step spends a token budget, first
// on running requests (a decode is 1 token, an unfinished prefill its next chunk), then on waiting
// ones while blocks and maxNumSeqs allow. Out of blocks: preempt the most recently admitted request.
// It owns the KVCacheManager (block ids only; the arrays live in the ModelRunner's storage).
// Scheduler state changes only in addRequest(), schedule(), updateFromOutput(), reserveDraftSlots()
// and finishRequests().
//
// Speculative decoding (vLLM's shape): a decoding request with draft tokens is scheduled as a chunk of
// 1 + k tokens (its last token and the drafts), with cache slots reserved for all of them; after
// verification the request keeps the accepted prefix plus one token, and the slots of rejected drafts
// are rolled back (numComputedTokens stops after the accepted rows, blocks past the sequence are freed).
import { EngineError } from '../common/errors.ts';
import { KVCacheManager } from '../kvcache/kv_cache_manager.ts';
import type { BlockId, ComputedBlocks } from '../kvcache/types.ts';
import { isFinished, outputDelta, Request, RequestStatus, type RequestOutputDelta, type SampledLogprobs } from './request.ts';

export interface SchedulerConfig {
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
  /** A prefill chunk never exceeds this (0 = only the budget limits it). */
  readonly longPrefillTokenThreshold: number;
  readonly maxModelLen: number;
  readonly maxQueuedRequests: number;
  readonly maxQueuedTokens: number;
  /** Draft tokens verified per step (--speculative-config num_speculative_tokens); 0 or absent = off. */
  readonly numSpeculativeTokens?: number;
  /** No drafts in steps with more requests (running + waiting) than this. */
  readonly disableByBatchSize?: number;
}

export interface KVCacheConfig {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly enablePrefixCaching: boolean;
}

export interface ScheduledRequest {
  readonly request: Request;
  /** Tokens in the cache when the step starts: this step computes positions numComputedTokens .. + numNewTokens - 1. */
  readonly numComputedTokens: number;
  readonly numNewTokens: number;
  /** The request's block table, covering every position this step writes. */
  readonly blockTable: readonly BlockId[];
  /** The step reaches the request's last known token: the next token is sampled from its last row. */
  readonly samples: boolean;
  /** The rows of this chunk score prompt tokens (prompt logprobs), so every row's logits are needed. */
  readonly scoresPrompt: boolean;
  /**
   * Draft tokens verified in this step: the chunk's last draftTokenIds.length tokens (after the
   * request's last token), whose rows return logits too. Empty for plain steps.
   */
  readonly draftTokenIds: readonly number[];
}

export interface SchedulerOutput {
  readonly scheduled: readonly ScheduledRequest[];
  readonly numScheduledTokens: number;
  /** Requests preempted in this step (already back in the waiting queue). */
  readonly preempted: readonly Request[];
  /** Speculative decoding is on in this step (configured, and the batch is small enough). */
  readonly speculative?: boolean;
}

/** What the engine computed for one scheduled request (same order as SchedulerOutput.scheduled). */
export type RequestStepResult =
  | { readonly kind: 'failed'; readonly message: string }
  | {
      readonly kind: 'computed';
      /** This chunk's prompt logprobs (positions numComputedTokens + 1 ...), when scoresPrompt. */
      readonly promptLogprobs: readonly SampledLogprobs[] | null;
      /**
       * The sampled tokens, when samples: one, or after verifying k drafts the accepted drafts and one
       * more (1 .. k + 1 tokens).
       */
      readonly sampled: readonly { readonly tokenId: number; readonly logprobs: SampledLogprobs | null }[] | null;
    };

export class Scheduler {
  readonly kvCache: KVCacheManager;
  private readonly requests = new Map<string, Request>();
  /** FCFS; preempted requests go back to the head. */
  private readonly waiting: Request[] = [];
  /** In admission order: the last one is the preemption victim. */
  private readonly running: Request[] = [];
  private queuedTokens = 0;
  numPreemptionsTotal = 0;

  constructor(
    readonly config: SchedulerConfig,
    kvCacheConfig: KVCacheConfig,
    private readonly eosTokenIds: readonly number[],
  ) {
    this.kvCache = new KVCacheManager(kvCacheConfig);
  }

  get numRunning(): number {
    return this.running.length;
  }

  get numWaiting(): number {
    return this.waiting.length;
  }

  /** Requests not yet finished (running, waiting or preempted). */
  get numRequests(): number {
    return this.requests.size;
  }

  hasWork(): boolean {
    return this.running.length > 0 || this.waiting.length > 0;
  }

  getRequest(requestId: string): Request | undefined {
    return this.requests.get(requestId);
  }

  /** Admission control: throws DSV_ERR_QUEUE_FULL past the queue bounds (the server answers 429). */
  addRequest(request: Request): void {
    const { maxQueuedRequests, maxQueuedTokens } = this.config;
    if (this.requests.has(request.requestId)) throw new EngineError('DSV_ERR_INVALID_REQUEST', `duplicate request id ${request.requestId}`);
    if (this.waiting.length >= maxQueuedRequests) {
      throw new EngineError('DSV_ERR_QUEUE_FULL', `the waiting queue is full (${maxQueuedRequests} requests); retry later`);
    }
    if (this.queuedTokens + request.numTokens > maxQueuedTokens) {
      throw new EngineError(
        'DSV_ERR_QUEUE_FULL',
        `the waiting queue holds ${this.queuedTokens} prompt tokens; ${request.numTokens} more exceed the limit of ${maxQueuedTokens}; retry later`,
      );
    }
    this.requests.set(request.requestId, request);
    this.pushWaiting(request, false);
  }

  schedule(): SchedulerOutput {
    let budget = this.config.maxNumBatchedTokens;
    const scheduled: ScheduledRequest[] = [];
    const preempted: Request[] = [];
    const speculate = (this.config.numSpeculativeTokens ?? 0) > 0 && this.running.length + this.waiting.length <= (this.config.disableByBatchSize ?? Infinity);
    // First, the running requests, oldest first.
    for (let i = 0; i < this.running.length && budget > 0; i++) {
      const request = this.running[i]!;
      let drafts = speculate ? this.usableDrafts(request, budget) : [];
      let numNew = drafts.length > 0 ? 1 + drafts.length : this.chunk(request.numTokens - request.numComputedTokens, budget);
      if (numNew === 0) continue;
      let allocated = this.kvCache.allocateSlots(request.requestId, request.numComputedTokens + numNew) !== null;
      if (!allocated && drafts.length > 0) {
        // No room for the lookahead slots: decode without drafts before preempting anyone.
        drafts = [];
        numNew = 1;
        allocated = this.kvCache.allocateSlots(request.requestId, request.numComputedTokens + 1) !== null;
      }
      // Victims come from the tail, so requests scheduled earlier in this loop are never preempted.
      while (!allocated) {
        const victim = this.running.pop()!;
        this.preempt(victim);
        preempted.push(victim);
        if (victim === request) break;
        allocated = this.kvCache.allocateSlots(request.requestId, request.numComputedTokens + numNew) !== null;
      }
      if (!allocated) break;
      if (drafts.length === 0) request.clearDrafts(); // the next token is sampled: old drafts go stale
      scheduled.push(this.scheduledEntry(request, numNew, drafts));
      budget -= numNew;
    }
    // Next, waiting requests, unless this step had to preempt (there is no room).
    if (preempted.length === 0) budget = this.admitWaiting(budget, scheduled);
    return { scheduled, numScheduledTokens: this.config.maxNumBatchedTokens - budget, preempted, speculative: speculate };
  }

  /**
   * After the forward pass and sampling: advances the computed counts, offers newly full blocks to
   * the prefix cache, appends sampled tokens, checks stop conditions and frees finished requests.
   * Returns one delta per request that produced something or finished.
   */
  updateFromOutput(output: SchedulerOutput, results: readonly RequestStepResult[]): RequestOutputDelta[] {
    const deltas: RequestOutputDelta[] = [];
    output.scheduled.forEach((s, i) => {
      const { request } = s;
      const result = results[i]!;
      if (isFinished(request.status)) return;
      if (result.kind === 'failed') {
        request.errorMessage = result.message;
        this.finish(request, RequestStatus.FINISHED_ERROR);
        deltas.push(outputDelta(request, [], null));
        return;
      }
      const sampled = result.sampled ?? [];
      // Rows of accepted drafts are computed; those of rejected drafts are rolled back.
      const numAccepted = Math.max(0, sampled.length - 1);
      request.numComputedTokens = s.numComputedTokens + s.numNewTokens - s.draftTokenIds.length + numAccepted;
      request.clearDrafts();
      const tokens: number[] = [];
      const logprobs: SampledLogprobs[] = [];
      let status: RequestStatus | null = null;
      for (const t of sampled) {
        request.appendOutputToken(t.tokenId);
        tokens.push(t.tokenId);
        if (t.logprobs) logprobs.push(t.logprobs);
        status = this.checkStop(request, t.tokenId);
        if (status !== null) break; // tokens after a stop are dropped
      }
      request.numComputedTokens = Math.min(request.numComputedTokens, request.numTokens);
      this.kvCache.cacheFullBlocks(request.requestId, request.tokenIds, request.numComputedTokens, request.cacheSalt);
      if (s.draftTokenIds.length > 0) this.kvCache.trimSlots(request.requestId, request.numTokens);
      const promptLogprobs = result.promptLogprobs ? this.addPromptLogprobs(request, result.promptLogprobs) : null;
      if (status !== null) this.finish(request, status);
      if (tokens.length === 0) {
        if (promptLogprobs) deltas.push(outputDelta(request, [], null, promptLogprobs));
        return;
      }
      deltas.push(outputDelta(request, tokens, logprobs.length > 0 ? logprobs : null, promptLogprobs));
    });
    return deltas;
  }

  /**
   * Cache slots for a chain of draft-model rows after the request's last token (positions numTokens - 1
   * .. numTokens + numRows - 2): the MTP module writes its own cache layer there. Returns how many rows
   * got slots (fewer when blocks run out; the next schedule() allocates these slots anyway).
   */
  reserveDraftSlots(request: Request, numRows: number): number {
    for (let n = numRows; n > 0; n--) {
      if (this.kvCache.allocateSlots(request.requestId, request.numTokens - 1 + n) !== null) return n;
    }
    return 0;
  }

  /** Ends requests now (abort, a server-side stop string, a failure); returns their final deltas. */
  finishRequests(requestIds: readonly string[], status: RequestStatus, errorMessage?: string): RequestOutputDelta[] {
    const deltas: RequestOutputDelta[] = [];
    for (const id of requestIds) {
      const request = this.requests.get(id);
      if (!request) continue;
      if (errorMessage !== undefined) request.errorMessage = errorMessage;
      this.finish(request, status);
      deltas.push(outputDelta(request, [], null));
    }
    return deltas;
  }

  /** Every request the scheduler holds (running first), for aborts and shutdown. */
  allRequests(): Request[] {
    return [...this.running, ...this.waiting];
  }

  private scheduledEntry(request: Request, numNewTokens: number, draftTokenIds: readonly number[] = []): ScheduledRequest {
    const start = request.numComputedTokens;
    return {
      request,
      numComputedTokens: start,
      numNewTokens,
      blockTable: this.kvCache.getBlockTable(request.requestId),
      samples: start + numNewTokens - draftTokenIds.length === request.numTokens,
      scoresPrompt: request.wantsPromptLogprobs && start < request.numPromptTokens,
      draftTokenIds,
    };
  }

  /** The request's drafts that fit this step: a decode only, within the budget, max_tokens and the context. */
  private usableDrafts(request: Request, budget: number): readonly number[] {
    const drafts = request.draftTokenIds;
    if (drafts.length === 0 || request.numTokens - request.numComputedTokens !== 1) return [];
    const room = Math.min(budget - 1, request.params.maxTokens - request.numOutputTokens - 1, this.config.maxModelLen - request.numTokens);
    return room <= 0 ? [] : drafts.slice(0, room);
  }

  private admitWaiting(budget: number, scheduled: ScheduledRequest[]): number {
    for (let i = 0; i < this.waiting.length && budget > 0 && this.running.length < this.config.maxNumSeqs;) {
      const request = this.waiting[i]!;
      if (this.siblingStillPrefilling(request)) {
        i++; // wait for the sibling's prompt blocks to be cached, then share them
        continue;
      }
      const computed = this.computedBlocks(request);
      const numNew = this.chunk(request.numTokens - computed.numComputedTokens, budget);
      if (this.kvCache.allocateSlots(request.requestId, computed.numComputedTokens + numNew, computed) === null) break;
      this.waiting.splice(i, 1);
      this.queuedTokens -= request.numTokens;
      if (request.status === RequestStatus.WAITING) request.numCachedTokens = computed.numComputedTokens;
      request.status = RequestStatus.RUNNING;
      request.numComputedTokens = computed.numComputedTokens;
      request.firstScheduledTime ??= performance.now();
      this.running.push(request);
      scheduled.push(this.scheduledEntry(request, numNew));
      budget -= numNew;
    }
    return budget;
  }

  private computedBlocks(request: Request): ComputedBlocks {
    // Prompt logprobs need the logits of every prompt position: those requests skip the cache.
    if (!this.kvCache.enablePrefixCaching || request.wantsPromptLogprobs) return { blockIds: [], numComputedTokens: 0 };
    return this.kvCache.getComputedBlocks(request.tokenIds, request.cacheSalt);
  }

  private siblingStillPrefilling(request: Request): boolean {
    if (request.groupId === undefined || !this.kvCache.enablePrefixCaching) return false;
    return this.running.some((r) => r.groupId === request.groupId && r.numComputedTokens < r.numPromptTokens);
  }

  private chunk(remaining: number, budget: number): number {
    const threshold = this.config.longPrefillTokenThreshold;
    return Math.min(remaining, budget, threshold > 0 ? threshold : Infinity);
  }

  private preempt(request: Request): void {
    this.kvCache.free(request.requestId);
    request.status = RequestStatus.PREEMPTED;
    request.resetForRecompute();
    request.numPreemptions++;
    this.numPreemptionsTotal++;
    this.pushWaiting(request, true);
  }

  private pushWaiting(request: Request, atHead: boolean): void {
    if (atHead) this.waiting.unshift(request);
    else this.waiting.push(request);
    this.queuedTokens += request.numTokens;
  }

  /** Appends a chunk's prompt logprobs; returns the whole list once the prompt is computed. */
  private addPromptLogprobs(request: Request, chunk: readonly SampledLogprobs[]): (SampledLogprobs | null)[] | null {
    request.promptLogprobs.push(...chunk);
    if (request.numComputedTokens < request.numPromptTokens) return null;
    const all = request.promptLogprobs;
    request.promptLogprobs = [];
    request.promptLogprobsDone = true;
    return all;
  }

  private checkStop(request: Request, tokenId: number): RequestStatus | null {
    const { params } = request;
    const numOutput = request.numOutputTokens;
    if (numOutput >= params.minTokens) {
      if (!params.ignoreEos && this.eosTokenIds.includes(tokenId)) return RequestStatus.FINISHED_STOPPED;
      if (params.stopTokenIds.includes(tokenId)) {
        request.stopReason = tokenId;
        return RequestStatus.FINISHED_STOPPED;
      }
    }
    if (numOutput >= params.maxTokens || request.numTokens >= this.config.maxModelLen) return RequestStatus.FINISHED_LENGTH;
    return null;
  }

  /** Ends a request (stop, length, abort, error) and frees its blocks at once. */
  private finish(request: Request, status: RequestStatus): void {
    if (isFinished(request.status)) return;
    const wasWaiting = request.status !== RequestStatus.RUNNING;
    request.status = status;
    if (wasWaiting) {
      const i = this.waiting.indexOf(request);
      if (i >= 0) {
        this.waiting.splice(i, 1);
        this.queuedTokens -= request.numTokens;
      }
    } else {
      this.running.splice(this.running.indexOf(request), 1);
    }
    this.kvCache.free(request.requestId);
    this.requests.delete(request.requestId);
  }
}
