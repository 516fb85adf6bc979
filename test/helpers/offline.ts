// Greedy runs through the offline driver (the serving path: scheduler, chunked prefill, sampler).
import { OfflineEngine, type OfflineOptions, type OfflineOutput } from '../../src/engine/offline.ts';

export interface GreedyRunOptions {
  readonly maxTokens: number;
  /** Also return the logits of every prompt position (the request asks for prompt logprobs). */
  readonly promptLogits?: boolean;
}

/** An engine that keeps raw logits and checks the block manager after every step. */
export function openEngine(dir: string, options: OfflineOptions & { chunkSize?: number } = {}): Promise<OfflineEngine> {
  const { chunkSize, ...rest } = options;
  return OfflineEngine.create(dir, {
    captureLogits: true,
    checkIntegrity: true,
    ...rest,
    scheduler: { ...rest.scheduler, ...(chunkSize !== undefined && { longPrefillTokenThreshold: chunkSize }) },
  });
}

/** Greedy decoding of exactly maxTokens tokens per prompt (EOS ignored), all prompts in one batch. */
export function greedy(engine: OfflineEngine, prompts: readonly (readonly number[])[], options: GreedyRunOptions): Promise<OfflineOutput[]> {
  const params = { temperature: 0, maxTokens: options.maxTokens, ignoreEos: true, promptLogprobs: options.promptLogits ? 0 : null };
  return engine.generate(prompts.map((promptTokenIds) => ({ promptTokenIds, params })));
}

/** Every block is free again and no request is tracked. */
export function assertDrained(engine: OfflineEngine): void {
  const kv = engine.core.scheduler.kvCache;
  kv.checkIntegrity();
  if (kv.numFreeBlocks !== kv.numBlocks) throw new Error(`leak: ${kv.numBlocks - kv.numFreeBlocks} blocks still in use`);
  if (engine.core.numRequests !== 0) throw new Error(`leak: ${engine.core.numRequests} requests still tracked`);
}
