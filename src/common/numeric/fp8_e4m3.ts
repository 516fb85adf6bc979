// float8 e4m3fn (OCP FP8 E4M3, ONNX FLOAT8E4M3FN) <-> float32.
//
// Code s.eeee.mmm, exponent bias 7, no infinities; s.1111.111 is NaN; e = 0 is subnormal (m * 2^-9).
// Largest finite value 448 (0x7e), smallest normal 2^-6 (0x08), smallest subnormal 2^-9 (0x01).
// Encoding (ONNX Cast with saturate=1): round to nearest even from the float32 value; anything of
// magnitude >= 448, infinities included, saturates to +-448; NaN stays NaN; -0 keeps its sign.
// A finite input therefore never produces the NaN code.
import { bitsF32, f32Bits } from './float_bits.ts';

export const E4M3_MAX = 448;
export const E4M3_NAN = 0x7f;
const E4M3_MAX_CODE = 0x7e;
const F32_448 = 0x43e00000;
const F32_MIN_NORMAL_E4M3 = 0x3c800000; // 2^-6
const EXPONENT_REBIAS = (127 - 7) << 3; // float32 bits >> 20 (exponent | 3 mantissa bits) minus this = e4m3 code

/** float32 bits of every code; the NaN codes (0x7f, 0xff) decode to a quiet NaN of the code's sign. */
export const E4M3_BITS: Uint32Array = buildBitsTable();
/** float32 value of every code (a view of E4M3_BITS). */
export const E4M3_VALUES: Float32Array = new Float32Array(E4M3_BITS.buffer);

function buildBitsTable(): Uint32Array {
  const table = new Uint32Array(256);
  for (let code = 0; code < 256; code++) {
    const sign = code & 0x80 ? -1 : 1;
    const e = (code >> 3) & 0xf;
    const m = code & 7;
    table[code] = e === 15 && m === 7 ? (((code & 0x80) << 24) | 0x7fc00000) >>> 0 : f32Bits(sign * (e === 0 ? m * 2 ** -9 : (8 + m) * 2 ** (e - 10)));
  }
  return table;
}

/**
 * e4m3FromF32Bits as a table: the code depends only on the top 16 bits of the float32 and on whether any
 * of the low 16 are set (the rounding point is at mantissa bit 20 or above, so the low half only ever
 * acts as a sticky bit, and the NaN test needs it too). Index (b >>> 16) << 1 | sticky; 128 KiB.
 * Measured (bench/kv_dtype_probe.ts write path): several times faster than e4m3FromF32Bits per value.
 */
export const E4M3_ENCODE_TABLE: Uint8Array = buildEncodeTable();

function buildEncodeTable(): Uint8Array {
  const table = new Uint8Array(1 << 17);
  for (let hi = 0; hi < 1 << 16; hi++) {
    table[hi << 1] = e4m3FromF32Bits((hi << 16) >>> 0);
    table[(hi << 1) | 1] = e4m3FromF32Bits(((hi << 16) | 1) >>> 0);
  }
  return table;
}

/** The E4M3_ENCODE_TABLE index of float32 bits b. */
export function e4m3TableIndex(b: number): number {
  return ((b >>> 15) & 0x1fffe) | (((b & 0xffff) + 0xffff) >>> 16);
}

/** e4m3 code of fround(x). */
export function float32ToE4m3(x: number): number {
  return e4m3FromF32Bits(f32Bits(x));
}

export function e4m3ToFloat32(code: number): number {
  return E4M3_VALUES[code & 0xff]!; // the table has all 256 codes
}

/** e4m3 code of the float32 with bits `b` (see the file comment for rounding and saturation). */
export function e4m3FromF32Bits(b: number): number {
  const sign = (b >>> 24) & 0x80;
  const a = b & 0x7fffffff;
  if (a > 0x7f800000) return sign | E4M3_NAN;
  if (a >= F32_448) return sign | E4M3_MAX_CODE;
  // Normal: round the 23-bit mantissa to 3 bits, nearest even; a carry moves into the exponent field.
  if (a >= F32_MIN_NORMAL_E4M3) return sign | (((a + 0x7ffff + ((a >>> 20) & 1)) >>> 20) - EXPONENT_REBIAS);
  // Subnormal: m = |x| * 2^9 rounded to nearest even, 0..8 (8 is the smallest normal, code 0x08).
  const y = bitsF32(a) * 512;
  let m = Math.floor(y);
  const frac = y - m;
  if (frac > 0.5 || (frac === 0.5 && (m & 1) === 1)) m++;
  return sign | m;
}
