// Single-stream measurements of our engine: prefill tokens/s of an L-token prompt and batch-1 decode
// tokens/s at a given context length (llama.cpp's, on the same weights: compare/single_stream.ts).
//
// Ours (the offline driver over EngineCore, in process: scheduler, sampler, paged caches): prefill = time
// to the first token of one prompt, chunks of 2048 tokens (the server's default --max-num-batched-tokens),
// from an empty cache; best of N for prompts <= 1024 tokens (after one untimed warm-up run), one run for
// longer ones. Decode at context c = a real prefill of c tokens, then `steps` timed greedy steps (after
// `warmup` untimed ones), wall time between step ends.
import { emptyTimings, type StepTimings } from '../src/engine/step_profiler.ts';
import { openBenchEngine, timeDecode, timePrefill } from './engine_runs.ts';
import { seededRandom } from '../tools/checkpoint/random_weights.ts';
import { weightBytesPerDecodeToken } from './engine_core.ts';

export interface SingleStreamSpec {
  readonly contexts: readonly number[];
  readonly prefillLengths: readonly number[];
  readonly decodeSteps: number;
  readonly decodeWarmup: number;
  readonly prefillReps: number;
  readonly threads: number;
  /** Prompts longer than this are timed once; default 1024. */
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
  /** 'dsa' = sparse attention through the indexer (the default); 'dense' = every key. */
  readonly attention: 'dsa' | 'dense';
  readonly label: string;
  /** EngineCore.create via the offline driver (weights + graphs). */
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

export async function oursSingleStream(
  dir: string,
  model: string,
  attention: 'dsa' | 'dense',
  spec: SingleStreamSpec,
  log: (s: string) => void = () => {},
): Promise<SingleStreamResult> {
  const maxLen = Math.max(...spec.contexts, ...spec.prefillLengths) + spec.decodeWarmup + spec.decodeSteps;
  const blockSize = 64;
  const t0 = performance.now();
  const engine = await openBenchEngine(dir, {
    numThreads: spec.threads,
    denseAttention: attention === 'dense',
    blockSize,
    numKvBlocks: Math.ceil(maxLen / blockSize) + 2,
  });
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
      const point: PrefillPoint = {
        tokens: L,
        ms: best.ms,
        tokensPerSecond: (L / best.ms) * 1000,
        method: reps > 1 ? `best of ${reps}` : 'one run',
        splitMs: best.split,
      };
      prefill.push(point);
      log(`    ${attention} prefill ${L}: ${point.tokensPerSecond.toFixed(0)} tok/s`);
    }
    const decode: DecodePoint[] = [];
    for (const c of [...spec.contexts].sort((a, b) => a - b)) {
      const d = await timeDecode(engine, randomTokens(Math.max(c, 1), vocab, 2000 + c), spec.decodeWarmup, spec.decodeSteps);
      const point: DecodePoint = { context: c, steps: spec.decodeSteps, msPerToken: d.msPerToken, tokensPerSecond: 1000 / d.msPerToken, splitMs: d.split };
      decode.push(point);
      log(`    ${attention} decode at ${c}: ${point.tokensPerSecond.toFixed(1)} tok/s`);
    }
    return {
      model,
      attention,
      label: `ours ${attention === 'dsa' ? 'DSA' : 'dense'}`,
      loadMs,
      kvBytesPerToken: engine.core.runner.storage.bytesPerToken,
      weightBytesPerDecodeToken: weightBytesPerDecodeToken(engine.core.runner.loaded),
      prefill,
      decode,
    };
  } finally {
    await engine.dispose();
  }
}
