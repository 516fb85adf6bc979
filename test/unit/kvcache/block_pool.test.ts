import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BlockPool } from '../../../src/kvcache/block_pool.ts';
import { FreeBlockQueue } from '../../../src/kvcache/free_block_queue.ts';
import { assertInvariantError, range } from './helpers.ts';

/** White-box view of the pool's private state, to corrupt it on purpose. */
interface PoolInternals {
  refCnt: Int32Array;
  hashes: (string | null)[];
  tokenIds: (Int32Array | null)[];
  hashToBlock: Map<string, number>;
  freeQueue: { next: Int32Array; prev: Int32Array; inQueue: Uint8Array; count: number; tail: number };
}
const internals = (pool: BlockPool) => pool as unknown as PoolInternals;

describe('FreeBlockQueue', () => {
  it('pops in id order, appends at the tail and removes from the middle', () => {
    const q = new FreeBlockQueue(5);
    assert.deepEqual(q.toArray(), [0, 1, 2, 3, 4]);
    assert.equal(q.popFront(), 0);
    q.remove(2);
    q.pushBack(0);
    q.pushBack(2);
    assert.deepEqual(q.toArray(), [1, 3, 4, 0, 2]);
    q.remove(2); // tail
    q.remove(1); // head
    assert.deepEqual(q.toArray(), [3, 4, 0]);
    assert.equal(q.size, 3);
    q.checkIntegrity();
  });

  it('rejects double insertion and removal of absent blocks', () => {
    const q = new FreeBlockQueue(3);
    assertInvariantError(() => q.pushBack(1), /already in the free queue/);
    q.remove(1);
    assertInvariantError(() => q.remove(1), /not in the free queue/);
    q.popFront();
    q.popFront();
    assertInvariantError(() => q.popFront(), /empty/);
  });
});

describe('BlockPool allocate/free/refcount', () => {
  it('allocates all or nothing and tracks usage', () => {
    const pool = new BlockPool(4);
    assert.deepEqual(pool.allocate(3), [0, 1, 2]);
    assert.equal(pool.numFreeBlocks, 1);
    assert.equal(pool.usage, 0.75);
    assert.equal(pool.allocate(2), null);
    assert.equal(pool.numFreeBlocks, 1, 'a failed allocate takes nothing');
    assert.deepEqual(pool.allocate(0), []);
    pool.free([0, 1, 2]);
    assert.equal(pool.numFreeBlocks, 4);
    assert.equal(pool.usage, 0);
    pool.checkIntegrity();
  });

  it('a shared block returns to the free queue only at refCnt 0', () => {
    const pool = new BlockPool(3);
    const a = pool.allocate(1)![0]!;
    pool.touch([a]);
    assert.equal(pool.refCount(a), 2);
    pool.free([a]);
    assert.equal(pool.refCount(a), 1);
    assert.equal(pool.numFreeBlocks, 2);
    pool.free([a]);
    assert.equal(pool.numFreeBlocks, 3);
    assertInvariantError(() => pool.free([a]), /refCnt 0/);
    pool.checkIntegrity();
  });

  it('reuses free blocks least recently freed first (LRU eviction of cached blocks)', () => {
    const pool = new BlockPool(4);
    const ids = pool.allocate(4)!;
    ids.forEach((id) => pool.cacheFullBlock(id, `h${id}`, [id]));
    pool.free([2, 0, 3, 1]);
    assert.deepEqual(pool.freeBlockIds(), [2, 0, 3, 1]);
    assert.deepEqual(pool.allocate(2), [2, 0]);
    assert.equal(pool.getCachedBlock('h2', [2]), null, 'reuse evicts the hash');
    assert.equal(pool.getCachedBlock('h0', [0]), null);
    assert.equal(pool.getCachedBlock('h3', [3]), 3, 'not yet reused: still a hit');
    assert.equal(pool.numCachedBlocks, 2);
    pool.checkIntegrity();
  });

  it('touch on a free cached block takes it out of the middle of the queue', () => {
    const pool = new BlockPool(4);
    const ids = pool.allocate(4)!;
    pool.cacheFullBlock(1, 'h1', [7, 8]);
    pool.free(ids);
    pool.touch([pool.getCachedBlock('h1', [7, 8])!]);
    assert.equal(pool.refCount(1), 1);
    assert.deepEqual(pool.freeBlockIds(), [0, 2, 3]);
    assert.deepEqual(pool.allocate(3), [0, 2, 3]);
    assert.equal(pool.allocate(1), null);
    assert.equal(pool.blockHash(1), 'h1', 'the touched block keeps its hash');
    pool.checkIntegrity();
  });
});

describe('BlockPool prefix-cache identity', () => {
  it('verifies token ids on a hit', () => {
    const pool = new BlockPool(2);
    const a = pool.allocate(1)![0]!;
    assert.equal(pool.cacheFullBlock(a, 'h', [1, 2, 3]), true);
    assert.equal(pool.getCachedBlock('h', [1, 2, 3]), a);
    assert.equal(pool.getCachedBlock('h', Int32Array.of(1, 2, 3)), a);
    assert.equal(pool.getCachedBlock('h', [1, 2, 4]), null, 'same hash, other tokens: a collision, not a hit');
    assert.equal(pool.getCachedBlock('other', [1, 2, 3]), null);
  });

  it('keeps the first block when a second one is cached under the same hash', () => {
    const pool = new BlockPool(2);
    const [a, b] = pool.allocate(2)! as [number, number];
    assert.equal(pool.cacheFullBlock(a, 'h', [1]), true);
    assert.equal(pool.cacheFullBlock(b, 'h', [1]), false);
    assert.equal(pool.blockHash(b), null);
    assert.equal(pool.getCachedBlock('h', [1]), a);
    pool.checkIntegrity();
  });

  it('refuses to cache a free block or recache a cached one', () => {
    const pool = new BlockPool(2);
    const a = pool.allocate(1)![0]!;
    pool.cacheFullBlock(a, 'h', [1]);
    assertInvariantError(() => pool.cacheFullBlock(a, 'h2', [1]), /already cached/);
    assertInvariantError(() => pool.cacheFullBlock(1, 'h3', [1]), /free block 1/);
    assertInvariantError(() => pool.refCount(9), /out of range/);
  });
});

describe('BlockPool.checkIntegrity catches broken states', () => {
  function setup(): BlockPool {
    const pool = new BlockPool(6);
    pool.allocate(3);
    pool.cacheFullBlock(0, 'h0', [0]);
    pool.cacheFullBlock(1, 'h1', [1]);
    pool.free([1]);
    pool.checkIntegrity();
    return pool;
  }

  it('negative refCnt', () => {
    const pool = setup();
    internals(pool).refCnt[0] = -1;
    assertInvariantError(() => pool.checkIntegrity(), /refCnt -1/);
  });

  it('a referenced block in the free queue', () => {
    const pool = setup();
    internals(pool).refCnt[1] = 1;
    assertInvariantError(() => pool.checkIntegrity(), /block 1: refCnt 1 but in free queue = true/);
  });

  it('an unreferenced block missing from the free queue (free + in use != total)', () => {
    const pool = setup();
    internals(pool).refCnt[2] = 0;
    assertInvariantError(() => pool.checkIntegrity(), /block 2: refCnt 0 but in free queue = false/);
  });

  it('a cycle in the free queue', () => {
    const pool = setup();
    const q = internals(pool).freeQueue;
    q.next[q.tail] = 3; // 3 is earlier in the queue
    assertInvariantError(() => pool.checkIntegrity(), /twice \(duplicate or cycle\)/);
  });

  it('a wrong free count', () => {
    const pool = setup();
    internals(pool).freeQueue.count++;
    assertInvariantError(() => pool.checkIntegrity(), /counts/);
  });

  it('a hash entry pointing at a block without that hash', () => {
    const pool = setup();
    internals(pool).hashToBlock.set('h0', 2);
    assertInvariantError(() => pool.checkIntegrity(), /maps to/);
  });

  it('a stale hash entry for an evicted block', () => {
    const pool = setup();
    internals(pool).hashToBlock.set('ghost', 4);
    assertInvariantError(() => pool.checkIntegrity(), /hash ghost maps to block 4/);
  });

  it('a block carrying a hash without token ids', () => {
    const pool = setup();
    internals(pool).tokenIds[0] = null;
    assertInvariantError(() => pool.checkIntegrity(), /hash and token ids disagree/);
  });

  it('a healthy pool after many operations passes', () => {
    const pool = new BlockPool(8);
    const a = pool.allocate(5)!;
    a.forEach((id) => pool.cacheFullBlock(id, `x${id}`, range(id, id + 2)));
    pool.free(a.slice(2));
    pool.touch([3]);
    pool.allocate(3);
    pool.checkIntegrity();
    assert.deepEqual(pool.freeBlockIds(), [2, 4], 'the 3 never-used blocks went first; 3 was touched');
    assert.equal(pool.getCachedBlock('x4', [4, 5]), 4);
  });
});
