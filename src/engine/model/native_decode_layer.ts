// One decoder layer's dense parts for steps of up to NATIVE_MAX_ROWS rows (decode batches) in C
// (src/native/decode_layer.c): the pre-attention graph, the post-attention graph and the routed experts,
// each one native call instead of one ONNX Runtime run of tens of nodes. The weights are the graphs' own
// stacked layouts (pre_attention.ts preAttentionStacks, absorbed.ts keyUpScaled / valueUpRows, moe.ts):
// float32 ones held here in JS memory, quantised ones (--quantization) copied into the kernels' panels
// (src/native/quant_gemm.h, C memory owned by the handles held here); ONNX Runtime keeps its copies for prefill.
//
// Covered: float32 or int8/int4 weights, q-LoRA or direct q_proj, the indexer (float32 or bfloat16 key cache:
// an fp8 cache wants the Hadamard-rotated query), dense or MoE FFN. Anything else returns null from
// create() and the layer runs through ONNX Runtime.
import { isQuantized, type LinearWeight, type QuantBits } from '../../common/quantized.ts';
import type { IndexerConfig, LayerWeights, ModelConfig, MoeConfig, Tensor } from '../checkpoint/types.ts';
import { keyUpScaled, keyUpTransposed, valueUpRows } from './absorbed.ts';
import { INDEXER_LAYERNORM_EPS, preAttentionStacks } from './pre_attention.ts';
import { mlaSoftmaxScale } from './rope.ts';
import { quantizeMatrix } from '../quant/block_quant.ts';
import { rowsOf, stackRows } from '../quant/rows.ts';
import type { NativeDecodeKernels, NativeLinear } from '../native/native_kernels.ts';

/** q, kv, and with the indexer iq, ik, iw: the pre-attention graph's outputs for one row. */
export interface NativePreOutputs {
  readonly q: Float32Array; // [H, L + dr]
  readonly kv: Float32Array; // [L + dr]
  readonly iq: Float32Array | null; // [Hi, Di]
  readonly ik: Float32Array | null; // [Di]
  readonly iw: Float32Array | null; // [Hi]
}

/** cos/sin of the step's N positions: MLA (interleaved, [N, dr]) and indexer (half-split, [N, Di]). */
export interface RopeRows {
  readonly cos: Float32Array;
  readonly sin: Float32Array;
  readonly icos: Float32Array | null;
  readonly isin: Float32Array | null;
}

const FFN_DENSE = 0;
const FFN_MOE = 1;
const FFN_MOE_SHARED = 2;
const MAX_ROPE_WIDTH = 512; // decode_layer.c rope()'s scratch row

/**
 * A linear weight as the kernels take it: float32 as it is, quantised repacked (a copy in C memory). groupRows:
 * rows per group that reads its own inputs (per-head W_UK / W_UV); all rows for a plain matrix.
 */
export function nativeLinearOf(kernels: NativeDecodeKernels, w: LinearWeight, groupRows = rowsOf(w)): NativeLinear {
  return isQuantized(w) ? kernels.packQuantized(w.bits, w.rows, w.cols, groupRows, w.packed, w.scales) : w.data;
}

/**
 * Steps of up to this many rows run the layers' dense parts in C (decode_layer.c MAX_ROWS): each weight row
 * is read once for all of them. Larger steps (prefill chunks) keep ONNX Runtime's GEMMs.
 */
export const NATIVE_MAX_ROWS = 16;

export class NativeDecodeLayer {
  private constructor(
    private readonly kernels: NativeDecodeKernels,
    private readonly handle: object,
    /** The arrays and packed weights the C side points into: held so they live as long as the handle. */
    readonly weights: readonly NativeLinear[],
    private readonly config: ModelConfig,
    private readonly indexer: IndexerConfig | null,
    private readonly moe: MoeConfig | null,
  ) {}

  /** The layer, or null when its weights or options are outside what the kernels cover (see the header). */
  static create(
    kernels: NativeDecodeKernels,
    config: ModelConfig,
    w: LayerWeights<LinearWeight>,
    indexer: IndexerConfig | null,
    moe: MoeConfig | null,
    rotatedIndexerKeys: boolean,
    /** Quantised weights allowed (the int8 inputs of quant_gemm.h are MatMulNBits' accuracy level 4: the caller's level must be it). */
    allowQuantized = true,
  ): NativeDecodeLayer | null {
    const { attn } = w;
    const linears: LinearWeight[] = [attn.kvAProjWithMqa, attn.oProj];
    if (attn.query.kind === 'lora') linears.push(attn.query.qAProj, attn.query.qBProj);
    else linears.push(attn.query.qProj);
    if (w.mlp.kind === 'dense') linears.push(w.mlp.weights.gateProj);
    else linears.push(...w.mlp.weights.experts.map((e) => e.gateProj));
    const quantized = linears.filter(isQuantized);
    if (quantized.length > 0 && (!allowQuantized || quantized.length < linears.length)) return null; // mixed: not a layout --quantization makes
    const bits = quantized[0]?.bits ?? null;
    if (indexer && (rotatedIndexerKeys || attn.query.kind !== 'lora' || indexer.headDim > MAX_ROPE_WIDTH)) return null;
    if (config.qkRopeHeadDim > MAX_ROPE_WIDTH) return null;

    const stacks = preAttentionStacks(config, attn, indexer);
    const { hiddenSize: D, numAttentionHeads: H, kvLoraRank: L, qkRopeHeadDim: dr, qkNopeHeadDim: dn, vHeadDim: dv } = config;
    const mlp = w.mlp;
    const shared = mlp.kind === 'moe' ? mlp.weights.sharedExperts : null;
    const ffn = mlp.kind === 'dense' ? mlp.weights : shared;
    const experts = mlp.kind === 'moe' ? mlp.weights.experts : [];
    const dims = new Int32Array([
      D,
      H,
      L,
      dr,
      dn,
      dv,
      attn.query.kind === 'lora' ? attn.query.qALayernorm.data.length : 0,
      indexer?.nHeads ?? 0,
      indexer?.headDim ?? 0,
      mlp.kind === 'dense' ? FFN_DENSE : shared ? FFN_MOE_SHARED : FFN_MOE,
      ffn ? rowsOf(ffn.gateProj) : 0,
      experts.length,
      moe?.moeIntermediateSize ?? 0,
      stacks.xSizes.reduce((a, b) => a + b, 0),
      stacks.qrSizes.reduce((a, b) => a + b, 0),
    ]);
    const pack = (lw: LinearWeight, groupRows?: number): NativeLinear => nativeLinearOf(kernels, lw, groupRows);
    const scale = mlaSoftmaxScale(config);
    // Copies of the small float32 tensors (norms, router gate): the loader's may be views of a whole layer's
    // buffer (a quantised-weights cache file), which holding them would keep alive: measured on bench-lite,
    // 9 GB of cache buffers stayed resident when the layer held views.
    const own = (t: Tensor): Float32Array => t.data.slice();
    const tensors: (NativeLinear | null)[] = [
      own(w.inputLayernorm),
      pack(stacks.x),
      attn.query.kind === 'lora' ? own(attn.query.qALayernorm) : null,
      stacks.qr ? pack(stacks.qr) : null,
      bits === null
        ? keyUpScaled(config, attn.kvBProj, scale) /* the softmax scale folded in, as in the graph */
        : pack(keyUpQuantized(config, attn.kvBProj, scale, bits), L),
      own(attn.kvALayernorm),
      indexer && attn.indexer ? own(attn.indexer.kNormWeight) : null,
      indexer && attn.indexer ? own(attn.indexer.kNormBias) : null,
      bits === null ? valueUpRows(config, attn.kvBProj) : pack(quantizeMatrix(valueUpRows(config, attn.kvBProj), H * dv, L, bits), dv),
      pack(attn.oProj),
      own(w.postAttentionLayernorm),
      ffn ? pack(stackRows([ffn.gateProj, ffn.upProj])) : null,
      ffn ? pack(ffn.downProj) : null,
      mlp.kind === 'moe' ? own(mlp.weights.gate) : null,
    ];
    const gateUp = experts.map((e) => pack(stackRows([e.gateProj, e.upProj])));
    const down = experts.map((e) => pack(e.downProj));
    const handle = kernels.createLayer(dims, new Float64Array([config.rmsNormEps, INDEXER_LAYERNORM_EPS]), tensors, gateUp, down);
    const held = [...tensors.filter((t): t is NativeLinear => t !== null), ...gateUp, ...down];
    return new NativeDecodeLayer(kernels, handle, held, config, indexer, mlp.kind === 'moe' ? moe : null);
  }

  /** The pre-attention graph for N <= NATIVE_MAX_ROWS rows h [N, D] (its outputs are fresh arrays the caller owns). */
  pre(h: Float32Array, rope: RopeRows): NativePreOutputs {
    const { hiddenSize: D, numAttentionHeads: H, kvLoraRank: L, qkRopeHeadDim: dr } = this.config;
    const N = h.length / D;
    const q = new Float32Array(N * H * (L + dr));
    const kv = new Float32Array(N * (L + dr));
    const idx = this.indexer;
    const iq = idx ? new Float32Array(N * idx.nHeads * idx.headDim) : null;
    const ik = idx ? new Float32Array(N * idx.headDim) : null;
    const iw = idx ? new Float32Array(N * idx.nHeads) : null;
    this.kernels.pre(this.handle, h, rope.cos, rope.sin, rope.icos, rope.isin, q, kv, iq, ik, iw);
    return { q, kv, iq, ik, iw };
  }

  /**
   * The post-attention graph for N rows: h [N, D], o [N, H, L] -> h_out [N, D]; MoE layers also give x2 [N, D]
   * (the routed experts' input) and the router logits [N, E].
   */
  post(h: Float32Array, o: Float32Array): { hOut: Float32Array; x2: Float32Array | null; router: Float32Array | null } {
    const N = h.length / this.config.hiddenSize;
    const hOut = new Float32Array(h.length);
    const x2 = this.moe ? new Float32Array(h.length) : null;
    const router = this.moe ? new Float32Array(N * this.moe.nRoutedExperts) : null;
    this.kernels.post(this.handle, h, o, hOut, x2, router);
    return { hOut, x2, router };
  }

  /** h[n] += sum over row n's k routed experts of weight * expert(x2[n]) (in place); ids, weights [N, k]. */
  experts(x2: Float32Array, h: Float32Array, ids: Int32Array, weights: Float32Array): void {
    this.kernels.experts(this.handle, x2, h, ids, weights);
  }
}

/** W_UK[h]^T [L, dn] per head, quantised along qk_nope with the softmax scale on the block scales, stacked [H * L, dn]: absorbed.ts's graph weights. */
function keyUpQuantized(config: ModelConfig, kvBProj: Tensor, scale: number, bits: QuantBits): LinearWeight {
  const { numAttentionHeads: H, kvLoraRank: L, qkNopeHeadDim: dn } = config;
  return stackRows(
    Array.from({ length: H }, (_, h) => {
      const q = quantizeMatrix(keyUpTransposed(config, kvBProj, h), L, dn, bits);
      q.scales.forEach((s, i) => (q.scales[i] = s * scale));
      return q;
    }),
  );
}
