// The DeepSeek-V3.2 / V3 / V2 forward pass over the paged caches, one batched step at a time.
//
// Per step: embed -> for each layer [pre-attention graph -> cache write -> per group: indexer +
// top-k + sparse MLA -> post-attention graph (+ routed experts)] -> final norm + lm_head on the
// rows that return logits. Graph sessions: 2 per layer (weights as prepacked initializers), plus
// shared attention / indexer / expert graphs whose inputs are the caches and expert weights.
import { DataType, GraphBuilder } from '../onnx/graph_builder.ts';
import { linear, rmsNorm } from '../onnx/ops.ts';
import { floatTensor, GraphSession, int32Tensor, int64Tensor, type Feed, type SessionOptions } from '../onnx/session.ts';
import type { PagedKVStorage } from '../../kvcache/paged_kv_storage.ts';
import { attendGroup, DEFAULT_MAX_SCORE_ELEMENTS, emptySparsity, emptyTimings, type AttentionShapes, type SparsityCounters, type StepTimings } from '../attention/sparse_mla.ts';
import { buildIndexerDecodeScoreGraph, buildIndexerScoreGraph } from './indexer.ts';
import { buildAttentionGraph, buildPostAttentionGraph } from './mla.ts';
import { buildPreAttentionGraph } from './pre_attention.ts';
import { buildRoutedExpertsGraph, denseFfn, dispatch, moePreludeFfn } from './moe.ts';
import { routeTokens } from './moe_router.ts';
import { ropeInvFreq, ropeTables } from './rope.ts';
import { planStep, type StepPlan, type StepSequence } from './step_plan.ts';
import type { LoadedModel, ModelConfig, MoeWeights } from '../checkpoint/types.ts';

export interface ModelOptions extends SessionOptions {
  /** Largest attention score tensor one run may build (prefill query rows are sliced to fit). */
  readonly maxAttentionScoreElements?: number;
  /** A/B switch: run a DSA model with dense attention (the indexer is skipped). */
  readonly denseAttention?: boolean;
}

export interface StepOptions {
  /** Return, per layer and sequence, the key positions selected for the sequence's last new token. */
  readonly recordSelections?: boolean;
  /**
   * Diagnostics hook: called per layer with the pre-attention outputs of all N rows of the step (read-only
   * views; copy what you keep). Not called when unset; the forward pass is the same either way.
   */
  readonly onLayer?: (layer: number, out: LayerCapture) => void;
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

export interface StepResult {
  /** [R, vocab] logits rows, in sequence order; sequence i owns rows logitOffsets[i] .. logitOffsets[i+1]. */
  readonly logits: Float32Array;
  readonly logitOffsets: Int32Array;
  /** selections[layer][seq]: ascending positions, when recordSelections was set. */
  readonly selections: Int32Array[][] | null;
  readonly timings: StepTimings;
  readonly sparsity: SparsityCounters;
}

interface LayerSessions {
  readonly pre: GraphSession;
  readonly post: GraphSession;
  readonly moe: MoeWeights | null;
  readonly experts: GraphSession | null; // routed experts of a MoE layer
}

export class DeepseekModel {
  private readonly invFreq: Float64Array;
  readonly usesIndexer: boolean;
  private readonly maxScoreElements: number;

  private constructor(
    readonly model: LoadedModel,
    readonly storage: PagedKVStorage,
    private readonly layers: readonly LayerSessions[],
    private readonly attention: GraphSession,
    private readonly indexer: GraphSession | null,
    private readonly indexerDecode: GraphSession | null,
    private readonly lmHead: GraphSession,
    options: ModelOptions,
  ) {
    this.maxScoreElements = options.maxAttentionScoreElements ?? DEFAULT_MAX_SCORE_ELEMENTS;
    this.invFreq = ropeInvFreq(model.config);
    this.usesIndexer = indexer !== null;
  }

  static async create(model: LoadedModel, storage: PagedKVStorage, options: ModelOptions = {}): Promise<DeepseekModel> {
    const { config, weights } = model;
    const withIndexer = config.indexer !== null && !options.denseAttention;
    const layers: LayerSessions[] = [];
    for (let l = 0; l < config.numHiddenLayers; l++) {
      const w = weights.layers[l];
      const ffn = w.mlp.kind === 'dense' ? denseFfn(w.mlp.weights) : moePreludeFfn(w.mlp.weights);
      const moe = w.mlp.kind === 'moe' ? w.mlp.weights : null;
      layers.push({
        pre: await GraphSession.create(`pre_attention_${l}`, buildPreAttentionGraph(config, l, w.attn, w.inputLayernorm, withIndexer), options),
        post: await GraphSession.create(`post_attention_${l}`, buildPostAttentionGraph(config, l, w.attn, w.postAttentionLayernorm, ffn), options),
        moe,
        experts: moe ? await GraphSession.create(`routed_experts_${l}`, buildRoutedExpertsGraph(config, l, moe), options) : null,
      });
    }
    const attention = await GraphSession.create('sparse_mla', buildAttentionGraph(config), options);
    const indexer = withIndexer ? await GraphSession.create('indexer_scores', buildIndexerScoreGraph(config), options) : null;
    const indexerDecode = withIndexer ? await GraphSession.create('indexer_scores_decode', buildIndexerDecodeScoreGraph(config), options) : null;
    const lmHead = await GraphSession.create('lm_head', buildLmHeadGraph(model), options);
    return new DeepseekModel(model, storage, layers, attention, indexer, indexerDecode, lmHead, options);
  }

  get config(): ModelConfig {
    return this.model.config;
  }

  /** Runs one batched forward over the given sequences, writing their new tokens into the caches. */
  async step(seqs: readonly StepSequence[], stepOptions: StepOptions = {}): Promise<StepResult> {
    const { config } = this;
    const timings = emptyTimings();
    const sparsity = emptySparsity();
    let t0 = performance.now();
    const plan = planStep(seqs, this.storage.blockSize, config.vocabSize, config.maxPositionEmbeddings);
    const N = plan.numTokens;
    const D = config.hiddenSize;
    let h = this.embed(plan);
    const ropeFeed = this.ropeFeed(plan.positions);
    const shapes = this.attentionShapes();
    const selections: Int32Array[][] | null = stepOptions.recordSelections ? [] : null;
    const preOut = this.usesIndexer ? ['q', 'kv', 'iq', 'ik', 'iw'] : ['q', 'kv'];
    for (let l = 0; l < this.layers.length; l++) {
      const layer = this.layers[l];
      timings.other += performance.now() - t0;
      t0 = performance.now();
      const [q, kv, iq, ik, iw] = await layer.pre.run({ h: floatTensor(h, [N, D]), ...ropeFeed }, preOut);
      stepOptions.onLayer?.(l, { q, kv, iq: iq ?? null, ik: ik ?? null, iw: iw ?? null, positions: plan.positions });
      timings.dense += performance.now() - t0;
      t0 = performance.now();
      this.storage.writeLatent(l, plan.slots, kv);
      if (ik) this.storage.writeIndexerKey(l, plan.slots, ik);
      timings.other += performance.now() - t0;
      const o = await this.attend(l, plan, { q, iq: iq ?? null, iw: iw ?? null }, shapes, selections, timings, sparsity);
      h = await this.postAttention(layer, h, o, N, timings);
      t0 = performance.now();
    }
    const logits = await this.computeLogits(h, plan);
    timings.dense += performance.now() - t0;
    return { logits, logitOffsets: plan.logitOffsets, selections, timings, sparsity };
  }

  /** cos/sin inputs of the pre-attention graphs: MLA (interleaved) and indexer (half-split) layouts. */
  private ropeFeed(positions: Int32Array): Feed {
    const { qkRopeHeadDim: dr, indexer } = this.config;
    const N = positions.length;
    const mla = ropeTables(this.invFreq, positions, 'interleaved', dr);
    const feed: Feed = { cos: floatTensor(mla.cos, [N, 1, dr]), sin: floatTensor(mla.sin, [N, 1, dr]) };
    if (this.usesIndexer && indexer) {
      const idx = ropeTables(this.invFreq, positions, 'half-split', indexer.headDim);
      feed.icos = floatTensor(idx.cos, [N, 1, indexer.headDim]);
      feed.isin = floatTensor(idx.sin, [N, 1, indexer.headDim]);
    }
    return feed;
  }

  private embed(plan: StepPlan): Float32Array {
    const D = this.config.hiddenSize;
    const table = this.model.weights.embedTokens.data;
    const h = new Float32Array(plan.numTokens * D);
    for (let t = 0; t < plan.numTokens; t++) h.set(table.subarray(plan.tokenIds[t] * D, (plan.tokenIds[t] + 1) * D), t * D);
    return h;
  }

  private attentionShapes(): AttentionShapes {
    const c = this.config;
    return {
      numHeads: c.numAttentionHeads,
      latentDim: c.kvLoraRank + c.qkRopeHeadDim,
      kvLoraRank: c.kvLoraRank,
      indexerHeads: c.indexer?.nHeads ?? 0,
      indexerDim: c.indexer?.headDim ?? 0,
      indexTopk: this.usesIndexer ? c.indexer!.topk : 0,
      maxScoreElements: this.maxScoreElements,
    };
  }

  private async attend(
    l: number,
    plan: StepPlan,
    proj: { q: Float32Array; iq: Float32Array | null; iw: Float32Array | null },
    shapes: AttentionShapes,
    selections: Int32Array[][] | null,
    timings: StepTimings,
    sparsity: SparsityCounters,
  ): Promise<Float32Array> {
    const { numHeads: H, kvLoraRank: L } = shapes;
    const o = new Float32Array(plan.numTokens * H * L); // [N, H, L]
    const inputs = {
      ...proj,
      latentCache: this.storage.latent(l),
      indexerCache: this.usesIndexer ? this.storage.indexerKey(l) : null,
    };
    const perSeq: Int32Array[] = [];
    for (const group of plan.groups) {
      const res = await attendGroup(group, inputs, shapes, { attention: this.attention, indexer: this.indexer, indexerDecode: this.indexerDecode }, selections !== null, timings, sparsity);
      o.set(res.o, group.rowStart * H * L);
      res.lastSelections?.forEach((sel, b) => (perSeq[group.seqIndex[b]] = sel));
    }
    selections?.push(perSeq);
    return o;
  }

  private async postAttention(layer: LayerSessions, h: Float32Array, o: Float32Array, N: number, timings: StepTimings): Promise<Float32Array> {
    const { hiddenSize: D, numAttentionHeads: H, kvLoraRank: L } = this.config;
    const feed = { h: floatTensor(h, [N, D]), o: floatTensor(o, [N, H, L]) };
    let t0 = performance.now();
    if (!layer.moe) {
      const [hOut] = await layer.post.run(feed, ['h_out']);
      timings.dense += performance.now() - t0;
      return hOut;
    }
    const [hOut, x, router] = await layer.post.run(feed, ['h_out', 'x', 'router']);
    timings.dense += performance.now() - t0;
    t0 = performance.now();
    const moe = this.config.moe!;
    const routing = routeTokens(this.config, moe, router, layer.moe.eScoreCorrectionBias?.data ?? null, N);
    const d = dispatch(routing.experts, routing.weights, moe.nRoutedExperts, moe.numExpertsPerTok);
    const M = d.rows.length;
    const feeds = {
      x: floatTensor(x, [N, D]),
      h: floatTensor(hOut, [N, D]),
      rows: int32Tensor(d.rows, [M]),
      sizes: int64Tensor(d.sizes, [d.sizes.length]),
      w: floatTensor(d.weights, [M, 1]),
      inverse: int32Tensor(d.inverse, [M]),
    };
    const [out] = await layer.experts!.run(feeds, ['h_out']);
    timings.experts += performance.now() - t0;
    return out;
  }

  private async computeLogits(h: Float32Array, plan: StepPlan): Promise<Float32Array> {
    const { hiddenSize: D } = this.config;
    const R = plan.logitRows.length;
    if (R === 0) return new Float32Array(0);
    const rows = new Float32Array(R * D);
    plan.logitRows.forEach((r, i) => rows.set(h.subarray(r * D, (r + 1) * D), i * D));
    return (await this.lmHead.run({ h: floatTensor(rows, [R, D]) }, ['logits']))[0];
  }

  async dispose(): Promise<void> {
    for (const l of this.layers) {
      await l.pre.release();
      await l.post.release();
      await l.experts?.release();
    }
    await this.attention.release();
    await this.indexer?.release();
    await this.indexerDecode?.release();
    await this.lmHead.release();
  }
}

/** Final RMSNorm + lm_head: h [R, D] -> logits [R, vocab]. */
function buildLmHeadGraph(model: LoadedModel): Uint8Array {
  const { config, weights } = model;
  const g = new GraphBuilder('lm_head');
  const h = g.input('h', DataType.FLOAT, ['R', config.hiddenSize]);
  const logits = linear(g, rmsNorm(g, h, weights.norm, config.rmsNormEps), weights.lmHead);
  g.markOutput(logits, 'logits', DataType.FLOAT, ['R', config.vocabSize]);
  return g.build();
}

