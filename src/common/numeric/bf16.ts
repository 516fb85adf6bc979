// bfloat16 (1 sign, 8 exponent, 7 mantissa bits: the upper half of a float32) <-> float32.
// Encoding rounds to nearest even on the float32 bit pattern. Finite inputs always give finite
// codes: the few float32 values above bf16's largest finite value (3.3895e38) saturate to it
// instead of rounding to infinity, so a cache row never turns into inf/NaN by being stored.
import { bitsF32, f32Bits } from './float_bits.ts';

export const BF16_MAX_FINITE_BITS = 0x7f7f;

/** bf16 bits of one float32 value (round to nearest even, saturating, NaN stays a quiet NaN). */
export function float32ToBf16Bits(x: number): number {
  return bf16FromF32Bits(f32Bits(x));
}

/**
 * bf16 bits of one float32 value as torch's conversion gives them: like float32ToBf16Bits, except that
 * finite values above the largest bf16 round to infinity (for writing checkpoints, not the KV cache).
 */
export function float32ToBf16BitsIeee(x: number): number {
  return roundBf16(f32Bits(x));
}

export function bf16BitsToFloat32(bits: number): number {
  return bitsF32(((bits & 0xffff) << 16) >>> 0);
}

/** Encodes `src` into `dst` element-wise (same length); both are caller-owned views. */
export function encodeBf16(src: Float32Array, dst: Uint16Array): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  // i < bits.length: bits views exactly src's elements.
  for (let i = 0; i < bits.length; i++) dst[i] = bf16FromF32Bits(bits[i]!);
}

/** Decodes `src` into `dst` element-wise (exact: every bf16 value is a float32). */
export function decodeBf16(src: Uint16Array, dst: Float32Array): void {
  const bits = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) bits[i] = (src[i]! << 16) >>> 0;
}

function bf16FromF32Bits(b: number): number {
  if ((b & 0x7fffffff) === 0x7f800000) return b >>> 16; // +-inf stays inf
  const r = roundBf16(b);
  return (r & 0x7fff) === 0x7f80 ? (r & 0x8000) | BF16_MAX_FINITE_BITS : r;
}

/** Round to nearest even on the bit pattern (a carry may reach infinity); NaN stays a quiet NaN. */
function roundBf16(b: number): number {
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) | 0x40) & 0xffff; // NaN: keep sign and payload top, force quiet
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}
