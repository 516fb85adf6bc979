// What the engine reports after each step (plain data: it crosses the worker boundary to /metrics).
import type { SparsityCounters, StepTimings } from './step_profiler.ts';

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
  /** ONNX Runtime graph runs of the whole step: the forward pass and, with speculation, the MTP drafts (per-run overhead dominates small decode steps). */
  readonly numGraphRuns: number;
  /** Wall milliseconds inside those graph runs; stepMs minus this is the step's JS time. */
  readonly graphRunMs: number;
  /** Milliseconds per part of the step. */
  readonly timings: StepTimings;
  readonly sparsity: SparsityCounters;
  /** Speculative decoding in this step (vllm:spec_decode_*); absent when it is not configured. */
  readonly specDecode?: SpecDecodeCounts;
}

/** Drafts verified in one step: vLLM's spec_decode counters. */
export interface SpecDecodeCounts {
  /** Requests whose drafts were verified. */
  numDrafts: number;
  numDraftTokens: number;
  numAcceptedTokens: number;
  /** [k] accepted drafts by position in the draft chain. */
  readonly acceptedPerPos: number[];
}

export function emptySpecDecodeCounts(k: number): SpecDecodeCounts {
  return { numDrafts: 0, numDraftTokens: 0, numAcceptedTokens: 0, acceptedPerPos: new Array<number>(k).fill(0) };
}

export function addSpecDecodeCounts(c: SpecDecodeCounts, numDraftTokens: number, numAccepted: number): void {
  c.numDrafts++;
  c.numDraftTokens += numDraftTokens;
  c.numAcceptedTokens += numAccepted;
  for (let i = 0; i < numAccepted; i++) c.acceptedPerPos[i]!++;
}
