// Row operations on linear weights [out, in] that work the same on float32 and quantised weights: the
// graph builders stack, reorder and rescale output rows (fused projections, q nope/rope split, folded
// softmax scales) without dequantising. Rows are independent in the block layout (blocks run along a
// row), so a quantised row is its codes and its scales; scaling a row scales its block scales.
import { assert } from '../../common/errors.ts';
import { blobBytes, isQuantized, kBlocks, type EmbeddingTable, type LinearWeight, type QuantizedMatrix } from '../../common/quantized.ts';
import { f16ToFloat32Into } from '../checkpoint/dtype.ts';

export function rowsOf(w: LinearWeight): number {
  return isQuantized(w) ? w.rows : w.shape[0]!;
}

export function colsOf(w: LinearWeight): number {
  return isQuantized(w) ? w.cols : w.shape[1]!;
}

/** Rows [start, end) of each range, concatenated in order, then multiplied by `scale`. */
export function selectRows(w: LinearWeight, ranges: readonly (readonly [number, number])[], scale = 1): LinearWeight {
  const cols = colsOf(w);
  const rows = ranges.reduce((n, [a, b]) => n + b - a, 0);
  if (!isQuantized(w)) {
    const data = new Float32Array(rows * cols);
    let at = 0;
    for (const [a, b] of ranges) {
      data.set(w.data.subarray(a * cols, b * cols), at);
      at += (b - a) * cols;
    }
    if (scale !== 1) data.forEach((v, i) => (data[i] = v * scale));
    return { data, shape: [rows, cols] };
  }
  const nb = kBlocks(cols);
  const rowBytes = nb * blobBytes(w.bits);
  const packed = new Uint8Array(rows * rowBytes);
  const scales = new Float32Array(rows * nb);
  let r = 0;
  for (const [a, b] of ranges) {
    packed.set(w.packed.subarray(a * rowBytes, b * rowBytes), r * rowBytes);
    scales.set(w.scales.subarray(a * nb, b * nb), r * nb);
    r += b - a;
  }
  if (scale !== 1) scales.forEach((v, i) => (scales[i] = v * scale));
  return { bits: w.bits, rows, cols, packed, scales };
}

/**
 * The arrays as one view when each starts where the previous one ends in the same buffer, else null.
 * A group read from the quantised-weights cache lies in one buffer in manifest order (cache_file.ts), so an
 * expert's gate and up codes (and their scales) are adjacent: stacking them is then free. Copying instead
 * cost a fresh 220 MB per bench-lite layer, page-faulted in on the thread that compiles the graphs.
 */
function contiguousView<T extends Uint8Array | Float32Array>(parts: readonly T[]): T | null {
  const first = parts[0]!;
  let end = first.byteOffset + first.byteLength;
  for (const p of parts.slice(1)) {
    if (p.buffer !== first.buffer || p.byteOffset !== end) return null;
    end += p.byteLength;
  }
  const length = (end - first.byteOffset) / first.BYTES_PER_ELEMENT;
  return (
    first instanceof Float32Array ? new Float32Array(first.buffer, first.byteOffset, length) : new Uint8Array(first.buffer, first.byteOffset, length)
  ) as T;
}

/**
 * The weights' rows stacked ([sum out_i, in]); all float32 or all quantised with the same bits and in.
 * The result may share memory with the inputs (contiguousView): weights are never written in place.
 */
export function stackRows(ws: readonly LinearWeight[]): LinearWeight {
  assert(ws.length > 0, 'stackRows: nothing to stack');
  const cols = colsOf(ws[0]!);
  assert(
    ws.every((w) => colsOf(w) === cols && isQuantized(w) === isQuantized(ws[0]!)),
    'stackRows: mixed widths or kinds',
  );
  const rows = ws.reduce((n, w) => n + rowsOf(w), 0);
  if (!isQuantized(ws[0]!)) {
    const fs = ws as readonly { data: Float32Array }[];
    const view = contiguousView(fs.map((w) => w.data));
    if (view !== null) return { data: view, shape: [rows, cols] };
    const data = new Float32Array(rows * cols);
    let at = 0;
    for (const w of fs) {
      data.set(w.data, at);
      at += w.data.length;
    }
    return { data, shape: [rows, cols] };
  }
  const qs = ws as readonly QuantizedMatrix[];
  const bits = qs[0]!.bits;
  assert(
    qs.every((q) => q.bits === bits),
    'stackRows: mixed bits',
  );
  const packedView = contiguousView(qs.map((q) => q.packed));
  const scalesView = contiguousView(qs.map((q) => q.scales));
  if (packedView !== null && scalesView !== null) return { bits, rows, cols, packed: packedView, scales: scalesView };
  const packed = new Uint8Array(qs.reduce((n, q) => n + q.packed.length, 0));
  const scales = new Float32Array(qs.reduce((n, q) => n + q.scales.length, 0));
  let p = 0;
  let s = 0;
  for (const q of qs) {
    packed.set(q.packed, p);
    scales.set(q.scales, s);
    p += q.packed.length;
    s += q.scales.length;
  }
  return { bits, rows, cols, packed, scales };
}

/**
 * Rows `ids` of an embedding table [vocab, hidden] as float32 [ids.length, hidden]: float16 rows widened,
 * quantised rows dequantised ((code - zero point) * scale, as MatMulNBits would). One step's rows only.
 */
export function gatherRows(table: LinearWeight | EmbeddingTable, ids: ArrayLike<number>): Float32Array {
  if ('half' in table) {
    const cols = table.shape[1];
    const out = new Float32Array(ids.length * cols);
    for (let t = 0; t < ids.length; t++) f16ToFloat32Into(table.half.subarray(ids[t]! * cols, (ids[t]! + 1) * cols), out.subarray(t * cols, (t + 1) * cols));
    return out;
  }
  const cols = colsOf(table);
  const out = new Float32Array(ids.length * cols);
  if (!isQuantized(table)) {
    for (let t = 0; t < ids.length; t++) out.set(table.data.subarray(ids[t]! * cols, (ids[t]! + 1) * cols), t * cols);
    return out;
  }
  const nb = kBlocks(cols);
  const blob = blobBytes(table.bits);
  const zp = table.bits === 8 ? 128 : 8;
  for (let t = 0; t < ids.length; t++) {
    const row = ids[t]!;
    for (let k = 0; k < cols; k++) {
      const b = row * nb + ((k / 32) | 0);
      const i = k & 31;
      const byte = table.packed[b * blob + (table.bits === 8 ? i : i >> 1)]!;
      const code = table.bits === 8 ? byte : (i & 1) === 0 ? byte & 15 : byte >> 4;
      out[t * cols + k] = (code - zp) * table.scales[b]!;
    }
  }
  return out;
}
