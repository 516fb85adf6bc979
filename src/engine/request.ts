// One request inside the engine. The scheduler sees only counts: numComputedTokens catches up to
// numTokens (prompt + output); there is no prefill or decode phase (vLLM v1's model).
import type { SamplingParams } from './sampling/sampling_params.ts';
import type { StructuredOutputSpec } from './structured/grammar_spec.ts';
import { SamplingState } from './sampling/sampling_state.ts';
import { Rng } from './sampling/rng.ts';
import type { PromptTokenLogprobs } from './sampling/prompt_logprobs.ts';

/** Ordered: every status after PREEMPTED is final. */
export enum RequestStatus {
  WAITING = 0,
  RUNNING = 1,
  PREEMPTED = 2,
  FINISHED_STOPPED = 3,
  FINISHED_LENGTH = 4,
  FINISHED_ABORTED = 5,
  FINISHED_ERROR = 6,
}

export type FinishReason = 'stop' | 'length' | 'abort' | 'error';

export function isFinished(status: RequestStatus): boolean {
  return status > RequestStatus.PREEMPTED;
}

export function finishReason(status: RequestStatus): FinishReason | null {
  switch (status) {
    case RequestStatus.FINISHED_STOPPED:
      return 'stop';
    case RequestStatus.FINISHED_LENGTH:
      return 'length';
    case RequestStatus.FINISHED_ABORTED:
      return 'abort';
    case RequestStatus.FINISHED_ERROR:
      return 'error';
    default:
      return null;
  }
}

export interface RequestInit {
  readonly requestId: string;
  readonly promptTokenIds: readonly number[];
  readonly params: SamplingParams;
  /** Isolates this request's prefix-cache entries (per tenant). */
  readonly cacheSalt?: string;
  /** Requests of one n > 1 fan-out share a group id (their prompts are identical). */
  readonly groupId?: string;
  /** The grammar the output must match (structured outputs, forced tool calls). */
  readonly structuredOutput?: StructuredOutputSpec;
}

export class Request {
  readonly requestId: string;
  readonly promptTokenIds: readonly number[];
  readonly params: SamplingParams;
  readonly cacheSalt: string | undefined;
  readonly groupId: string | undefined;
  readonly sampling: SamplingState;
  /** Prompt followed by every generated token. */
  readonly tokenIds: number[];
  readonly arrivalTime = performance.now();
  status = RequestStatus.WAITING;
  /** Tokens whose latent rows are in this request's cache blocks. */
  numComputedTokens = 0;
  /** Prompt tokens served from the prefix cache at first admission. */
  numCachedTokens = 0;
  numPreemptions = 0;
  /** Prompt logprobs are computed once; a recompute after preemption skips them. */
  promptLogprobsDone = false;
  /**
   * Prompt logprobs gathered chunk by chunk (entry p scores prompt token p; the first is null) until the
   * prompt is computed. Tied to numComputedTokens: a preemption that resets one must reset the other.
   */
  promptLogprobs: (SampledLogprobs | null)[] = [null];
  /** The stop token id that ended the request (OpenAI/vLLM stop_reason), if any. */
  stopReason: number | null = null;
  errorMessage: string | null = null;
  firstScheduledTime: number | null = null;
  /**
   * Speculative decoding: tokens the draft model proposes after tokenIds (not part of the sequence
   * until the target model accepts them), and per draft the distribution q it was drawn from (null
   * for greedy requests, whose drafts are the draft model's argmax).
   */
  draftTokenIds: readonly number[] = [];
  draftProbs: readonly (Float64Array | null)[] = [];
  private draftRngState: Rng | null = null;

  constructor(init: RequestInit, eosTokenIds: readonly number[]) {
    this.requestId = init.requestId;
    this.promptTokenIds = init.promptTokenIds;
    this.params = init.params;
    this.cacheSalt = init.cacheSalt;
    this.groupId = init.groupId;
    this.tokenIds = [...init.promptTokenIds];
    this.sampling = SamplingState.create(init.params, init.promptTokenIds, eosTokenIds);
  }

  get numPromptTokens(): number {
    return this.promptTokenIds.length;
  }

  get numTokens(): number {
    return this.tokenIds.length;
  }

  get numOutputTokens(): number {
    return this.tokenIds.length - this.promptTokenIds.length;
  }

  /** Prompt logprobs are wanted and not yet produced: the prompt must be computed, not cache-hit. */
  get wantsPromptLogprobs(): boolean {
    return this.params.promptLogprobs !== null && !this.promptLogprobsDone;
  }

  /**
   * Preempted: the KV blocks are gone, so everything is recomputed from position 0. Every piece of
   * state derived from computed positions is reset here; tokens, sampling state (penalty counts
   * over output tokens), numCachedTokens (first admission only) and finished prompt logprobs stay.
   */
  resetForRecompute(): void {
    this.numComputedTokens = 0;
    this.clearDrafts();
    if (!this.promptLogprobsDone) this.promptLogprobs = [null];
  }

  setDrafts(tokenIds: readonly number[], probs: readonly (Float64Array | null)[]): void {
    this.draftTokenIds = tokenIds;
    this.draftProbs = probs;
  }

  clearDrafts(): void {
    if (this.draftTokenIds.length > 0) this.setDrafts([], []);
  }

  /**
   * The RNG of draft choices and accept tests: a stream apart from sampling.rng, which still advances
   * exactly once per emitted token, so speculation does not shift the draws of the tokens after it.
   * Seeded requests derive it from the seed (reproducible runs); others from entropy.
   */
  get draftRng(): Rng {
    const seed = this.params.seed;
    if (this.draftRngState === null) {
      // Four outputs of the seed's own stream, used as a state, start an unrelated stream.
      const base = seed === null ? null : Rng.fromSeed(seed);
      const words = base && [base.nextUint32(), base.nextUint32(), base.nextUint32(), base.nextUint32() | 1];
      this.draftRngState = words === null ? Rng.fromEntropy() : Rng.fromState([words[0]!, words[1]!, words[2]!, words[3]! >>> 0]);
    }
    return this.draftRngState;
  }

  appendOutputToken(tokenId: number): void {
    this.tokenIds.push(tokenId);
    this.sampling.appendToken(tokenId);
  }
}

/** What one step produced for one request (plain data: it crosses the worker boundary). */
export interface RequestOutputDelta {
  readonly requestId: string;
  readonly newTokenIds: readonly number[];
  /** One entry per new token when the request asked for logprobs. */
  readonly logprobs: readonly SampledLogprobs[] | null;
  /** Per prompt position (null for the first), sent once when the prompt is computed. */
  readonly promptLogprobs: readonly (SampledLogprobs | null)[] | null;
  readonly finishReason: FinishReason | null;
  readonly stopReason: number | null;
  readonly numPromptTokens: number;
  readonly numCachedTokens: number;
  readonly numOutputTokens: number;
  /** Milliseconds from arrival to first scheduling (engine clock); null until scheduled. */
  readonly queueTimeMs: number | null;
  readonly errorMessage: string | null;
}

/** A token's raw-model logprob with the best alternatives (same shape for prompt and output tokens). */
export type SampledLogprobs = PromptTokenLogprobs;

/** The delta of one request after a step or a finish. */
export function outputDelta(
  request: Request,
  newTokenIds: readonly number[],
  logprobs: readonly SampledLogprobs[] | null,
  promptLogprobs: readonly (SampledLogprobs | null)[] | null = null,
): RequestOutputDelta {
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
