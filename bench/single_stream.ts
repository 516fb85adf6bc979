// Single-stream measurements, ours and llama.cpp's, on the same checkpoint: prefill tokens/s of an L-token
// prompt and batch-1 decode tokens/s at a given context length.
//
// Ours (the offline driver over EngineCore, in process: scheduler, sampler, paged caches): prefill = time
// to the first token of one prompt, chunks of 2048 tokens (the server's default --max-num-batched-tokens),
// from an empty cache; best of N for prompts <= 1024 tokens (after one untimed warm-up run), one run for
// longer ones. Decode at context c = a real prefill of c tokens, then `steps` timed greedy steps (after
// `warmup` untimed ones), wall time between step ends.
//
// llama.cpp (node-llama-cpp, one context, one sequence): prefill <= 1024 tokens = best of N from an empty
// cache (evaluateWithoutGeneratingNewTokens; ubatch 512); the longer prefills and every decode context come
// from ONE incremental pass: the sequence is extended to each checkpoint length in ascending order (the
// extension times add up to the prefill time of that length), decoded there (warm-up + timed greedy steps,
// llama.cpp samples the argmax itself) and truncated back, so one 16k prefill serves every context.
import { emptyTimings, type StepTimings } from '../src/engine/step_profiler.ts';
import { openBenchEngine, timeDecode, timePrefill } from './engine_runs.ts';
import { seededRandom } from '../tools/checkpoint/random_weights.ts';
import { weightBytesPerDecodeToken } from './engine_core.ts';
import type { GgufArch } from './gguf/convert_deepseek.ts';
import { PeerLlama } from './peer_llama.ts';

export interface SingleStreamSpec {
  readonly contexts: readonly number[];
  readonly prefillLengths: readonly number[];
  readonly decodeSteps: number;
  readonly decodeWarmup: number;
  readonly prefillReps: number;
  readonly threads: number;
  /** Prompts longer than this are timed once (llama.cpp: in the incremental pass); default 1024. */
  readonly longPrefill?: number;
}

export interface PrefillPoint {
  readonly tokens: number;
  readonly ms: number;
  readonly tokensPerSecond: number;
  readonly method: string;
  /** Ours: the step's time split (ms, summed over chunks). */
  readonly splitMs?: StepTimings;
}

export interface DecodePoint {
  readonly context: number;
  readonly steps: number;
  readonly msPerToken: number;
  readonly tokensPerSecond: number;
  /** Ours: mean ms per step, per part. */
  readonly splitMs?: StepTimings;
}

export interface SingleStreamResult {
  readonly model: string;
  readonly engine: 'ours' | 'llama.cpp';
  /** 'dsa' = sparse attention through the indexer (ours default, llama.cpp deepseek32); 'dense' = every key. */
  readonly attention: 'dsa' | 'dense';
  readonly label: string;
  readonly arch?: GgufArch;
  /** Ours: EngineCore.create via the offline driver (weights + graphs); llama.cpp: loadModel + createContext. */
  readonly loadMs: number;
  readonly kvBytesPerToken: number | null;
  readonly weightBytesPerDecodeToken?: number;
  readonly prefill: PrefillPoint[];
  readonly decode: DecodePoint[];
}

const LONG = 1024;

/** Seeded random token ids in [2, vocab). */
export function randomTokens(n: number, vocab: number, seed: number): number[] {
  const rng = seededRandom(seed);
  return Array.from({ length: n }, () => 2 + Math.floor(rng.uniform() * (vocab - 2)));
}

export async function oursSingleStream(dir: string, model: string, attention: 'dsa' | 'dense', spec: SingleStreamSpec, log: (s: string) => void = () => {}): Promise<SingleStreamResult> {
  const maxLen = Math.max(...spec.contexts, ...spec.prefillLengths) + spec.decodeWarmup + spec.decodeSteps;
  const blockSize = 64;
  const t0 = performance.now();
  const engine = await openBenchEngine(dir, { numThreads: spec.threads, denseAttention: attention === 'dense', blockSize, numKvBlocks: Math.ceil(maxLen / blockSize) + 2 });
  const loadMs = performance.now() - t0;
  try {
    const vocab = engine.core.config.vocabSize;
    const prefill: PrefillPoint[] = [];
    for (const L of [...spec.prefillLengths].sort((a, b) => a - b)) {
      const prompt = randomTokens(L, vocab, 1000 + L);
      const reps = L <= (spec.longPrefill ?? LONG) ? spec.prefillReps : 1;
      let best = { ms: Infinity, split: emptyTimings() };
      for (let r = 0; r < reps + (prefill.length === 0 ? 1 : 0); r++) {
        const res = await timePrefill(engine, prompt);
        if ((prefill.length > 0 || r > 0) && res.ms < best.ms) best = res; // the very first run warms up
      }
      prefill.push({ tokens: L, ms: best.ms, tokensPerSecond: (L / best.ms) * 1000, method: reps > 1 ? `best of ${reps}` : 'one run', splitMs: best.split });
      log(`    ${attention} prefill ${L}: ${prefill[prefill.length - 1].tokensPerSecond.toFixed(0)} tok/s`);
    }
    const decode: DecodePoint[] = [];
    for (const c of [...spec.contexts].sort((a, b) => a - b)) {
      const d = await timeDecode(engine, randomTokens(Math.max(c, 1), vocab, 2000 + c), spec.decodeWarmup, spec.decodeSteps);
      decode.push({ context: c, steps: spec.decodeSteps, msPerToken: d.msPerToken, tokensPerSecond: 1000 / d.msPerToken, splitMs: d.split });
      log(`    ${attention} decode at ${c}: ${decode[decode.length - 1].tokensPerSecond.toFixed(1)} tok/s`);
    }
    return {
      model, engine: 'ours', attention, label: `ours ${attention === 'dsa' ? 'DSA' : 'dense'}`, loadMs,
      kvBytesPerToken: engine.core.runner.storage.bytesPerToken, weightBytesPerDecodeToken: weightBytesPerDecodeToken(engine.core.runner.loaded), prefill, decode,
    };
  } finally {
    await engine.dispose();
  }
}

export async function peerSingleStream(
  gguf: string, vocab: number, model: string, arch: GgufArch, spec: SingleStreamSpec, log: (s: string) => void = () => {},
  options: { readonly kvCacheType?: 'F16' | 'F32'; readonly flashAttention?: boolean; readonly threads?: number; readonly labelSuffix?: string } = {},
): Promise<SingleStreamResult> {
  const threads = options.threads ?? spec.threads;
  const maxLen = Math.max(...spec.contexts, ...spec.prefillLengths) + spec.decodeWarmup + spec.decodeSteps;
  const peer = await PeerLlama.load(gguf, vocab, {
    threads, contextSize: Math.ceil((maxLen + 64) / 256) * 256, batchSize: 512,
    kvCacheType: options.kvCacheType ?? 'F32', flashAttention: options.flashAttention ?? false,
  });
  const attention = arch === 'deepseek32' ? 'dsa' : 'dense';
  try {
    const prefill: PrefillPoint[] = [];
    const long = spec.longPrefill ?? LONG;
    for (const L of spec.prefillLengths.filter((l) => l <= long).sort((a, b) => a - b)) {
      const prompt = randomTokens(L, vocab, 1000 + L);
      let best = Infinity;
      for (let r = 0; r < spec.prefillReps + (prefill.length === 0 ? 1 : 0); r++) {
        const { ms } = await peer.timePrefill(prompt);
        if ((prefill.length > 0 || r > 0) && ms < best) best = ms;
      }
      prefill.push({ tokens: L, ms: best, tokensPerSecond: (L / best) * 1000, method: `best of ${spec.prefillReps}` });
      log(`    llama.cpp ${arch} prefill ${L}: ${prefill[prefill.length - 1].tokensPerSecond.toFixed(0)} tok/s`);
    }
    // one incremental pass for long prefills and all decode contexts
    const longPrefills = spec.prefillLengths.filter((l) => l > long);
    const checkpoints = [...new Set([...spec.contexts, ...longPrefills])].sort((a, b) => a - b);
    const prompt = randomTokens(checkpoints[checkpoints.length - 1], vocab, 4242);
    await peer.clear();
    let cur = 0;
    let cumMs = 0;
    const decode: DecodePoint[] = [];
    for (const c of checkpoints) {
      if (c > cur) {
        cumMs += await peer.extend(prompt.slice(cur, c));
        cur = c;
      }
      if (longPrefills.includes(c)) {
        prefill.push({ tokens: c, ms: cumMs, tokensPerSecond: (c / cumMs) * 1000, method: 'one incremental pass (ubatch 512)' });
        log(`    llama.cpp ${arch} prefill ${c}: ${prefill[prefill.length - 1].tokensPerSecond.toFixed(0)} tok/s`);
      }
      if (spec.contexts.includes(c)) {
        const warm = await peer.decodeSteps(spec.decodeWarmup, 2);
        const timed = await peer.decodeSteps(spec.decodeSteps, warm.generated[warm.generated.length - 1] ?? 2);
        const msPerToken = timed.ms / spec.decodeSteps;
        decode.push({ context: c, steps: spec.decodeSteps, msPerToken, tokensPerSecond: 1000 / msPerToken });
        log(`    llama.cpp ${arch} decode at ${c}: ${(1000 / msPerToken).toFixed(1)} tok/s`);
        await peer.truncate(c);
        if (peer.length !== c) throw new Error(`llama.cpp: truncating to ${c} left ${peer.length} tokens`);
      }
    }
    prefill.sort((a, b) => a.tokens - b.tokens);
    return {
      model, engine: 'llama.cpp', attention, arch, label: `llama.cpp ${arch}${arch === 'deepseek2' ? ' (dense)' : ''}${options.labelSuffix ?? ''}`,
      loadMs: peer.loadMs, kvBytesPerToken: peer.kvCache?.bytesPerToken ?? null, prefill, decode,
    };
  } finally {
    await peer.dispose();
  }
}
