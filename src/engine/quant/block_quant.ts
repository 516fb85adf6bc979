// Symmetric weight-only block quantisation of an HF linear weight W [N, K] (N = out, K = in) into
// exactly the layout of ONNX Runtime's com.microsoft MatMulNBits (no zero_points input):
//   B      uint8   [N, kBlocks, 32 * bits / 8]   kBlocks = ceil(K / 32); K is zero-padded to a multiple of 32
//   scales float32 [N * kBlocks]
//   W[n, k] = (code - zeroPoint) * scales[n * kBlocks + k / 32]   zeroPoint = 2^(bits - 1): 8 (int4), 128 (int8)
// 4-bit codes: element 2i of a block in the low nibble of byte i, element 2i + 1 in the high nibble.
//
// Scales follow the Q8_0 / Q4_0 family (llama.cpp; MLAS's symmetric int4 does the same for int4):
//   int8: s = amax / 127, q = round(x / s) in [-127, 127]
//   int4: s = m / -8 where m is the block's value of largest magnitude (first one on ties), q in [-8, 7]
//         (m itself maps to -8 exactly, so the full 16-level range is used; s may be negative)
// Each scale is snapped to the nearest float16 when it lies in float16's normal range, so a GGUF
// Q8_0 / Q4_0 block (float16 scale) written from these codes holds exactly the same weights; outside
// that range (|s| < 2^-14 or > 65504) the float32 scale is kept, so tiny or huge blocks lose nothing.
// Rounding is half away from zero (C roundf). An all-zero block gets s = 0 and zero codes.
import { assert } from '../../common/errors.ts';
import { blobBytes, kBlocks, QUANT_BLOCK, type QuantBits, type QuantizedMatrix } from '../../common/quantized.ts';

export { blobBytes, kBlocks, QUANT_BLOCK, type QuantBits, type QuantizedMatrix } from '../../common/quantized.ts';

// A module-local copy for the hot loops: under tsx (tests, bench) an imported binding is a getter call.
const BLOCK = QUANT_BLOCK;

export function zeroPoint(bits: QuantBits): number {
  return bits === 8 ? 128 : 8;
}

/** Bytes a [rows, cols] weight takes quantised (codes + float32 scales). */
export function quantizedBytes(rows: number, cols: number, bits: QuantBits): number {
  const blocks = rows * kBlocks(cols);
  return blocks * (blobBytes(bits) + 4);
}

export function allocateQuantized(rows: number, cols: number, bits: QuantBits): QuantizedMatrix {
  const blocks = rows * kBlocks(cols);
  return { bits, rows, cols, packed: new Uint8Array(blocks * blobBytes(bits)), scales: new Float32Array(blocks) };
}

const F16_MIN_NORMAL = 2 ** -14;
const F16_MAX = 65504;
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** s rounded to 11 significant bits (nearest even) when |s| is a float16 normal, else s as float32. */
export function snapScale(s: number): number {
  const a = Math.abs(s);
  if (a < F16_MIN_NORMAL || a > F16_MAX) return Math.fround(s);
  f32[0] = s;
  const b = u32[0]!; // one-element views
  u32[0] = (b + 0xfff + ((b >>> 13) & 1)) & 0xffffe000;
  return Math.abs(f32[0]!) > F16_MAX ? Math.fround(s) : f32[0]!;
}

// The ragged last block of a row, zero-padded past K.
const tail = new Float32Array(BLOCK);

/**
 * Quantises `data` ([numRows, cols] row-major float32, numRows = data.length / cols) into rows
 * rowStart.. of `m`. Streaming loaders call this once per chunk of rows.
 * @throws Error naming the row and column of a non-finite value.
 */
export function quantizeRowsInto(m: QuantizedMatrix, rowStart: number, data: Float32Array): void {
  const { cols } = m;
  const numRows = data.length / cols;
  assert(Number.isInteger(numRows) && rowStart + numRows <= m.rows, 'quantizeRowsInto: rows out of range');
  const nb = kBlocks(cols);
  if (cols % BLOCK === 0) {
    // No padding: the chunk is a run of whole blocks, in the output's order.
    encodeBlocks(data, 0, data.length, m, rowStart * nb);
    return;
  }
  for (let r = 0; r < numRows; r++) {
    const full = Math.floor(cols / BLOCK) * BLOCK;
    const b0 = (rowStart + r) * nb;
    encodeBlocks(data, r * cols, r * cols + full, m, b0);
    tail.fill(0).set(data.subarray(r * cols + full, (r + 1) * cols));
    encodeBlocks(tail, 0, BLOCK, m, b0 + nb - 1, rowStart + r);
  }
}

/**
 * Encodes the whole blocks x[from..to) as blocks firstBlock.. of m. One tight loop per width, with the
 * per-value work free of data-dependent branches (random weights made the branchy version ~10x slower:
 * sign and clamp branches mispredict on every other value).
 */
function encodeBlocks(x: Float32Array, from: number, to: number, m: QuantizedMatrix, firstBlock: number, tailRow = -1): void {
  const bad = m.bits === 8 ? encodeRunInt8(x, from, to, m.packed, m.scales, firstBlock) : encodeRunInt4(x, from, to, m.packed, m.scales, firstBlock);
  if (bad >= 0) throw nonFinite(m, bad, tailRow);
}

function nonFinite(m: QuantizedMatrix, block: number, tailRow: number): Error {
  const nb = kBlocks(m.cols);
  const row = tailRow >= 0 ? tailRow : Math.floor(block / nb);
  const k0 = (block % nb) * BLOCK;
  return new Error(`non-finite value in row ${row}, columns ${k0}..${Math.min(m.cols, k0 + BLOCK) - 1}`);
}

/** Largest |x| of a block; NaN or Infinity when the block holds a non-finite value (Math.max propagates NaN). */
function blockAmax(x: Float32Array, at: number): number {
  let amax = 0;
  for (let i = at; i < at + BLOCK; i++) amax = Math.max(amax, Math.abs(x[i]!)); // callers pass padded rows: at + BLOCK <= x.length
  return amax;
}

/**
 * Rounds half away from zero (C roundf), exactly and without branches: v - trunc(v) is exact in double, and
 * trunc(2 * frac) is +-1 exactly when |frac| >= 1/2 (measured 2x faster than sign(v) * round(|v|)).
 */
function roundHalfAway(v: number): number {
  const t = Math.trunc(v);
  return t + Math.trunc(2 * (v - t));
}

/** int8 blocks: s = amax / 127, codes q + 128. Returns the first block holding a non-finite value, or -1. */
function encodeRunInt8(x: Float32Array, from: number, to: number, packed: Uint8Array, scales: Float32Array, firstBlock: number): number {
  for (let at = from, b = firstBlock; at < to; at += BLOCK, b++) {
    const amax = blockAmax(x, at);
    if (!(amax <= Number.MAX_VALUE)) return b;
    const s = snapScale(amax / 127);
    const d = s === 0 ? Infinity : s; // x / Infinity = 0: an all-zero block gets zero codes
    const o = b * BLOCK;
    for (let i = 0; i < BLOCK; i++) packed[o + i] = Math.min(127, Math.max(-127, roundHalfAway(x[at + i]! / d))) + 128; // padded: at + BLOCK <= x.length
    scales[b] = s;
  }
  return -1;
}

/** int4 blocks: s = (first value of largest magnitude) / -8, codes q + 8, element 2i low nibble. */
function encodeRunInt4(x: Float32Array, from: number, to: number, packed: Uint8Array, scales: Float32Array, firstBlock: number): number {
  for (let at = from, b = firstBlock; at < to; at += BLOCK, b++) {
    const amax = blockAmax(x, at);
    if (!(amax <= Number.MAX_VALUE)) return b;
    let i0 = at;
    while (Math.abs(x[i0]!) !== amax) i0++; // amax is |x| of an element of this block, so i0 stops inside it
    const mv = x[i0]!;
    const s = mv === 0 ? 0 : snapScale(mv / -8); // never -0
    const d = s === 0 ? Infinity : s;
    const o = b * (BLOCK / 2);
    for (let i = 0; i < BLOCK / 2; i++) {
      const lo = Math.min(7, Math.max(-8, roundHalfAway(x[at + 2 * i]! / d))) + 8; // padded: at + BLOCK <= x.length
      const hi = Math.min(7, Math.max(-8, roundHalfAway(x[at + 2 * i + 1]! / d))) + 8;
      packed[o + i] = lo | (hi << 4);
    }
    scales[b] = s;
  }
  return -1;
}

/** Quantises a whole [rows, cols] float32 weight. */
export function quantizeMatrix(data: Float32Array, rows: number, cols: number, bits: QuantBits): QuantizedMatrix {
  assert(data.length === rows * cols, `quantizeMatrix: ${data.length} values for [${rows}, ${cols}]`);
  const m = allocateQuantized(rows, cols, bits);
  quantizeRowsInto(m, 0, data);
  return m;
}

/** The float32 weight MatMulNBits computes with: (code - zeroPoint) * scale, padding dropped. */
export function dequantizeMatrix(m: QuantizedMatrix): Float32Array {
  const { rows, cols, bits } = m;
  const nb = kBlocks(cols);
  const blob = blobBytes(bits);
  const zp = zeroPoint(bits);
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < cols; k++) {
      const b = r * nb + ((k / BLOCK) | 0);
      const i = k % BLOCK;
      const byte = m.packed[b * blob + (bits === 8 ? i : i >> 1)]!; // b < rows * nb, i < BLOCK: inside the layout
      const code = bits === 8 ? byte : (i & 1) === 0 ? byte & 0xf : byte >> 4;
      out[r * cols + k] = (code - zp) * m.scales[b]!;
    }
  }
  return out;
}
