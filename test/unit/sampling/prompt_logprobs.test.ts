import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EngineError } from '../../../src/common/errors.ts';
import { computePromptLogprobs, scorePromptRows } from '../../../src/engine/sampling/prompt_logprobs.ts';
import { logSoftmax, randomRow, rankIds } from './helpers.ts';

const VOCAB = 512;
const PROMPT = [7, 300, 12, 12, 511, 0];

/** Rows for prompt positions 0 .. numRows-1, each a distinct random row. */
function promptRows(numRows: number): Float32Array {
  const rows = new Float32Array(numRows * VOCAB);
  for (let r = 0; r < numRows; r++) rows.set(randomRow(VOCAB, 100 + r, 2), r * VOCAB);
  return rows;
}

describe('computePromptLogprobs', () => {
  it('scores each next prompt token by log_softmax of the previous row, first token null', () => {
    const rows = promptRows(PROMPT.length - 1);
    const out = computePromptLogprobs(rows, VOCAB, PROMPT, 3);
    assert.equal(out.length, PROMPT.length);
    assert.equal(out[0], null);
    for (let pos = 1; pos < PROMPT.length; pos++) {
      const row = rows.subarray((pos - 1) * VOCAB, pos * VOCAB);
      const reference = logSoftmax(row);
      const entry = out[pos]!;
      assert.equal(entry.tokenId, PROMPT[pos]);
      assert.ok(Math.abs(entry.logprob - reference[PROMPT[pos]!]!) < 1e-9);
      assert.deepEqual(
        entry.topLogprobs.map((t) => t.tokenId),
        rankIds(row).slice(0, 3),
      );
      entry.topLogprobs.forEach((t) => assert.ok(Math.abs(t.logprob - reference[t.tokenId]!) < 1e-9));
    }
  });

  it('ignores a trailing row for the last prompt position and handles one-token prompts', () => {
    const rows = promptRows(PROMPT.length);
    assert.deepEqual(computePromptLogprobs(rows, VOCAB, PROMPT, 0), computePromptLogprobs(rows.subarray(0, (PROMPT.length - 1) * VOCAB), VOCAB, PROMPT, 0));
    assert.deepEqual(computePromptLogprobs(new Float32Array(0), VOCAB, [5], 2), [null]);
    assert.deepEqual(computePromptLogprobs(rows.subarray(0, 2 * VOCAB), VOCAB, [1, 2], 1)[1]!.topLogprobs.length, 1);
  });

  it('gives the same entries when the rows arrive in prefill chunks', () => {
    const rows = promptRows(PROMPT.length - 1);
    const whole = computePromptLogprobs(rows, VOCAB, PROMPT, 2).slice(1);
    const chunked = [
      ...scorePromptRows(rows.subarray(0, 2 * VOCAB), VOCAB, PROMPT, 2, 0),
      ...scorePromptRows(rows.subarray(2 * VOCAB, 5 * VOCAB), VOCAB, PROMPT, 2, 2),
    ];
    assert.deepEqual(chunked, whole);
  });

  it('rejects rows that do not fit the prompt', () => {
    const internal = (err: unknown) => err instanceof EngineError && err.code === 'DSV_ERR_INTERNAL';
    assert.throws(() => computePromptLogprobs(promptRows(2), VOCAB, PROMPT, 1), internal);
    assert.throws(() => scorePromptRows(promptRows(2), VOCAB, PROMPT, 1, 4), internal);
    assert.throws(() => scorePromptRows(new Float32Array(VOCAB + 1), VOCAB, PROMPT, 1), internal);
  });
});
