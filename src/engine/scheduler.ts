// The scheduler (vLLM v1's shape): no phases, only counts. Each step spends a token budget, first
// on running requests (a decode is 1 token, an unfinished prefill its next chunk), then on waiting
// ones while blocks and maxNumSeqs allow. Out of blocks: preempt the most recently admitted request.
// Scheduler state changes only in schedule(), updateAfterStep(), addRequest() and finishRequest().
import { EngineError } from '../common/errors.ts';
import { isFinished, Request, RequestStatus } from './request.ts';
import type { KVCacheManager } from '../kvcache/kv_cache_manager.ts';
import type { ComputedBlocks } from '../kvcache/types.ts';

export interface SchedulerConfig {
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
  /** A prefill chunk never exceeds this (0 = only the budget limits it). */
  readonly longPrefillTokenThreshold: number;
  readonly maxModelLen: number;
  readonly maxQueuedRequests: number;
  readonly maxQueuedTokens: number;
}

export interface ScheduledRequest {
  readonly request: Request;
  readonly numNewTokens: number;
}

export interface SchedulerOutput {
  readonly scheduled: readonly ScheduledRequest[];
  readonly numScheduledTokens: number;
  /** Requests preempted in this step (already back in the waiting queue). */
  readonly preempted: readonly Request[];
}

export class Scheduler {
  /** FCFS; preempted requests go back to the head. */
  private readonly waiting: Request[] = [];
  /** In admission order: the last one is the preemption victim. */
  private readonly running: Request[] = [];
  private queuedTokens = 0;
  numPreemptionsTotal = 0;

  constructor(
    readonly config: SchedulerConfig,
    private readonly kvCache: KVCacheManager,
  ) {}

  get numRunning(): number {
    return this.running.length;
  }

  get numWaiting(): number {
    return this.waiting.length;
  }

  hasWork(): boolean {
    return this.running.length > 0 || this.waiting.length > 0;
  }

  /** Admission control: throws DSV_ERR_QUEUE_FULL past the queue bounds (the server answers 429). */
  addRequest(request: Request): void {
    const { maxQueuedRequests, maxQueuedTokens } = this.config;
    if (this.waiting.length >= maxQueuedRequests) {
      throw new EngineError('DSV_ERR_QUEUE_FULL', `the waiting queue is full (${maxQueuedRequests} requests); retry later`);
    }
    if (this.queuedTokens + request.numTokens > maxQueuedTokens) {
      throw new EngineError('DSV_ERR_QUEUE_FULL', `the waiting queue holds ${this.queuedTokens} prompt tokens; ${request.numTokens} more exceed the limit of ${maxQueuedTokens}; retry later`);
    }
    this.pushWaiting(request, false);
  }

  schedule(): SchedulerOutput {
    let budget = this.config.maxNumBatchedTokens;
    const scheduled: ScheduledRequest[] = [];
    const preempted: Request[] = [];
    // First, the running requests, oldest first.
    for (let i = 0; i < this.running.length && budget > 0; i++) {
      const request = this.running[i];
      const numNew = this.chunk(request.numTokens - request.numComputedTokens, budget);
      if (numNew === 0) continue;
      let allocated = this.kvCache.allocateSlots(request.requestId, request.numComputedTokens + numNew) !== null;
      // Victims come from the tail, so requests scheduled earlier in this loop are never preempted.
      while (!allocated) {
        const victim = this.running.pop()!;
        this.preempt(victim);
        preempted.push(victim);
        if (victim === request) break;
        allocated = this.kvCache.allocateSlots(request.requestId, request.numComputedTokens + numNew) !== null;
      }
      if (!allocated) break;
      scheduled.push({ request, numNewTokens: numNew });
      budget -= numNew;
    }
    // Next, waiting requests, unless this step had to preempt (there is no room).
    if (preempted.length === 0) budget = this.admitWaiting(budget, scheduled);
    return { scheduled, numScheduledTokens: this.config.maxNumBatchedTokens - budget, preempted };
  }

  private admitWaiting(budget: number, scheduled: ScheduledRequest[]): number {
    for (let i = 0; i < this.waiting.length && budget > 0 && this.running.length < this.config.maxNumSeqs; ) {
      const request = this.waiting[i];
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
      scheduled.push({ request, numNewTokens: numNew });
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
    request.numComputedTokens = 0;
    request.numPreemptions++;
    this.numPreemptionsTotal++;
    this.pushWaiting(request, true);
  }

  private pushWaiting(request: Request, atHead: boolean): void {
    if (atHead) this.waiting.unshift(request);
    else this.waiting.push(request);
    this.queuedTokens += request.numTokens;
  }

  /** After the forward pass: count the computed tokens and offer newly full blocks to the prefix cache. */
  updateAfterStep(output: SchedulerOutput): void {
    for (const { request, numNewTokens } of output.scheduled) {
      if (isFinished(request.status)) continue;
      request.numComputedTokens += numNewTokens;
      this.kvCache.cacheFullBlocks(request.requestId, request.tokenIds, request.numComputedTokens, request.cacheSalt);
    }
  }

  /** Ends a request (stop, length, abort, error) and frees its blocks at once. */
  finishRequest(request: Request, status: RequestStatus): void {
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
  }

  /** Every request the scheduler holds (running first), for aborts and shutdown. */
  allRequests(): Request[] {
    return [...this.running, ...this.waiting];
  }
}
