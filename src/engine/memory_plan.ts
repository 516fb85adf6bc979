// The memory plan: what a model will hold resident at a quantisation mode, computed from config.json
// (the weight manifest) before any tensor is read, against the machine's memory. A plan that does not
// fit is refused at start-up with one message giving the numbers and the settings that would fit,
// instead of an OOM kill half-way through loading. It is an upper bound built from measured parts:
//
//   total = runtime + weights (as ORT holds them at the mode) + malloc slack + KV cache
//           + max(load transient, activations)
// where the load transient is what loading holds on top of the sessions' weights (groups of weights in
// JS, the ModelProto of the graph being compiled, the quantising threads' malloc arenas) and the
// activations are those of one step at the token budget; the two never coexist (loading ends before
// the first step). Float32 is the unquantised resident format. Each part is named in the log line.
import { EngineError } from '../common/errors.ts';
import { formatGiB, machineMemory, type MachineMemory } from '../common/machine_memory.ts';
import { mtpManifest, numel, weightManifest, type WeightSpec } from './checkpoint/manifest.ts';
import type { ModelConfig } from './checkpoint/types.ts';
import { kBlocks, QUANT_BLOCK, quantizedBytes } from './quant/block_quant.ts';
import { QUANTIZATION_MODES, quantBits, type QuantizationMode } from './quant/quant_mode.ts';

/**
 * Bytes ORT holds per block of 32 weights once a MatMulNBits session is created (accuracy level 4):
 * the prepacked codes plus a float32 block sum for the int8 kernels, plus the scales initializer, which
 * ORT keeps (its PrePack reports scales as not packed). The raw codes initializer is released.
 * Measured with bench/ort_memory.ts ([8192, 8192] and [16384, 8192] weights): resident 1.2x the
 * 20-byte int4 blocks and 1.11x the 36-byte int8 blocks; float32 weights 1.0x (no raw + prepacked duplicate).
 * Confirmed on a 4-layer cut of bench-lite with malloc slack removed (bench/lite_memory.ts, see
 * MALLOC_SLACK_FRACTION): 1557 MiB held once ready for 1464 MiB counted here plus the runtime.
 */
export const ORT_BYTES_PER_BLOCK = { 4: 24, 8: 40 } as const;
/**
 * glibc malloc's slack on top of what ORT holds, as a fraction of it. Session creation allocates ORT's
 * parse of the ModelProto, the raw initializers and their prepacked copies from the main arena,
 * interleaved; the raw copies are freed, but their holes are smaller than the next graph's packed
 * buffers, so the heap grows faster than what is live (glibc's dynamic mmap threshold has risen to
 * 32 MiB by then, so these 1-2 MB buffers never get their own mappings). Measured with
 * bench/lite_memory.ts on bench-lite int4 from the cache: the main arena ([heap] in /proc/self/smaps)
 * held 14079 MiB once ready for 11095 MiB of ORT-held weights: 0.27. With 2 MiB pages
 * (GLIBC_TUNABLES=glibc.malloc.hugetlb=1, which npm start and the Docker image set: common/huge_pages.ts)
 * those holes are resident too: the same load peaked at 18.60 GiB instead of 15.22 (bench/quant_load.ts,
 * both loaded runs), 3.97 GiB above every other part of the plan: 0.36 of the sessions' weights, rounded
 * up to 0.45, which covers both page sizes. A fixed threshold (glibc.malloc.mmap_threshold=1048576)
 * removes the slack (4-layer cut: 2257 vs 2863 MiB ready) but cost a third of prefill speed: not used.
 */
export const MALLOC_SLACK_FRACTION = 0.45;
/**
 * Per loader thread that quantises (quant/group_pool.ts): its own glibc arena keeps the row-chunk
 * buffers it freed. Measured with bench/lite_memory.ts (4-layer bench-lite cut, int4 from BF16, 2
 * threads): thread arenas peaked at 986 MiB, 404 MiB still held once ready. Counted whenever a pool
 * loads quantised weights, since the plan is made before the cache is known to be current.
 */
export const QUANTISER_ARENA_BYTES = 512 * 2 ** 20;
/** Node.js, V8 heap, ORT's libraries and thread pools, tokenizer: measured ~150 MiB idle; rounded up. */
export const RUNTIME_BASE_BYTES = 256 * 2 ** 20;
/** A fraction of the machine kept free for the OS, page cache and other processes. */
export const HEADROOM_FRACTION = 0.08;

/**
 * Resident bytes of one tensor at `mode`: linear weights as ORT holds them quantised, the embedding as
 * float16 rows (a JS-side table, see quant/weight_stream.ts), the rest float32.
 */
export function residentBytes(spec: WeightSpec, mode: QuantizationMode): number {
  const bits = quantBits(mode);
  if (bits === null || spec.shape.length !== 2) return numel(spec) * 4;
  const [rows, cols] = spec.shape;
  if (spec.role === 'linear') return rows * kBlocks(cols) * ORT_BYTES_PER_BLOCK[bits];
  if (spec.role === 'embedding') return rows * cols * 2;
  return numel(spec) * 4;
}

/** Bytes of one tensor as the loader hands it over in JS (and as a ModelProto carries it): codes + float32 scales. */
export function rawBytes(spec: WeightSpec, mode: QuantizationMode): number {
  const bits = quantBits(mode);
  if (bits === null || spec.shape.length !== 2) return numel(spec) * 4;
  const [rows, cols] = spec.shape;
  if (spec.role === 'linear') return quantizedBytes(rows, cols, bits);
  if (spec.role === 'embedding') return rows * cols * 2;
  return numel(spec) * 4;
}

export interface WeightBytes {
  /** As ORT holds them (plus the JS-side embedding table). */
  readonly total: number;
  /** Of total, what ORT sessions hold (every graph initializer): what malloc slack applies to. */
  readonly inSessions: number;
  /** Raw bytes of the largest single graph (a layer's routed experts, a layer's dense part, or lm_head): its ModelProto. */
  readonly largestGraphRaw: number;
  /** Raw bytes of the largest load group (a whole layer, the embedding, or norm + lm_head), as JS holds it. */
  readonly largestGroupRaw: number;
  readonly numParameters: number;
}

/** Which graph a tensor ends up in: its layer's routed experts, the rest of its layer, or a model-level graph. */
function graphOf(name: string): string {
  const layer = /^model\.layers\.(\d+)\./.exec(name);
  if (layer === null) return name;
  return name.includes('.mlp.experts.') ? `experts ${layer[1]}` : `layer ${layer[1]}`;
}

/** Which load group (quant/weight_stream.ts) a tensor arrives in: its layer, the embedding, or the head. */
function groupOf(name: string): string {
  const layer = /^model\.layers\.(\d+)\./.exec(name);
  return layer === null ? (name === 'model.embed_tokens.weight' ? 'embed' : 'head') : `layer ${layer[1]}`;
}

/** The main model's tensors, plus MTP modules 0 .. numMtpModules - 1 (loaded only with speculative decoding). */
function loadedManifest(config: ModelConfig, numMtpModules: number): WeightSpec[] {
  return [...weightManifest(config), ...Array.from({ length: numMtpModules }, (_, i) => mtpManifest(config, i)).flat()];
}

function add(m: Map<string, number>, key: string, bytes: number): void {
  m.set(key, (m.get(key) ?? 0) + bytes);
}

/** A routed expert's weight in a decoder layer of the main model (the MTP modules' are model.layers.N too, N >= numHiddenLayers). */
function isMainRoutedExpert(config: ModelConfig, name: string): boolean {
  const m = /^model\.layers\.(\d+)\.mlp\.experts\./.exec(name);
  return m !== null && Number(m[1]) < config.numHiddenLayers;
}

/**
 * nativeRoutedExperts: the main model's routed experts live only in the native kernels' copies (quantised
 * with the native kernels: deepseek_model.ts createLayerSessions builds no ONNX Runtime graph for them).
 */
export function weightBytes(config: ModelConfig, mode: QuantizationMode, numMtpModules = 0, nativeRoutedExperts = false): WeightBytes {
  const byGraph = new Map<string, number>();
  const byGroup = new Map<string, number>();
  let total = 0;
  let inSessions = 0;
  let numParameters = 0;
  for (const spec of loadedManifest(config, numMtpModules)) {
    numParameters += numel(spec);
    add(byGroup, groupOf(spec.name), rawBytes(spec, mode));
    if (nativeRoutedExperts && isMainRoutedExpert(config, spec.name)) continue;
    const bytes = residentBytes(spec, mode);
    total += bytes;
    // The embedding is a JS-side table, never a graph initializer.
    if (spec.role === 'embedding') continue;
    inSessions += bytes;
    add(byGraph, graphOf(spec.name), rawBytes(spec, mode));
  }
  const max = (m: Map<string, number>): number => Math.max(0, ...m.values());
  return { total, inSessions, largestGraphRaw: max(byGraph), largestGroupRaw: max(byGroup), numParameters };
}

/** Weight bytes one decode token reads at `mode`: everything but the embedding table (one row) and the experts not picked. */
export function decodeWeightBytes(config: ModelConfig, mode: QuantizationMode): number {
  const k = config.moe?.numExpertsPerTok ?? 0;
  let bytes = 0;
  for (const spec of weightManifest(config)) {
    const expert = /\.mlp\.experts\.(\d+)\./.exec(spec.name);
    if (expert !== null && Number(expert[1]) >= k) continue; // k experts' worth
    bytes += spec.role === 'embedding' ? residentBytes(spec, mode) / spec.shape[0] : residentBytes(spec, mode);
  }
  return bytes;
}

export interface MemoryPlanInput {
  readonly config: ModelConfig;
  readonly quantization: QuantizationMode;
  /** Bytes of the KV cache (the --kv-cache-memory budget, or --num-kv-blocks x bytes per block). */
  readonly kvCacheBytes: number;
  /** Step token budget: sizes the activations of one step (and its logits rows, for prompt logprobs). */
  readonly maxNumBatchedTokens: number;
  /** Largest attention score tensor of one run (elements). */
  readonly maxAttentionScoreElements: number;
  /** MTP modules loaded (1 with --speculative-config, else 0; the KV cache bytes include their cache layer). */
  readonly numMtpModules?: number;
  /** Worker threads a quantised load reads ahead with (model_loader.ts; 0 = in this thread). Unquantised loads use none. */
  readonly loaderThreads?: number;
  /**
   * The native kernels will run the decoder layers (--native-kernels not off, the kernels built, and for
   * quantised weights MatMulNBits' accuracy level 4): the layers keep a copy of their weights for them (JS
   * float32, or quantised in C), and quantised routed experts live only there.
   */
  readonly nativeKernels?: boolean;
}

/** What loading holds on top of the sessions' weights, at its worst moment. */
export interface LoadTransient {
  /** Groups held in JS: one read ahead per loader thread, the one being compiled, the previous one until V8 collects it. */
  readonly groups: number;
  readonly groupBytes: number;
  /** The ModelProto of the largest graph, while ORT parses it. */
  readonly modelProto: number;
  /** malloc arenas of the quantising threads (QUANTISER_ARENA_BYTES each). */
  readonly quantiserArenas: number;
  readonly total: number;
}

export interface MemoryPlan {
  readonly quantization: QuantizationMode;
  readonly weights: number;
  /** The native decode layers' copies of the decoder layers' weights and lm_head (0 when off). */
  readonly nativeWeights: number;
  /** glibc's slack on the memory the sessions hold (MALLOC_SLACK_FRACTION). */
  readonly mallocSlack: number;
  readonly kvCache: number;
  /** Node, V8, ORT libraries and thread pools. */
  readonly runtimeBase: number;
  readonly activations: number;
  readonly load: LoadTransient;
  readonly total: number;
  readonly machine: MachineMemory;
  /** total may use at most this much: the machine minus HEADROOM_FRACTION. */
  readonly usable: number;
  readonly fits: boolean;
}

/**
 * Float32 activations of one step, an upper bound: per token the residual stream, norms and projections
 * of a layer (~8 x hidden), the MLP or the routed experts' rows (3 x intermediate per chosen expert and
 * shared expert), attention queries and outputs (2 x heads x latent), and a logits row (every row may
 * return logits with prompt_logprobs); plus the attention scores of one run (scores, masked, softmax).
 * Sessions run one at a time, so one layer's worth counts.
 */
export function activationBytes(c: ModelConfig, maxNumBatchedTokens: number, maxAttentionScoreElements: number): number {
  const m = c.moe;
  const mlpWidth = Math.max(c.intermediateSize, m ? m.moeIntermediateSize * (m.numExpertsPerTok + m.nSharedExperts) : 0);
  const perToken = 8 * c.hiddenSize + 3 * mlpWidth + 2 * c.numAttentionHeads * (c.kvLoraRank + c.qkRopeHeadDim) + c.vocabSize;
  return 4 * (maxNumBatchedTokens * perToken + 3 * maxAttentionScoreElements);
}

export function loadTransient(w: WeightBytes, loaderThreads: number): LoadTransient {
  const groups = loaderThreads + 2;
  const groupBytes = w.largestGroupRaw;
  const quantiserArenas = loaderThreads * QUANTISER_ARENA_BYTES;
  return { groups, groupBytes, modelProto: w.largestGraphRaw, quantiserArenas, total: groups * groupBytes + w.largestGraphRaw + quantiserArenas };
}

export function planMemory(input: MemoryPlanInput, machine: MachineMemory = machineMemory()): MemoryPlan {
  const w = weightBytes(input.config, input.quantization, input.numMtpModules ?? 0, (input.nativeKernels ?? false) && input.quantization !== 'none');
  const activations = activationBytes(input.config, input.maxNumBatchedTokens, input.maxAttentionScoreElements);
  const load = loadTransient(w, input.quantization === 'none' ? 0 : (input.loaderThreads ?? 0));
  const mallocSlack = Math.ceil(w.inSessions * MALLOC_SLACK_FRACTION);
  const nativeWeights = input.nativeKernels ? nativeLayerBytes(input.config, input.quantization) : 0;
  const total = RUNTIME_BASE_BYTES + w.total + nativeWeights + mallocSlack + input.kvCacheBytes + Math.max(load.total, activations);
  const usable = Math.floor(machine.bytes * (1 - HEADROOM_FRACTION));
  return {
    quantization: input.quantization,
    weights: w.total,
    nativeWeights,
    mallocSlack,
    kvCache: input.kvCacheBytes,
    runtimeBase: RUNTIME_BASE_BYTES,
    activations,
    load,
    total,
    machine,
    usable,
    fits: total <= usable,
  };
}

/**
 * Bytes of the copies native_decode_layer.ts and the native lm_head hold of the main model's decoder layers
 * and head: float32 arrays, or quantised linear weights in the kernels' panels (src/native/quant_gemm.h:
 * codes + a float16 scale per block of 32, as block_quant.ts snaps every scale float16 holds; a weight with
 * a scale outside float16's range keeps float32 ones, 2 bytes per block more, which the per-layer load
 * guard covers; panels of 16 rows pad under 1% at the shapes we serve). Norms and router gates are small.
 */
function nativeLayerBytes(config: ModelConfig, mode: QuantizationMode): number {
  const bits = quantBits(mode);
  return weightManifest(config)
    .filter((spec) => spec.name.startsWith('model.layers.') || spec.name === 'lm_head.weight' || spec.name === 'model.norm.weight')
    .reduce((n, spec) => {
      if (bits === null) return n + 4 * numel(spec);
      if (spec.role !== 'linear' || spec.shape.length !== 2) return n;
      const [rows, cols] = spec.shape;
      return n + rows * kBlocks(cols) * ((QUANT_BLOCK * bits) / 8 + 2);
    }, 0);
}

function describeLoad(l: LoadTransient): string {
  const arenas = l.quantiserArenas > 0 ? ` + quantiser arenas ${formatGiB(l.quantiserArenas)}` : '';
  return `${l.groups} x ${formatGiB(l.groupBytes)} weight groups + ModelProto ${formatGiB(l.modelProto)}${arenas}`;
}

/** One line for the start-up log. */
export function describePlan(p: MemoryPlan): string {
  return (
    `weights ${formatGiB(p.weights)} (${p.quantization === 'none' ? 'float32' : p.quantization})` +
    (p.nativeWeights > 0 ? ` + native kernels' copies ${formatGiB(p.nativeWeights)}` : '') +
    ` + malloc slack ${formatGiB(p.mallocSlack)}` +
    ` + KV cache ${formatGiB(p.kvCache)} + runtime ${formatGiB(p.runtimeBase)} + max(load ${formatGiB(p.load.total)} (${describeLoad(p.load)}),` +
    ` activations ${formatGiB(p.activations)})` +
    ` = ${formatGiB(p.total)} of ${formatGiB(p.usable)} usable (${formatGiB(p.machine.bytes)} from ${p.machine.source})`
  );
}

/** The refusal: the numbers, then what would fit (another mode, and/or a smaller KV cache). */
export function refusalMessage(input: MemoryPlanInput, plan: MemoryPlan): string {
  const options: string[] = [];
  for (const mode of QUANTIZATION_MODES) {
    const p = mode === input.quantization ? plan : planMemory({ ...input, quantization: mode }, plan.machine);
    if (p.fits) {
      if (mode !== input.quantization) options.push(`--quantization ${mode} (${formatGiB(p.total)})`);
      continue;
    }
    // The largest KV cache this mode leaves room for, if any (a whole MiB below the limit).
    const room = Math.floor((p.usable - (p.total - p.kvCache)) / 2 ** 20);
    if (room >= 1) options.push(`--quantization ${mode} with --kv-cache-memory ${room}MiB or less`);
  }
  const fix = options.length > 0 ? `; would fit: ${options.join(', or ')}` : '; no --quantization or --kv-cache-memory setting fits this machine';
  return `the model does not fit in memory: ${describePlan(plan)}${fix}`;
}

/**
 * The loader threads to use: `max`, or fewer when the plan with `max` does not fit and one with fewer does
 * (each thread holds a weight group read ahead and a quantising arena: bench-lite int8 fits 24 GiB with
 * fewer). A slower load instead of a refusal; with none fitting, `max` (the refusal then gives its numbers).
 */
export function fittingLoaderThreads(input: MemoryPlanInput, max: number, machine: MachineMemory = machineMemory()): number {
  for (let t = max; t >= 0; t--) if (planMemory({ ...input, loaderThreads: t }, machine).fits) return t;
  return max;
}

/** Plans and refuses (DSV_ERR_CONFIG) when the plan does not fit; returns the plan to log otherwise. */
export function checkMemoryPlan(input: MemoryPlanInput, machine: MachineMemory = machineMemory()): MemoryPlan {
  const plan = planMemory(input, machine);
  if (!plan.fits) throw new EngineError('DSV_ERR_CONFIG', refusalMessage(input, plan));
  return plan;
}
