// Offline throughput (engine-loop issue): N requests submitted at once to the offline driver (no HTTP),
// greedy, fixed prompt and output lengths; per-step time split from the engine's own StepStats.
import { OfflineEngine } from '../src/engine/offline.ts';
import type { ModelRunnerOptions } from '../src/engine/model_runner.ts';
import type { StepStats } from '../src/engine/step_stats.ts';

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
  modelDir: string,
  runner: ModelRunnerOptions,
  opts: { concurrency: number; numRequests: number; promptTokens: number; outputTokens: number },
): Promise<ThroughputResult> {
  const engine = await OfflineEngine.create(modelDir, {
    runner,
    scheduler: { maxNumSeqs: opts.concurrency, maxNumBatchedTokens: 2048, longPrefillTokenThreshold: 512 },
    enablePrefixCaching: false,
  });
  const vocab = engine.core.config.vocabSize;
  const params = { temperature: 0, maxTokens: opts.outputTokens, ignoreEos: true };
  // Distinct prompts: no prefix-cache hits between requests.
  const requests = Array.from({ length: opts.numRequests }, (_, r) => ({
    promptTokenIds: Array.from({ length: opts.promptTokens }, (_, i) => ((r * 7907 + i * 104729) % (vocab - 2)) + 2),
    params,
  }));
  const stats: StepStats[] = [];
  const t0 = performance.now();
  let outputTokens = 0;
  try {
    const outs = await engine.generate(requests, (s) => stats.push(s));
    outputTokens = outs.reduce((n, o) => n + o.tokenIds.length, 0);
  } finally {
    await engine.dispose();
  }
  const seconds = (performance.now() - t0) / 1000;
  const decodeSteps = stats.filter((s) => s.numPrefillTokens === 0 && s.numDecodeTokens > 0);
  const decodeMs = decodeSteps.reduce((a, s) => a + s.stepMs, 0);
  const decodeTokens = decodeSteps.reduce((a, s) => a + s.numDecodeTokens, 0);
  const split: Record<string, number> = {};
  for (const s of stats) for (const [k, v] of Object.entries(s.timings) as [string, number][]) split[k] = (split[k] ?? 0) + v / stats.length;
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
    schedulingShare: (split.schedule ?? 0) / meanStep,
  };
}
