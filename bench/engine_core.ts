// Engine-core benchmark: batch-1 decode and 512-token prefill on a random-weight checkpoint,
// against the bandwidth floor (weight bytes read per decode token / measured read bandwidth).
import type { LoadedModel } from '../src/engine/checkpoint/types.ts';
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

/** Bytes of weights one decode token reads: everything but the embedding table and the unpicked experts. */
export function weightBytesPerDecodeToken(loaded: LoadedModel): number {
  const { config, weights } = loaded;
  let floats = weights.norm.data.length + weights.lmHead.data.length + config.hiddenSize; // + one embedding row
  const size = (t: { data: Float32Array } | null) => t?.data.length ?? 0;
  for (const layer of weights.layers) {
    const a = layer.attn;
    floats += size(layer.inputLayernorm) + size(layer.postAttentionLayernorm);
    floats += (a.query.kind === 'lora' ? size(a.query.qAProj) + size(a.query.qALayernorm) + size(a.query.qBProj) : size(a.query.qProj)) + size(a.kvAProjWithMqa) + size(a.kvALayernorm) + size(a.kvBProj) + size(a.oProj);
    if (a.indexer) floats += size(a.indexer.wqB) + size(a.indexer.wk) + size(a.indexer.weightsProj) + 2 * size(a.indexer.kNormBias);
    const swiGlu = (w: { gateProj: { data: Float32Array }; upProj: { data: Float32Array }; downProj: { data: Float32Array } }) =>
      w.gateProj.data.length + w.upProj.data.length + w.downProj.data.length;
    if (layer.mlp.kind === 'dense') floats += swiGlu(layer.mlp.weights);
    else {
      const m = layer.mlp.weights;
      floats += size(m.gate) + (m.sharedExperts ? swiGlu(m.sharedExperts) : 0) + config.moe!.numExpertsPerTok * swiGlu(m.experts[0]);
    }
  }
  return floats * 4;
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

export async function benchEngineCore(modelDir: string, name: string, opts: { denseAttention?: boolean; decodeContext?: number; quick?: boolean }): Promise<EngineCoreResult> {
  const engine = await openBenchEngine(modelDir, { numThreads: Number(process.env.T ?? 2), denseAttention: opts.denseAttention ?? false, kvCacheMemory: 2 * 2 ** 30 });
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
