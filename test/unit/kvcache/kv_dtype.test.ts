import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { E4M3_VALUES, e4m3FromF32Bits } from '../../../src/common/numeric/fp8_e4m3.ts';
import { f32Bits } from '../../../src/common/numeric/float_bits.ts';
import { hadamardRotateRows } from '../../../src/common/numeric/hadamard.ts';
import { indexerBytesPerToken, latentBytesPerToken, KV_CACHE_DTYPES, type KVCacheDtype } from '../../../src/kvcache/kv_dtype.ts';
import { dequantizeFp8, fp8Scale, quantizeFp8 } from '../../../src/kvcache/kv_row_codec.ts';
import { PagedKVStorage } from '../../../src/kvcache/paged_kv_storage.ts';
import type { PagedKVStorageOptions } from '../../../src/kvcache/types.ts';
import { seededRandom } from './helpers.ts';

function gaussianRows(count: number, dim: number, seed: number, outlier = 0): Float32Array {
  const rand = seededRandom(seed);
  const out = new Float32Array(count * dim);
  for (let i = 0; i < out.length; i++) out[i] = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  if (outlier) for (let r = 0; r < count; r++) out[r * dim + 3] = outlier;
  return out;
}

function storage(dtype: KVCacheDtype, over: Partial<{ latentDim: number; ropeDim: number; indexerDim: number | null }> = {}): PagedKVStorage {
  const options = { numLayers: 2, numBlocks: 3, blockSize: 4, latentDim: 224, ropeDim: 24, indexerDim: 64, ...over, dtype };
  return new PagedKVStorage(options as PagedKVStorageOptions);
}

const allSlots = (s: PagedKVStorage): Int32Array => Int32Array.from({ length: s.numSlots }, (_, i) => i);

describe('KV cache bytes per token', () => {
  const v32 = { kvLoraRank: 512, qkRopeHeadDim: 64, indexerDim: 128 };
  it("matches DeepSeek-V3.2's fp8 layout: 656 latent bytes + 132 indexer bytes per token and layer", () => {
    assert.equal(latentBytesPerToken('fp8', v32), 656);
    assert.equal(indexerBytesPerToken('fp8', v32), 132);
    assert.equal(latentBytesPerToken('bfloat16', v32), 1152);
    assert.equal(latentBytesPerToken('float32', v32), 2304);
    assert.equal(indexerBytesPerToken('float32', { ...v32, indexerDim: null }), 0);
  });

  it('gives bench-mini (DSA) 2x tokens per byte with bfloat16 and >= 3.5x with fp8', () => {
    const shape = { numLayers: 8, blockSize: 64, latentDim: 256 + 32, ropeDim: 32, indexerDim: 64 };
    const f32 = PagedKVStorage.bytesPerToken({ ...shape, dtype: 'float32' });
    assert.equal(f32, 11_264);
    assert.equal(f32 / PagedKVStorage.bytesPerToken({ ...shape, dtype: 'bfloat16' }), 2);
    const fp8 = PagedKVStorage.bytesPerToken({ ...shape, dtype: 'fp8' });
    assert.equal(fp8, 8 * (256 + 2 * 4 + 32 * 2 + 64 + 4));
    assert.ok(f32 / fp8 >= 3.5, `${f32 / fp8}`);
  });

  it('counts a ragged last scale group, and pools hold exactly numSlots * bytesPerToken', () => {
    for (const dtype of KV_CACHE_DTYPES) {
      const s = storage(dtype);
      assert.equal(s.numBytes, s.numSlots * s.bytesPerToken, dtype);
      assert.equal(s.bytesPerBlockByCache.latent + s.bytesPerBlockByCache.indexer, s.blockSize * s.bytesPerToken);
    }
    assert.equal(storage('fp8').bytesPerToken, 2 * (200 + 2 * 4 + 24 * 2 + 64 + 4));
  });
});

describe('quantised latent rows', () => {
  it('stay within half an e4m3 step of their group scale (fp8) or bf16 step (bfloat16) per value', () => {
    for (const dtype of ['bfloat16', 'fp8'] as const) {
      const s = storage(dtype);
      const rows = gaussianRows(s.numSlots, s.latentDim, 1);
      s.writeLatent(1, allSlots(s), rows);
      const back = s.readLatent(1, allSlots(s));
      for (let r = 0; r < s.numSlots; r++) {
        for (let j = 0; j < s.latentDim; j++) {
          const x = rows[r * s.latentDim + j]!;
          const err = Math.abs(back[r * s.latentDim + j]! - x);
          const isRope = j >= 200;
          const groupMax = dtype === 'fp8' && !isRope ? groupAmax(rows, r * s.latentDim, j < 128 ? 0 : 128, j < 128 ? 128 : 200) : 0;
          const bound = dtype === 'bfloat16' || isRope ? Math.abs(x) * 2 ** -8 : Math.abs(x) * 2 ** -4 + (groupMax / 448) * 2 ** -10;
          assert.ok(err <= bound * (1 + 1e-6), `${dtype} row ${r} col ${j}: |${back[r * s.latentDim + j]} - ${x}| > ${bound}`);
        }
      }
    }
  });

  it('uses one scale per 128 values (amax / 448), the last group ragged; the group max lands on +-448', () => {
    const s = storage('fp8');
    const rows = gaussianRows(1, s.latentDim, 2);
    s.writeLatent(0, Int32Array.of(5), rows);
    const pool = s.latentPool(0);
    assert.equal(pool.dtype, 'fp8');
    if (pool.dtype !== 'fp8') return;
    for (const [g, start, end] of [
      [0, 0, 128],
      [1, 128, 200],
    ] as const) {
      const amax = groupAmax(rows, 0, start, end);
      assert.equal(pool.nopeScales[5 * 2 + g], Math.fround(amax / 448));
      const codes = pool.nope.subarray(5 * 200 + start, 5 * 200 + end);
      assert.equal(Math.max(...Array.from(codes, (c) => Math.abs(E4M3_VALUES[c]!))), 448);
    }
  });

  it('stores zero groups exactly with scale 1, keeping -0', () => {
    const s = storage('fp8');
    const row = new Float32Array(s.latentDim);
    row[0] = -0;
    row[150] = 3; // group 1 is not zero
    s.writeLatent(0, Int32Array.of(0), row);
    const pool = s.latentPool(0);
    if (pool.dtype !== 'fp8') return assert.fail();
    assert.equal(pool.nopeScales[0], 1);
    const back = s.readLatent(0, Int32Array.of(0));
    assert.ok(Object.is(back[0], -0));
    assert.ok(back.every((v, j) => v === row[j]));
    assert.equal(fp8Scale(0), 1);
    assert.equal(fp8Scale(1e-45), 1, 'a scale that underflows to 0 is replaced by 1');
  });

  it('reads a group with a NaN or an infinity back as NaN (never a saturated finite value)', () => {
    const s = storage('fp8');
    const rows = gaussianRows(2, s.latentDim, 3);
    rows[10] = NaN;
    rows[s.latentDim + 140] = Infinity;
    s.writeLatent(0, Int32Array.of(0, 1), rows);
    const back = s.readLatent(0, Int32Array.of(0, 1));
    assert.ok(back.subarray(0, 128).every(Number.isNaN));
    assert.ok(back.subarray(128, 200).every(Number.isFinite));
    assert.ok(back.subarray(s.latentDim + 128, s.latentDim + 200).every(Number.isNaN));
  });

  it('are bit-identical whatever the batching and order of the writes (chunked prefill, decode, recompute)', () => {
    for (const dtype of KV_CACHE_DTYPES) {
      const whole = storage(dtype);
      const pieces = storage(dtype);
      const rows = gaussianRows(whole.numSlots, whole.latentDim, 4);
      const keys = gaussianRows(whole.numSlots, 64, 5, 9);
      whole.writeLatent(0, allSlots(whole), rows);
      whole.writeIndexerKey(0, allSlots(whole), keys);
      for (const chunk of [[7, 8, 9, 10, 11], [0, 1, 2], [6], [5, 4, 3]]) {
        const slots = Int32Array.from(chunk);
        const pick = (src: Float32Array, dim: number) => Float32Array.from(chunk.flatMap((slot) => [...src.subarray(slot * dim, (slot + 1) * dim)]));
        pieces.writeLatent(0, slots, pick(rows, whole.latentDim));
        pieces.writeIndexerKey(0, slots, pick(keys, 64));
      }
      assert.deepEqual(planeBytes(pieces.latentPool(0)), planeBytes(whole.latentPool(0)), dtype);
      assert.deepEqual(planeBytes(pieces.indexerKeyPool(0)), planeBytes(whole.indexerKeyPool(0)), dtype);
    }
  });
});

describe('quantizeFp8 (table-driven encoder)', () => {
  /** The per-value encoder it replaced: code = e4m3FromF32Bits(bits of fround(x / scale)). */
  function reference(src: Float32Array): { codes: Uint8Array; scale: number } {
    let amax = 0;
    for (const x of src) if (Math.abs(x) > amax || Number.isNaN(x)) amax = Math.abs(x);
    const scale = fp8Scale(amax);
    return { codes: Uint8Array.from(src, (x) => e4m3FromF32Bits(f32Bits(x / scale))), scale };
  }

  const groups: [string, number[]][] = [
    ['gaussian', Array.from(gaussianRows(1, 128, 7))],
    ['a group max of exactly 448 and its ties', [448, 464 / 448, 1.0625, 1.1875, -1.0625, 3 * 2 ** -10, 2 ** -10, 7.75 * 2 ** -9]],
    ['subnormal codes next to a large value', [448, 2 ** -9, 7 * 2 ** -9, 2 ** -10, -(2 ** -12), 1.5 * 2 ** -9, 2 ** -20, -(2 ** -9)]],
    ['zeros and negative zeros (scale 1)', [0, -0, 0, -0]],
    ['tiny values only', [1e-40, -3e-39, 1.4e-45, 0]],
    ['huge values', [3.4e38, -1e38, 1, -1]],
    ['a NaN in the group', [1, NaN, -2]],
  ];
  for (const [name, values] of groups) {
    it(`gives the codes and scale of the per-value encoder: ${name}`, () => {
      const src = Float32Array.from(values);
      const codes = new Uint8Array(src.length + 2).fill(0xaa);
      const scale = quantizeFp8(src, 0, src.length, codes, 1);
      const want = reference(src);
      assert.ok(Object.is(scale, want.scale), `scale ${scale} vs ${want.scale}`);
      assert.deepEqual([...codes.subarray(1, 1 + src.length)], [...want.codes]);
      assert.equal(codes[0], 0xaa, 'writes only its window');
      assert.equal(codes[src.length + 1], 0xaa, 'writes only its window');
      if (!values.some((v) => Number.isNaN(v))) assert.ok(!codes.some((c) => (c & 0x7f) === 0x7f), 'no NaN code from finite input');
    });
  }
});

describe('fp8 indexer keys', () => {
  it('are stored Hadamard-rotated with one scale per token, and read back in the model basis', () => {
    const s = storage('fp8');
    assert.ok(s.indexerKeysRotated);
    const keys = gaussianRows(2, 64, 6);
    s.writeIndexerKey(1, Int32Array.of(3, 9), keys);
    const pool = s.indexerKeyPool(1);
    if (pool.dtype !== 'fp8') return assert.fail();
    const rotated = Float32Array.from(keys.subarray(0, 64)); // rotated in float64, stored as float32 before scaling
    hadamardRotateRows(rotated, 64);
    const amax = Math.max(...Array.from(rotated, Math.abs));
    assert.equal(pool.scales[3], Math.fround(amax / 448));
    const back = s.readIndexerKey(1, Int32Array.of(3, 9));
    const rel = Math.sqrt(sumSq(back.map((v, i) => v - keys[i]!)) / sumSq(keys));
    assert.ok(rel < 0.05, `relative error ${rel}`);
    assert.ok(!storage('bfloat16').indexerKeysRotated && !storage('fp8', { indexerDim: null }).indexerKeysRotated);
  });

  it('keep e4m3 relative precision (about 2^-5 RMS of the norm) with or without the rotation', () => {
    // e4m3 is a floating-point grid, so the round-trip error is relative per value in either basis;
    // the rotation is there because DeepSeek-V3.2 stores keys this way (the queries are rotated to match).
    const Di = 64;
    const keys = gaussianRows(64, Di, 7);
    const rotated = Float32Array.from(keys);
    hadamardRotateRows(rotated, Di);
    const norm = Math.sqrt(sumSq(keys) / keys.length);
    for (const rows of [keys, rotated]) assert.ok(fp8Error(rows, Di) / norm < 2 ** -4, `${fp8Error(rows, Di) / norm}`);
  });
});

describe('PagedKVStorage dtype guards', () => {
  it('hands out float32 arrays only for a float32 cache, and typed pools for every dtype', () => {
    assert.equal(storage('float32').latent(0).length, 12 * 224);
    assert.throws(() => storage('bfloat16').latent(0), /latentPool/);
    assert.throws(() => storage('fp8').indexerKey(0), /indexerKeyPool/);
    const fp8 = storage('fp8').latentPool(1);
    assert.equal(fp8.dtype, 'fp8');
    if (fp8.dtype === 'fp8') assert.deepEqual([fp8.nope.length, fp8.nopeScales.length, fp8.rope.length], [12 * 200, 12 * 2, 12 * 24]);
    assert.throws(() => storage('fp8', { indexerDim: null }).indexerKeyPool(0), /no indexer key cache/);
  });
});

function groupAmax(rows: Float32Array, rowStart: number, start: number, end: number): number {
  let m = 0;
  for (let j = start; j < end; j++) m = Math.max(m, Math.abs(rows[rowStart + j]!));
  return m;
}

function sumSq(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return s;
}

/** Root-mean-square fp8 round-trip error of rows [*, dim], one scale per row. */
function fp8Error(rows: Float32Array, dim: number): number {
  const codes = new Uint8Array(dim);
  const back = new Float32Array(dim);
  let err = 0;
  for (let r = 0; r < rows.length / dim; r++) {
    const scale = quantizeFp8(rows, r * dim, dim, codes, 0);
    dequantizeFp8(codes, 0, dim, scale, back, 0);
    for (let j = 0; j < dim; j++) err += (back[j]! - rows[r * dim + j]!) ** 2;
  }
  return Math.sqrt(err / rows.length);
}

function planeBytes(pool: object): number[][] {
  return Object.values(pool)
    .filter((v): v is ArrayBufferView => ArrayBuffer.isView(v))
    .map((v) => [...new Uint8Array(v.buffer, v.byteOffset, v.byteLength)]);
}
