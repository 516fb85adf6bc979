// Speculative sampling's accept / resample rule (Leviathan et al. 2023; Chen et al. 2023): a draft
// token d drawn from q is kept with probability min(1, p(d) / q(d)); otherwise the token is drawn from
// the normalised residual max(0, p - q). Whatever q is, the emitted token is distributed exactly as p.
import { drawFromDistribution } from '../sampling/distribution.ts';

export interface RejectionResult {
  readonly tokenId: number;
  readonly accepted: boolean;
}

/**
 * @param p target distribution [vocab] (processedDistribution of the model's row)
 * @param q draft distribution [vocab] that `draft` was drawn from (q[draft] > 0)
 * @param uAccept uniform [0, 1) for the accept test
 * @param uResample uniform [0, 1) for the residual draw
 */
export function acceptOrResample(p: Float64Array, q: Float64Array, draft: number, uAccept: number, uResample: number): RejectionResult {
  const qd = q[draft]!;
  if (qd > 0 && uAccept * qd < p[draft]!) return { tokenId: draft, accepted: true };
  const residual = new Float64Array(p.length);
  let mass = 0;
  for (let i = 0; i < p.length; i++) {
    const r = p[i]! - q[i]!;
    if (r > 0) {
      residual[i] = r;
      mass += r;
    }
  }
  // mass is 0 only when p == q up to rounding, where the test above accepts (almost) surely: draw from p.
  return { tokenId: drawFromDistribution(mass > 0 ? residual : p, uResample), accepted: false };
}
