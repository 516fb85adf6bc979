// llama.cpp under the same closed-loop load as our server (see serving.ts), through node-llama-cpp's batched
// API in the bench process (no HTTP): per concurrency level one context with `concurrency` sequences (512
// cells each, F32 KV cache, 2 threads, batch 512). Each of the `concurrency` workers owns one sequence; a
// request clears it and iterates sequence.evaluate(prompt, { temperature: 0, yieldEogToken: true }) until 128
// tokens arrived (yieldEogToken = ignore_eos). node-llama-cpp queues every sequence's pending tokens and
// decodes them together in one llama_decode per event-loop cycle (batching.dispatchSchedule "nextCycle",
// "maximumParallelism"), i.e. continuous batching of prompts and decode tokens across the sequences.
// TTFT / ITL are taken from the generator's yields exactly as ours are from SSE chunks.
import { peerRuntime, type NlcContext, type NlcModel } from './peer_llama.ts';
import { runLoad, servingPrompt, type LoadSpec, type RequestTiming, type ServingLevelResult } from './serving.ts';

export interface PeerServingOptions {
  readonly levels: readonly LoadSpec[];
  readonly vocab: number;
  readonly threads: number;
  readonly kvCacheType?: 'F16' | 'F32';
  readonly flashAttention?: boolean;
  readonly log?: (s: string) => void;
}

async function request(seq: ReturnType<NlcContext['getSequence']>, prompt: number[], outputTokens: number): Promise<RequestTiming> {
  const start = performance.now();
  await seq.clearHistory();
  const times: number[] = [];
  for await (const _token of seq.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
    times.push(performance.now());
    if (times.length >= outputTokens) break;
  }
  return { start, tokenTimes: times, end: performance.now(), outputTokens: times.length };
}

export async function peerServing(gguf: string, opts: PeerServingOptions): Promise<{ loadMs: number; levels: ServingLevelResult[] }> {
  const log = opts.log ?? ((): void => {});
  const rt = await peerRuntime(opts.threads);
  rt.sink = { logs: [] };
  const t0 = performance.now();
  const model = (await rt.llama.loadModel({ modelPath: gguf, gpuLayers: 0, useMmap: true, ignoreMemorySafetyChecks: true })) as NlcModel;
  const loadMs = performance.now() - t0;
  const levels: ServingLevelResult[] = [];
  try {
    for (const spec of opts.levels) {
      const perSeq = Math.ceil((spec.promptTokens + spec.outputTokens + 1) / 256) * 256;
      const kvType = opts.kvCacheType ?? 'F32';
      const context = await model.createContext({
        contextSize: perSeq, sequences: spec.concurrency, batchSize: Math.max(512, spec.concurrency), threads: opts.threads,
        flashAttention: opts.flashAttention ?? false, ignoreMemorySafetyChecks: true, failedCreationRemedy: false,
        experimentalKvCacheKeyType: kvType, experimentalKvCacheValueType: kvType,
      });
      try {
        const seqs = Array.from({ length: Math.min(spec.concurrency, spec.numRequests) }, () => context.getSequence());
        await request(seqs[0], servingPrompt(999_999, 16, opts.vocab), 4); // warm-up
        const r = await runLoad(spec, 'llama.cpp', (i, w) => request(seqs[w], servingPrompt(i + spec.concurrency * 1000, spec.promptTokens, opts.vocab), spec.outputTokens));
        log(`    llama.cpp c=${spec.concurrency}: ${r.outputTokensPerSecond.toFixed(1)} output tok/s, TTFT p50 ${r.ttftMs.p50.toFixed(0)} ms, ITL p50/p99 ${r.itlMs.p50.toFixed(1)}/${r.itlMs.p99.toFixed(1)} ms`);
        levels.push(r);
        for (const s of seqs) s.dispose();
      } finally {
        await context.dispose();
      }
    }
  } finally {
    await model.dispose();
  }
  return { loadMs, levels };
}
