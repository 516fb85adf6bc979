// Shared scratch views for reading and writing float32 bit patterns one value at a time.
// Host byte order is irrelevant here: both views alias the same 4 bytes.

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);
// Both views have exactly one element, so index 0 is always defined.

/** The IEEE-754 bits of fround(x), as an unsigned 32-bit integer. */
export function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0]!;
}

/** The float32 whose bits are `bits` (unsigned 32-bit). */
export function bitsF32(bits: number): number {
  scratchU32[0] = bits;
  return scratchF32[0]!;
}
