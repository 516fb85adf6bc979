// Drives an EngineCore synchronously step by step (no worker), collecting per-request deltas and
// checking the block manager's integrity after every step.
import type { EngineCore } from '../../src/engine/engine_core.ts';
import type { StepStats } from '../../src/engine/step_stats.ts';
import type { RequestOutputDelta } from '../../src/engine/request.ts';
import { resolveSamplingParams, type SamplingParamsInit } from '../../src/engine/sampling/sampling_params.ts';
import type { StructuredOutputSpec } from '../../src/engine/structured/grammar_spec.ts';

export interface Collected {
  tokens: number[];
  deltas: RequestOutputDelta[];
  final: RequestOutputDelta | null;
}

export class EngineDriver {
  readonly results = new Map<string, Collected>();
  readonly stats: StepStats[] = [];
  numSteps = 0;

  constructor(readonly core: EngineCore) {}

  add(requestId: string, promptTokenIds: readonly number[], params: SamplingParamsInit, extra: { cacheSalt?: string; groupId?: string } = {}): void {
    const vocabSize = this.core.config.vocabSize;
    this.core.addRequest({ requestId, promptTokenIds, params: resolveSamplingParams(params, { vocabSize }), ...extra });
    this.results.set(requestId, { tokens: [], deltas: [], final: null });
  }

  /** A request with an output grammar (compiled before it is queued). */
  async addConstrained(
    requestId: string,
    promptTokenIds: readonly number[],
    params: SamplingParamsInit,
    structuredOutput: StructuredOutputSpec,
  ): Promise<void> {
    const vocabSize = this.core.config.vocabSize;
    await this.core.addRequestAsync({ requestId, promptTokenIds, params: resolveSamplingParams(params, { vocabSize }), structuredOutput });
    this.results.set(requestId, { tokens: [], deltas: [], final: null });
  }

  absorb(deltas: readonly RequestOutputDelta[]): void {
    for (const d of deltas) {
      const r = this.results.get(d.requestId)!;
      r.tokens.push(...d.newTokenIds);
      r.deltas.push(d);
      if (d.finishReason !== null) r.final = d;
    }
  }

  /** One step; integrity is checked after it. */
  async step(): Promise<void> {
    const { outputs, stats } = await this.core.step();
    this.core.checkIntegrity();
    this.absorb(outputs);
    this.stats.push(stats);
    this.numSteps++;
  }

  async runToCompletion(onStep?: (driver: EngineDriver) => void): Promise<void> {
    while (this.core.hasWork()) {
      await this.step();
      onStep?.(this);
    }
  }

  /** Every block is free (possibly still holding a cached prefix): nothing leaked. */
  assertNoLeaks(): void {
    const kv = this.core.scheduler.kvCache;
    this.core.checkIntegrity();
    if (kv.numFreeBlocks !== kv.numBlocks) throw new Error(`leak: ${kv.numBlocks - kv.numFreeBlocks} blocks still in use`);
    if (this.core.numRequests !== 0) throw new Error(`leak: ${this.core.numRequests} requests still tracked`);
  }
}
