// Applies a next-token bitmask to one logits row: disallowed tokens get -inf. Bit i of the mask
// (word i >> 5, bit i & 31, XGrammar's layout) set = token i allowed.
//
// Cost: one pass over the mask words; a word that allows all 32 tokens is skipped, one that
// allows none is filled. A constrained position usually allows few tokens, so most words are 0.
// Measured in bench/structured_outputs.ts.

/**
 * Masks `logits` ([vocab]) in place. Tokens at or beyond the mask's width are disallowed.
 * @returns the number of allowed tokens inside the row (0 means nothing can be sampled)
 */
export function applyTokenBitmask(logits: Float32Array, bitmask: Int32Array): number {
  const n = logits.length;
  const fullWords = Math.min(n >>> 5, bitmask.length);
  let allowed = 0;
  for (let w = 0; w < fullWords; w++) {
    const word = bitmask[w]!; // w < fullWords <= bitmask.length
    if (word === -1) {
      allowed += 32;
      continue;
    }
    const base = w << 5;
    if (word === 0) {
      logits.fill(-Infinity, base, base + 32);
      continue;
    }
    allowed += maskWord(logits, base, word, 32);
  }
  // The ragged tail: a partial last word, and ids the mask does not cover.
  const tailStart = fullWords << 5;
  const tailWord = bitmask[fullWords];
  if (tailStart < n && tailWord !== undefined) allowed += maskWord(logits, tailStart, tailWord, n - tailStart);
  else if (tailStart < n) logits.fill(-Infinity, tailStart, n);
  return allowed;
}

function maskWord(logits: Float32Array, base: number, word: number, width: number): number {
  let allowed = 0;
  for (let b = 0; b < width; b++) {
    if ((word >>> b) & 1) allowed++;
    else logits[base + b] = -Infinity;
  }
  return allowed;
}
