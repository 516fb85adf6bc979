// The DeepSeek-V3.2 / V3 / V2 forward pass over the paged caches, one batched step at a time.
//
// Per step (the numbered steps are those of mla.ts "MLA n" and indexer.ts "IDX n"):
//   embed -> for each layer [pre-attention graph (MLA 1-4, IDX 1-4) -> cache write ->
//   per attention group: indexer scores + top-k (IDX 5-6) and sparse MLA (MLA 5) ->
//   post-attention graph (MLA 6, FFN or router + shared experts) -> routed experts]
//   -> final norm + lm_head on the rows that return logits.
// Graph sessions: 2 per layer (weights as prepacked initializers), 1 per MoE layer (routed experts),
// plus shared attention / indexer graphs whose inputs are the caches.
import { DataType, GraphBuilder } from '../onnx/graph_builder.ts';
import { linear, QUANT_ACCURACY_LEVEL, rmsNorm, withAccuracyLevel, type AccuracyLevel } from '../onnx/ops.ts';
import { floatTensor, GraphSession, int32Tensor, int64Tensor, type Feed, type SessionOptions } from '../onnx/session.ts';
import type { PagedKVStorage } from '../../kvcache/paged_kv_storage.ts';
import type { LatentPool } from '../../kvcache/kv_dtype.ts';
import { DEFAULT_MAX_SCORE_ELEMENTS, SparseMlaAttention, type AttentionShapes } from '../attention/sparse_mla.ts';
import type { StepProfiler } from '../step_profiler.ts';
import { buildIndexerSelectGraph } from './indexer.ts';
import { buildDsaDecodeGraph } from './dsa_decode.ts';
import { buildDsaRowsGraph } from './dsa_rows.ts';
import { buildAttentionGraph, buildGatheredPrefillAttentionGraph, buildPostAttentionGraph } from './mla.ts';
import { buildPreAttentionGraph, type LayerPrelude } from './pre_attention.ts';
import { indexerKeyPoolFeed, indexerKeySpanFeed, latentPoolFeed } from './kv_cache_graph.ts';
import { buildRoutedExpertsGraph, denseFfn, dispatch, dispatchGroup, expertGroups, moePreludeFfn } from './moe.ts';
import { routeTokens } from './moe_router.ts';
import { ropeInvFreq, ropeTables } from './rope.ts';
import type { StepPlan } from './step_plan.ts';
import type { IndexerConfig, LayerWeights, LinearWeight, ModelConfig, MoeConfig, MoeWeights, Tensor } from '../checkpoint/types.ts';
import { moeConfigOfLayer } from '../checkpoint/weights.ts';
import { isQuantized, type EmbeddingTable, type QuantBits } from '../../common/quantized.ts';
import type { QuantizationMode } from '../quant/quant_mode.ts';
import { gatherRows } from '../quant/rows.ts';
import { EngineError } from '../../common/errors.ts';
import { NATIVE_MAX_ROWS, NativeDecodeLayer, nativeLinearOf, type RopeRows } from './native_decode_layer.ts';
import { loadNativeKernels, type NativeDecodeKernels, type NativeKernelsMode, type NativeLinear } from '../native/native_kernels.ts';

/**
 * Where the weights come from, one group at a time (quant/weight_stream.ts in this thread, or
 * quant/group_pool.ts in worker threads, reading ahead): create() builds a layer's graphs from layer(l)
 * and lets it go, so only the sessions' copies stay resident.
 */
export interface ModelWeightSource {
  readonly config: ModelConfig;
  /** Bits of the quantised linear weights (null: float32); the graphs quantise kv_b_proj's per-head forms to match. */
  readonly quantBits: QuantBits | null;
  embedding(): Promise<EmbeddingTable>; // [vocab, hidden]
  layer(l: number): Promise<LayerWeights<LinearWeight>>;
  head(): Promise<{ readonly norm: Tensor; readonly lmHead: LinearWeight }>;
}

export interface ModelOptions extends SessionOptions {
  /** Largest attention score tensor one run may build (prefill query rows are sliced to fit). */
  readonly maxAttentionScoreElements?: number;
  /** A/B switch: run a DSA model with dense attention (the indexer is skipped). */
  readonly denseAttention?: boolean;
  /** MatMulNBits accuracy level of quantised weights (default QUANT_ACCURACY_LEVEL; tests use 0: exact). */
  readonly quantAccuracyLevel?: AccuracyLevel;
  /** Steps of up to 16 rows (and quantised routed experts in every step) in C (model/native_decode_layer.ts); default auto. */
  readonly nativeKernels?: NativeKernelsMode;
}

/** Pre-attention outputs of one layer for the N rows of a step (shapes as in pre_attention.ts). */
export interface LayerCapture {
  readonly q: Float32Array; // [N, H, C] absorbed query, softmax scale included
  readonly kv: Float32Array; // [N, C] the cached latent rows
  readonly iq: Float32Array | null; // [N, Hi, Di] (null without the indexer)
  readonly ik: Float32Array | null; // [N, Di]
  readonly iw: Float32Array | null; // [N, Hi]
  readonly positions: Int32Array; // [N] absolute positions
}

/** Observers of the forward pass (diagnostics and parity tests); the math is the same without them. */
export interface ForwardHooks {
  /** Record, per layer and sequence, the key positions selected for the sequence's last new token. */
  readonly recordSelections?: boolean;
  /** Called per layer with read-only views of the pre-attention outputs of all N rows (copy what you keep). */
  readonly onLayer?: (layer: number, out: LayerCapture) => void;
}

export interface ForwardOutput {
  /** [R, vocab] logits rows, in sequence order; sequence i owns rows logitOffsets[i] .. logitOffsets[i+1]. */
  readonly logits: Float32Array;
  /** [N, hidden] the last layer's output before the final norm, in execution order (the MTP module's input). */
  readonly hidden: Float32Array;
  readonly logitOffsets: Int32Array;
  /** selections[seq][layer]: ascending positions, when hooks.recordSelections was set. */
  readonly selections: Int32Array[][] | null;
}

/** q, kv, and with the indexer iq, ik, iw (shapes in LayerCapture). */
type PreAttentionOutputs = readonly [Float32Array, Float32Array, Float32Array?, Float32Array?, Float32Array?];

interface RoutedExperts {
  readonly config: MoeConfig;
  readonly eScoreCorrectionBias: Float32Array | null;
  /**
   * One graph per range of experts (several only when one graph would pass protobuf's 2 GiB); none when the
   * layer's native copy runs the experts of every step (quantised weights: see createLayerSessions).
   */
  readonly groups: readonly { readonly range: readonly [number, number]; readonly session: GraphSession }[];
}

/** The final norm and lm_head weights the native kernels read (float32 held in JS, or quantised and packed in C). */
interface NativeHead {
  readonly kernels: NativeDecodeKernels;
  readonly norm: Float32Array; // [D]
  readonly weight: NativeLinear; // [vocab, D]
}

/** One decoder layer's compiled graphs (the MTP module builds its own with createLayerSessions). */
export interface LayerSessions {
  readonly pre: GraphSession;
  readonly post: GraphSession;
  readonly experts: RoutedExperts | null; // MoE layers only
  /** The same layer in C for steps of up to NATIVE_MAX_ROWS rows (null: --native-kernels off, unavailable, or not covered). */
  readonly native: NativeDecodeLayer | null;
}

export class DeepseekModel {
  private readonly invFreq: Float64Array;
  /** The indexer config when DSA runs (null: no indexer, or --dense-attention). */
  readonly indexer: IndexerConfig | null;
  /** For the start-up log: which layers decode in C, or why none do. */
  readonly nativeStatus: string;

  private constructor(
    readonly config: ModelConfig,
    /** The token embedding [vocab, hidden]: float32, or float16 rows under --quantization. */
    private readonly embedTable: EmbeddingTable,
    readonly storage: PagedKVStorage,
    private readonly layers: readonly LayerSessions[],
    private readonly attention: SparseMlaAttention,
    private readonly sessions: readonly GraphSession[],
    private readonly lmHead: GraphSession,
    /** Final norm + lm_head for one row in C (float32 weights with the native kernels), else null. */
    private readonly nativeHead: NativeHead | null,
    indexer: IndexerConfig | null,
    nativeStatus: string,
  ) {
    this.invFreq = ropeInvFreq(config);
    this.indexer = indexer;
    this.nativeStatus = nativeStatus;
  }

  static async create(source: ModelWeightSource, storage: PagedKVStorage, options: ModelOptions = {}): Promise<DeepseekModel> {
    const { config, quantBits: bits } = source;
    const indexer = options.denseAttention ? null : config.indexer;
    const build = <T>(fn: () => T): T => withAccuracyLevel(options.quantAccuracyLevel ?? QUANT_ACCURACY_LEVEL, fn);
    const embedTable = await source.embedding();
    const native = nativeKernelsFor(options, options.numThreads ?? 2);
    const layers: LayerSessions[] = [];
    // The layer's weights live only until its sessions hold them (ORT copies initializers), unless the
    // native decode layer keeps them.
    for (let l = 0; l < config.numHiddenLayers; l++) {
      layers.push(await createLayerSessions(config, l, await source.layer(l), storage, bits, options, null, native.kernels));
      // Quantised: hand the layer's freed buffers back (peak RSS). Not for float32 weights: the kernels read
      // those from the heap, and malloc_trim's MADV_DONTNEED on the free pages between them splits the 2 MiB
      // pages under them (bench-mini: AnonHugePages 916 -> 278 MiB, batch-1 decode 280-293 -> 222-230 tok/s).
      if (bits !== null) native.kernels?.trimMemory();
    }
    const nativeLayers = layers.filter((l) => l.native !== null).length;
    const nativeStatus = native.kernels === null ? `off (${native.reason})` : `${nativeLayers} of ${layers.length} layers decode in C (${native.path})`;
    const session = (name: string, graph: () => Uint8Array): Promise<GraphSession> => GraphSession.create(name, graph(), options);
    const dtype = storage.dtype;
    const sessions = {
      dense: await session('sparse_mla_dense', () => buildAttentionGraph(config, 'dense', dtype)),
      prefillSelected: indexer ? await session('sparse_mla_prefill_selected', () => buildAttentionGraph(config, 'prefill-selected', dtype)) : null,
      prefillGathered: indexer ? await session('sparse_mla_prefill_gathered', () => buildGatheredPrefillAttentionGraph(config, dtype)) : null,
      dsaDecode: indexer ? await session('dsa_decode', () => buildDsaDecodeGraph(config, indexer, dtype)) : null,
      dsaDecodeKeySpan: indexer ? await session('dsa_decode_key_span', () => buildDsaDecodeGraph(config, indexer, dtype, true)) : null,
      dsaRows: indexer ? await session('dsa_rows', () => buildDsaRowsGraph(config, indexer, dtype)) : null,
      indexer: indexer ? await session('indexer_select', () => buildIndexerSelectGraph(indexer, false, dtype)) : null,
    };
    const shapes: AttentionShapes = {
      numHeads: config.numAttentionHeads,
      latentDim: config.kvLoraRank + config.qkRopeHeadDim,
      kvLoraRank: config.kvLoraRank,
      indexerHeads: indexer?.nHeads ?? 0,
      indexerDim: indexer?.headDim ?? 0,
      indexTopk: indexer?.topk ?? 0,
      maxScoreElements: options.maxAttentionScoreElements ?? DEFAULT_MAX_SCORE_ELEMENTS,
    };
    const sparseMla = new SparseMlaAttention(shapes, sessions, native.kernels);
    const shared = Object.values(sessions).filter((x): x is GraphSession => x !== null);
    const head = await source.head();
    const nativeHead =
      native.kernels && (!isQuantized(head.lmHead) || nativeQuantized(options))
        ? { kernels: native.kernels, norm: head.norm.data.slice(), weight: nativeLinearOf(native.kernels, head.lmHead) }
        : null;
    const lmHead = await GraphSession.create(
      'lm_head',
      build(() => buildLmHeadGraph(config, head)),
      options,
    );
    return new DeepseekModel(config, embedTable, storage, layers, sparseMla, shared, lmHead, nativeHead, indexer, nativeStatus);
  }

  /** One batched forward over the planned rows: writes their latent (and indexer key) rows into the caches. */
  async forward(plan: StepPlan, profiler: StepProfiler, hooks: ForwardHooks = {}): Promise<ForwardOutput> {
    let h = profiler.time('other', () => this.embedRows(plan.tokenIds));
    const ropeFeed = profiler.time('other', () => this.ropeFeed(plan.positions));
    const recordSelections = hooks.recordSelections ?? false;
    const selections: Int32Array[][] | null = recordSelections ? Array.from({ length: plan.logitOffsets.length - 1 }, () => []) : null;
    for (const [l, layer] of this.layers.entries()) h = await this.runLayer(l, layer, h, plan, ropeFeed, profiler, hooks, selections);
    const logits = await profiler.timeAsync('dense', () => this.computeLogits(h, plan));
    return { logits, hidden: h, logitOffsets: plan.logitOffsets, selections };
  }

  /**
   * One decoder layer over the step's rows: h [N, D] -> h [N, D]. `l` picks the cache layer the rows'
   * latent (and indexer key) rows go to; the MTP module runs its own layer through here at index
   * numHiddenLayers + i. A Feed instead of h feeds a layer built with a prelude (its pre graph computes h).
   */
  async runLayer(
    l: number,
    layer: LayerSessions,
    input: Float32Array | Feed,
    plan: StepPlan,
    ropeFeed: Feed,
    profiler: StepProfiler,
    hooks: ForwardHooks = {},
    selections: Int32Array[][] | null = null,
  ): Promise<Float32Array> {
    const N = plan.numTokens;
    const D = this.config.hiddenSize;
    const fed = !(input instanceof Float32Array);
    let h: Float32Array;
    let q: Float32Array, kv: Float32Array, iq: Float32Array | null, ik: Float32Array | null, iw: Float32Array | null;
    if (!fed && N <= NATIVE_MAX_ROWS && layer.native) {
      h = input;
      ({ q, kv, iq, ik, iw } = profiler.time('dense', () => layer.native!.pre(input, ropeRows(ropeFeed))));
    } else {
      const feed = { ...(fed ? input : { h: floatTensor(input, [N, D]) }), ...ropeFeed };
      const names = [...(this.indexer ? ['q', 'kv', 'iq', 'ik', 'iw'] : ['q', 'kv']), ...(fed ? ['h'] : [])];
      const outs = await profiler.timeAsync('dense', () => layer.pre.run(feed, names));
      h = fed ? outs.pop()! : input;
      [q, kv, iq = null, ik = null, iw = null] = outs as unknown as PreAttentionOutputs;
    }
    hooks.onLayer?.(l, { q, kv, iq, ik, iw, positions: plan.positions });
    profiler.time('other', () => {
      this.storage.writeLatent(l, plan.slots, kv);
      if (ik) this.storage.writeIndexerKey(l, plan.slots, ik);
    });
    const o = await this.attend(l, plan, { q, iq, iw }, profiler, selections);
    return this.postAttention(layer, h, o, N, profiler);
  }

  /** cos/sin inputs of the pre-attention graphs: MLA (interleaved) and indexer (half-split) layouts. */
  ropeFeed(positions: Int32Array): Feed {
    const { qkRopeHeadDim: dr } = this.config;
    const N = positions.length;
    const mla = ropeTables(this.invFreq, positions, 'interleaved', dr);
    const feed: Feed = { cos: floatTensor(mla.cos, [N, 1, dr]), sin: floatTensor(mla.sin, [N, 1, dr]) };
    if (this.indexer) {
      const Di = this.indexer.headDim;
      const idx = ropeTables(this.invFreq, positions, 'half-split', Di);
      feed.icos = floatTensor(idx.cos, [N, 1, Di]);
      feed.isin = floatTensor(idx.sin, [N, 1, Di]);
    }
    return feed;
  }

  /** Token embeddings [N, hidden] (shared with the MTP module). */
  embedRows(tokenIds: Int32Array): Float32Array {
    return gatherRows(this.embedTable, tokenIds);
  }

  /** IDX 5-6 and MLA 5 for every attention group of the step; o [N, H, L]. */
  private async attend(
    l: number,
    plan: StepPlan,
    proj: { q: Float32Array; iq: Float32Array | null; iw: Float32Array | null },
    profiler: StepProfiler,
    selections: Int32Array[][] | null,
  ): Promise<Float32Array> {
    const { numAttentionHeads: H, kvLoraRank: L } = this.config;
    const indexer = this.indexer;
    const keyPool = indexer ? this.storage.indexerKeyPool(l) : null;
    const latentPool = this.storage.latentPool(l);
    const config = this.config;
    const inputs = {
      ...proj,
      // The graph feeds are built only if a graph runs: a native batch-1 step reads the rows directly.
      get latentCache(): Feed {
        return latentPoolFeed(latentPool, config);
      },
      latentRows: latentRowsOf(latentPool),
      indexerKeyRows: keyPool && keyPool.dtype !== 'fp8' ? keyPool.keys : null,
      get indexerCache(): Feed | null {
        return indexer ? indexerKeyPoolFeed(keyPool!, indexer.headDim) : null;
      },
      indexerKeySpan: indexer ? (first: number, count: number) => indexerKeySpanFeed(keyPool!, indexer.headDim, first, count) : null,
    };
    const ctx = { profiler, recordSelections: selections !== null };
    // One group covers every row (a decode step of one sequence): its output is the step's, no copy.
    const o = plan.groups.length === 1 ? null : new Float32Array(plan.numTokens * H * L);
    for (const group of plan.groups) {
      const res = await this.attention.attend(group, inputs, ctx);
      res.lastSelections?.forEach((sel, b) => selections?.[group.seqIndex[b]!]?.push(sel));
      if (o === null) return res.o;
      o.set(res.o, group.rowStart * H * L);
    }
    return o ?? new Float32Array(0);
  }

  /** MLA 6 + FFN; for MoE layers also routing (TypeScript) and the routed experts graph. */
  private async postAttention(layer: LayerSessions, h: Float32Array, o: Float32Array, N: number, profiler: StepProfiler): Promise<Float32Array> {
    const { hiddenSize: D, numAttentionHeads: H, kvLoraRank: L } = this.config;
    if (N <= NATIVE_MAX_ROWS && layer.native) return this.postAttentionNative(layer.native, layer.experts, h, o, N, profiler);
    const feed = { h: floatTensor(h, [N, D]), o: floatTensor(o, [N, H, L]) };
    const experts = layer.experts;
    if (!experts) return (await profiler.timeAsync('dense', () => layer.post.run(feed, ['h_out'])))[0];
    const [hOut, x, router] = await profiler.timeAsync('dense', () => layer.post.run(feed, ['h_out', 'x', 'router']));
    return profiler.timeAsync('experts', async () => {
      const moe = experts.config;
      const routing = routeTokens(this.config, moe, router, experts.eScoreCorrectionBias, N);
      if (experts.groups.length === 0) {
        layer.native!.experts(x, hOut, routing.experts, routing.weights); // in place; createLayerSessions: native is set
        return hOut;
      }
      const d = dispatch(routing.experts, routing.weights, moe.nRoutedExperts, moe.numExpertsPerTok);
      let out = hOut;
      for (const { range, session } of experts.groups) {
        const part = experts.groups.length === 1 ? d : dispatchGroup(d, range[0], range[1]);
        const M = part.rows.length;
        const feeds = {
          x: floatTensor(x, [N, D]),
          h: floatTensor(out, [N, D]),
          rows: int32Tensor(part.rows, [M]),
          sizes: int64Tensor(part.sizes, [part.sizes.length]),
          w: floatTensor(part.weights, [M, 1]),
          inverse: int32Tensor(part.inverse, [part.inverse.length]),
        };
        out = (await session.run(feeds, ['h_out']))[0];
      }
      return out;
    });
  }

  /** postAttention for up to NATIVE_MAX_ROWS rows in C: the same graph, routing (TypeScript) and routed experts. */
  private postAttentionNative(
    native: NativeDecodeLayer,
    experts: RoutedExperts | null,
    h: Float32Array,
    o: Float32Array,
    N: number,
    profiler: StepProfiler,
  ): Float32Array {
    const { hOut, x2, router } = profiler.time('dense', () => native.post(h, o));
    if (!experts || !x2 || !router) return hOut;
    return profiler.time('experts', () => {
      const routing = routeTokens(this.config, experts.config, router, experts.eScoreCorrectionBias, N);
      native.experts(x2, hOut, routing.experts, routing.weights);
      return hOut;
    });
  }

  private async computeLogits(h: Float32Array, plan: StepPlan): Promise<Float32Array> {
    const { hiddenSize: D } = this.config;
    const R = plan.logitRows.length;
    if (R === 0) return new Float32Array(0);
    const first = plan.logitRows[0]!;
    // One row is a view of h (no copy); more are gathered.
    const rows = R === 1 ? h.subarray(first * D, (first + 1) * D) : new Float32Array(R * D);
    if (R > 1) plan.logitRows.forEach((r, i) => rows.set(h.subarray(r * D, (r + 1) * D), i * D));
    if (R <= NATIVE_MAX_ROWS && this.nativeHead) {
      const { kernels, norm, weight } = this.nativeHead;
      const out = new Float32Array(R * this.config.vocabSize);
      kernels.logits(rows, norm, weight, out, this.config.rmsNormEps);
      return out;
    }
    return (await this.lmHead.run({ h: floatTensor(rows, [R, D]) }, ['logits']))[0];
  }

  async dispose(): Promise<void> {
    for (const l of this.layers) await releaseLayerSessions(l);
    for (const s of this.sessions) await s.release();
    await this.lmHead.release();
  }
}

/** A decoder layer's graphs (pre-attention, post-attention, routed experts) from its weights. */
export async function createLayerSessions(
  config: ModelConfig,
  l: number,
  w: LayerWeights<LinearWeight>,
  storage: PagedKVStorage,
  bits: QuantBits | null,
  options: ModelOptions,
  prelude: LayerPrelude | null = null,
  nativeKernels: NativeDecodeKernels | null = null,
): Promise<LayerSessions> {
  const indexer = options.denseAttention ? null : config.indexer;
  const build = <T>(fn: () => T): T => withAccuracyLevel(options.quantAccuracyLevel ?? QUANT_ACCURACY_LEVEL, fn);
  const moe = moeConfigOfLayer(config, l);
  const ffn = w.mlp.kind === 'dense' ? denseFfn(w.mlp.weights) : moePreludeFfn(w.mlp.weights);
  const pre = build(() => buildPreAttentionGraph(config, l, w.attn, w.inputLayernorm, indexer, storage.indexerKeysRotated, bits, prelude));
  const post = build(() => buildPostAttentionGraph(config, l, w.attn, w.postAttentionLayernorm, ffn, bits));
  const native =
    nativeKernels && prelude === null
      ? NativeDecodeLayer.create(nativeKernels, config, w, indexer, moe, storage.indexerKeysRotated, nativeQuantized(options))
      : null;
  // Quantised routed experts run in C for every step, prefill chunks included, with no ONNX Runtime graph:
  // a graph would hold them a second time (they are ~90% of a DeepSeek model's weights), and the kernel
  // reads each expert's weights once per 64 of the rows that picked it (decode_layer.c experts()).
  const expertsInC = native !== null && bits !== null;
  return {
    pre: await GraphSession.create(`pre_attention_${l}`, pre, options),
    post: await GraphSession.create(`post_attention_${l}`, post, options),
    experts: moe && w.mlp.kind === 'moe' ? await routedExperts(config, moe, l, w.mlp.weights, options, build, expertsInC) : null,
    native,
  };
}

/**
 * Whether the decoder layers will run in C, for the memory plan before loading: --native-kernels not off,
 * the kernels built, and for quantised weights the serving accuracy level (nativeQuantized). Layers the
 * kernels do not cover (NativeDecodeLayer.create) still fall back; the load guard checks memory per layer.
 */
export function nativeLayersPlanned(options: ModelOptions, quantization: QuantizationMode): boolean {
  if ((options.nativeKernels ?? 'auto') === 'off' || (quantization !== 'none' && !nativeQuantized(options))) return false;
  return loadNativeKernels().kernels !== null;
}

/**
 * Whether quantised layers may decode in C: the kernels quantise their inputs to int8 per block of 32, which is
 * MatMulNBits' accuracy level 4 (the serving level); at any other level (tests: 0, exact weights) ONNX Runtime
 * keeps every step so that the model computes what that level says.
 */
function nativeQuantized(options: ModelOptions): boolean {
  return (options.quantAccuracyLevel ?? QUANT_ACCURACY_LEVEL) === 4;
}

/** The native kernels per --native-kernels (on: refuse to start without them), with their pool sized to numThreads. */
function nativeKernelsFor(options: ModelOptions, numThreads: number): { kernels: NativeDecodeKernels; path: string } | { kernels: null; reason: string } {
  const mode = options.nativeKernels ?? 'auto';
  if (mode === 'off') return { kernels: null, reason: '--native-kernels off' };
  const load = loadNativeKernels();
  if (load.kernels === null) {
    if (mode === 'on') throw new EngineError('DSV_ERR_CONFIG', `--native-kernels on: the native kernels are not available: ${load.reason}`);
    return load;
  }
  load.kernels.setThreads(numThreads);
  return load;
}

/** The pool's rows when float32 or bfloat16 (read in place by the native attention), else null (fp8). */
function latentRowsOf(pool: LatentPool): Float32Array | Uint16Array | null {
  return pool.dtype === 'fp8' ? null : pool.rows;
}

/** The step's cos/sin rows from the pre-attention feed. */
function ropeRows(feed: Feed): RopeRows {
  const data = (name: string): Float32Array | null => (feed[name]?.data as Float32Array | undefined) ?? null;
  return { cos: data('cos')!, sin: data('sin')!, icos: data('icos'), isin: data('isin') };
}

/** Releases a layer's graphs. */
export async function releaseLayerSessions(layer: LayerSessions): Promise<void> {
  await layer.pre.release();
  await layer.post.release();
  for (const e of layer.experts?.groups ?? []) await e.session.release();
}

async function routedExperts(
  config: ModelConfig,
  moe: MoeConfig,
  l: number,
  w: MoeWeights<LinearWeight>,
  options: ModelOptions,
  build: (fn: () => Uint8Array) => Uint8Array,
  inC: boolean,
): Promise<RoutedExperts> {
  const ranges = inC ? [] : expertGroups(w);
  const groups = [];
  for (const range of ranges) {
    const graph = build(() => buildRoutedExpertsGraph(config.hiddenSize, moe, l, w, ranges.length === 1 ? undefined : range));
    groups.push({ range, session: await GraphSession.create(`routed_experts_${l}_${range[0]}`, graph, options) });
  }
  return { config: moe, eScoreCorrectionBias: w.eScoreCorrectionBias?.data.slice() ?? null, groups }; // a copy: not a view pinning the layer's buffer
}

/** Final RMSNorm + lm_head: h [R, D] -> logits [R, vocab]. */
function buildLmHeadGraph(config: ModelConfig, head: { readonly norm: Tensor; readonly lmHead: LinearWeight }): Uint8Array {
  const g = new GraphBuilder('lm_head');
  const h = g.input('h', DataType.FLOAT, ['R', config.hiddenSize]);
  const logits = linear(g, rmsNorm(g, h, head.norm, config.rmsNormEps), head.lmHead);
  g.markOutput(logits, 'logits', DataType.FLOAT, ['R', config.vocabSize]);
  return g.build();
}
