// Log-probabilities of a raw logits row, as vLLM v1's default logprobs mode ("raw_logprobs")
// reports them: log_softmax of the unprocessed row, natural log, independent of temperature,
// penalties and filters.
import { sortBest, topKOfRow } from '../../common/select.ts';

export interface TokenLogprob {
  readonly tokenId: number;
  /** Natural-log probability under the raw model distribution. */
  readonly logprob: number;
}

/** log Σ_i exp(row[i]), shifted by the max so no term overflows. */
export function logSumExp(row: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  if (max === -Infinity || max === Infinity) return max;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  return max + Math.log(sum);
}

/** The n most likely tokens of the row, best first (ties: lower id), given logSumExp(row). */
export function topLogprobs(row: Float32Array, n: number, lse: number): TokenLogprob[] {
  if (n <= 0) return [];
  const ids = new Int32Array(Math.min(n, row.length));
  const count = topKOfRow(row, n, ids);
  sortBest(row, ids, count);
  const out: TokenLogprob[] = [];
  for (const tokenId of ids.subarray(0, count)) out.push({ tokenId, logprob: row[tokenId]! - lse });
  return out;
}
