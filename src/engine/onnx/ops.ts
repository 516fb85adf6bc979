// Composite ops over GraphBuilder: the building blocks shared by the model graphs.
// All helpers take and return value names; shapes are in the comments of the callers.
import type { GraphBuilder } from './graph_builder.ts';
import type { Tensor } from '../../common/tensor.ts';
import { blobBytes, isQuantized, kBlocks, QUANT_BLOCK, type LinearWeight, type QuantizedMatrix } from '../../common/quantized.ts';

/**
 * y = x @ W^T for an HF linear weight W [out, in] stored as an initializer (Gemm), or a quantised one
 * (MatMulNBits at QUANT_ACCURACY_LEVEL, see withAccuracyLevel); x is 2-D [N, in].
 */
export function linear(g: GraphBuilder, x: string, weight: LinearWeight | string): string {
  if (typeof weight !== 'string' && isQuantized(weight)) return quantizedLinear(g, x, weight, accuracyLevel);
  const w = typeof weight === 'string' ? weight : g.initializer(weight.data, weight.shape);
  return g.node('Gemm', [x, w], { transB: 1 });
}

/**
 * MatMulNBits compute type: 0 = float32 activations (exact against the dequantised weight),
 * 4 = activations quantised to int8 per block of 32 (int8 dot products, VNNI where the CPU has it).
 */
export type AccuracyLevel = 0 | 4;

/**
 * The level every model graph uses (pre/post-attention, experts, lm_head; decode and prefill share
 * graphs). Measured with bench/quant_matmul.ts, weight 2048 x 2048, 2 threads, on an AVX-512 VNNI EPYC
 * (machine loaded, load average ~15, so ratios only):
 *   M = 1:   f32 Gemm 0.75 ms; int8 level 0 28 ms (dequantises the whole weight on every call: a fallback
 *            path), int8 level 4 0.15 ms; int4 level 0 0.25 ms, int4 level 4 0.10 ms.
 *   M = 256: f32 38 ms; int8 level 0 60 ms, level 4 40 ms; int4 level 0 36 ms, level 4 25 ms.
 *   Relative error against the dequantised float32 weight: level 0 ~4e-7, level 4 ~5e-3.
 * Levels 1-3 (float32 / float16 / bfloat16 compute) at M = 1 on the same CPU: int8 16.6 / 7.4 / 12.5 ms
 * (50-130x level 4: no packed int8 kernel for them either), int4 0.26 / 0.19 / 0.27 ms (level 4: 0.09).
 * Level 4 is the fastest for both widths and both batch sizes, and int8 has no other usable level; its
 * 5e-3 activation rounding is the price, checked end to end by the int8 parity tests and perplexity bench.
 *
 * What level 4 costs in accuracy (bench/quant_accuracy.ts; teacher-forced golden-token logprob MAE on the
 * random-weight fixture, int8, one group of graphs quantised at a time, the rest float32):
 *   group                                      level 0   level 4
 *   pre-attention x GEMM (q_a, kv_a, idx wk+w)  0.0180    0.0246
 *   pre-attention qr GEMM (q_b, idx wq_b)       0.0101    0.0135
 *   kv_b per-head (W_UK, W_UV)                  0.0133    0.0185
 *   o_proj                                      0.0100    0.0144
 *   dense MLP (layer 0)                         0.0141    0.0206
 *   shared experts                              0.0085    0.0125
 *   routed experts                              0.0147    0.0253
 *   lm_head                                     0.0113    0.0153
 *   all                                         0.0355    0.0548
 * No group dominates: the errors add in quadrature (sqrt of the sum of squares: 0.036 / 0.053), and the
 * weights' own rounding (level 0) already misses the issue's 0.03; within the issue's rule (every linear
 * quantised) neither level meets it. Leaving graphs float32 would take the two largest groups (x GEMM +
 * routed experts: 0.028) with the rest at level 0, int8's 200-1000x slower fallback, or five of eight groups
 * float32 at level 4. An MSE-searched block scale instead of amax / 127 lowers int8's rounding
 * error by only 1.3% rms (Gaussian blocks of 32). The same int8 weights move the trained default model's
 * held-out perplexity by x1.0001: the fixture's random weights amplify any perturbation.
 */
export const QUANT_ACCURACY_LEVEL: AccuracyLevel = 4;

let accuracyLevel: AccuracyLevel = QUANT_ACCURACY_LEVEL;

/**
 * Runs fn (which builds graphs, synchronously) with linear() emitting MatMulNBits at `level`: the
 * parity tests build at level 0, exact against the dequantised weights.
 */
export function withAccuracyLevel<T>(level: AccuracyLevel, fn: () => T): T {
  const saved = accuracyLevel;
  accuracyLevel = level;
  try {
    return fn();
  } finally {
    accuracyLevel = saved;
  }
}

/**
 * y = x @ dequant(W)^T for a block-quantised HF linear weight W [N, K] (common/quantized.ts);
 * x is [M, K] (or [..., K]), y [M, N]. Symmetric: no zero_points input, ORT uses 2^(bits-1).
 */
export function quantizedLinear(g: GraphBuilder, x: string, w: QuantizedMatrix, accuracyLevel: AccuracyLevel): string {
  const b = g.initializer(w.packed, [w.rows, kBlocks(w.cols), blobBytes(w.bits)]);
  const scales = g.initializer(w.scales, [w.scales.length]);
  const attrs = { K: w.cols, N: w.rows, bits: w.bits, block_size: QUANT_BLOCK, accuracy_level: accuracyLevel };
  return g.node('MatMulNBits', [x, b, scales], attrs, 'com.microsoft');
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
export function swiGlu(g: GraphBuilder, x: string, gate: LinearWeight | string, up: LinearWeight | string, down: LinearWeight | string): string {
  const a = linear(g, x, gate);
  const silu = mul(g, a, g.node('Sigmoid', [a]));
  return linear(g, mul(g, silu, linear(g, x, up)), down);
}

/** RoPE as x * cos + (x @ R) * sin (see model/rope.ts); cos/sin broadcast against x. */
export function ropeRotate(g: GraphBuilder, x: string, cos: string, sin: string, rotation: string): string {
  return add(g, mul(g, x, cos), mul(g, g.node('MatMul', [x, rotation]), sin));
}
