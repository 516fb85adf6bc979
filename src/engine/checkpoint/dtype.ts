// Exact conversions between checkpoint dtypes and float32, plus the encoders used to write test checkpoints.
// Every narrow format (bf16, f16, e4m3) is a subset of float32, so decoding is exact; encoding rounds to nearest even.
// Bulk paths work on Uint32Array views of the float32 output so NaN payloads and -0 survive bit-exactly.
// The scalar bf16 and e4m3 codecs are common/numeric's (one implementation for checkpoints and the KV cache).
import { endianness } from 'node:os';
import { assert } from '../../common/errors.ts';
import { float32ToBf16BitsIeee } from '../../common/numeric/bf16.ts';
import { bitsF32, f32Bits } from '../../common/numeric/float_bits.ts';
import { E4M3_BITS, E4M3_MAX, E4M3_VALUES, e4m3FromF32Bits } from '../../common/numeric/fp8_e4m3.ts';

export type FloatDType = 'F32' | 'BF16' | 'F16' | 'F8_E4M3';
/** DeepSeek FP8 checkpoints quantise 2-D weights in square blocks of this size (ragged at the edges). */
export const FP8_BLOCK = 128;

// Safetensors data is little-endian; typed-array views use host order.
assert(endianness() === 'LE', 'checkpoint decoding requires a little-endian host');

function f16ToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return (sign | 0x7f800000 | (m << 13)) >>> 0;
  if (e !== 0) return (sign | ((e + 112) << 23) | (m << 13)) >>> 0;
  return (sign | f32Bits(m * 2 ** -24)) >>> 0; // subnormal halves are normal floats
}

export function f16ToFloat32(bits: number): number {
  return bitsF32(f16ToF32Bits(bits & 0xffff));
}

let f16Bits: Uint32Array | null = null;

function f16BitsTable(): Uint32Array {
  if (f16Bits === null) {
    f16Bits = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Bits[h] = f16ToF32Bits(h);
  }
  return f16Bits;
}

/** Element views need aligned offsets; a misaligned slice is copied once. */
function aligned(bytes: Uint8Array, width: number): Uint8Array {
  return bytes.byteOffset % width === 0 ? bytes : bytes.slice();
}

/**
 * Decodes little-endian raw tensor bytes to float32. Aligned F32 input is returned as a view over `bytes`
 * (no copy: the loader hands over freshly read buffers); other dtypes produce a new array.
 */
export function decodeToFloat32(bytes: Uint8Array, dtype: FloatDType): Float32Array {
  if (dtype === 'F8_E4M3') return mapCodes(bytes, E4M3_BITS);
  const width = dtype === 'F32' ? 4 : 2;
  assert(bytes.byteLength % width === 0, `${dtype} byte length ${bytes.byteLength} not a multiple of ${width}`);
  const src = aligned(bytes, width);
  if (dtype === 'F32') return new Float32Array(src.buffer, src.byteOffset, src.byteLength / 4);
  const halves = new Uint16Array(src.buffer, src.byteOffset, src.byteLength / 2);
  if (dtype === 'F16') return mapCodes(halves, f16BitsTable());
  const out = new Float32Array(halves.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < halves.length; i++) outBits[i] = halves[i]! << 16;
  return out;
}

/**
 * Decodes little-endian raw bytes of F32, BF16 or F16 into `out` (length = number of values): the
 * allocation-free form for streaming readers that reuse one buffer per chunk.
 */
export function decodeInto(bytes: Uint8Array, dtype: 'F32' | 'BF16' | 'F16', out: Float32Array): void {
  const width = dtype === 'F32' ? 4 : 2;
  assert(bytes.byteLength === out.length * width, `${dtype}: ${bytes.byteLength} bytes for ${out.length} values`);
  const src = aligned(bytes, width);
  if (dtype === 'F32') {
    out.set(new Float32Array(src.buffer, src.byteOffset, out.length));
    return;
  }
  const halves = new Uint16Array(src.buffer, src.byteOffset, out.length);
  const outBits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  // i < halves.length === outBits.length; every half is an index of the 65536-entry table.
  if (dtype === 'BF16') {
    for (let i = 0; i < halves.length; i++) outBits[i] = halves[i]! << 16;
    return;
  }
  const table = f16BitsTable();
  for (let i = 0; i < halves.length; i++) outBits[i] = table[halves[i]!]!;
}

/**
 * float32 -> f16 bits, round to nearest even, overflow to infinity: float32ToF16's results on bit
 * arithmetic, fast enough for whole tables (a 210M-value embedding in ~1 s).
 */
export function float32ToF16Into(values: Float32Array, out: Uint16Array): void {
  assert(out.length === values.length, 'float32ToF16Into: length mismatch');
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16(bits[i]!); // i < bits.length
}

function f32BitsToF16(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const abs = b & 0x7fffffff;
  if (abs >= 0x7f800000) return sign | (abs > 0x7f800000 ? 0x7e00 : 0x7c00); // NaN, infinity
  if (abs >= 0x477ff000) return sign | 0x7c00; // >= 65520 rounds past 65504
  if (abs >= 0x38800000) return sign | ((abs + 0xfff + ((abs >>> 13) & 1) - 0x38000000) >>> 13); // normal: rebias, round 23 -> 10 bits
  if (abs < 0x33000000) return sign; // below half the smallest subnormal (2^-25)
  const shift = 126 - (abs >>> 23); // subnormal: units of 2^-24
  const m = (abs & 0x7fffff) | 0x800000;
  const q = m >>> shift;
  const rem = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return sign | (q + (rem > half || (rem === half && (q & 1) === 1) ? 1 : 0));
}

/** f16 bits -> float32 into `out` (table lookup). */
export function f16ToFloat32Into(halves: Uint16Array, out: Float32Array): void {
  assert(out.length === halves.length, 'f16ToFloat32Into: length mismatch');
  const table = f16BitsTable();
  const outBits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < halves.length; i++) outBits[i] = table[halves[i]!]!; // i < halves.length; the table has all 2^16 codes
}

function mapCodes(codes: Uint8Array | Uint16Array, table: Uint32Array): Float32Array {
  const out = new Float32Array(codes.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < codes.length; i++) outBits[i] = table[codes[i]!]!;
  return out;
}

/** Scale grid shape for a [rows, cols] FP8 weight. */
export function fp8ScaleShape(rows: number, cols: number): [number, number] {
  return [Math.ceil(rows / FP8_BLOCK), Math.ceil(cols / FP8_BLOCK)];
}

/**
 * w[i, j] = e4m3(q[i, j]) * scaleInv[i / 128 | 0, j / 128 | 0], rounded once to float32
 * (the double product of two floats is exact, so this equals a float32 multiply).
 */
export function dequantizeFp8Blocks(q: Uint8Array, rows: number, cols: number, scaleInv: Float32Array): Float32Array {
  const [scaleRows, scaleCols] = fp8ScaleShape(rows, cols);
  assert(q.length === rows * cols, 'fp8 data size != rows * cols');
  assert(scaleInv.length === scaleRows * scaleCols, 'fp8 scale grid size mismatch');
  const lut = E4M3_VALUES;
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const scaleRow = ((i / FP8_BLOCK) | 0) * scaleCols;
    const base = i * cols;
    for (let j = 0; j < cols; j++) out[base + j] = lut[q[base + j]!]! * scaleInv[scaleRow + ((j / FP8_BLOCK) | 0)]!;
  }
  return out;
}

function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d !== 0.5) return d < 0.5 ? f : f + 1;
  return f % 2 === 0 ? f : f + 1;
}

function floorLog2(a: number): number {
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  return e;
}

/**
 * Magnitude code (exponent | mantissa) of finite a >= 0 in a binary format with `mant` mantissa bits and
 * exponent bias `bias`, rounded to nearest even. A mantissa that rounds up carries into the exponent field,
 * so the result may exceed the largest finite code; callers saturate or map to infinity.
 */
function encodeMagnitude(a: number, mant: number, bias: number): number {
  const minExp = 1 - bias;
  if (a < 2 ** minExp) return roundHalfEven(a / 2 ** (minExp - mant));
  const e = floorLog2(a);
  return ((e + bias) << mant) + roundHalfEven(a / 2 ** (e - mant)) - (1 << mant);
}

/** float32 -> f16, round-to-nearest-even, overflow to infinity. */
export function float32ToF16(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  const code = a === Infinity ? 0x7c00 : Math.min(encodeMagnitude(a, 10, 15), 0x7c00);
  return sign | code;
}

/** Little-endian raw bytes of `data` in `dtype` (F32, BF16 or F16; FP8 goes through quantizeFp8Blocks). */
export function encodeFromFloat32(data: Float32Array, dtype: 'F32' | 'BF16' | 'F16'): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  const halves = new Uint16Array(data.length);
  const encode = dtype === 'BF16' ? float32ToBf16BitsIeee : float32ToF16;
  for (let i = 0; i < data.length; i++) halves[i] = encode(data[i]!);
  return new Uint8Array(halves.buffer);
}

/** Block quantiser matching DeepSeek's FP8 layout: scaleInv = amax / 448 per 128x128 block (1 for all-zero blocks). */
export function quantizeFp8Blocks(x: Float32Array, rows: number, cols: number): { q: Uint8Array; scaleInv: Float32Array } {
  assert(x.length === rows * cols, 'fp8 quantiser: data size != rows * cols');
  const [scaleRows, scaleCols] = fp8ScaleShape(rows, cols);
  const q = new Uint8Array(rows * cols);
  const scaleInv = new Float32Array(scaleRows * scaleCols);
  for (let bi = 0; bi < scaleRows; bi++) {
    for (let bj = 0; bj < scaleCols; bj++) {
      const block = { r0: bi * FP8_BLOCK, r1: Math.min(rows, (bi + 1) * FP8_BLOCK), c0: bj * FP8_BLOCK, c1: Math.min(cols, (bj + 1) * FP8_BLOCK) };
      scaleInv[bi * scaleCols + bj] = quantizeBlock(x, q, cols, block);
    }
  }
  return { q, scaleInv };
}

interface Block {
  readonly r0: number;
  readonly r1: number;
  readonly c0: number;
  readonly c1: number;
}

function quantizeBlock(x: Float32Array, q: Uint8Array, cols: number, b: Block): number {
  let amax = 0;
  for (let i = b.r0; i < b.r1; i++) {
    for (let j = b.c0; j < b.c1; j++) amax = Math.max(amax, Math.abs(x[i * cols + j]!) || 0);
  }
  const scale = amax > 0 ? Math.fround(amax / E4M3_MAX) : 1;
  for (let i = b.r0; i < b.r1; i++) {
    for (let j = b.c0; j < b.c1; j++) q[i * cols + j] = e4m3FromF32Bits(f32Bits(x[i * cols + j]! / scale));
  }
  return scale;
}
