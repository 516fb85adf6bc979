// Engine-core benchmark: batch-1 decode and 512-token prefill on a random-weight checkpoint,
// against the bandwidth floor (weight bytes read per decode token / measured read bandwidth).
import { decodeWeightBytes } from '../src/engine/memory_plan.ts';
import type { LoadedModelInfo } from '../src/engine/model_runner.ts';
import type { OfflineEngine } from '../src/engine/offline.ts';
import type { StepTimings } from '../src/engine/step_profiler.ts';
import { openBenchEngine, timeDecode, timePrefill } from './engine_runs.ts';

export interface EngineCoreResult {
  readonly model: string;
  readonly denseAttention: boolean;
  readonly weightBytesPerDecodeToken: number;
  readonly decodeContext: number;
  readonly decodeTokensPerSecond: number;
  readonly decodeMsPerToken: number;
  readonly decodeSplitMs: StepTimings;
  readonly prefillTokens: number;
  readonly prefillTokensPerSecond: number;
  readonly prefillSplitMs: StepTimings;
}

/** Bytes of weights one decode token reads (at the loaded quantisation): memory_plan.ts decodeWeightBytes. */
export function weightBytesPerDecodeToken(loaded: LoadedModelInfo): number {
  return decodeWeightBytes(loaded.config, loaded.quantization);
}

function syntheticPrompt(n: number, vocab: number, seed: number): number[] {
  return Array.from({ length: n }, (_, i) => ((i * 7919 + seed * 104729) % (vocab - 2)) + 2);
}

async function measurePrefill(engine: OfflineEngine, tokens: number, reps: number): Promise<{ tps: number; split: StepTimings }> {
  let best = { ms: Infinity, split: null as StepTimings | null };
  for (let r = 0; r < reps + 1; r++) {
    const res = await timePrefill(engine, syntheticPrompt(tokens, engine.core.config.vocabSize, r));
    if (r > 0 && res.ms < best.ms) best = res; // run 0 warms up
  }
  return { tps: (tokens / best.ms) * 1000, split: best.split! };
}

export async function benchEngineCore(
  modelDir: string,
  name: string,
  opts: { denseAttention?: boolean; decodeContext?: number; quick?: boolean },
): Promise<EngineCoreResult> {
  const engine = await openBenchEngine(modelDir, {
    numThreads: Number(process.env.T ?? 2),
    denseAttention: opts.denseAttention ?? false,
    kvCacheMemory: 2 * 2 ** 30,
  });
  try {
    const decodeContext = opts.decodeContext ?? 16;
    const prompt = syntheticPrompt(Math.max(decodeContext, 1), engine.core.config.vocabSize, 99);
    const decode = await timeDecode(engine, prompt, 8, opts.quick ? 32 : 128);
    const prefill = await measurePrefill(engine, 512, opts.quick ? 2 : 4);
    return {
      model: name,
      denseAttention: opts.denseAttention ?? false,
      weightBytesPerDecodeToken: weightBytesPerDecodeToken(engine.core.runner.loaded),
      decodeContext,
      decodeTokensPerSecond: 1000 / decode.msPerToken,
      decodeMsPerToken: decode.msPerToken,
      decodeSplitMs: decode.split,
      prefillTokens: 512,
      prefillTokensPerSecond: prefill.tps,
      prefillSplitMs: prefill.split,
    };
  } finally {
    await engine.dispose();
  }
}
