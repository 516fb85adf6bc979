// DeepSeek's multi-token-prediction (MTP) module as graphs, the draft model of speculative decoding.
// For a row at position p with the main model's last hidden state h_p (before the final norm) and the
// next token t_{p+1} (vLLM's deepseek_mtp.py, whose order DeepSeek-V3's checkpoints are trained with):
//   x = eh_proj([enorm(embed(t_{p+1})); hnorm(h_p)])     embedding first; embed is zeroed at position 0
//   y = decoder layer numHiddenLayers + i (MLA over its own cache layer, + indexer, + MoE or dense FFN)
//   logits = shared_head.head(shared_head.norm(y))        predicts t_{p+2}
// The decoder layer is the main model's layer graph (createLayerSessions / DeepseekModel.runLayer) with
// x = eh_proj(...) as the prelude of its pre-attention graph (one graph run per pass instead of two), and
// its latent (and indexer key) rows live in the paged storage's extra layer, at the same slots as the
// main model's rows of the same positions. Chained drafts feed y back as the next row's h.
import { DataType, GraphBuilder } from '../onnx/graph_builder.ts';
import { linear, QUANT_ACCURACY_LEVEL, rmsNorm, withAccuracyLevel } from '../onnx/ops.ts';
import { floatTensor, GraphSession } from '../onnx/session.ts';
import type { PagedKVStorage } from '../../kvcache/paged_kv_storage.ts';
import type { QuantBits } from '../../common/quantized.ts';
import type { LinearWeight, ModelConfig, MtpWeights } from '../checkpoint/types.ts';
import type { StepProfiler } from '../step_profiler.ts';
import { createLayerSessions, releaseLayerSessions, type DeepseekModel, type LayerSessions, type ModelOptions } from './deepseek_model.ts';
import type { StepPlan } from './step_plan.ts';

export interface MtpOutput {
  /** [N, hidden] the decoder layer's output (before shared_head.norm): the h of a chained draft row. */
  readonly hidden: Float32Array;
  /** [R, vocab] draft logits of plan.logitRows, in the plan's sequence order. */
  readonly logits: Float32Array;
}

export class MtpModule {
  private constructor(
    private readonly config: ModelConfig,
    /** HF layer index of this module; also its cache layer in the paged storage. */
    readonly layerIndex: number,
    private readonly layer: LayerSessions,
    private readonly head: GraphSession,
  ) {}

  /** Compiles module i's graphs; the storage must hold cache layer numHiddenLayers + i. */
  static async create(
    config: ModelConfig,
    i: number,
    w: MtpWeights<LinearWeight>,
    storage: PagedKVStorage,
    bits: QuantBits | null,
    options: ModelOptions,
  ): Promise<MtpModule> {
    const l = config.numHiddenLayers + i;
    const build = <T>(fn: () => T): T => withAccuracyLevel(options.quantAccuracyLevel ?? QUANT_ACCURACY_LEVEL, fn);
    const layer = await createLayerSessions(config, l, w.layer, storage, bits, options, (g) => inputNodes(g, config, w));
    const head = await GraphSession.create(
      `mtp_head_${l}`,
      build(() => buildHeadGraph(config, w)),
      options,
    );
    return new MtpModule(config, l, layer, head);
  }

  /**
   * One pass over the plan's rows (token ids = the next tokens t_{p+1}, positions = p): writes the
   * module's cache rows at the plan's slots and returns its hidden rows and the draft logits of the
   * plan's logit rows. prevHidden [N, hidden] holds h_p per execution row.
   */
  async forward(model: DeepseekModel, plan: StepPlan, prevHidden: Float32Array, profiler: StepProfiler): Promise<MtpOutput> {
    const N = plan.numTokens;
    const D = this.config.hiddenSize;
    const e = profiler.time('other', () => {
      const rows = model.embedRows(plan.tokenIds);
      // vLLM masks the embedding at position 0 (DeepSeek's MTP never sees a token there in training).
      for (let r = 0; r < N; r++) if (plan.positions[r] === 0) rows.fill(0, r * D, (r + 1) * D);
      return rows;
    });
    const ropeFeed = profiler.time('other', () => model.ropeFeed(plan.positions));
    const input = { e: floatTensor(e, [N, D]), h_prev: floatTensor(prevHidden, [N, D]) };
    const hidden = await model.runLayer(this.layerIndex, this.layer, input, plan, ropeFeed, profiler);
    const R = plan.logitRows.length;
    if (R === 0) return { hidden, logits: new Float32Array(0) };
    const rows = new Float32Array(R * D);
    plan.logitRows.forEach((r, j) => rows.set(hidden.subarray(r * D, (r + 1) * D), j * D));
    const [logits] = await profiler.timeAsync('dense', () => this.head.run({ h: floatTensor(rows, [R, D]) }, ['logits']));
    return { hidden, logits: logits! };
  }

  async dispose(): Promise<void> {
    await releaseLayerSessions(this.layer);
    await this.head.release();
  }
}

/** Inputs e [N, D], h_prev [N, D] -> x = eh_proj(concat(enorm(e), hnorm(h_prev))) [N, D], the decoder layer's h. */
function inputNodes(g: GraphBuilder, config: ModelConfig, w: MtpWeights<LinearWeight>): string {
  const D = config.hiddenSize;
  const e = g.input('e', DataType.FLOAT, ['N', D]);
  const h = g.input('h_prev', DataType.FLOAT, ['N', D]);
  const eh = g.node('Concat', [rmsNorm(g, e, w.enorm, config.rmsNormEps), rmsNorm(g, h, w.hnorm, config.rmsNormEps)], { axis: 1 }); // [N, 2D]
  return linear(g, eh, w.ehProj);
}

/** h [R, D] -> logits [R, vocab] = shared_head.head(shared_head.norm(h)). */
function buildHeadGraph(config: ModelConfig, w: MtpWeights<LinearWeight>): Uint8Array {
  const g = new GraphBuilder('mtp_head');
  const h = g.input('h', DataType.FLOAT, ['R', config.hiddenSize]);
  g.markOutput(linear(g, rmsNorm(g, h, w.sharedHeadNorm, config.rmsNormEps), w.sharedHead), 'logits', DataType.FLOAT, ['R', config.vocabSize]);
  return g.build();
}
