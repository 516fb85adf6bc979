// Single-stream measurements, ours and llama.cpp's, on the same checkpoint: prefill tokens/s of an L-token
// prompt and batch-1 decode tokens/s at a given context length.
//
// Ours (the engine's model.step, in process, no scheduler): prefill = one sequence, chunks of 2048 tokens
// (the server's default --max-num-batched-tokens), from an empty cache; best of N for prompts <= 1024
// tokens (after one untimed warm-up run), one run for longer ones. Decode at context c = `steps` timed steps
// (after `warmup` untimed ones) of one token at positions c, c+1, ..., each feeding the argmax of the last
// logits; the c cached positions are NOT prefilled: the whole KV storage is filled with random values first
// (a decode step's cost does not depend on the cached values, only on their number; this saves a 16k-token
// prefill per variant).
//
// llama.cpp (node-llama-cpp, one context, one sequence): prefill <= 1024 tokens = best of N from an empty
// cache (evaluateWithoutGeneratingNewTokens; ubatch 512); the longer prefills and every decode context come
// from ONE incremental pass: the sequence is extended to each checkpoint length in ascending order (the
// extension times add up to the prefill time of that length), decoded there (warm-up + timed greedy steps,
// llama.cpp samples the argmax itself) and truncated back, so one 16k prefill serves every context.
import { emptyTimings, type StepTimings } from '../src/engine/attention/sparse_mla.ts';
import { createModelExecutor, type ModelExecutor } from '../src/engine/model_executor.ts';
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
  /** Ours: createModelExecutor (weights + graphs); llama.cpp: loadModel + createContext. */
  readonly loadMs: number;
  readonly kvBytesPerToken: number | null;
  readonly weightBytesPerDecodeToken?: number;
  readonly prefill: PrefillPoint[];
  readonly decode: DecodePoint[];
}

const CHUNK = 2048;
const LONG = 1024;

/** Seeded random token ids in [2, vocab). */
export function randomTokens(n: number, vocab: number, seed: number): number[] {
  const rng = seededRandom(seed);
  return Array.from({ length: n }, () => 2 + Math.floor(rng.uniform() * (vocab - 2)));
}

function addTimings(acc: StepTimings, t: StepTimings, scale = 1): void {
  for (const k of Object.keys(acc) as (keyof StepTimings)[]) acc[k] += t[k] * scale;
}

function argmaxRow(logits: Float32Array, row: number, vocab: number): number {
  let best = 0;
  for (let i = 1; i < vocab; i++) if (logits[row * vocab + i] > logits[row * vocab + best]) best = i;
  return best;
}

/** Fills every latent and indexer-key slot with uniform values of unit variance (xorshift32). */
function fillStorageRandom(exec: ModelExecutor): void {
  let s = 0x9e3779b9;
  const fill = (a: Float32Array): void => {
    for (let i = 0; i < a.length; i++) {
      s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
      a[i] = ((s >>> 0) / 4294967296 - 0.5) * 3.4641;
    }
  };
  for (let l = 0; l < exec.storage.numLayers; l++) {
    fill(exec.storage.latent(l));
    if (exec.storage.indexerDim !== null) fill(exec.storage.indexerKey(l));
  }
}

async function oursPrefill(exec: ModelExecutor, prompt: readonly number[]): Promise<{ ms: number; split: StepTimings }> {
  const id = `prefill-${prompt.length}`;
  exec.kvCache.allocateSlots(id, prompt.length);
  const table = exec.kvCache.getBlockTable(id);
  const split = emptyTimings();
  const t0 = performance.now();
  for (let done = 0; done < prompt.length; done += CHUNK) {
    const chunk = prompt.slice(done, done + CHUNK);
    const last = done + CHUNK >= prompt.length;
    const out = await exec.model.step([{ tokenIds: chunk, numComputedTokens: done, blockTable: table, logits: last ? 'last' : 'none' }]);
    addTimings(split, out.timings);
  }
  const ms = performance.now() - t0;
  exec.kvCache.free(id);
  return { ms, split };
}

async function oursDecode(exec: ModelExecutor, context: number, warmup: number, steps: number): Promise<DecodePoint> {
  const id = `decode-${context}`;
  const vocab = exec.loaded.config.vocabSize;
  exec.kvCache.allocateSlots(id, context + warmup + steps);
  const table = exec.kvCache.getBlockTable(id);
  const split = emptyTimings();
  let token = 2;
  let t0 = performance.now();
  for (let i = 0; i < warmup + steps; i++) {
    if (i === warmup) t0 = performance.now();
    const out = await exec.model.step([{ tokenIds: [token], numComputedTokens: context + i, blockTable: table, logits: 'last' }]);
    token = argmaxRow(out.logits, 0, vocab);
    if (i >= warmup) addTimings(split, out.timings, 1 / steps);
  }
  const msPerToken = (performance.now() - t0) / steps;
  exec.kvCache.free(id);
  return { context, steps, msPerToken, tokensPerSecond: 1000 / msPerToken, splitMs: split };
}

export async function oursSingleStream(dir: string, model: string, attention: 'dsa' | 'dense', spec: SingleStreamSpec, log: (s: string) => void = () => {}): Promise<SingleStreamResult> {
  const maxLen = Math.max(...spec.contexts, ...spec.prefillLengths) + spec.decodeWarmup + spec.decodeSteps;
  const blockSize = 64;
  const t0 = performance.now();
  const exec = await createModelExecutor(dir, {
    numThreads: spec.threads, denseAttention: attention === 'dense', blockSize, numKvBlocks: Math.ceil(maxLen / blockSize) + 2, enablePrefixCaching: false,
  });
  const loadMs = performance.now() - t0;
  try {
    fillStorageRandom(exec);
    const vocab = exec.loaded.config.vocabSize;
    const prefill: PrefillPoint[] = [];
    for (const L of [...spec.prefillLengths].sort((a, b) => a - b)) {
      const prompt = randomTokens(L, vocab, 1000 + L);
      const reps = L <= (spec.longPrefill ?? LONG) ? spec.prefillReps : 1;
      let best = { ms: Infinity, split: emptyTimings() };
      for (let r = 0; r < reps + (prefill.length === 0 ? 1 : 0); r++) {
        const res = await oursPrefill(exec, prompt);
        if ((prefill.length > 0 || r > 0) && res.ms < best.ms) best = res; // the very first run warms up
      }
      prefill.push({ tokens: L, ms: best.ms, tokensPerSecond: (L / best.ms) * 1000, method: reps > 1 ? `best of ${reps}` : 'one run', splitMs: best.split });
      log(`    ${attention} prefill ${L}: ${prefill[prefill.length - 1].tokensPerSecond.toFixed(0)} tok/s`);
    }
    const decode: DecodePoint[] = [];
    for (const c of [...spec.contexts].sort((a, b) => a - b)) {
      decode.push(await oursDecode(exec, c, spec.decodeWarmup, spec.decodeSteps));
      log(`    ${attention} decode at ${c}: ${decode[decode.length - 1].tokensPerSecond.toFixed(1)} tok/s`);
    }
    return {
      model, engine: 'ours', attention, label: `ours ${attention === 'dsa' ? 'DSA' : 'dense'}`, loadMs,
      kvBytesPerToken: exec.storage.bytesPerToken, weightBytesPerDecodeToken: weightBytesPerDecodeToken(exec.loaded), prefill, decode,
    };
  } finally {
    await exec.model.dispose();
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
