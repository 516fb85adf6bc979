// What one engine step measures, kept out of the math: the model and attention code wrap work in
// profiler.time(part, fn) and bump the sparsity counters; nothing else in them knows about clocks.

/** Milliseconds per part of a step. `other` is the forward pass minus the named model parts. */
export interface StepTimings {
  readonly schedule: number;
  readonly dense: number; // pre/post-attention graphs, lm_head
  readonly indexer: number; // prefill: indexer score + top-k graph (decode runs it inside the attention graph)
  readonly attention: number; // sparse MLA graph; at DSA decode also key selection (one graph)
  readonly experts: number; // routing + routed expert graph
  readonly grammar: number; // structured outputs: next-token bitmasks (XGrammar)
  readonly sampling: number; // sampler (bitmask application included), prompt logprobs
  readonly draft: number; // speculative decoding: the MTP module's pass after sampling (graphs and JS)
  readonly other: number; // step inputs, embedding, cache writes
}

export type StepPart = keyof StepTimings;

/** DSA sparsity of a step, summed over layers and query rows. */
export interface SparsityCounters {
  queries: number;
  visibleKeys: number; // causal keys each query could see
  selectedKeys: number; // keys it attended
}

export function emptySparsity(): SparsityCounters {
  return { queries: 0, visibleKeys: 0, selectedKeys: 0 };
}

export function emptyTimings(): StepTimings {
  return { schedule: 0, dense: 0, indexer: 0, attention: 0, experts: 0, grammar: 0, sampling: 0, draft: 0, other: 0 };
}

/** Accumulates wall time per part over one step. */
export class StepProfiler {
  private readonly ms: Record<StepPart, number> = { ...emptyTimings() };

  /** `sparsity` may be another profiler's: the MTP pass times its parts apart from the forward's but counts DSA rows with them. */
  constructor(readonly sparsity: SparsityCounters = emptySparsity()) {}

  time<T>(part: StepPart, fn: () => T): T {
    const t0 = performance.now();
    try {
      return fn();
    } finally {
      this.ms[part] += performance.now() - t0;
    }
  }

  async timeAsync<T>(part: StepPart, fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.ms[part] += performance.now() - t0;
    }
  }

  add(part: StepPart, ms: number): void {
    this.ms[part] += ms;
  }

  /** Parts timed so far; `forwardMs` (the runner's total) turns the untimed rest of the forward into `other`. */
  timings(forwardMs?: number): StepTimings {
    const named = this.ms.dense + this.ms.indexer + this.ms.attention + this.ms.experts + this.ms.other;
    return { ...this.ms, other: this.ms.other + (forwardMs === undefined ? 0 : Math.max(0, forwardMs - named)) };
  }
}
