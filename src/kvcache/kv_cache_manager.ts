// Per-request block tables over one BlockPool, with prefix caching (vLLM v1's KVCacheManager shape).
// Hands out block ids only; the scheduler decides who runs, the model runner turns tables into slots.
//
// Ownership: each block table holds exactly one reference (refCnt) on each of its blocks; a block
// shared by k tables (prefix hits) has refCnt k. Full blocks below a request's
// numComputedTokens are immutable (no one writes those slots again), which is what makes sharing them
// and caching them safe.
import { assert } from '../common/errors.ts';
import { blockTokens, hashBlock } from './block_hash.ts';
import { BlockPool } from './block_pool.ts';
import type { BlockHash, BlockId, ComputedBlocks, KVCacheManagerOptions, PrefixCacheStats, TokenIds } from './types.ts';

const NO_COMPUTED_BLOCKS: ComputedBlocks = Object.freeze({ blockIds: Object.freeze([]), numComputedTokens: 0 });

export class KVCacheManager {
  readonly blockSize: number;
  readonly enablePrefixCaching: boolean;
  private readonly pool: BlockPool;
  private readonly tables = new Map<string, BlockId[]>();
  // blockHashes[r][i] is the chained hash of block i of r's table. Blocks below its length have been
  // offered to the cache (cached, already cached, or declined as a duplicate); always <= table length.
  private readonly blockHashes = new Map<string, BlockHash[]>();
  private stats: PrefixCacheStats = { numQueryTokens: 0, numHitTokens: 0, numQueries: 0 };

  constructor(options: KVCacheManagerOptions) {
    const { numBlocks, blockSize, enablePrefixCaching } = options;
    assert(Number.isInteger(blockSize) && blockSize > 0, `blockSize must be a positive integer, got ${blockSize}`);
    this.pool = new BlockPool(numBlocks);
    this.blockSize = blockSize;
    this.enablePrefixCaching = enablePrefixCaching;
  }

  get numBlocks(): number {
    return this.pool.numBlocks;
  }

  /** Blocks allocatable now (free, including cached-but-unreferenced ones). */
  get numFreeBlocks(): number {
    return this.pool.numFreeBlocks;
  }

  get numCachedBlocks(): number {
    return this.pool.numCachedBlocks;
  }

  /** Fraction of blocks held by requests (vllm:kv_cache_usage_perc). */
  get usage(): number {
    return this.pool.usage;
  }

  get prefixCacheStats(): PrefixCacheStats {
    return { ...this.stats };
  }

  /** Blocks needed to hold numTokens tokens. */
  numBlocksFor(numTokens: number): number {
    return Math.ceil(numTokens / this.blockSize);
  }

  hasRequest(requestId: string): boolean {
    return this.tables.has(requestId);
  }

  /** The request's block table (a live view: allocateSlots appends to it). */
  getBlockTable(requestId: string): readonly BlockId[] {
    return this.requireTable(requestId);
  }

  /**
   * Longest cached prefix of full blocks. Never covers the last token: its logits are needed, so at
   * most floor((numTokens - 1) / blockSize) blocks hit. Takes no references: pass the result to
   * allocateSlots in the same step, before anything else allocates. Every call counts as one query
   * in prefixCacheStats (as in vLLM), including retries of a request that could not be admitted.
   */
  getComputedBlocks(tokenIds: TokenIds, salt?: string): ComputedBlocks {
    if (!this.enablePrefixCaching) return NO_COMPUTED_BLOCKS;
    const maxHitBlocks = Math.max(0, Math.floor((tokenIds.length - 1) / this.blockSize));
    const blockIds: BlockId[] = [];
    let parent: BlockHash | null = null;
    for (let i = 0; i < maxHitBlocks; i++) {
      const tokens = blockTokens(tokenIds, i, this.blockSize);
      const hash = hashBlock(parent, tokens, i === 0 ? salt : undefined);
      const id = this.pool.getCachedBlock(hash, tokens);
      if (id === null) break;
      blockIds.push(id);
      parent = hash;
    }
    const numComputedTokens = blockIds.length * this.blockSize;
    this.stats = {
      numQueryTokens: this.stats.numQueryTokens + tokenIds.length,
      numHitTokens: this.stats.numHitTokens + numComputedTokens,
      numQueries: this.stats.numQueries + 1,
    };
    return { blockIds, numComputedTokens };
  }

  /**
   * Grows the request's table to hold numTokens tokens (computed + scheduled this step). For a new
   * request, `computed` (from getComputedBlocks) becomes the start of its table. Returns the newly
   * allocated block ids, or null, changing nothing, when the free blocks do not suffice.
   */
  allocateSlots(requestId: string, numTokens: number, computed: ComputedBlocks = NO_COMPUTED_BLOCKS): BlockId[] | null {
    assert(Number.isInteger(numTokens) && numTokens >= 0, `allocateSlots(${requestId}, ${numTokens})`);
    const table = this.tables.get(requestId);
    const hits = computed.blockIds;
    assert(hits.length === 0 || table === undefined, `computed blocks given for running request ${requestId}`);
    assert(computed.numComputedTokens === hits.length * this.blockSize, 'computed tokens must cover whole blocks');
    assert(numTokens >= computed.numComputedTokens, `numTokens ${numTokens} < computed ${computed.numComputedTokens}`);
    for (const id of hits) assert(this.pool.blockHash(id) !== null, `stale prefix hit: block ${id} was evicted`);

    const numNew = Math.max(0, this.numBlocksFor(numTokens) - (table?.length ?? 0) - hits.length);
    // Free hit blocks sit in the free queue: they are not room for new blocks, and touching them
    // before allocating keeps allocate() from evicting them.
    const numFreeHits = hits.filter((id) => this.pool.refCount(id) === 0).length;
    if (numNew > this.pool.numFreeBlocks - numFreeHits) return null;

    const blocks = table ?? this.createTable(requestId, hits);
    this.pool.touch(hits);
    blocks.push(...hits);
    const fresh = this.pool.allocate(numNew);
    assert(fresh !== null, 'allocate failed after the free-block check');
    blocks.push(...fresh);
    return fresh;
  }

  /**
   * After a step: offers the request's newly full blocks below numComputedTokens to the prefix cache.
   * tokenIds are all the request's tokens so far (prompt + output); salt as in getComputedBlocks.
   */
  cacheFullBlocks(requestId: string, tokenIds: TokenIds, numComputedTokens: number, salt?: string): void {
    if (!this.enablePrefixCaching) return;
    const table = this.requireTable(requestId);
    const hashes = this.blockHashes.get(requestId)!;
    assert(numComputedTokens <= tokenIds.length, `numComputedTokens ${numComputedTokens} > ${tokenIds.length} tokens`);
    const numFull = Math.floor(numComputedTokens / this.blockSize);
    assert(numFull <= table.length, `${numFull} full blocks but table of ${requestId} has ${table.length}`);
    for (let i = hashes.length; i < numFull; i++) {
      const blockId = table[i]!;
      const tokens = blockTokens(tokenIds, i, this.blockSize);
      const hash = hashBlock(i === 0 ? null : hashes[i - 1]!, tokens, i === 0 ? salt : undefined);
      const existing = this.pool.blockHash(blockId);
      // A shared block may already have been cached by its other holder: same content, same hash.
      if (existing === null) this.pool.cacheFullBlock(blockId, hash, tokens);
      else assert(existing === hash, `block ${blockId} cached as ${existing}, recomputed as ${hash}`);
      hashes.push(hash);
    }
  }

  /**
   * Speculative decoding's rollback: frees the blocks of the request's table past those holding
   * numTokens tokens (slots reserved for drafts that were rejected). Blocks offered to the prefix
   * cache lie below numComputedTokens <= numTokens, so none of them is freed.
   */
  trimSlots(requestId: string, numTokens: number): void {
    const table = this.requireTable(requestId);
    const keep = this.numBlocksFor(numTokens);
    assert(keep >= this.blockHashes.get(requestId)!.length, `trimSlots(${requestId}, ${numTokens}) would free cached blocks`);
    if (table.length <= keep) return;
    this.pool.free(table.splice(keep).reverse());
  }

  /**
   * Releases the request's blocks (finished, aborted or preempted); unknown ids are a no-op. Reverse
   * order puts the tail blocks (least likely shared by other prompts) at the front of the eviction queue.
   */
  free(requestId: string): void {
    const table = this.tables.get(requestId);
    if (table === undefined) return;
    this.pool.free([...table].reverse());
    this.tables.delete(requestId);
    this.blockHashes.delete(requestId);
  }

  /**
   * Pool integrity plus: every block's refCnt equals the number of tables holding it, no table holds
   * a block twice, and each recorded hash agrees with the hash its block carries.
   */
  checkIntegrity(): void {
    this.pool.checkIntegrity();
    assert(this.blockHashes.size === this.tables.size, 'block tables and hash chains disagree');
    const holders = new Int32Array(this.pool.numBlocks);
    for (const [requestId, table] of this.tables) {
      const hashes = this.blockHashes.get(requestId);
      assert(hashes !== undefined && hashes.length <= table.length, `hash chain of ${requestId} longer than its table`);
      assert(new Set(table).size === table.length, `table of ${requestId} holds a block twice`);
      table.forEach((id, i) => {
        holders[id]!++;
        const carried = this.pool.blockHash(id);
        const ok = i >= hashes.length || carried === null || carried === hashes[i];
        assert(ok, `block ${id} of ${requestId} carries a foreign hash`);
      });
    }
    for (let id = 0; id < this.pool.numBlocks; id++) {
      const refCnt = this.pool.refCount(id);
      assert(refCnt === holders[id], `block ${id} has refCnt ${refCnt} but ${holders[id]} holding tables`);
    }
  }

  private createTable(requestId: string, hits: readonly BlockId[]): BlockId[] {
    const table: BlockId[] = [];
    this.tables.set(requestId, table);
    this.blockHashes.set(
      requestId,
      hits.map((id) => this.pool.blockHash(id)!),
    );
    return table;
  }

  private requireTable(requestId: string): BlockId[] {
    const table = this.tables.get(requestId);
    assert(table !== undefined, `unknown request ${requestId} in the KV cache manager`);
    return table;
  }
}
