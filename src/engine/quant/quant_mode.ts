// The --quantization modes: weight-only, symmetric, blocks of 32 along the input dimension.
import type { QuantBits } from './block_quant.ts';

export const QUANTIZATION_MODES = ['none', 'int8', 'int4'] as const;
export type QuantizationMode = (typeof QUANTIZATION_MODES)[number];

/** Bits of the linear weights; null = float32. */
export function quantBits(mode: QuantizationMode): QuantBits | null {
  return mode === 'int8' ? 8 : mode === 'int4' ? 4 : null;
}
