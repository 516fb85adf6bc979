// Prompt logprobs (OpenAI `echo` + `logprobs`, vLLM `prompt_logprobs`): the logits row of prompt
// position p predicts prompt token p + 1, so rows 0 .. P-2 score tokens 1 .. P-1 and the first
// prompt token has nothing to score it (null). Rows may arrive in prefill chunks.
import { assert } from '../../common/errors.ts';
import { logSumExp, topLogprobs, type TokenLogprob } from './logprobs.ts';

export interface PromptTokenLogprobs {
  /** The actual prompt token at this position. */
  readonly tokenId: number;
  readonly logprob: number;
  /** The numTopLogprobs best alternatives, best first. */
  readonly topLogprobs: TokenLogprob[];
}

/**
 * Scores prompt tokens firstRow + 1 .. firstRow + numRows from consecutive logits rows.
 * @param logits [numRows, vocabSize] row-major; row r holds the logits of prompt position firstRow + r
 * @param firstRow prompt position of the first row (a prefill chunk's start)
 * @returns one entry per row, for prompt positions firstRow + 1 ...
 */
export function scorePromptRows(
  logits: Float32Array,
  vocabSize: number,
  promptTokenIds: ArrayLike<number>,
  numTopLogprobs: number,
  firstRow = 0,
): PromptTokenLogprobs[] {
  assert(vocabSize > 0 && logits.length % vocabSize === 0, `prompt logits length ${logits.length} is not a multiple of vocab ${vocabSize}`);
  const numRows = logits.length / vocabSize;
  assert(
    firstRow >= 0 && firstRow + numRows < promptTokenIds.length,
    `prompt rows ${firstRow}..${firstRow + numRows - 1} must predict tokens inside the ${promptTokenIds.length}-token prompt`,
  );
  const out: PromptTokenLogprobs[] = [];
  for (let r = 0; r < numRows; r++) {
    const row = logits.subarray(r * vocabSize, (r + 1) * vocabSize);
    const tokenId = promptTokenIds[firstRow + r + 1]!;
    const lse = logSumExp(row);
    out.push({ tokenId, logprob: row[tokenId]! - lse, topLogprobs: topLogprobs(row, numTopLogprobs, lse) });
  }
  return out;
}

/**
 * Logprobs for the whole prompt: entry p scores prompt token p; entry 0 is null.
 * @param logits rows for prompt positions 0 .. P-2, [P - 1, vocabSize]; a trailing row for
 *   position P-1 ([P, vocabSize], as a prefill returning every row gives) is ignored: it samples the
 *   first output token and scores no prompt token
 */
export function computePromptLogprobs(
  logits: Float32Array,
  vocabSize: number,
  promptTokenIds: ArrayLike<number>,
  numTopLogprobs: number,
): (PromptTokenLogprobs | null)[] {
  const numScored = Math.max(0, promptTokenIds.length - 1);
  const numRows = logits.length / vocabSize;
  assert(
    numRows === numScored || numRows === numScored + 1,
    `prompt logits must hold ${numScored} or ${numScored + 1} rows of ${vocabSize}, got ${logits.length} values`,
  );
  if (promptTokenIds.length === 0) return [];
  const rows = logits.subarray(0, numScored * vocabSize);
  return [null, ...scorePromptRows(rows, vocabSize, promptTokenIds, numTopLogprobs)];
}
