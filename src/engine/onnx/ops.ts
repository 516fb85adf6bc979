// Composite ops over GraphBuilder: the building blocks shared by the model graphs.
// All helpers take and return value names; shapes are in the comments of the callers.
import type { GraphBuilder } from './graph_builder.ts';
import type { Tensor } from '../../common/tensor.ts';

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

/** RoPE as x * cos + (x @ R) * sin (see model/rope.ts); cos/sin broadcast against x. */
export function ropeRotate(g: GraphBuilder, x: string, cos: string, sin: string, rotation: string): string {
  return add(g, mul(g, x, cos), mul(g, g.node('MatMul', [x, rotation]), sin));
}

/** Stacks row blocks of HF linear weights ([out_i, in] each, same `in`) into one [sum out_i, in] weight. */
export function stackRows(blocks: readonly Float32Array[], cols: number): Tensor {
  const rows = blocks.reduce((n, b) => n + b.length / cols, 0);
  const data = new Float32Array(rows * cols);
  let offset = 0;
  for (const b of blocks) {
    data.set(b, offset);
    offset += b.length;
  }
  return { data, shape: [rows, cols] };
}
