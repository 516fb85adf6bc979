// Randomized scheduler-like workload over KVCacheManager: admit (with prefix lookup), chunked
// prefill, decode, preemption when out of blocks, finish. checkIntegrity() runs after every
// operation. A shadow of the KV memory records, per slot, the prefix whose KV it holds, so every
// prefix hit is checked to return blocks holding exactly the queried prefix, and every write is
// checked to land in a block that is neither shared nor cached.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BlockPool } from '../../../src/kvcache/block_pool.ts';
import { KVCacheManager } from '../../../src/kvcache/kv_cache_manager.ts';
import { slotMapping } from '../../../src/kvcache/paged_kv_storage.ts';
import { randInt, range, seededRandom } from './helpers.ts';

const BS = 4;
const NUM_BLOCKS = 28; // small enough that the workload runs out and preempts
const BASES = [range(0, 12), range(20, 30), range(0, 6)]; // shared prefixes, so hits happen

interface Req {
  readonly id: string;
  readonly salt: string | undefined;
  tokens: number[];
  numComputed: number;
  readonly maxTokens: number;
}

class Sim {
  readonly m: KVCacheManager;
  readonly pool: BlockPool;
  readonly shadow: (string | null)[] = new Array(NUM_BLOCKS * BS).fill(null);
  readonly waiting: Req[] = [];
  readonly running: Req[] = []; // admission order: the last one is preempted first
  counts = { admitted: 0, preempted: 0, finished: 0, hitTokens: 0 };
  private nextId = 0;

  constructor(
    readonly rand: () => number,
    enablePrefixCaching: boolean,
  ) {
    this.m = new KVCacheManager({ numBlocks: NUM_BLOCKS, blockSize: BS, enablePrefixCaching });
    this.pool = (this.m as unknown as { pool: BlockPool }).pool;
  }

  fingerprint(r: Req, pos: number): string {
    return `${r.salt ?? ''}#${r.tokens.slice(0, pos + 1).join(',')}`;
  }

  newRequest(): void {
    const base = BASES[randInt(this.rand, BASES.length)]!;
    const suffix = range(0, randInt(this.rand, 6)).map(() => randInt(this.rand, 3));
    const prompt = [...base.slice(0, 1 + randInt(this.rand, base.length)), ...suffix];
    const salt = this.rand() < 0.2 ? 'tenant' : undefined;
    const maxTokens = prompt.length + 1 + randInt(this.rand, 12);
    this.waiting.push({ id: `r${this.nextId++}`, salt, tokens: prompt, numComputed: 0, maxTokens });
  }

  admit(): void {
    const r = this.waiting[0]!;
    const computed = this.m.getComputedBlocks(r.tokens, r.salt);
    computed.blockIds.forEach((id, b) => {
      for (let o = 0; o < BS; o++) {
        assert.equal(this.shadow[id * BS + o], this.fingerprint(r, b * BS + o), 'hit holds another prefix');
      }
    });
    const n = Math.min(r.tokens.length - computed.numComputedTokens, 1 + randInt(this.rand, 8));
    if (this.m.allocateSlots(r.id, computed.numComputedTokens + n, computed) === null) return;
    this.waiting.shift();
    this.running.push(r);
    this.counts.admitted++;
    this.counts.hitTokens += computed.numComputedTokens;
    r.numComputed = computed.numComputedTokens;
    this.compute(r, n);
  }

  step(r: Req): void {
    const n = Math.min(r.tokens.length - r.numComputed, 1 + randInt(this.rand, 8));
    while (this.m.allocateSlots(r.id, r.numComputed + n) === null) {
      const victim = this.running.pop()!;
      this.preempt(victim);
      if (victim === r) return;
    }
    this.compute(r, n);
  }

  /** The forward pass: writes KV of positions numComputed..+n, then samples if the prompt is done. */
  compute(r: Req, n: number): void {
    const slots = slotMapping(this.m.getBlockTable(r.id), BS, r.numComputed, n);
    slots.forEach((slot, i) => {
      const block = Math.floor(slot / BS);
      assert.equal(this.pool.refCount(block), 1, `write into shared block ${block}`);
      assert.equal(this.pool.blockHash(block), null, `write into cached block ${block}`);
      this.shadow[slot] = this.fingerprint(r, r.numComputed + i);
    });
    r.numComputed += n;
    this.m.cacheFullBlocks(r.id, r.tokens, r.numComputed, r.salt);
    if (r.numComputed < r.tokens.length) return;
    if (r.tokens.length >= r.maxTokens) this.finish(r);
    else r.tokens.push(randInt(this.rand, 3));
  }

  preempt(r: Req): void {
    this.m.free(r.id);
    r.numComputed = 0;
    this.waiting.unshift(r);
    this.counts.preempted++;
  }

  finish(r: Req): void {
    this.m.free(r.id);
    this.running.splice(this.running.indexOf(r), 1);
    this.counts.finished++;
  }

  randomOp(): void {
    const x = this.rand();
    const r = this.running.length > 0 ? this.running[randInt(this.rand, this.running.length)] : undefined;
    if (x < 0.15 || (this.waiting.length === 0 && r === undefined)) this.newRequest();
    else if (x < 0.4 && this.waiting.length > 0) this.admit();
    else if (x < 0.45 && r !== undefined) this.finish(r);
    else if (r !== undefined) this.step(r);
  }

  drain(): void {
    for (const r of [...this.running]) this.finish(r);
  }
}

function runWorkload(seed: number, numOps: number, enablePrefixCaching: boolean): Sim {
  const sim = new Sim(seededRandom(seed), enablePrefixCaching);
  for (let op = 0; op < numOps; op++) {
    sim.randomOp();
    sim.m.checkIntegrity();
  }
  sim.drain();
  sim.m.checkIntegrity();
  assert.equal(sim.m.numFreeBlocks, NUM_BLOCKS, 'everything is free (or free and cached) at the end');
  assert.equal(sim.m.usage, 0);
  for (let id = 0; id < NUM_BLOCKS; id++) assert.equal(sim.pool.refCount(id), 0);
  return sim;
}

describe('KVCacheManager randomized workload', () => {
  for (const seed of [1, 2, 3, 42]) {
    it(`seed ${seed}: integrity after every operation, prefix hits hold the right KV`, () => {
      const sim = runWorkload(seed, 3000, true);
      const { admitted, preempted, finished, hitTokens } = sim.counts;
      assert.ok(admitted > 100 && finished > 50, `admitted ${admitted}, finished ${finished}`);
      assert.ok(preempted > 0, 'the pool ran out at least once');
      assert.ok(hitTokens > 0, `hit tokens ${hitTokens}`);
      assert.ok(sim.m.numCachedBlocks > 0 && sim.m.numCachedBlocks <= NUM_BLOCKS);
    });
  }

  it('the same workload without prefix caching never hits or caches', () => {
    const sim = runWorkload(7, 2000, false);
    assert.equal(sim.counts.hitTokens, 0);
    assert.equal(sim.m.numCachedBlocks, 0);
  });
});
