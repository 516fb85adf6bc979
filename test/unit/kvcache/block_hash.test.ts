import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { blockTokens, hashBlock } from '../../../src/kvcache/block_hash.ts';

describe('hashBlock', () => {
  it('is a deterministic 128-bit hex string', () => {
    const h = hashBlock(null, [1, 2, 3]);
    assert.match(h, /^[0-9a-f]{32}$/);
    assert.equal(hashBlock(null, Int32Array.of(1, 2, 3)), h, 'number[] and Int32Array hash alike');
  });

  it('depends on the parent, the tokens and the salt', () => {
    const root = hashBlock(null, [1, 2]);
    const hashes = [
      root,
      hashBlock(null, [2, 1]),
      hashBlock(null, [1, 2], 'tenant-a'),
      hashBlock(null, [1, 2], 'tenant-b'),
      hashBlock(root, [1, 2]),
      hashBlock(hashBlock(null, [9, 9]), [1, 2]),
    ];
    assert.equal(new Set(hashes).size, hashes.length);
    assert.equal(hashBlock(null, [1, 2], ''), root, 'an empty salt is no salt');
  });

  it('blockTokens copies one block', () => {
    assert.deepEqual([...blockTokens([0, 1, 2, 3, 4, 5, 6], 1, 3)], [3, 4, 5]);
  });
});
