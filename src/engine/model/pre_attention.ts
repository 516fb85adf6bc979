// Pre-attention graph of one layer: everything from the residual stream to the attention inputs,
// with weights sharing an input fused into one GEMM (one pass over the activations, few ops:
// at decode this graph is op-overhead-bound, not FLOP-bound).
//
// Computes MLA 1-4 (mla.ts) and IDX 1-4 (indexer.ts) after the input RMSNorm, x = RMSNorm(h), with
// the projections grouped by their input:
//   from x:  [qa | kvA | k_idx | w_idx] = x @ [q_a_proj; kv_a_proj_with_mqa; indexer.wk; weights_proj * Hi^-.5 Di^-.5]^T
//            (direct q_proj: [q_nope | q_pe | kvA] = x @ [q_proj nope rows; q_proj rope rows; kv_a_proj_with_mqa]^T)
//   from qr = RMSNorm(qa):  [q_nope | q_pe | iq] = qr @ [q_b_proj nope rows; q_b_proj rope rows; indexer.wq_b]^T
// then MLA 2-3 with the softmax scale folded into W_UK and the q_pe rows, MLA 4, and IDX 2-4.
// With an fp8 cache the indexer keys are stored Hadamard-rotated (kvcache/kv_row_codec.ts), so iq leaves
// this graph rotated the same way (iq @ Had; orthonormal, so iq . ik is unchanged); ik leaves unrotated.
import { DataType, GraphBuilder } from '../onnx/graph_builder.ts';
import { layerNorm, linear, reshape, rmsNorm, ropeRotate } from '../onnx/ops.ts';
import type { QuantBits } from '../../common/quantized.ts';
import { rowsOf, selectRows, stackRows } from '../quant/rows.ts';
import { absorbedQuery } from './absorbed.ts';
import { mlaSoftmaxScale, ropeRotation } from './rope.ts';
import { hadamardMatrix } from '../../common/numeric/hadamard.ts';
import { assert } from '../../common/errors.ts';
import type { AttentionWeights, IndexerConfig, LinearWeight, ModelConfig, Tensor } from '../checkpoint/types.ts';

/** Nodes that compute a layer's input h [N, D] from graph inputs of their own (buildPreAttentionGraph). */
export type LayerPrelude = (g: GraphBuilder) => string;

export const INDEXER_LAYERNORM_EPS = 1e-6; // fixed by the reference implementation, not from config

/** Output i of a Split node (nodeN returns exactly as many names as it was asked for). */
function part(parts: readonly string[], i: number): string {
  const p = parts[i];
  assert(p !== undefined, `split output ${i} of ${parts.length}`);
  return p;
}

/** q_b_proj / q_proj rows [H * (dn + dr), in] split into nope rows [H * dn, in] and rope rows [H * dr, in] (scaled). */
function splitQRows(config: ModelConfig, w: LinearWeight, ropeScale: number): { nope: LinearWeight; rope: LinearWeight } {
  const { numAttentionHeads: H, qkNopeHeadDim: dn, qkRopeHeadDim: dr } = config;
  const heads = Array.from({ length: H }, (_, h) => h * (dn + dr));
  return {
    nope: selectRows(
      w,
      heads.map((r) => [r, r + dn] as const),
    ),
    rope: selectRows(
      w,
      heads.map((r) => [r + dn, r + dn + dr] as const),
      ropeScale,
    ),
  };
}

/**
 * The layer's projections stacked by input (the header's grouping): x = [q_a | kv_a | wk | weights_proj * Hi^-.5 Di^-.5]
 * (direct q_proj: [q nope rows | q rope rows * scale | kv_a]) and, with q-LoRA, qr = [q_b nope rows | q_b rope
 * rows * scale | wq_b]; sizes are each block's rows. Shared by this graph and the native decode layer.
 */
export interface PreAttentionStacks {
  readonly x: LinearWeight;
  readonly xSizes: readonly number[];
  readonly qr: LinearWeight | null;
  readonly qrSizes: readonly number[];
}

export function preAttentionStacks(config: ModelConfig, attn: AttentionWeights<LinearWeight>, indexerConfig: IndexerConfig | null): PreAttentionStacks {
  const scale = mlaSoftmaxScale(config);
  const indexer = indexerConfig ? attn.indexer : null;
  const query = attn.query;
  const qFromX = query.kind === 'direct' ? splitQRows(config, query.qProj, scale) : null;
  const xBlocks: LinearWeight[] = qFromX ? [qFromX.nope, qFromX.rope] : query.kind === 'lora' ? [query.qAProj] : [];
  xBlocks.push(attn.kvAProjWithMqa);
  if (indexer && indexerConfig) {
    const w = indexer.weightsProj;
    xBlocks.push(indexer.wk, selectRows(w, [[0, rowsOf(w)]], Math.pow(indexerConfig.nHeads, -0.5) * Math.pow(indexerConfig.headDim, -0.5)));
  }
  if (query.kind !== 'lora') return { x: stackRows(xBlocks), xSizes: xBlocks.map(rowsOf), qr: null, qrSizes: [] };
  const { nope, rope } = splitQRows(config, query.qBProj, scale);
  const qrBlocks = [nope, rope];
  if (indexer) qrBlocks.push(indexer.wqB);
  return { x: stackRows(xBlocks), xSizes: xBlocks.map(rowsOf), qr: stackRows(qrBlocks), qrSizes: qrBlocks.map(rowsOf) };
}

/**
 * Inputs h [N, D], cos/sin [N, 1, dr] (interleaved layout), and with the indexer icos/isin [N, 1, Di]
 * (half-split layout). Outputs q [N, H, C], kv [N, 1, C]; with the indexer iq [N, Hi, Di], ik [N, 1, Di], iw [N, Hi].
 * rotateIndexerQuery: iq in the Hadamard basis of an fp8 indexer key cache (PagedKVStorage.indexerKeysRotated).
 * quant: MatMulNBits bits/accuracy level of the quantised linear weights (null: float32 weights).
 * prelude: computes h from inputs of its own instead of the input h, and h becomes output 'h' (the layer's
 * residual): the MTP module's input projection (mtp.ts) runs in this graph, one run less per pass.
 */
export function buildPreAttentionGraph(
  config: ModelConfig,
  layer: number,
  attn: AttentionWeights<LinearWeight>,
  inputLayernorm: Tensor,
  indexerConfig: IndexerConfig | null,
  rotateIndexerQuery = false,
  quant: QuantBits | null = null,
  prelude: LayerPrelude | null = null,
): Uint8Array {
  const { hiddenSize: D, numAttentionHeads: H, qkRopeHeadDim: dr, kvLoraRank: L, rmsNormEps: eps } = config;
  const scale = mlaSoftmaxScale(config);
  const indexer = indexerConfig ? attn.indexer : null;
  const idx = indexerConfig;
  const g = new GraphBuilder(`pre_attention_${layer}`);
  const h = prelude ? prelude(g) : g.input('h', DataType.FLOAT, ['N', D]);
  if (prelude) g.markOutput(h, 'h', DataType.FLOAT, ['N', D]);
  const cos = g.input('cos', DataType.FLOAT, ['N', 1, dr]);
  const sin = g.input('sin', DataType.FLOAT, ['N', 1, dr]);
  const rotation = g.initializer(ropeRotation('interleaved', dr, dr), [dr, dr]);
  const x = rmsNorm(g, h, inputLayernorm, eps);

  // MLA 1 / IDX 1, 2, 4: one GEMM over x; the q path continues from qr (q_lora) or directly (q_proj).
  const query = attn.query;
  const stacks = preAttentionStacks(config, attn, indexerConfig);
  const xParts = g.nodeN('Split', [linear(g, x, stacks.x), g.int64s(stacks.xSizes)], stacks.xSizes.length, { axis: 1 });
  let qNope: string;
  let qPe: string;
  let iq: string | null = null;
  if (query.kind === 'direct' || stacks.qr === null) {
    [qNope, qPe] = [part(xParts, 0), part(xParts, 1)];
  } else {
    const qr = rmsNorm(g, part(xParts, 0), query.qALayernorm, eps);
    const qrParts = g.nodeN('Split', [linear(g, qr, stacks.qr), g.int64s(stacks.qrSizes)], stacks.qrSizes.length, { axis: 1 });
    [qNope, qPe, iq] = [part(qrParts, 0), part(qrParts, 1), qrParts[2] ?? null];
  }
  const kvAIndex = query.kind === 'direct' ? 2 : 1;

  // MLA 2-3: absorbed query.
  const qLat = absorbedQuery(g, config, qNope, attn.kvBProj, scale, quant); // [N, H, L]
  const qPeRoped = ropeRotate(g, reshape(g, qPe, [0, H, dr]), cos, sin, rotation); // [N, H, dr]
  g.markOutput(g.node('Concat', [qLat, qPeRoped], { axis: -1 }), 'q', DataType.FLOAT, ['N', H, L + dr]);

  // MLA 4: the cached latent row.
  const latentParts = g.nodeN('Split', [reshape(g, part(xParts, kvAIndex), [0, 1, L + dr]), g.int64s([L, dr])], 2, { axis: 2 });
  const kv = g.node('Concat', [rmsNorm(g, part(latentParts, 0), attn.kvALayernorm, eps), ropeRotate(g, part(latentParts, 1), cos, sin, rotation)], {
    axis: -1,
  });
  g.markOutput(kv, 'kv', DataType.FLOAT, ['N', 1, L + dr]);

  // IDX 2-4: indexer query and key with RoPE, head weights.
  if (indexer && idx && iq) {
    const { nHeads: Hi, headDim: Di } = idx;
    const icos = g.input('icos', DataType.FLOAT, ['N', 1, Di]);
    const isin = g.input('isin', DataType.FLOAT, ['N', 1, Di]);
    const iRotation = g.initializer(ropeRotation('half-split', dr, Di), [Di, Di]);
    const iqRoped = ropeRotate(g, reshape(g, iq, [0, Hi, Di]), icos, isin, iRotation);
    const iqOut = rotateIndexerQuery ? g.node('MatMul', [iqRoped, g.initializer(hadamardMatrix(Di), [Di, Di])]) : iqRoped;
    g.markOutput(iqOut, 'iq', DataType.FLOAT, ['N', Hi, Di]);
    const k = layerNorm(g, reshape(g, part(xParts, kvAIndex + 1), [0, 1, Di]), indexer.kNormWeight, indexer.kNormBias, INDEXER_LAYERNORM_EPS);
    g.markOutput(ropeRotate(g, k, icos, isin, iRotation), 'ik', DataType.FLOAT, ['N', 1, Di]);
    g.markOutput(part(xParts, kvAIndex + 2), 'iw', DataType.FLOAT, ['N', Hi]);
  }
  return g.build();
}
