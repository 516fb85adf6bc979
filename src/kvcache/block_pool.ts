// The pool of KV blocks: reference counts, prefix-cache identity (hash + token ids) and the LRU free
// queue. Block ids only; the memory lives in PagedKVStorage.
//
// Invariants (checked by checkIntegrity):
//  - refCnt[id] >= 0, and refCnt[id] === 0 iff id is in the free queue (an eviction candidate).
//    So numFreeBlocks + (blocks with refCnt > 0) === numBlocks.
//  - hashToBlock is a bijection between cached hashes and blocks whose hash is non-null: a block
//    carries hash h iff hashToBlock.get(h) === id. A free block may stay cached (a future hit) until
//    allocate() reuses it and evicts its hash.
//  - tokenIds[id] !== null iff hash[id] !== null (stored to verify hits exactly).
import { assert } from '../common/errors.ts';
import { FreeBlockQueue } from './free_block_queue.ts';
import type { BlockHash, BlockId, TokenIds } from './types.ts';

export class BlockPool {
  private readonly refCnt: Int32Array;
  private readonly hashes: (BlockHash | null)[];
  private readonly tokenIds: (Int32Array | null)[];
  private readonly freeQueue: FreeBlockQueue;
  private readonly hashToBlock = new Map<BlockHash, BlockId>();

  constructor(readonly numBlocks: number) {
    assert(Number.isInteger(numBlocks) && numBlocks > 0, `numBlocks must be a positive integer, got ${numBlocks}`);
    this.refCnt = new Int32Array(numBlocks);
    this.hashes = new Array<BlockHash | null>(numBlocks).fill(null);
    this.tokenIds = new Array<Int32Array | null>(numBlocks).fill(null);
    this.freeQueue = new FreeBlockQueue(numBlocks);
  }

  /** Free blocks, cached or not: everything allocate() may hand out. */
  get numFreeBlocks(): number {
    return this.freeQueue.size;
  }

  /** Blocks that carry a prefix-cache hash (in use or free). */
  get numCachedBlocks(): number {
    return this.hashToBlock.size;
  }

  /** Fraction of blocks referenced by at least one request, in [0, 1]. */
  get usage(): number {
    return 1 - this.freeQueue.size / this.numBlocks;
  }

  refCount(id: BlockId): number {
    this.checkId(id);
    return this.refCnt[id]!;
  }

  blockHash(id: BlockId): BlockHash | null {
    this.checkId(id);
    return this.hashes[id] as BlockHash | null; // in range: checked above
  }

  /** Free block ids in eviction order (next to be reused first). For tests and debugging. */
  freeBlockIds(): BlockId[] {
    return this.freeQueue.toArray();
  }

  /**
   * Takes n blocks from the head of the free queue (least recently freed first), evicting the
   * cached hash of each, each with refCnt 1. All or nothing: null when fewer than n are free.
   */
  allocate(n: number): BlockId[] | null {
    assert(Number.isInteger(n) && n >= 0, `allocate(${n})`);
    if (n > this.freeQueue.size) return null;
    const ids: BlockId[] = [];
    for (let i = 0; i < n; i++) {
      const id = this.freeQueue.popFront();
      this.evictHash(id);
      this.refCnt[id] = 1;
      ids.push(id);
    }
    return ids;
  }

  /**
   * Drops one reference to each block, in the given order. A block reaching 0 goes to the tail of
   * the free queue and keeps its hash, so it can still be hit until it is reused.
   */
  free(ids: readonly BlockId[]): void {
    for (const id of ids) {
      this.checkId(id);
      assert(this.refCnt[id]! > 0, `free of block ${id} with refCnt ${this.refCnt[id]}`);
      if (--this.refCnt[id]! === 0) this.freeQueue.pushBack(id);
    }
  }

  /** Takes one more reference to each block (a prefix hit or a shared block); a free one leaves the queue. */
  touch(ids: readonly BlockId[]): void {
    for (const id of ids) {
      this.checkId(id);
      if (this.refCnt[id] === 0) this.freeQueue.remove(id);
      this.refCnt[id]!++;
    }
  }

  /**
   * Registers a full, in-use block under `hash` with its token ids (copied). Returns false and leaves
   * the block uncached when another block already holds that hash (two requests computed the same
   * prefix at once): the first stays canonical, keeping hashToBlock a bijection.
   */
  cacheFullBlock(id: BlockId, hash: BlockHash, tokenIds: TokenIds): boolean {
    this.checkId(id);
    assert(this.refCnt[id]! > 0, `cacheFullBlock on free block ${id}`);
    assert(this.hashes[id] === null, `block ${id} is already cached as ${this.hashes[id]}`);
    if (this.hashToBlock.has(hash)) return false;
    this.hashes[id] = hash;
    this.tokenIds[id] = Int32Array.from(tokenIds);
    this.hashToBlock.set(hash, id);
    return true;
  }

  /** The cached block with this hash and exactly these token ids, or null. Does not take a reference. */
  getCachedBlock(hash: BlockHash, tokenIds: TokenIds): BlockId | null {
    const id = this.hashToBlock.get(hash);
    if (id === undefined) return null;
    return sameTokens(this.tokenIds[id]!, tokenIds) ? id : null;
  }

  /** Throws EngineError(DSV_ERR_INTERNAL) on any broken invariant listed at the top of this file. */
  checkIntegrity(): void {
    this.freeQueue.checkIntegrity();
    let numInUse = 0;
    let numHashed = 0;
    for (let id = 0; id < this.numBlocks; id++) {
      const rc = this.refCnt[id]!;
      assert(rc >= 0, `block ${id} has refCnt ${rc}`);
      assert((rc === 0) === this.freeQueue.has(id), `block ${id}: refCnt ${rc} but in free queue = ${this.freeQueue.has(id)}`);
      if (rc > 0) numInUse++;
      const h = this.hashes[id] as BlockHash | null;
      assert((h === null) === (this.tokenIds[id] === null), `block ${id}: hash and token ids disagree`);
      if (h !== null) {
        numHashed++;
        assert(this.hashToBlock.get(h) === id, `block ${id} carries hash ${h} that maps to ${this.hashToBlock.get(h)}`);
      }
    }
    assert(numInUse + this.freeQueue.size === this.numBlocks, `${numInUse} in use + ${this.freeQueue.size} free != ${this.numBlocks} blocks`);
    for (const [h, id] of this.hashToBlock) {
      const ok = id >= 0 && id < this.numBlocks && this.hashes[id] === h;
      assert(ok, `hash ${h} maps to block ${id} carrying ${this.hashes[id]}`);
    }
    assert(numHashed === this.hashToBlock.size, `${numHashed} hashed blocks but ${this.hashToBlock.size} hash entries`);
  }

  private evictHash(id: BlockId): void {
    const h = this.hashes[id] as BlockHash | null;
    if (h === null) return;
    // Bijection: the entry for h points at id, so deleting it cannot drop another block's entry.
    this.hashToBlock.delete(h);
    this.hashes[id] = null;
    this.tokenIds[id] = null;
  }

  private checkId(id: BlockId): void {
    assert(Number.isInteger(id) && id >= 0 && id < this.numBlocks, `block id ${id} out of range [0, ${this.numBlocks})`);
  }
}

function sameTokens(stored: Int32Array, tokenIds: TokenIds): boolean {
  if (stored.length !== tokenIds.length) return false;
  for (let i = 0; i < stored.length; i++) if (stored[i] !== tokenIds[i]) return false;
  return true;
}
