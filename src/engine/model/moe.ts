// DeepSeek MoE execution: shared experts run inside the post-attention graph (with the router
// logits); the routing itself is TypeScript (moe_router.ts); routed experts run in one graph per
// layer fed with the dispatched rows.   [N, D]
import { DataType, GraphBuilder } from '../onnx/graph_builder.ts';
import { linear, reshape, swiGlu } from '../onnx/ops.ts';
import { isQuantized, type LinearWeight } from '../../common/quantized.ts';
import { rowsOf, stackRows } from '../quant/rows.ts';
import type { PostAttentionFfn } from './mla.ts';
import type { MoeConfig, MoeWeights, SwiGluWeights } from '../checkpoint/types.ts';

/**
 * Largest weight bytes one routed-experts graph may hold: ONNX models are protobufs, which cannot exceed
 * 2 GiB (a float32 DeepSeek-V2-Lite layer's 64 experts are 2.2 GB), so bigger layers are split into
 * graphs over ranges of experts, leaving room for everything else in the model.
 */
export const MAX_EXPERT_GRAPH_BYTES = 1.5e9;

export function denseFfn(w: SwiGluWeights<LinearWeight>): PostAttentionFfn {
  return (g, h2, x2) => {
    const D = rowsOf(w.downProj);
    g.markOutput(g.node('Add', [h2, swiGlu(g, x2, w.gateProj, w.upProj, w.downProj)]), 'h_out', DataType.FLOAT, ['N', D]);
  };
}

/** MoE tail of the post-attention graph: outputs h_out = h2 + shared(x2), x = x2, router logits. */
export function moePreludeFfn(w: MoeWeights<LinearWeight>): PostAttentionFfn {
  return (g, h2, x2) => {
    const [E, D] = w.gate.shape as [number, number];
    g.markOutput(linear(g, x2, w.gate), 'router', DataType.FLOAT, ['N', E]);
    g.markOutput(x2, 'x', DataType.FLOAT, ['N', D]);
    const s = w.sharedExperts;
    const hOut = s ? g.node('Add', [h2, swiGlu(g, x2, s.gateProj, s.upProj, s.downProj)]) : h2;
    g.markOutput(hOut, 'h_out', DataType.FLOAT, ['N', D]);
  };
}

function weightBytes(w: LinearWeight): number {
  return isQuantized(w) ? w.packed.byteLength + w.scales.byteLength : w.data.byteLength;
}

/** Consecutive expert ranges [e0, e1) whose weights each fit in maxBytes (one range when the layer fits). */
export function expertGroups(w: MoeWeights<LinearWeight>, maxBytes = MAX_EXPERT_GRAPH_BYTES): [number, number][] {
  const groups: [number, number][] = [];
  let start = 0;
  let bytes = 0;
  w.experts.forEach((e, j) => {
    const b = weightBytes(e.gateProj) + weightBytes(e.upProj) + weightBytes(e.downProj);
    if (j > start && bytes + b > maxBytes) {
      groups.push([start, j]);
      [start, bytes] = [j, 0];
    }
    bytes += b;
  });
  groups.push([start, w.experts.length]);
  return groups;
}

/**
 * Routed experts [e0, e1) of one MoE layer, all inline as initializers (ONNX Runtime prepacks them;
 * measured 2.7x faster at 16 active experts than feeding the weights as inputs, and no slower at 2).
 * Each expert takes its slice of the dispatched rows; experts no token picked get an empty slice and
 * cost nothing, so the work scales with the activated experts.
 *   inputs x [N, D], h [N, D], rows [M] int32 (token of each dispatched row of these experts, expert-major),
 *          sizes [E] int64 (rows per expert), w [M, 1] routing weights,
 *          inverse [N * k] int32 (row of each (token, choice) pair, token-major; M = a zero row: the
 *          pair's expert is in another range, see dispatchGroup)
 *   y_e = w * down_e(silu(gate_e(x_e)) * up_e(x_e));  h_out = h + sum over k of [y; 0][inverse] viewed [N, k, D]
 * The per-token sum is a gather + reduce, not a scatter-add: ScatterND with reduction 'add' races
 * on duplicate indices in ORT's threaded kernel (a token's k rows), measured as rare 1e-2 logit errors.
 */
export function buildRoutedExpertsGraph(D: number, moe: MoeConfig, layer: number, w: MoeWeights<LinearWeight>, range?: readonly [number, number]): Uint8Array {
  const I = moe.moeIntermediateSize;
  const [e0, e1] = range ?? [0, w.experts.length];
  const experts = w.experts.slice(e0, e1);
  const E = experts.length;
  const g = new GraphBuilder(`routed_experts_${layer}${range ? `_${e0}_${e1}` : ''}`);
  const x = g.input('x', DataType.FLOAT, ['N', D]);
  const h = g.input('h', DataType.FLOAT, ['N', D]);
  const rows = g.input('rows', DataType.INT32, ['M']);
  const sizes = g.input('sizes', DataType.INT64, [E]);
  const weights = g.input('w', DataType.FLOAT, ['M', 1]);
  const perExpert = (v: string): string[] => (E === 1 ? [v] : g.nodeN('Split', [v, sizes], E, { axis: 0 }));
  const concat = (vs: string[]): string => (vs.length === 1 ? vs[0]! : g.node('Concat', vs, { axis: 0 }));
  // gate and up share one GEMM per expert: [gate; up] rows -> [Mj, 2I].
  const xs = perExpert(g.node('Gather', [x, rows], { axis: 0 })); // E x [Mj, D]
  const gateUp = concat(xs.map((xe, e) => linear(g, xe, stackRows([experts[e]!.gateProj, experts[e]!.upProj])))); // [M, 2I]
  const [gate, up] = g.nodeN('Split', [gateUp, g.int64s([I, I])], 2, { axis: 1 });
  const act = g.node('Mul', [g.node('Mul', [gate!, g.node('Sigmoid', [gate!])]), up!]); // [M, I]
  const y = concat(perExpert(act).map((ae, e) => linear(g, ae, experts[e]!.downProj))); // [M, D]
  const padded = g.node('Concat', [g.node('Mul', [y, weights]), g.initializer(new Float32Array(D), [1, D])], { axis: 0 }); // [M + 1, D]
  const inverse = g.input('inverse', DataType.INT32, ['P']);
  const k = moe.numExpertsPerTok;
  const perToken = reshape(g, g.node('Gather', [padded, inverse], { axis: 0 }), [-1, k, D]); // [N, k, D]
  g.markOutput(g.node('Add', [h, g.node('ReduceSum', [perToken, g.int64s([1])], { keepdims: 0 })]), 'h_out', DataType.FLOAT, ['N', D]);
  return g.build();
}

/** Dispatched rows, expert-major (the order of the routed-experts graph). */
export interface ExpertDispatch {
  readonly rows: Int32Array; // [M] token of each row
  readonly weights: Float32Array; // [M] routing weight of each row
  readonly sizes: BigInt64Array; // [E] rows per expert
  readonly inverse: Int32Array; // [M] row of each (token, choice) pair, token-major
}

/** Counting sort of the (token, choice) pairs by expert. */
export function dispatch(experts: Int32Array, weights: Float32Array, numExperts: number, k: number): ExpertDispatch {
  // Indices below are bounded by the loops (i < experts.length = weights.length, e < numExperts) and by
  // the router, whose expert ids are < numExperts.
  const counts = new Int32Array(numExperts);
  for (const e of experts) counts[e]!++;
  const next = new Int32Array(numExperts);
  for (let e = 1; e < numExperts; e++) next[e] = next[e - 1]! + counts[e - 1]!;
  const rows = new Int32Array(experts.length);
  const ws = new Float32Array(experts.length);
  const inverse = new Int32Array(experts.length);
  experts.forEach((e, i) => {
    const r = next[e]!++;
    rows[r] = (i / k) | 0;
    ws[r] = weights[i]!;
    inverse[i] = r;
  });
  return { rows, weights: ws, sizes: BigInt64Array.from(counts, BigInt), inverse };
}

/**
 * The part of a dispatch that experts [e0, e1) handle: their rows (contiguous, the order is expert-major)
 * and an inverse whose pairs routed elsewhere point at the zero row (index = the group's row count).
 */
export function dispatchGroup(d: ExpertDispatch, e0: number, e1: number): ExpertDispatch {
  let start = 0;
  for (let e = 0; e < e0; e++) start += Number(d.sizes[e]);
  let end = start;
  for (let e = e0; e < e1; e++) end += Number(d.sizes[e]);
  const M = end - start;
  const inverse = d.inverse.map((r) => (r >= start && r < end ? r - start : M));
  return { rows: d.rows.subarray(start, end), weights: d.weights.subarray(start, end), sizes: d.sizes.subarray(e0, e1), inverse };
}
