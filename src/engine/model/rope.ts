// RoPE frequencies (with YaRN) and per-token cos/sin tables.
// Spec: test/fixtures/tiny-dsv32/README.md "RoPE frequencies". Angles are computed in float64
// and rounded to float32 once, so positions far from 0 lose no precision.
import type { ModelConfig } from './types.ts';

/** th_i for i < d/2 (float64), YaRN-corrected when `rope_scaling` is configured (HF semantics). */
export function ropeInvFreq(config: ModelConfig): Float64Array {
  const d = config.qkRopeHeadDim;
  const base = config.ropeTheta;
  const half = d / 2;
  const invFreq = new Float64Array(half);
  for (let i = 0; i < half; i++) invFreq[i] = Math.pow(base, (-2 * i) / d);
  const yarn = config.ropeScaling;
  if (!yarn) return invFreq;
  const correctionDim = (rotations: number) =>
    (d * Math.log(yarn.originalMaxPositionEmbeddings / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
  const low = Math.max(Math.floor(correctionDim(yarn.betaFast)), 0);
  let high = Math.min(Math.ceil(correctionDim(yarn.betaSlow)), d - 1);
  if (low === high) high += 0.001;
  for (let i = 0; i < half; i++) {
    const ramp = Math.min(Math.max((i - low) / (high - low), 0), 1);
    invFreq[i] = (invFreq[i] / yarn.factor) * ramp + invFreq[i] * (1 - ramp);
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

/** cos/sin tables [N, d/2] for the given absolute positions. */
export function ropeTables(invFreq: Float64Array, positions: Int32Array): { cos: Float32Array; sin: Float32Array } {
  const half = invFreq.length;
  const cos = new Float32Array(positions.length * half);
  const sin = new Float32Array(positions.length * half);
  for (let t = 0; t < positions.length; t++) {
    const p = positions[t];
    for (let i = 0; i < half; i++) {
      const angle = p * invFreq[i];
      cos[t * half + i] = Math.cos(angle);
      sin[t * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}
