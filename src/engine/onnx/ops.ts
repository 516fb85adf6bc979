// Composite ops over GraphBuilder: the building blocks shared by the model graphs.
// All helpers take and return value names; shapes are in the comments of the callers.
import type { GraphBuilder } from './graph_builder.ts';
import type { Tensor } from '../model/types.ts';

/** y = x @ W^T for an HF linear weight W [out, in] stored as an initializer; x is 2-D [N, in]. */
export function linear(g: GraphBuilder, x: string, weight: Tensor | string): string {
  const w = typeof weight === 'string' ? weight : g.initializer(weight.data, weight.shape);
  return g.node('Gemm', [x, w], { transB: 1 });
}

/** weight * x / sqrt(mean(x^2) + eps) over the last axis (one fused ORT kernel). */
export function rmsNorm(g: GraphBuilder, x: string, weight: Tensor, eps: number): string {
  return g.node('SimplifiedLayerNormalization', [x, g.initializer(weight.data, weight.shape)], { axis: -1, epsilon: { float: eps } });
}

/** LayerNorm with biased variance over the last axis. */
export function layerNorm(g: GraphBuilder, x: string, weight: Tensor, bias: Tensor, eps: number): string {
  return g.node('LayerNormalization', [x, g.initializer(weight.data, weight.shape), g.initializer(bias.data, bias.shape)], {
    axis: -1,
    epsilon: { float: eps },
  });
}

export function reshape(g: GraphBuilder, x: string, shape: readonly number[]): string {
  return g.node('Reshape', [x, g.int64s(shape)]);
}

/**
 * Reshape to a target assembled from static sizes and runs of another value's dims:
 * parts are numbers (static) or [value, start, end] (that value's shape[start:end]).
 */
export function reshapeLike(g: GraphBuilder, x: string, parts: readonly (number | readonly [string, number, number])[]): string {
  const pieces = parts.map((p) => (typeof p === 'number' ? g.int64s([p]) : g.node('Shape', [p[0]], { start: p[1], end: p[2] })));
  return g.node('Reshape', [x, g.node('Concat', pieces, { axis: 0 })]);
}

export function slice(g: GraphBuilder, x: string, axis: number, start: number, end: number): string {
  return g.node('Slice', [x, g.int64s([start]), g.int64s([end]), g.int64s([axis])]);
}

export function mul(g: GraphBuilder, a: string, b: string): string {
  return g.node('Mul', [a, b]);
}

export function add(g: GraphBuilder, a: string, b: string): string {
  return g.node('Add', [a, b]);
}

/** SwiGLU MLP: down(silu(gate(x)) * up(x)); weights are initializers or graph inputs. */
export function swiGlu(g: GraphBuilder, x: string, gate: Tensor | string, up: Tensor | string, down: Tensor | string): string {
  const a = linear(g, x, gate);
  const silu = mul(g, a, g.node('Sigmoid', [a]));
  return linear(g, mul(g, silu, linear(g, x, up)), down);
}

/**
 * Interleaved RoPE (MLA layout): pairs (x[2i], x[2i+1]) rotate by angle p * th_i.
 * x: [N, G, d], cos/sin: [N, d/2] -> [N, G, d].
 */
export function ropeInterleaved(g: GraphBuilder, x: string, cos: string, sin: string, d: number): string {
  const pairs = reshape(g, x, [0, 0, d / 2, 2]); // [N, G, d/2, 2]
  const [even, odd] = g.nodeN('Split', [pairs], 2, { axis: -1, num_outputs: 2 }); // [N, G, d/2, 1]
  const c = reshape(g, cos, [0, 1, d / 2, 1]);
  const s = reshape(g, sin, [0, 1, d / 2, 1]);
  const yEven = g.node('Sub', [mul(g, even, c), mul(g, odd, s)]);
  const yOdd = add(g, mul(g, even, s), mul(g, odd, c));
  return reshape(g, g.node('Concat', [yEven, yOdd], { axis: -1 }), [0, 0, d]);
}

/**
 * Half-split ("rotate_half") RoPE on the first d dims (indexer layout, rope part first):
 * x: [N, G, D] with D >= d, cos/sin: [N, d/2] -> [N, G, D].
 */
export function ropeHalfSplit(g: GraphBuilder, x: string, cos: string, sin: string, d: number, total: number): string {
  const [x1, x2] = g.nodeN('Split', [slice(g, x, -1, 0, d)], 2, { axis: -1, num_outputs: 2 }); // [N, G, d/2]
  const c = reshape(g, cos, [0, 1, d / 2]);
  const s = reshape(g, sin, [0, 1, d / 2]);
  const y1 = g.node('Sub', [mul(g, x1, c), mul(g, x2, s)]);
  const y2 = add(g, mul(g, x1, s), mul(g, x2, c));
  const parts = [y1, y2];
  if (total > d) parts.push(slice(g, x, -1, d, total));
  return g.node('Concat', parts, { axis: -1 });
}
