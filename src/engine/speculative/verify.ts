// Verification of a request's drafts against the target model's rows of one step. Row i of the chunk
// (the request's last token, then drafts d_1 .. d_k) gives the distribution of the token after d_i:
//   greedy:   the sampler's own pick per row; keep going while it equals the next draft
//   sampling: accept d_{i+1} with probability min(1, p_i(d) / q_i(d)), else draw from the normalised
//             residual max(0, p_i - q_i) and stop (speculative/rejection.ts)
// and when every draft is kept, row k gives one more token (the bonus). Each row is scored as if the
// drafts before it were already output (penalties, min_tokens), exactly as a plain step would score it.
// The main RNG advances once per emitted token, as in plain decoding; draft tests use request.draftRng.
import type { Request, SampledLogprobs } from '../request.ts';
import { processedDistribution } from '../sampling/distribution.ts';
import { logSumExp, topLogprobs } from '../sampling/logprobs.ts';
import { sampleToken, type SamplerWorkspace } from '../sampling/sampler.ts';
import { isGreedy } from '../sampling/sampling_params.ts';
import { acceptOrResample } from './rejection.ts';

export interface EmittedToken {
  readonly tokenId: number;
  readonly logprobs: SampledLogprobs | null;
}

export interface VerifiedDrafts {
  /** Accepted drafts, then the correction or bonus token: 1 .. k + 1 tokens. */
  readonly tokens: readonly EmittedToken[];
  readonly numAcceptedDrafts: number;
}

/** rows: [k + 1, vocab] logits of the chunk's rows; drafts: the k drafts the chunk carried. */
export function verifyDrafts(rows: Float32Array, vocab: number, request: Request, drafts: readonly number[], ws: SamplerWorkspace): VerifiedDrafts {
  const { params, sampling } = request;
  const tokens: EmittedToken[] = [];
  const undo = [];
  try {
    for (let i = 0; i <= drafts.length; i++) {
      const row = rows.subarray(i * vocab, (i + 1) * vocab);
      const q = request.draftProbs[i] ?? null;
      if (i === drafts.length || isGreedy(params) || q === null) {
        const t = sampleToken(row, params, sampling, ws);
        tokens.push({ tokenId: t.tokenId, logprobs: t.logprob === null ? null : { tokenId: t.tokenId, logprob: t.logprob, topLogprobs: t.topLogprobs ?? [] } });
        if (i === drafts.length || t.tokenId !== drafts[i]) break;
      } else {
        const p = processedDistribution(row, params, sampling, ws);
        const uResample = sampling.rng.nextFloat();
        const r = acceptOrResample(p, q, drafts[i]!, request.draftRng.nextFloat(), uResample);
        tokens.push({ tokenId: r.tokenId, logprobs: params.logprobs === null ? null : rawLogprobs(row, r.tokenId, params.logprobs) });
        if (!r.accepted) break;
      }
      undo.push(sampling.appendToken(drafts[i]!));
    }
  } finally {
    for (let j = undo.length - 1; j >= 0; j--) sampling.removeToken(undo[j]!);
  }
  return { tokens, numAcceptedDrafts: tokens.length - 1 };
}

function rawLogprobs(row: Float32Array, tokenId: number, n: number): SampledLogprobs {
  const lse = logSumExp(row);
  return { tokenId, logprob: row[tokenId]! - lse, topLogprobs: topLogprobs(row, n, lse) };
}
