// Engine-core benchmark: batch-1 decode and 512-token prefill on a random-weight checkpoint,
// against the bandwidth floor (weight bytes read per decode token / measured read bandwidth).
import { emptyTimings, type StepTimings } from '../src/engine/attention/sparse_mla.ts';
import { createModelExecutor, type ModelExecutor } from '../src/engine/model_executor.ts';
import type { LoadedModel } from '../src/engine/checkpoint/types.ts';

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
    floats += size(a.qAProj) + size(a.qALayernorm) + size(a.qBProj) + size(a.qProj) + size(a.kvAProjWithMqa) + size(a.kvALayernorm) + size(a.kvBProj) + size(a.oProj);
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

function addTimings(acc: StepTimings, t: StepTimings, scale = 1): void {
  for (const k of Object.keys(acc) as (keyof StepTimings)[]) acc[k] += t[k] * scale;
}

function syntheticPrompt(n: number, vocab: number, seed: number): number[] {
  return Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729) % (vocab - 2) + 2);
}

async function measurePrefill(exec: ModelExecutor, tokens: number, reps: number): Promise<{ tps: number; split: StepTimings }> {
  let best = Infinity;
  let split = emptyTimings();
  for (let r = 0; r < reps + 1; r++) {
    const id = `prefill-${r}`;
    exec.kvCache.allocateSlots(id, tokens);
    const prompt = syntheticPrompt(tokens, exec.loaded.config.vocabSize, r);
    const t0 = performance.now();
    const out = await exec.model.step([{ tokenIds: prompt, numComputedTokens: 0, blockTable: exec.kvCache.getBlockTable(id), logits: 'last' }]);
    const ms = performance.now() - t0;
    exec.kvCache.free(id);
    if (r > 0 && ms < best) [best, split] = [ms, out.timings]; // run 0 warms up
  }
  return { tps: (tokens / best) * 1000, split };
}

async function measureDecode(exec: ModelExecutor, context: number, steps: number): Promise<{ msPerToken: number; split: StepTimings }> {
  const id = 'decode';
  const vocab = exec.loaded.config.vocabSize;
  const prompt = syntheticPrompt(Math.max(context, 1), vocab, 99);
  exec.kvCache.allocateSlots(id, prompt.length + steps + 8);
  const table = exec.kvCache.getBlockTable(id);
  for (let done = 0; done < prompt.length; done += 2048) {
    const chunk = prompt.slice(done, done + 2048);
    await exec.model.step([{ tokenIds: chunk, numComputedTokens: done, blockTable: table, logits: 'none' }]);
  }
  let pos = prompt.length;
  const warmup = 8;
  const split = emptyTimings();
  let t0 = 0;
  for (let i = 0; i < warmup + steps; i++) {
    if (i === warmup) t0 = performance.now();
    const out = await exec.model.step([{ tokenIds: [(i * 31) % vocab], numComputedTokens: pos++, blockTable: table, logits: 'last' }]);
    if (i >= warmup) addTimings(split, out.timings, 1 / steps);
  }
  const msPerToken = (performance.now() - t0) / steps;
  exec.kvCache.free(id);
  return { msPerToken, split };
}

export async function benchEngineCore(modelDir: string, name: string, opts: { denseAttention?: boolean; decodeContext?: number; quick?: boolean }): Promise<EngineCoreResult> {
  const exec = await createModelExecutor(modelDir, { numThreads: Number(process.env.T ?? 2), denseAttention: opts.denseAttention, kvCacheMemory: 2 * 2 ** 30, enablePrefixCaching: false });
  try {
    const decodeContext = opts.decodeContext ?? 16;
    const decode = await measureDecode(exec, decodeContext, opts.quick ? 32 : 128);
    const prefill = await measurePrefill(exec, 512, opts.quick ? 2 : 4);
    return {
      model: name,
      denseAttention: opts.denseAttention ?? false,
      weightBytesPerDecodeToken: weightBytesPerDecodeToken(exec.loaded),
      decodeContext,
      decodeTokensPerSecond: 1000 / decode.msPerToken,
      decodeMsPerToken: decode.msPerToken,
      decodeSplitMs: decode.split,
      prefillTokens: 512,
      prefillTokensPerSecond: prefill.tps,
      prefillSplitMs: prefill.split,
    };
  } finally {
    await exec.model.dispose();
  }
}
