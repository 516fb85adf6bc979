// Offline throughput (engine-loop issue): N requests submitted at once to an EngineCore (no HTTP),
// greedy, fixed prompt and output lengths; per-step time split from the engine's own StepStats.
import { EngineCore, type StepStats } from '../src/engine/engine_core.ts';
import type { ModelExecutor } from '../src/engine/model_executor.ts';
import { resolveSamplingParams } from '../src/engine/sampling/sampling_params.ts';

export interface ThroughputResult {
  readonly concurrency: number;
  readonly numRequests: number;
  readonly promptTokens: number;
  readonly outputTokens: number;
  readonly seconds: number;
  readonly outputTokensPerSecond: number;
  /** Output tokens per second over the steps that only decoded (the batched-decode rate). */
  readonly decodeTokensPerSecond: number;
  readonly meanDecodeBatch: number;
  readonly numSteps: number;
  /** Mean milliseconds per step, per part. */
  readonly stepSplitMs: Record<string, number>;
  readonly schedulingShare: number;
}

export async function benchThroughput(
  exec: ModelExecutor,
  opts: { concurrency: number; numRequests: number; promptTokens: number; outputTokens: number },
): Promise<ThroughputResult> {
  const vocab = exec.loaded.config.vocabSize;
  const core = new EngineCore(exec, {
    maxNumSeqs: opts.concurrency,
    maxNumBatchedTokens: 2048,
    longPrefillTokenThreshold: 512,
    maxModelLen: opts.promptTokens + opts.outputTokens + 1,
    maxQueuedRequests: opts.numRequests,
    maxQueuedTokens: opts.numRequests * (opts.promptTokens + opts.outputTokens),
  });
  const params = resolveSamplingParams({ temperature: 0, maxTokens: opts.outputTokens, ignoreEos: true });
  for (let r = 0; r < opts.numRequests; r++) {
    // Distinct prompts: no prefix-cache hits between requests.
    const prompt = Array.from({ length: opts.promptTokens }, (_, i) => ((r * 7907 + i * 104729) % (vocab - 2)) + 2);
    core.addRequest({ requestId: `b${r}`, promptTokenIds: prompt, params });
  }
  const stats: StepStats[] = [];
  let outputTokens = 0;
  const t0 = performance.now();
  while (core.hasWork()) {
    const { outputs, stats: s } = await core.step();
    for (const o of outputs) outputTokens += o.newTokenIds.length;
    stats.push(s);
  }
  const seconds = (performance.now() - t0) / 1000;
  const decodeSteps = stats.filter((s) => s.numPrefillTokens === 0 && s.numDecodeTokens > 0);
  const decodeMs = decodeSteps.reduce((a, s) => a + s.stepMs, 0);
  const decodeTokens = decodeSteps.reduce((a, s) => a + s.numDecodeTokens, 0);
  const split: Record<string, number> = {};
  for (const s of stats) for (const [k, v] of Object.entries(s.timings)) split[k] = (split[k] ?? 0) + v / stats.length;
  const meanStep = stats.reduce((a, s) => a + s.stepMs, 0) / stats.length;
  return {
    concurrency: opts.concurrency,
    numRequests: opts.numRequests,
    promptTokens: opts.promptTokens,
    outputTokens,
    seconds,
    outputTokensPerSecond: outputTokens / seconds,
    decodeTokensPerSecond: decodeSteps.length ? (decodeTokens / decodeMs) * 1000 : 0,
    meanDecodeBatch: decodeSteps.length ? decodeTokens / decodeSteps.length : 0,
    numSteps: stats.length,
    stepSplitMs: split,
    schedulingShare: split.schedule / meanStep,
  };
}
