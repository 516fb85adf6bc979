// DeepSeek MoE execution: shared experts run inside the post-attention graph; routed experts run
// in one graph per step and layer whose inputs are only the experts that some token picked, so the
// cost scales with the activated experts (weights are zero-copy graph inputs, not initializers).
//
// Expert graph for A active experts (built once per A, shared by all MoE layers):
//   inputs x [N, D], h [N, D], rows [M, 1] int64 (token of each dispatched row, expert-major),
//   and per active expert j: tok{j} [Mj] int32, w{j} [Mj, 1], gate{j}/up{j} [I, D], down{j} [D, I]
//   y_j = w_j * SwiGLU_j(x[tok_j]);  h_out = h + scatter_add(rows, concat_j y_j)   [N, D]
import { DataType, GraphBuilder } from '../onnx/graph_builder.ts';
import { linear, swiGlu } from '../onnx/ops.ts';
import type { PostAttentionFfn } from './mla.ts';
import type { ModelConfig, MoeWeights, SwiGluWeights } from './types.ts';

export function denseFfn(w: SwiGluWeights): PostAttentionFfn {
  return (g, h2, x2) => {
    const D = w.downProj.shape[0];
    g.markOutput(g.node('Add', [h2, swiGlu(g, x2, w.gateProj, w.upProj, w.downProj)]), 'h_out', DataType.FLOAT, ['N', D]);
  };
}

/** MoE tail of the post-attention graph: outputs h_out = h2 + shared(x2), x = x2, router logits. */
export function moePreludeFfn(w: MoeWeights): PostAttentionFfn {
  return (g, h2, x2) => {
    const [E, D] = w.gate.shape;
    g.markOutput(linear(g, x2, w.gate), 'router', DataType.FLOAT, ['N', E]);
    g.markOutput(x2, 'x', DataType.FLOAT, ['N', D]);
    const s = w.sharedExperts;
    const hOut = s ? g.node('Add', [h2, swiGlu(g, x2, s.gateProj, s.upProj, s.downProj)]) : h2;
    g.markOutput(hOut, 'h_out', DataType.FLOAT, ['N', D]);
  };
}

export function buildExpertGraph(config: ModelConfig, numActive: number): Uint8Array {
  const D = config.hiddenSize;
  const I = config.moe!.moeIntermediateSize;
  const g = new GraphBuilder(`experts_${numActive}`);
  const x = g.input('x', DataType.FLOAT, ['N', D]);
  const h = g.input('h', DataType.FLOAT, ['N', D]);
  const rows = g.input('rows', DataType.INT64, ['M', 1]);
  const ys: string[] = [];
  for (let j = 0; j < numActive; j++) {
    const tok = g.input(`tok${j}`, DataType.INT32, [`M${j}`]);
    const w = g.input(`w${j}`, DataType.FLOAT, [`M${j}`, 1]);
    const gate = g.input(`gate${j}`, DataType.FLOAT, [I, D]);
    const up = g.input(`up${j}`, DataType.FLOAT, [I, D]);
    const down = g.input(`down${j}`, DataType.FLOAT, [D, I]);
    const xj = g.node('Gather', [x, tok], { axis: 0 }); // [Mj, D]
    ys.push(g.node('Mul', [swiGlu(g, xj, gate, up, down), w]));
  }
  const y = ys.length === 1 ? ys[0] : g.node('Concat', ys, { axis: 0 }); // [M, D]
  g.markOutput(g.node('ScatterND', [h, rows, y], { reduction: 'add' }), 'h_out', DataType.FLOAT, ['N', D]);
  return g.build();
}

/** Token lists per active expert, expert-major (the order of the expert graph's rows). */
export interface ExpertDispatch {
  readonly activeExperts: readonly number[];
  readonly tokens: readonly Int32Array[];
  readonly weights: readonly Float32Array[];
  readonly rows: BigInt64Array; // [M] token index per dispatched row
}

export function dispatch(experts: Int32Array, weights: Float32Array, numExperts: number, k: number): ExpertDispatch {
  const counts = new Int32Array(numExperts);
  for (let i = 0; i < experts.length; i++) counts[experts[i]]++;
  const activeExperts: number[] = [];
  const tokens: Int32Array[] = [];
  const ws: Float32Array[] = [];
  const slotOf = new Int32Array(numExperts).fill(-1);
  for (let e = 0; e < numExperts; e++) {
    if (counts[e] === 0) continue;
    slotOf[e] = activeExperts.length;
    activeExperts.push(e);
    tokens.push(new Int32Array(counts[e]));
    ws.push(new Float32Array(counts[e]));
  }
  const fill = new Int32Array(activeExperts.length);
  for (let i = 0; i < experts.length; i++) {
    const j = slotOf[experts[i]];
    tokens[j][fill[j]] = (i / k) | 0;
    ws[j][fill[j]++] = weights[i];
  }
  const rows = new BigInt64Array(experts.length);
  let r = 0;
  for (const t of tokens) for (let i = 0; i < t.length; i++) rows[r++] = BigInt(t[i]);
  return { activeExperts, tokens, weights: ws, rows };
}
