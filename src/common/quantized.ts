// A block-quantised weight in ONNX Runtime's com.microsoft MatMulNBits layout: shared vocabulary of the
// quantiser (engine/quant), the graph ops (engine/onnx) and the cache. Symmetric, no zero_points input:
//   codes  uint8   [rows, kBlocks(cols), blobBytes(bits)]   (rows = N = out, cols = K = in)
//   scales float32 [rows * kBlocks(cols)]
//   W[n, k] = (code - 2^(bits-1)) * scales[n * kBlocks + k / 32]

export const QUANT_BLOCK = 32;

export type QuantBits = 4 | 8;

export interface QuantizedMatrix {
  readonly bits: QuantBits;
  readonly rows: number;
  readonly cols: number;
  readonly packed: Uint8Array; // [rows, kBlocks, blobBytes]
  readonly scales: Float32Array; // [rows * kBlocks]
}

export function kBlocks(cols: number): number {
  return Math.ceil(cols / QUANT_BLOCK);
}

/** Bytes of one block's codes. */
export function blobBytes(bits: QuantBits): number {
  return (QUANT_BLOCK * bits) / 8;
}

/** A linear layer's weight [out, in] as the graphs take it: float32, or quantised (MatMulNBits layout). */
export type LinearWeight = { readonly data: Float32Array; readonly shape: readonly number[] } | QuantizedMatrix;

export function isQuantized(w: LinearWeight): w is QuantizedMatrix {
  return 'packed' in w;
}

/** A [rows, cols] table of float16 values (bits): the token embedding under --quantization. */
export interface HalfMatrix {
  readonly half: Uint16Array;
  readonly shape: readonly [number, number];
}

/** The token embedding as the engine keeps it: float32, or float16 under --quantization (read by row, never a GEMM). */
export type EmbeddingTable = { readonly data: Float32Array; readonly shape: readonly number[] } | HalfMatrix;
