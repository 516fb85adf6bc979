// Writes float32 rows into the typed pools of kv_dtype.ts and reads them back as float32.
//
// Every token row is quantised on its own (its own scales, its own rotation), so the bytes of a slot
// depend only on that token's float32 row: whoever writes it (one prefill, chunks of any size, a
// decode step, a recompute after preemption) stores the same bytes, and a prefix-cache hit reads
// exactly what a fresh computation would have written.
// Non-finite inputs are not expected (the model's activations are finite); a NaN or infinity in an
// fp8 group reads back as NaN for the whole group (NaN or infinite scale), so it reaches the logits
// and the sampler's check instead of being saturated away.
import { decodeBf16, encodeBf16 } from '../common/numeric/bf16.ts';
import { E4M3_ENCODE_TABLE, E4M3_MAX, E4M3_VALUES, e4m3TableIndex } from '../common/numeric/fp8_e4m3.ts';
import { hadamardRotateRows } from '../common/numeric/hadamard.ts';
import { assert } from '../common/errors.ts';
import { FP8_LATENT_GROUP, fp8LatentGroups, type IndexerKeyPool, type LatentPool } from './kv_dtype.ts';

/** Latent row split: kvLoraRank quantised values, then qkRopeHeadDim RoPE values. */
export interface LatentSplit {
  readonly kvLoraRank: number;
  readonly qkRopeHeadDim: number;
}

/** The float32 scale of a group with largest magnitude `amax`: amax / 448, or 1 when that is 0. */
export function fp8Scale(amax: number): number {
  const scale = Math.fround(amax / E4M3_MAX);
  return scale > 0 || Number.isNaN(scale) ? scale : 1;
}

// Quotients x / scale rounded to float32 by the store, and their bits (grown to the longest group seen).
let quotients = new Float32Array(128);
let quotientBits = new Uint32Array(quotients.buffer);

/**
 * Quantises src[srcOffset .. +n) with one scale into e4m3 codes at dst[dstOffset ..]; returns the scale.
 * code = e4m3(fround(x / scale)), so |x / scale| <= 448 up to the rounding of the scale (saturated).
 * The codes come from E4M3_ENCODE_TABLE (the same function as e4m3FromF32Bits, bit for bit).
 * Callers pass windows inside src and dst (hence the `!` on reads).
 */
export function quantizeFp8(src: Float32Array, srcOffset: number, n: number, dst: Uint8Array, dstOffset: number): number {
  let amax = 0;
  for (let i = srcOffset; i < srcOffset + n; i++) {
    const a = Math.abs(src[i]!);
    if (a > amax || Number.isNaN(a)) amax = a; // a NaN sticks, so a NaN row gets NaN codes
  }
  const scale = fp8Scale(amax);
  if (quotients.length < n) {
    quotients = new Float32Array(n);
    quotientBits = new Uint32Array(quotients.buffer);
  }
  for (let i = 0; i < n; i++) quotients[i] = src[srcOffset + i]! / scale;
  for (let i = 0; i < n; i++) dst[dstOffset + i] = E4M3_ENCODE_TABLE[e4m3TableIndex(quotientBits[i]!)]!;
  return scale;
}

/** dst[dstOffset + i] = e4m3(src[srcOffset + i]) * scale for i < n (windows inside src and dst; every byte is a code). */
export function dequantizeFp8(src: Uint8Array, srcOffset: number, n: number, scale: number, dst: Float32Array, dstOffset: number): void {
  for (let i = 0; i < n; i++) dst[dstOffset + i] = E4M3_VALUES[src[srcOffset + i]!]! * scale;
}

function checkSlots(slots: Int32Array, numSlots: number, rows: Float32Array, dim: number): void {
  assert(rows.length === slots.length * dim, `${rows.length} floats for ${slots.length} slots of dim ${dim}`);
  for (const s of slots) assert(s >= 0 && s < numSlots, `slot ${s} out of range [0, ${numSlots})`);
}

/** pool[slots[i]] = quantised rows[i] for rows [count, L + dr]. */
export function writeLatentRows(pool: LatentPool, split: LatentSplit, numSlots: number, slots: Int32Array, rows: Float32Array): void {
  const { kvLoraRank: L, qkRopeHeadDim: dr } = split;
  const C = L + dr;
  checkSlots(slots, numSlots, rows, C);
  if (pool.dtype === 'float32') return copyRuns(pool.rows, C, slots, rows);
  if (pool.dtype === 'bfloat16') {
    slots.forEach((slot, i) => encodeBf16(rows.subarray(i * C, (i + 1) * C), pool.rows.subarray(slot * C, (slot + 1) * C)));
    return;
  }
  const G = fp8LatentGroups(L);
  slots.forEach((slot, i) => {
    for (let g = 0; g < G; g++) {
      const start = g * FP8_LATENT_GROUP;
      const n = Math.min(FP8_LATENT_GROUP, L - start);
      pool.nopeScales[slot * G + g] = quantizeFp8(rows, i * C + start, n, pool.nope, slot * L + start);
    }
    encodeBf16(rows.subarray(i * C + L, (i + 1) * C), pool.rope.subarray(slot * dr, (slot + 1) * dr));
  });
}

/** Dequantised rows [count, L + dr] of the given slots (each < the pool's slot count: scales are indexed by slot). */
export function readLatentRows(pool: LatentPool, split: LatentSplit, slots: Int32Array): Float32Array {
  const { kvLoraRank: L, qkRopeHeadDim: dr } = split;
  const C = L + dr;
  const out = new Float32Array(slots.length * C);
  slots.forEach((slot, i) => {
    if (pool.dtype === 'float32') out.set(pool.rows.subarray(slot * C, (slot + 1) * C), i * C);
    else if (pool.dtype === 'bfloat16') decodeBf16(pool.rows.subarray(slot * C, (slot + 1) * C), out.subarray(i * C, (i + 1) * C));
    else {
      const G = fp8LatentGroups(L);
      for (let g = 0; g < G; g++) {
        const start = g * FP8_LATENT_GROUP;
        dequantizeFp8(pool.nope, slot * L + start, Math.min(FP8_LATENT_GROUP, L - start), pool.nopeScales[slot * G + g]!, out, i * C + start);
      }
      decodeBf16(pool.rope.subarray(slot * dr, (slot + 1) * dr), out.subarray(i * C + L, (i + 1) * C));
    }
  });
  return out;
}

/** pool[slots[i]] = rows[i] for keys [count, Di]; `rotate` (fp8) rotates each key first (its query must be rotated too). */
export function writeIndexerKeyRows(pool: IndexerKeyPool, indexerDim: number, numSlots: number, slots: Int32Array, rows: Float32Array, rotate: boolean): void {
  const Di = indexerDim;
  checkSlots(slots, numSlots, rows, Di);
  if (pool.dtype === 'float32') return copyRuns(pool.keys, Di, slots, rows);
  if (pool.dtype === 'bfloat16') {
    slots.forEach((slot, i) => encodeBf16(rows.subarray(i * Di, (i + 1) * Di), pool.keys.subarray(slot * Di, (slot + 1) * Di)));
    return;
  }
  const rotated = new Float64Array(Di);
  const row = new Float32Array(Di);
  slots.forEach((slot, i) => {
    rotated.set(rows.subarray(i * Di, (i + 1) * Di));
    if (rotate) hadamardRotateRows(rotated, Di);
    row.set(rotated);
    pool.scales[slot] = quantizeFp8(row, 0, Di, pool.keys, slot * Di);
  });
}

/** Keys [count, Di] of the given slots (each < the pool's slot count), dequantised and (if stored rotated) rotated back to the model's basis. */
export function readIndexerKeyRows(pool: IndexerKeyPool, indexerDim: number, slots: Int32Array, rotated: boolean): Float32Array {
  const Di = indexerDim;
  const out = new Float32Array(slots.length * Di);
  slots.forEach((slot, i) => {
    if (pool.dtype === 'float32') out.set(pool.keys.subarray(slot * Di, (slot + 1) * Di), i * Di);
    else if (pool.dtype === 'bfloat16') decodeBf16(pool.keys.subarray(slot * Di, (slot + 1) * Di), out.subarray(i * Di, (i + 1) * Di));
    else dequantizeFp8(pool.keys, slot * Di, Di, pool.scales[slot]!, out, i * Di);
  });
  if (rotated) {
    const exact = Float64Array.from(out);
    hadamardRotateRows(exact, Di); // the rotation is its own inverse
    out.set(exact);
  }
  return out;
}

/**
 * cache[slots[i]] = rows[i] for float32 pools. Consecutive slots (positions within one block) are
 * coalesced into one TypedArray.set, so a prefill chunk costs about one copy per block.
 */
function copyRuns(cache: Float32Array, dim: number, slots: Int32Array, rows: Float32Array): void {
  let i = 0;
  while (i < slots.length) {
    const first = slots[i]!; // i < slots.length
    let end = i + 1;
    while (end < slots.length && slots[end] === first + (end - i)) end++;
    cache.set(rows.subarray(i * dim, end * dim), first * dim);
    i = end;
  }
}
