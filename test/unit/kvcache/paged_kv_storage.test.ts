import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PagedKVStorage, slotMapping } from '../../../src/kvcache/paged_kv_storage.ts';
import { assertInvariantError } from './helpers.ts';

describe('PagedKVStorage budget math', () => {
  it('computes bytes per token and per block in float32', () => {
    const tiny = { numLayers: 3, blockSize: 64, latentDim: 32 + 8, indexerDim: 16 };
    assert.equal(PagedKVStorage.bytesPerToken(tiny), 3 * (40 + 16) * 4);
    assert.equal(PagedKVStorage.bytesPerBlock(tiny), 64 * 672);
    assert.equal(PagedKVStorage.bytesPerToken({ ...tiny, indexerDim: null }), 3 * 40 * 4);
    const v32 = { numLayers: 61, blockSize: 64, latentDim: 512 + 64, indexerDim: 128 };
    assert.equal(PagedKVStorage.bytesPerToken(v32), 171_776);
  });

  it('rounds the number of blocks down', () => {
    const shape = { numLayers: 3, blockSize: 64, latentDim: 40, indexerDim: 16 };
    const perBlock = PagedKVStorage.bytesPerBlock(shape);
    assert.equal(PagedKVStorage.numBlocksForBudget(5 * perBlock, shape), 5);
    assert.equal(PagedKVStorage.numBlocksForBudget(5 * perBlock + perBlock - 1, shape), 5);
    assert.equal(PagedKVStorage.numBlocksForBudget(perBlock - 1, shape), 0);
    const storage = new PagedKVStorage({ ...shape, numBlocks: 5 });
    assert.equal(storage.numBytes, 5 * perBlock);
    assert.equal(storage.bytesPerToken, perBlock / 64);
  });
});

describe('slotMapping', () => {
  it('maps positions through the block table', () => {
    assert.deepEqual([...slotMapping([5, 2, 9], 4, 2, 8)], [22, 23, 8, 9, 10, 11, 36, 37]);
    assert.deepEqual([...slotMapping([5, 2, 9], 4, 11, 1)], [39]);
    assert.deepEqual([...slotMapping([], 4, 0, 0)], []);
  });

  it('throws when the table is too short', () => {
    assertInvariantError(() => slotMapping([5, 2, 9], 4, 10, 3), /need 4 blocks, table has 3/);
    assertInvariantError(() => slotMapping([1], 4, -1, 1), /slotMapping/);
  });
});

describe('PagedKVStorage writes', () => {
  const options = { numLayers: 2, numBlocks: 4, blockSize: 4, latentDim: 3, indexerDim: 2 };
  const rowsOf = (count: number, dim: number, base: number) => Float32Array.from({ length: count * dim }, (_, i) => base + i);

  it('allocates per-layer arrays of [numSlots, dim]', () => {
    const s = new PagedKVStorage(options);
    assert.equal(s.numSlots, 16);
    assert.equal(s.latent(1).length, 16 * 3);
    assert.equal(s.indexerKey(0).length, 16 * 2);
    assert.equal(s.latent(1), s.latent(1), 'accessors return the live array');
    assert.notEqual(s.latent(0), s.latent(1));
  });

  it('writes latent rows at slot * latentDim of the right layer only', () => {
    const s = new PagedKVStorage(options);
    const slots = slotMapping([1, 3], s.blockSize, 1, 4); // positions 1..4 -> slots 5, 6, 7, 12
    assert.deepEqual([...slots], [5, 6, 7, 12]);
    const rows = rowsOf(4, 3, 1);
    s.writeLatent(1, slots, rows);
    const latent = s.latent(1);
    slots.forEach((slot, i) => assert.deepEqual([...latent.subarray(slot * 3, slot * 3 + 3)], [...rows.subarray(i * 3, i * 3 + 3)]));
    const written = latent.reduce((n, v) => n + (v !== 0 ? 1 : 0), 0);
    assert.equal(written, 12, 'nothing else changed');
    assert.ok(
      s.latent(0).every((v) => v === 0),
      'other layers untouched',
    );
    assert.ok(
      s.indexerKey(1).every((v) => v === 0),
      'indexer cache untouched',
    );
  });

  it('writes indexer keys with the same slots and handles unordered slots', () => {
    const s = new PagedKVStorage(options);
    const slots = Int32Array.of(9, 0, 15);
    s.writeIndexerKey(0, slots, rowsOf(3, 2, 10));
    const keys = s.indexerKey(0);
    assert.deepEqual([...keys.subarray(18, 20)], [10, 11]);
    assert.deepEqual([...keys.subarray(0, 2)], [12, 13]);
    assert.deepEqual([...keys.subarray(30, 32)], [14, 15]);
  });

  it('rejects bad shapes, slots, layers and a missing indexer', () => {
    const s = new PagedKVStorage(options);
    assertInvariantError(() => s.writeLatent(0, Int32Array.of(1, 2), rowsOf(1, 3, 1)), /3 floats for 2 slots/);
    assertInvariantError(() => s.writeLatent(0, Int32Array.of(15, 16), rowsOf(2, 3, 1)), /out of range/);
    assertInvariantError(() => s.writeLatent(0, Int32Array.of(-1), rowsOf(1, 3, 1)), /out of range/);
    assertInvariantError(() => s.latent(2), /layer 2 out of range/);
    const noIndexer = new PagedKVStorage({ ...options, indexerDim: null });
    assertInvariantError(() => noIndexer.indexerKey(0), /no indexer key cache/);
    assertInvariantError(() => new PagedKVStorage({ ...options, latentDim: 0 }), /latentDim must be a positive integer/);
  });
});
