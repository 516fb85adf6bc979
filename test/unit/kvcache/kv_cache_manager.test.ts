import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BlockPool } from '../../../src/kvcache/block_pool.ts';
import { KVCacheManager } from '../../../src/kvcache/kv_cache_manager.ts';
import { assertInvariantError, range } from './helpers.ts';

const BS = 4;
const manager = (numBlocks: number, enablePrefixCaching = true) => new KVCacheManager({ numBlocks, blockSize: BS, enablePrefixCaching });

/** Admits a request the way the scheduler does: lookup, allocate, "compute" the prompt, cache. */
function runPrompt(m: KVCacheManager, id: string, prompt: number[], salt?: string): number {
  const computed = m.getComputedBlocks(prompt, salt);
  assert.notEqual(m.allocateSlots(id, prompt.length, computed), null);
  m.cacheFullBlocks(id, prompt, prompt.length, salt);
  m.checkIntegrity();
  return computed.numComputedTokens;
}

describe('KVCacheManager allocation', () => {
  it('allocates until exhausted, then returns null without a partial allocation', () => {
    const m = manager(10);
    assert.deepEqual(m.allocateSlots('a', 12), [0, 1, 2]);
    assert.equal(m.allocateSlots('b', 20)!.length, 5);
    assert.equal(m.allocateSlots('c', 12), null);
    assert.equal(m.hasRequest('c'), false);
    assert.equal(m.numFreeBlocks, 2);
    assert.equal(m.allocateSlots('a', 13)!.length, 1);
    assert.deepEqual(m.allocateSlots('a', 13), [], 'already big enough');
    assert.equal(m.allocateSlots('b', 28), null, 'needs 2 blocks, 1 free');
    assert.equal(m.getBlockTable('b').length, 5);
    assert.equal(m.numFreeBlocks, 1);
    assert.equal(m.usage, 0.9);
    m.checkIntegrity();
  });

  it('trimSlots rolls back lookahead blocks of rejected drafts, never a cached block', () => {
    const m = manager(10);
    const prompt = range(100, 109);
    runPrompt(m, 'a', prompt); // blocks 0, 1 full and cached, block 2 holds token 8
    assert.equal(m.allocateSlots('a', 9 + 1 + 6)!.length, 1, 'lookahead for 1 + 6 drafts: 16 tokens, 4 blocks');
    m.trimSlots('a', 11); // 2 drafts kept: 11 tokens, 3 blocks
    assert.equal(m.getBlockTable('a').length, 3);
    assert.equal(m.numFreeBlocks, 7);
    m.checkIntegrity();
    m.trimSlots('a', 12); // already within
    assert.equal(m.getBlockTable('a').length, 3);
    assert.throws(() => m.trimSlots('a', 4), /would free cached blocks/);
    m.free('a');
    m.checkIntegrity();
  });

  it('free returns every block; unknown ids are a no-op', () => {
    const m = manager(10);
    m.allocateSlots('a', 12);
    m.allocateSlots('b', 25);
    m.free('a');
    m.free('b');
    m.free('never-admitted');
    assert.equal(m.numFreeBlocks, 10);
    assert.equal(m.usage, 0);
    assert.equal(m.hasRequest('a'), false);
    assertInvariantError(() => m.getBlockTable('a'), /unknown request a/);
    m.checkIntegrity();
  });

  it('grows block by block as decode tokens arrive, caching each newly full block', () => {
    const m = manager(8);
    const tokens = range(100, 105);
    m.allocateSlots('a', tokens.length);
    m.cacheFullBlocks('a', tokens, tokens.length);
    assert.equal(m.numCachedBlocks, 1);
    for (let t = 0; t < 6; t++) {
      tokens.push(200 + t);
      m.allocateSlots('a', tokens.length);
      m.cacheFullBlocks('a', tokens, tokens.length - 1); // the newest token is computed next step
      m.checkIntegrity();
    }
    assert.equal(m.getBlockTable('a').length, 3);
    assert.equal(m.numCachedBlocks, 2);
  });
});

describe('KVCacheManager prefix caching', () => {
  it('the same prompt twice hits its full blocks and shares them', () => {
    const m = manager(10);
    const prompt = range(0, 10);
    assert.equal(runPrompt(m, 'a', prompt), 0);
    assert.equal(runPrompt(m, 'b', prompt), 8);
    const [a, b] = [m.getBlockTable('a'), m.getBlockTable('b')];
    assert.deepEqual(b.slice(0, 2), a.slice(0, 2));
    assert.notEqual(b[2], a[2]);
    assert.equal(m.numFreeBlocks, 10 - 4);
    assert.deepEqual(m.prefixCacheStats, { numQueryTokens: 20, numHitTokens: 8, numQueries: 2 });
  });

  it('never covers the last prompt token', () => {
    const m = manager(10);
    const prompt = range(0, 8); // exactly two full blocks, both cached
    runPrompt(m, 'a', prompt);
    assert.equal(m.numCachedBlocks, 2);
    assert.equal(m.getComputedBlocks(prompt).numComputedTokens, 4, 'block 2 holds the last token');
    assert.equal(m.getComputedBlocks([...prompt, 99]).numComputedTokens, 8);
    assert.equal(m.getComputedBlocks([0]).numComputedTokens, 0);
    assert.equal(m.getComputedBlocks([]).numComputedTokens, 0);
  });

  it('a salt isolates tenants', () => {
    const m = manager(10);
    const prompt = range(0, 9);
    runPrompt(m, 'a', prompt, 'tenant-x');
    assert.equal(m.getComputedBlocks(prompt).numComputedTokens, 0);
    assert.equal(m.getComputedBlocks(prompt, 'tenant-y').numComputedTokens, 0);
    assert.equal(m.getComputedBlocks(prompt, 'tenant-x').numComputedTokens, 8);
  });

  it('a different token in block 2 stops the hit chain at block 1', () => {
    const m = manager(10);
    const prompt = range(0, 13);
    runPrompt(m, 'a', prompt);
    const edited = [...prompt];
    edited[5] = 999;
    assert.equal(m.getComputedBlocks(edited).numComputedTokens, 4);
    edited[5] = 5;
    edited[9] = 999; // block 3 differs: block 2 still hits
    assert.equal(m.getComputedBlocks(edited).numComputedTokens, 8);
  });

  it('finds nothing when prefix caching is disabled', () => {
    const m = manager(10, false);
    const prompt = range(0, 13);
    runPrompt(m, 'a', prompt);
    assert.equal(runPrompt(m, 'b', prompt), 0);
    assert.equal(m.numCachedBlocks, 0);
    assert.deepEqual(m.prefixCacheStats, { numQueryTokens: 0, numHitTokens: 0, numQueries: 0 });
  });

  it('evicts cached blocks LRU under pressure, tail blocks first', () => {
    const m = manager(4);
    const prompt = range(0, 16);
    runPrompt(m, 'a', prompt);
    m.free('a');
    assert.equal(m.numCachedBlocks, 4);
    assert.equal(m.numFreeBlocks, 4, 'cached blocks are free');
    runPrompt(m, 'b', range(500, 508)); // takes 2 blocks: evicts a's last two
    assert.equal(m.numCachedBlocks, 2 + 2);
    assert.equal(m.getComputedBlocks(prompt).numComputedTokens, 8, 'the prefix head survived');
  });

  it('free hit blocks do not count as room, and a refused allocation keeps them cached', () => {
    const m = manager(4);
    const prompt = range(0, 16);
    runPrompt(m, 'a', prompt);
    m.free('a');
    runPrompt(m, 'b', range(500, 508));
    const computed = m.getComputedBlocks(prompt);
    assert.equal(computed.blockIds.length, 2);
    assert.equal(m.allocateSlots('c', 16, computed), null, '2 free blocks, both are the hits');
    assert.equal(m.numCachedBlocks, 4);
    m.checkIntegrity();
    m.free('b');
    assert.equal(m.allocateSlots('c', 16, computed)!.length, 2);
    assert.deepEqual(m.getBlockTable('c').slice(0, 2), computed.blockIds);
    m.checkIntegrity();
  });

  it('a stale hit (evicted between lookup and allocation) is an internal error', () => {
    const m = manager(2);
    runPrompt(m, 'a', range(0, 5));
    m.free('a');
    const computed = m.getComputedBlocks(range(0, 5));
    assert.equal(computed.blockIds.length, 1);
    m.allocateSlots('b', 8); // reuses both blocks, evicting the hit
    assertInvariantError(() => m.allocateSlots('c', 5, computed), /stale prefix hit/);
  });

  it('two requests computing the same prefix at once: the first block stays canonical', () => {
    const m = manager(10);
    const prompt = range(0, 9);
    m.allocateSlots('a', 9);
    m.allocateSlots('b', 9);
    m.cacheFullBlocks('a', prompt, 9);
    m.cacheFullBlocks('b', prompt, 9);
    m.checkIntegrity();
    assert.equal(m.numCachedBlocks, 2);
    assert.deepEqual(m.getComputedBlocks(prompt).blockIds, m.getBlockTable('a').slice(0, 2));
    m.free('a');
    m.free('b');
    m.checkIntegrity();
  });
});

describe('KVCacheManager.checkIntegrity catches broken states', () => {
  const pool = (m: KVCacheManager) => (m as unknown as { pool: BlockPool }).pool;
  const tables = (m: KVCacheManager) => (m as unknown as { tables: Map<string, number[]> }).tables;

  it('a reference no table holds', () => {
    const m = manager(4);
    m.allocateSlots('a', 4);
    pool(m).touch([3]);
    assertInvariantError(() => m.checkIntegrity(), /block 3 has refCnt 1 but 0 holding tables/);
  });

  it('a table holding a free block', () => {
    const m = manager(4);
    m.allocateSlots('a', 4);
    tables(m).get('a')!.push(2);
    assertInvariantError(() => m.checkIntegrity(), /block 2 has refCnt 0 but 1 holding tables/);
  });

  it('a table holding one block twice', () => {
    const m = manager(4);
    m.allocateSlots('a', 4);
    pool(m).touch([0]);
    tables(m).get('a')!.push(0);
    assertInvariantError(() => m.checkIntegrity(), /holds a block twice/);
  });
});
