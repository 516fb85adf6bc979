import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyTokenBitmask } from '../../../src/engine/structured/token_bitmask.ts';
import { Rng } from '../../../src/engine/sampling/rng.ts';

function randomMask(words: number, seed: number): Int32Array {
  const rng = Rng.fromSeed(seed);
  const mask = new Int32Array(words);
  for (let w = 0; w < words; w++) {
    const kind = rng.nextFloat();
    // All-allowed, all-masked and mixed words, as XGrammar produces them.
    mask[w] = kind < 0.3 ? -1 : kind < 0.6 ? 0 : (rng.nextFloat() * 2 ** 32) | 0;
  }
  return mask;
}

function reference(logits: Float32Array, mask: Int32Array): { row: Float32Array; allowed: number } {
  const row = Float32Array.from(logits);
  let allowed = 0;
  for (let i = 0; i < row.length; i++) {
    const word = mask[i >> 5];
    const on = word !== undefined && ((word >>> (i & 31)) & 1) === 1;
    if (on) allowed++;
    else row[i] = -Infinity;
  }
  return { row, allowed };
}

test('applyTokenBitmask equals the bit-by-bit definition (ragged widths, narrow masks)', () => {
  const cases: [number, number][] = [
    [4096, 128],
    [4100, 129], // a partial last word
    [4100, 128], // the mask does not cover the tail
    [31, 1],
    [64, 1], // the second word is not covered
  ];
  cases.forEach(([vocab, words], i) => {
    const logits = Float32Array.from({ length: vocab }, (_, j) => Math.sin(j + i));
    const mask = randomMask(words, 11 + i);
    const expected = reference(logits, mask);
    const allowed = applyTokenBitmask(logits, mask);
    assert.equal(allowed, expected.allowed, `vocab ${vocab}, ${words} words`);
    assert.deepEqual(logits, expected.row, `vocab ${vocab}, ${words} words`);
  });
});

test('an all-zero mask leaves nothing to sample', () => {
  const logits = new Float32Array(70).fill(1);
  assert.equal(applyTokenBitmask(logits, new Int32Array(3)), 0);
  assert.ok(logits.every((x) => x === -Infinity));
});
