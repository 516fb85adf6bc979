// RoPE frequencies (with YaRN) and per-token cos/sin tables.
// Spec: test/fixtures/tiny-dsv32/README.md "RoPE frequencies". Angles are computed in float64
// and rounded to float32 once, so positions far from 0 lose no precision.
import type { ModelConfig } from '../checkpoint/types.ts';

/** th_i for i < d/2 (float64), YaRN-corrected when `rope_scaling` is configured (HF semantics). */
export function ropeInvFreq(config: ModelConfig): Float64Array {
  const d = config.qkRopeHeadDim;
  const base = config.ropeTheta;
  const half = d / 2;
  const invFreq = new Float64Array(half);
  for (let i = 0; i < half; i++) invFreq[i] = Math.pow(base, (-2 * i) / d);
  const yarn = config.ropeScaling;
  if (!yarn) return invFreq;
  const correctionDim = (rotations: number) => (d * Math.log(yarn.originalMaxPositionEmbeddings / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
  const low = Math.max(Math.floor(correctionDim(yarn.betaFast)), 0);
  let high = Math.min(Math.ceil(correctionDim(yarn.betaSlow)), d - 1);
  if (low === high) high += 0.001;
  for (let i = 0; i < half; i++) {
    const ramp = Math.min(Math.max((i - low) / (high - low), 0), 1);
    invFreq[i] = (invFreq[i]! / yarn.factor) * ramp + invFreq[i]! * (1 - ramp);
  }
  return invFreq;
}

/** MLA softmax scale: (nope + rope)^-0.5 * m^2, m = 0.1 * mscale_all_dim * ln(factor) + 1 under YaRN. */
export function mlaSoftmaxScale(config: ModelConfig): number {
  let scale = Math.pow(config.qkNopeHeadDim + config.qkRopeHeadDim, -0.5);
  const yarn = config.ropeScaling;
  if (yarn && yarn.factor > 1 && yarn.mscaleAllDim) {
    const m = 0.1 * yarn.mscaleAllDim * Math.log(yarn.factor) + 1;
    scale *= m * m;
  }
  return scale;
}

/**
 * RoPE as y = x * cos + (x @ R) * sin over a row of `width` dims whose first d = 2 * invFreq.length
 * dims rotate. Layouts (fixture README): MLA pairs (x[2i], x[2i+1]) ("interleaved"); the indexer
 * pairs (x[i], x[i + d/2]) ("half-split"). Dims past d pass through (cos 1, sin 0, R 0).
 */
export type RopeLayout = 'interleaved' | 'half-split';

/** The [width, width] matrix R with (x @ R) = the pair-rotated x (-x_b in a's place, x_a in b's). */
export function ropeRotation(layout: RopeLayout, d: number, width: number): Float32Array {
  const r = new Float32Array(width * width);
  for (let i = 0; i < d / 2; i++) {
    const [a, b] = layout === 'interleaved' ? [2 * i, 2 * i + 1] : [i, i + d / 2];
    r[b * width + a] = -1; // y[a] = -x[b]
    r[a * width + b] = 1; // y[b] = x[a]
  }
  return r;
}

/** cos/sin tables [N, width] for the given absolute positions, in the layout's pair order. */
export function ropeTables(invFreq: Float64Array, positions: Int32Array, layout: RopeLayout, width: number): { cos: Float32Array; sin: Float32Array } {
  const half = invFreq.length;
  const cos = new Float32Array(positions.length * width);
  const sin = new Float32Array(positions.length * width);
  for (let t = 0; t < positions.length; t++) {
    const row = t * width;
    cos.fill(1, row + 2 * half, row + width);
    for (let i = 0; i < half; i++) {
      const angle = positions[t]! * invFreq[i]!;
      const [a, b] = layout === 'interleaved' ? [2 * i, 2 * i + 1] : [i, i + half];
      cos[row + a] = cos[row + b] = Math.cos(angle);
      sin[row + a] = sin[row + b] = Math.sin(angle);
    }
  }
  return { cos, sin };
}
