// Reads a 2-D checkpoint tensor [rows, cols] in chunks of rows and quantises each chunk as it arrives,
// so its float32 form never exists whole (a 102400 x 2048 embedding would be 839 MB of float32; a chunk
// is ~16 MB). F32, BF16 and F16 decode into one reused buffer; FP8 (e4m3 with 128 x 128 block scales)
// chunks are whole 128-row bands, dequantised with their scale rows.
import { decodeInto, dequantizeFp8Blocks, float32ToF16Into, FP8_BLOCK, fp8ScaleShape } from '../checkpoint/dtype.ts';
import type { HalfMatrix } from '../../common/quantized.ts';
import type { Checkpoint, TensorInfo } from '../checkpoint/safetensors.ts';
import { allocateQuantized, quantizeRowsInto, type QuantBits, type QuantizedMatrix } from './block_quant.ts';

/** Values decoded per chunk (16 MB of float32). */
const CHUNK_VALUES = 1 << 22;

let scratch = new Float32Array(0);

function scratchFor(n: number): Float32Array {
  if (scratch.length < n) scratch = new Float32Array(n);
  return scratch.subarray(0, n);
}

function chunkRows(info: TensorInfo, cols: number, chunkValues: number): number {
  const rows = Math.max(1, Math.floor(chunkValues / cols));
  return info.dtype === 'F8_E4M3' ? Math.max(FP8_BLOCK, rows - (rows % FP8_BLOCK)) : rows;
}

/**
 * Quantises checkpoint tensor `info` ([rows, cols], dtype F32/BF16/F16/F8_E4M3) to `bits`. For FP8,
 * `scaleInv` is its decoded `_scale_inv` grid [ceil(rows / 128), ceil(cols / 128)].
 * @throws Error naming the tensor on a non-finite value.
 */
export function readQuantized(
  ckpt: Checkpoint,
  info: TensorInfo,
  bits: QuantBits,
  scaleInv: Float32Array | null = null,
  chunkValues = CHUNK_VALUES,
): QuantizedMatrix {
  const [rows, cols] = info.shape as [number, number];
  const m = allocateQuantized(rows, cols, bits);
  forEachChunk(ckpt, info, scaleInv, chunkValues, (r0, values) => {
    try {
      quantizeRowsInto(m, r0, values);
    } catch (err) {
      throw new Error(`tensor "${info.name}": ${(err as Error).message}`, { cause: err });
    }
  });
  return m;
}

/** Reads checkpoint tensor `info` ([rows, cols]) as float16 (round to nearest even), chunk by chunk. */
export function readHalf(ckpt: Checkpoint, info: TensorInfo, scaleInv: Float32Array | null = null, chunkValues = CHUNK_VALUES): HalfMatrix {
  const [rows, cols] = info.shape as [number, number];
  const half = new Uint16Array(rows * cols);
  forEachChunk(ckpt, info, scaleInv, chunkValues, (r0, values) => float32ToF16Into(values, half.subarray(r0 * cols, r0 * cols + values.length)));
  return { half, shape: [rows, cols] };
}

/** Calls fn(firstRow, float32 values [n, cols]) for consecutive row chunks; `values` is reused between calls. */
function forEachChunk(
  ckpt: Checkpoint,
  info: TensorInfo,
  scaleInv: Float32Array | null,
  chunkValues: number,
  fn: (r0: number, values: Float32Array) => void,
): void {
  const [rows, cols] = info.shape as [number, number];
  const step = chunkRows(info, cols, chunkValues);
  const width = info.dtype === 'F32' ? 4 : info.dtype === 'F8_E4M3' ? 1 : 2;
  let bytes = new Uint8Array(Math.min(step, rows) * cols * width);
  for (let r0 = 0; r0 < rows; r0 += step) {
    const n = Math.min(step, rows - r0);
    if (bytes.length !== n * cols * width) bytes = new Uint8Array(n * cols * width);
    ckpt.readRange(info.name, r0 * cols * width, bytes);
    if (info.dtype === 'F8_E4M3') {
      const scaleCols = fp8ScaleShape(rows, cols)[1];
      const band = scaleInv!.subarray((r0 / FP8_BLOCK) * scaleCols, Math.ceil((r0 + n) / FP8_BLOCK) * scaleCols);
      fn(r0, dequantizeFp8Blocks(bytes, n, cols, band));
    } else {
      const values = scratchFor(n * cols);
      decodeInto(bytes, info.dtype as 'F32' | 'BF16' | 'F16', values);
      fn(r0, values);
    }
  }
}
