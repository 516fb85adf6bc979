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
  /** ONNX Runtime graph runs of the step's forward pass (per-run overhead dominates small decode steps). */
  readonly numGraphRuns: number;
  /** Milliseconds per part of the step. */
  readonly timings: StepTimings;
  readonly sparsity: SparsityCounters;
}
