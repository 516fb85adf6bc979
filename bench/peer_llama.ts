// The benchmark's peer engine: llama.cpp through node-llama-cpp, loaded from bench/peer/ (its own package,
// installed only by the bench: bench/peer/install.sh). Nothing here is imported statically from
// node-llama-cpp, so the project type-checks and its tests run without the peer installed.
//
// What it offers: load a GGUF on the CPU with a fixed thread count, next-token log-probabilities for given
// token ids (the peer's softmax of its raw logits, so they compare with our logits up to a constant), timed
// prefill and batch-1 decode, and the KV cache size llama.cpp reports when it creates a context.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const PEER_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'peer');
const ENTRY = path.join(PEER_DIR, 'node_modules', 'node-llama-cpp', 'dist', 'index.js');
const BINARY_DIR = path.join(PEER_DIR, 'node_modules', '@node-llama-cpp', 'linux-x64', 'bins', 'linux-x64');

/** Why the peer cannot be used here, or null when it is installed (checked without loading it). */
export function peerUnavailableReason(): string | null {
  if (process.platform !== 'linux' || process.arch !== 'x64')
    return `the peer's prebuilt binary is linux-x64 only (this is ${process.platform}-${process.arch})`;
  if (!existsSync(ENTRY)) return 'node-llama-cpp is not installed in bench/peer (run bench/peer/install.sh)';
  if (!existsSync(path.join(BINARY_DIR, 'llama-addon.node'))) return '@node-llama-cpp/linux-x64 (the prebuilt llama.cpp binary) is not installed in bench/peer';
  return null;
}

/**
 * Installs the peer into bench/peer/node_modules (bench/peer/install.sh: `npm ci` from the lockfile with
 * scripts and optional GPU packages off; a no-op when already installed). Returns the reason when it fails.
 */
export function installPeer(options: { readonly quiet?: boolean } = {}): { ok: true } | { ok: false; reason: string } {
  const res = spawnSync('bash', [path.join(PEER_DIR, 'install.sh')], {
    stdio: options.quiet ? 'pipe' : 'inherit',
    env: { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true' },
    encoding: 'utf8',
  });
  if (res.status === 0 && peerUnavailableReason() === null) return { ok: true };
  const detail = res.error ? String(res.error) : `${res.stderr ?? ''}`.trim().split('\n').slice(-3).join(' ');
  return { ok: false, reason: `bench/peer/install.sh failed (exit ${String(res.status)}): ${detail || peerUnavailableReason() || 'unknown'}` };
}

/** Installed versions: node-llama-cpp and the llama.cpp release its binary was built from. */
export function peerVersions(): { nodeLlamaCpp: string; binary: string; llamaCppRelease: string } | null {
  if (peerUnavailableReason() !== null) return null;
  const pkg = (p: string): { version: string } => JSON.parse(readFileSync(p, 'utf8')) as { version: string };
  const meta = JSON.parse(readFileSync(path.join(BINARY_DIR, '_nlcBuildMetadata.json'), 'utf8')) as { buildOptions: { llamaCpp: { release: string } } };
  return {
    nodeLlamaCpp: pkg(path.join(PEER_DIR, 'node_modules', 'node-llama-cpp', 'package.json')).version,
    binary: pkg(path.join(PEER_DIR, 'node_modules', '@node-llama-cpp', 'linux-x64', 'package.json')).version,
    llamaCppRelease: meta.buildOptions.llamaCpp.release,
  };
}

// ---- the slice of node-llama-cpp's API used here (structural, so no compile-time dependency) ----
export type Token = number;
type ControlledInput = Token | [Token, { generateNext?: { probabilities?: boolean; token?: boolean } }];
interface ControlledOutput {
  next: { token?: Token | null; probabilities?: Map<Token, number> };
}
export interface NlcSequence {
  controlledEvaluate(input: ControlledInput[]): Promise<(ControlledOutput | undefined)[]>;
  evaluateWithoutGeneratingNewTokens(tokens: Token[]): Promise<void>;
  clearHistory(): Promise<void>;
  eraseContextTokenRanges(ranges: { start: number; end: number }[]): Promise<void>;
  evaluate(tokens: Token[], options?: Record<string, unknown>): AsyncGenerator<Token, void, void | Token | Token[]>;
  readonly nextTokenIndex: number;
  dispose(): void;
}
export interface NlcContext {
  getSequence(): NlcSequence;
  dispose(): Promise<void>;
  readonly contextSize: number;
  readonly batchSize: number;
}
export interface NlcModel {
  createContext(options: Record<string, unknown>): Promise<NlcContext>;
  dispose(): Promise<void>;
  readonly trainContextSize: number;
  readonly fileInfo: { metadata: { general: { architecture: string } } };
}
interface NlcLlama {
  loadModel(options: Record<string, unknown>): Promise<NlcModel>;
  dispose(): Promise<void>;
  readonly gpu: string | false;
  readonly buildType: string;
  readonly cpuMathCores: number;
  readonly llamaCppRelease: { repo: string; release: string };
}
interface NlcModule {
  getLlama(options: Record<string, unknown>): Promise<NlcLlama>;
}

let modulePromise: Promise<NlcModule> | null = null;

/** Imports node-llama-cpp from bench/peer (throws with the reason when it is not installed). */
export function importNodeLlamaCpp(): Promise<NlcModule> {
  const reason = peerUnavailableReason();
  if (reason !== null) return Promise.reject(new Error(reason));
  // the install is offline-only: never let node-llama-cpp try to download or build llama.cpp
  process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = 'true';
  modulePromise ??= import(pathToFileURL(ENTRY).href) as Promise<NlcModule>;
  return modulePromise;
}

/** Whether llama.cpp mmaps its GGUF unless told otherwise (its own default; measured: no speed difference here). */
export const PEER_USE_MMAP = true;

export interface PeerOptions {
  /** CPU threads for llama.cpp (default 2). */
  readonly threads?: number;
  /** KV cache cells (default 1024). */
  readonly contextSize?: number;
  /** Logical / micro batch size in tokens (default 512). */
  readonly batchSize?: number;
  /** KV cache element type (default F16, llama.cpp's default). */
  readonly kvCacheType?: 'F16' | 'F32';
  /** llama.cpp flash attention (default false). */
  readonly flashAttention?: boolean;
  /** mmap the GGUF (default PEER_USE_MMAP). */
  readonly useMmap?: boolean;
  /** Forward llama.cpp's log lines (warn and up are always kept in `logs`). */
  readonly onLog?: (level: string, message: string) => void;
}

export interface KvCacheReport {
  /** Cells (token slots) of the context's caches. */
  readonly cells: number;
  /** One entry per cache llama.cpp created (deepseek32: the MLA latent cache, then the indexer key cache). */
  readonly caches: readonly { readonly mib: number; readonly kMib: number; readonly vMib: number; readonly layers: number; readonly type: string }[];
  /** Sum over caches of reported MiB * 2^20 / cells. */
  readonly bytesPerToken: number;
  /** llama.cpp prints MiB with two decimals: +- this many bytes per token (0.005 MiB per cache / cells). */
  readonly bytesPerTokenUncertainty: number;
}

export interface TimedRun {
  readonly tokens: number;
  readonly ms: number;
  readonly tokensPerSecond: number;
}

const KV_LINE = /llama_kv_cache: size =\s*([\d.]+) MiB \(\s*(\d+) cells,\s*(\d+) layers,.*K \((\w+)\):\s*([\d.]+) MiB, V \((\w+)\):\s*([\d.]+) MiB/;

/** Parses llama.cpp's "llama_kv_cache: size = ..." lines (one per cache). */
export function parseKvCacheLines(log: string): KvCacheReport | null {
  const caches: { mib: number; kMib: number; vMib: number; layers: number; type: string; cells: number }[] = [];
  for (const line of log.split('\n')) {
    const m = KV_LINE.exec(line);
    if (m) caches.push({ mib: Number(m[1]), cells: Number(m[2]), layers: Number(m[3]), type: m[4]!, kMib: Number(m[5]), vMib: Number(m[7]) });
  }
  if (caches.length === 0) return null;
  const cells = caches[0]!.cells;
  return {
    cells,
    caches: caches.map(({ cells: _cells, ...rest }) => rest),
    bytesPerToken: caches.reduce((s, c) => s + (c.mib * 2 ** 20) / c.cells, 0),
    bytesPerTokenUncertainty: caches.reduce((s, c) => s + (0.005 * 2 ** 20) / c.cells, 0),
  };
}

/**
 * The KV bytes per token llama.cpp's deepseek2 / deepseek32 allocate: per layer the MLA latent row
 * (kv_lora_rank + qk_rope_head_dim; no separate V) plus, for deepseek32, the indexer key (index_head_dim).
 */
export function expectedPeerKvBytesPerToken(
  c: { numHiddenLayers: number; kvLoraRank: number; qkRopeHeadDim: number; indexer: { headDim: number } | null },
  arch: 'deepseek2' | 'deepseek32',
  kvCacheType: 'F16' | 'F32',
): number {
  const elem = kvCacheType === 'F32' ? 4 : 2;
  const perLayer = c.kvLoraRank + c.qkRopeHeadDim + (arch === 'deepseek32' && c.indexer ? c.indexer.headDim : 0);
  return c.numHiddenLayers * perLayer * elem;
}

/** Log-softmax of float logits (float64 result). */
export function logSoftmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i]! - lse;
  return out;
}

/** Indices of the k largest values, largest first (ties: lower index first). */
export function topK(values: ArrayLike<number>, k: number): number[] {
  const idx = Array.from({ length: values.length }, (_, i) => i);
  idx.sort((a, b) => values[b]! - values[a]! || a - b);
  return idx.slice(0, k);
}

export interface Runtime {
  readonly llama: NlcLlama;
  /** Where llama.cpp's log lines currently go (the most recently loaded PeerLlama). */
  sink: { logs: string[]; onLog?: (level: string, message: string) => void };
  threads: number;
}

let runtimePromise: Promise<Runtime> | null = null;

/**
 * One llama.cpp runtime per process (the native addon and its log callback are process-wide), CPU only,
 * prebuilt binary only: it never downloads or builds.
 */
async function runtime(threads: number): Promise<Runtime> {
  runtimePromise ??= (async () => {
    const nlc = await importNodeLlamaCpp();
    const rt: { llama?: NlcLlama; sink: Runtime['sink']; threads: number } = { sink: { logs: [] }, threads };
    rt.llama = await nlc.getLlama({
      gpu: false,
      build: 'never',
      usePrebuiltBinaries: true,
      skipDownload: true,
      progressLogs: false,
      maxThreads: Math.max(threads, 2),
      logLevel: 'info',
      logger: (level: string, message: string) => {
        rt.sink.logs.push(message);
        rt.sink.onLog?.(level, message);
      },
    });
    return rt as Runtime;
  })();
  const rt = await runtimePromise;
  if (threads > rt.threads) throw new Error(`the peer runtime was created for ${rt.threads} threads`);
  return rt;
}

/** The process-wide llama.cpp runtime (created on first use; see runtime()), for callers that manage their own contexts. */
export function peerRuntime(threads = 2): Promise<Runtime> {
  return runtime(threads);
}

/** Disposes the process-wide llama.cpp runtime (optional: node-llama-cpp also does it at exit). */
export async function disposePeerRuntime(): Promise<void> {
  const p = runtimePromise;
  runtimePromise = null;
  if (p) await (await p).llama.dispose();
}

/** Waits until llama.cpp's (asynchronously delivered) log lines contain `pattern` after index `from`. */
async function waitForLog(logs: readonly string[], from: number, pattern: RegExp, timeoutMs = 3000): Promise<boolean> {
  const t0 = performance.now();
  for (;;) {
    for (let i = from; i < logs.length; i++) if (pattern.test(logs[i]!)) return true;
    if (performance.now() - t0 > timeoutMs) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** One loaded GGUF model with one context/sequence, evaluated on the CPU. */
export class PeerLlama {
  private constructor(
    private readonly model: NlcModel,
    private readonly context: NlcContext,
    private readonly sequence: NlcSequence,
    readonly vocabSize: number,
    readonly kvCache: KvCacheReport | null,
    readonly info: {
      readonly architecture: string;
      readonly gpu: string | false;
      readonly buildType: string;
      readonly llamaCppRelease: string;
      readonly threads: number;
    },
    /** llama.cpp's log lines (info and up) from loading this model and creating its context. */
    readonly logs: string[],
    /** Milliseconds of loadModel + createContext (the runtime already up). */
    readonly loadMs: number,
  ) {}

  static async load(ggufPath: string, vocabSize: number, options: PeerOptions = {}): Promise<PeerLlama> {
    const threads = options.threads ?? 2;
    const rt = await runtime(threads);
    const logs: string[] = [];
    rt.sink = { logs, onLog: options.onLog };
    const t0 = performance.now();
    const model = await rt.llama.loadModel({ modelPath: ggufPath, gpuLayers: 0, useMmap: options.useMmap ?? PEER_USE_MMAP, ignoreMemorySafetyChecks: true });
    try {
      const kvType = options.kvCacheType ?? 'F16';
      const logStart = logs.length;
      const context = await model.createContext({
        contextSize: options.contextSize ?? 1024,
        batchSize: options.batchSize ?? 512,
        threads,
        sequences: 1,
        flashAttention: options.flashAttention ?? false,
        ignoreMemorySafetyChecks: true,
        experimentalKvCacheKeyType: kvType,
        experimentalKvCacheValueType: kvType,
        failedCreationRemedy: false,
      });
      const loadMs = performance.now() - t0;
      await waitForLog(logs, logStart, /sched_reserve: .*reserve took|sched_reserve: graph splits/);
      const kvCache = parseKvCacheLines(logs.slice(logStart).join('\n'));
      const info = {
        architecture: model.fileInfo.metadata.general.architecture,
        gpu: rt.llama.gpu,
        buildType: rt.llama.buildType,
        llamaCppRelease: rt.llama.llamaCppRelease.release,
        threads,
      };
      return new PeerLlama(model, context, context.getSequence(), vocabSize, kvCache, info, logs, loadMs);
    } catch (err) {
      await model.dispose();
      throw err;
    }
  }

  /** Log-probabilities of the token following `tokenIds` (evaluated from an empty cache). */
  async nextTokenLogprobs(tokenIds: readonly number[]): Promise<Float64Array> {
    if (tokenIds.length === 0) throw new Error('need at least one token');
    if (tokenIds.length > this.context.contextSize) throw new Error(`${tokenIds.length} tokens exceed the context size ${this.context.contextSize}`);
    await this.sequence.clearHistory();
    const input: ControlledInput[] = tokenIds.map((t, i) => (i === tokenIds.length - 1 ? [t, { generateNext: { probabilities: true } }] : t));
    const out = await this.sequence.controlledEvaluate(input);
    const probs = out[tokenIds.length - 1]?.next.probabilities;
    if (!probs) throw new Error('llama.cpp returned no probabilities');
    const lp = new Float64Array(this.vocabSize).fill(-Infinity);
    for (const [token, p] of probs) if (token < this.vocabSize) lp[token] = Math.log(p);
    return lp;
  }

  /** Evaluates `tokenIds` from an empty cache and times it (prefill). */
  async timePrefill(tokenIds: readonly number[]): Promise<TimedRun> {
    await this.sequence.clearHistory();
    const t0 = performance.now();
    await this.sequence.evaluateWithoutGeneratingNewTokens([...tokenIds]);
    const ms = performance.now() - t0;
    return { tokens: tokenIds.length, ms, tokensPerSecond: (tokenIds.length / ms) * 1000 };
  }

  /**
   * Batch-1 greedy decode of `steps` tokens after `contextIds`: all but the last context token are prefilled
   * untimed, then each timed step evaluates one token (the last context token, then each generated one) and
   * samples the next greedily. With an empty context the first step feeds `firstToken`.
   */
  async timeDecode(contextIds: readonly number[], steps: number, firstToken = 2): Promise<TimedRun & { readonly generated: number[] }> {
    await this.sequence.clearHistory();
    if (contextIds.length > 1) await this.sequence.evaluateWithoutGeneratingNewTokens(contextIds.slice(0, -1));
    const { ms, generated } = await this.decodeSteps(steps, contextIds.length > 0 ? contextIds[contextIds.length - 1]! : firstToken);
    return { tokens: steps, ms, tokensPerSecond: (steps / ms) * 1000, generated };
  }

  /** Tokens currently in the sequence's cache. */
  get length(): number {
    return this.sequence.nextTokenIndex;
  }

  /** Empties the sequence's cache. */
  async clear(): Promise<void> {
    await this.sequence.clearHistory();
  }

  /** Appends `tokenIds` to the sequence without sampling (a prefill continuation); returns the milliseconds it took. */
  async extend(tokenIds: readonly number[]): Promise<number> {
    const t0 = performance.now();
    await this.sequence.evaluateWithoutGeneratingNewTokens([...tokenIds]);
    return performance.now() - t0;
  }

  /**
   * `steps` greedy decode steps on top of the current cache: the first feeds `firstToken`, each later one the
   * token sampled before it (the last sampled token is not fed). Returns the total milliseconds.
   */
  async decodeSteps(steps: number, firstToken: number): Promise<{ ms: number; generated: number[] }> {
    const generated: number[] = [];
    let next = firstToken;
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) {
      const out = await this.sequence.controlledEvaluate([[next, { generateNext: { token: true } }]]);
      const token = out[0]?.next.token;
      if (token === undefined || token === null) throw new Error('llama.cpp generated no token');
      generated.push(token);
      next = token;
    }
    return { ms: performance.now() - t0, generated };
  }

  /** Drops every cached token from position `length` on. */
  async truncate(length: number): Promise<void> {
    const end = this.sequence.nextTokenIndex;
    if (end > length) await this.sequence.eraseContextTokenRanges([{ start: length, end }]);
  }

  /** Frees the context and the model (the process-wide runtime stays; see disposePeerRuntime). */
  async dispose(): Promise<void> {
    this.sequence.dispose();
    await this.context.dispose();
    await this.model.dispose();
  }
}
