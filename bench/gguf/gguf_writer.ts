// A small GGUF v3 writer: header, typed metadata key/values (scalars, strings, arrays), tensor infos and
// 32-byte aligned F32 / F16 / Q8_0 / Q4_0 tensor data. Written from the GGUF format description (ggml
// docs/gguf.md) and ggml's block layouts; used by the benchmark to hand the same weights to llama.cpp.
//
// Q8_0 and Q4_0 blocks hold 32 consecutive values along ne0 (the row, HF's input dimension), exactly the
// blocks of the engine's quantiser (src/engine/quant/block_quant.ts), whose codes are copied over:
//   block_q8_0 = { f16 d; int8 qs[32] }            x[i] = qs[i] * d
//   block_q4_0 = { f16 d; uint8 qs[16] }           x[j] = ((qs[j] & 15) - 8) * d, x[j + 16] = ((qs[j] >> 4) - 8) * d
// Q4_0's nibble order (elements j and j + 16 share a byte) differs from MatMulNBits' (2i and 2i + 1).
// The engine snaps block scales to float16 wherever float16 can hold them, so d is exact and both
// runtimes use identical weights (a scale outside float16's normal range, which no real weight has, rounds).
//
// Layout (all little-endian):
//   magic "GGUF" | u32 version (3) | u64 tensor_count | u64 kv_count
//   kv_count x { gguf_string key | u32 value_type | value }
//   tensor_count x { gguf_string name | u32 n_dims | n_dims x u64 ne | u32 ggml_type | u64 offset }
//   zero padding to `alignment` | tensor data (each tensor at offset % alignment == 0, relative to the data start)
// gguf_string = u64 byte length + UTF-8 bytes (no terminator). ARRAY values = u32 element type + u64 count + elements.
// ggml dimensions are listed fastest-varying first, i.e. reversed relative to a row-major (numpy) shape:
// numpy [rows, cols] is ne = [cols, rows].
import { closeSync, openSync, writeSync } from 'node:fs';
import { encodeFromFloat32, float32ToF16 } from '../../src/engine/checkpoint/dtype.ts';
import { QUANT_BLOCK, quantizeMatrix, type QuantizedMatrix } from '../../src/engine/quant/block_quant.ts';

export const GGUF_MAGIC = 'GGUF';
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** GGUF metadata value types (gguf_type). */
export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** The ggml tensor types this writer emits (ggml_type ids). */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q8_0 = 8,
}

export function isQuantized(type: GgmlType): type is GgmlType.Q4_0 | GgmlType.Q8_0 {
  return type === GgmlType.Q4_0 || type === GgmlType.Q8_0;
}

export type GgufScalarType = Exclude<GgufValueType, GgufValueType.ARRAY>;
export type GgufScalar = number | bigint | boolean | string;

export type GgufValue =
  | { readonly type: GgufScalarType; readonly value: GgufScalar }
  | { readonly type: GgufValueType.ARRAY; readonly elementType: GgufScalarType; readonly values: readonly GgufScalar[] };

// Typed constructors, so call sites say exactly which GGUF type a key gets (llama.cpp checks types on read).
export const gguf = {
  u8: (value: number): GgufValue => ({ type: GgufValueType.UINT8, value }),
  i8: (value: number): GgufValue => ({ type: GgufValueType.INT8, value }),
  u16: (value: number): GgufValue => ({ type: GgufValueType.UINT16, value }),
  i16: (value: number): GgufValue => ({ type: GgufValueType.INT16, value }),
  u32: (value: number): GgufValue => ({ type: GgufValueType.UINT32, value }),
  i32: (value: number): GgufValue => ({ type: GgufValueType.INT32, value }),
  u64: (value: number | bigint): GgufValue => ({ type: GgufValueType.UINT64, value }),
  i64: (value: number | bigint): GgufValue => ({ type: GgufValueType.INT64, value }),
  f32: (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value }),
  f64: (value: number): GgufValue => ({ type: GgufValueType.FLOAT64, value }),
  bool: (value: boolean): GgufValue => ({ type: GgufValueType.BOOL, value }),
  str: (value: string): GgufValue => ({ type: GgufValueType.STRING, value }),
  arr: (elementType: GgufScalarType, values: readonly GgufScalar[]): GgufValue => ({ type: GgufValueType.ARRAY, elementType, values }),
};

/** Bytes per block of the supported ggml types (a block is one element for F32/F16, 32 for Q8_0/Q4_0). */
export function ggmlTypeSize(type: GgmlType): number {
  switch (type) {
    case GgmlType.F32:
      return 4;
    case GgmlType.F16:
      return 2;
    case GgmlType.Q8_0:
      return 2 + QUANT_BLOCK;
    case GgmlType.Q4_0:
      return 2 + QUANT_BLOCK / 2;
    default:
      throw new Error(`unsupported ggml type ${String(type)}`);
  }
}

export function ggmlBlockSize(type: GgmlType): number {
  return isQuantized(type) ? QUANT_BLOCK : 1;
}

/** ggml blocks of an engine-quantised [rows, cols] matrix (cols a multiple of 32): Q8_0 from int8, Q4_0 from int4. */
export function ggmlBlocks(m: QuantizedMatrix, type: GgmlType.Q8_0 | GgmlType.Q4_0): Uint8Array {
  const want = type === GgmlType.Q8_0 ? 8 : 4;
  if (m.bits !== want) throw new Error(`a ${m.bits}-bit matrix cannot be written as ${GgmlType[type]}`);
  if (m.cols % QUANT_BLOCK !== 0) throw new Error(`${GgmlType[type]} needs rows of a multiple of ${QUANT_BLOCK} values, got ${m.cols}`);
  const blocks = m.scales.length;
  const size = ggmlTypeSize(type);
  const out = new Uint8Array(blocks * size);
  const view = new DataView(out.buffer);
  // Block b's scale and codes exist: one scale per block, QUANT_BLOCK codes (or QUANT_BLOCK / 2 bytes) per block.
  for (let b = 0; b < blocks; b++) {
    const at = b * size;
    view.setUint16(at, float32ToF16(m.scales[b]!), true);
    if (type === GgmlType.Q8_0) {
      for (let i = 0; i < QUANT_BLOCK; i++) out[at + 2 + i] = (m.packed[b * QUANT_BLOCK + i]! - 128) & 0xff;
      continue;
    }
    const src = b * (QUANT_BLOCK / 2); // MatMulNBits: byte i = element 2i (low) | element 2i + 1 (high)
    const code = (k: number): number => (k & 1 ? m.packed[src + (k >> 1)]! >> 4 : m.packed[src + (k >> 1)]! & 15);
    for (let j = 0; j < QUANT_BLOCK / 2; j++) out[at + 2 + j] = code(j) | (code(j + QUANT_BLOCK / 2) << 4);
  }
  return out;
}

/** Row-major float32 values, or (Q8_0 / Q4_0 only) the engine's quantised rows of the tensor viewed [numel / ne0, ne0]. */
export type GgufTensorData = Float32Array | QuantizedMatrix;

export interface GgufTensorSpec {
  readonly name: string;
  /** Row-major (numpy / HF) shape, outermost first; written reversed as ggml ne. */
  readonly shape: readonly number[];
  readonly type: GgmlType;
  /** The data (numel = product of shape), or a producer called once while writing. Float32 data of a Q type is quantised by the engine's quantiser. */
  readonly data: GgufTensorData | (() => GgufTensorData);
}

interface PlannedTensor extends GgufTensorSpec {
  readonly numel: number;
  readonly nbytes: number;
  offset: number;
}

export interface GgufWriteResult {
  readonly path: string;
  readonly bytes: number;
  readonly tensorCount: number;
  readonly kvCount: number;
  /** Absolute file offset of the tensor data section. */
  readonly dataOffset: number;
}

/** Growable little-endian byte builder for the header part. */
class ByteSink {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf.writeUInt8(v, this.length);
    this.length += 1;
  }
  i8(v: number): void {
    this.ensure(1);
    this.buf.writeInt8(v, this.length);
    this.length += 1;
  }
  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16LE(v, this.length);
    this.length += 2;
  }
  i16(v: number): void {
    this.ensure(2);
    this.buf.writeInt16LE(v, this.length);
    this.length += 2;
  }
  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32LE(v, this.length);
    this.length += 4;
  }
  i32(v: number): void {
    this.ensure(4);
    this.buf.writeInt32LE(v, this.length);
    this.length += 4;
  }
  u64(v: number | bigint): void {
    this.ensure(8);
    this.buf.writeBigUInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  i64(v: number | bigint): void {
    this.ensure(8);
    this.buf.writeBigInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  f32(v: number): void {
    this.ensure(4);
    this.buf.writeFloatLE(v, this.length);
    this.length += 4;
  }
  f64(v: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(v, this.length);
    this.length += 8;
  }
  str(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.ensure(bytes.length);
    bytes.copy(this.buf, this.length);
    this.length += bytes.length;
  }
  zeros(n: number): void {
    this.ensure(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function checkInteger(v: GgufScalar, lo: bigint, hi: bigint, what: string): void {
  const b = typeof v === 'bigint' ? v : typeof v === 'number' && Number.isInteger(v) ? BigInt(v) : null;
  if (b === null || b < lo || b > hi) throw new Error(`${what}: ${String(v)} is not a ${lo}..${hi} integer`);
}

function writeScalar(sink: ByteSink, type: GgufScalarType, v: GgufScalar, what: string): void {
  switch (type) {
    case GgufValueType.UINT8:
      checkInteger(v, 0n, 255n, what);
      sink.u8(Number(v));
      break;
    case GgufValueType.INT8:
      checkInteger(v, -128n, 127n, what);
      sink.i8(Number(v));
      break;
    case GgufValueType.UINT16:
      checkInteger(v, 0n, 65535n, what);
      sink.u16(Number(v));
      break;
    case GgufValueType.INT16:
      checkInteger(v, -32768n, 32767n, what);
      sink.i16(Number(v));
      break;
    case GgufValueType.UINT32:
      checkInteger(v, 0n, 4294967295n, what);
      sink.u32(Number(v));
      break;
    case GgufValueType.INT32:
      checkInteger(v, -2147483648n, 2147483647n, what);
      sink.i32(Number(v));
      break;
    case GgufValueType.UINT64:
      checkInteger(v, 0n, (1n << 64n) - 1n, what);
      sink.u64(v as number | bigint);
      break;
    case GgufValueType.INT64:
      checkInteger(v, -(1n << 63n), (1n << 63n) - 1n, what);
      sink.i64(v as number | bigint);
      break;
    case GgufValueType.FLOAT32:
    case GgufValueType.FLOAT64:
      if (typeof v !== 'number') throw new Error(`${what}: ${String(v)} is not a number`);
      if (type === GgufValueType.FLOAT32) sink.f32(v);
      else sink.f64(v);
      break;
    case GgufValueType.BOOL:
      if (typeof v !== 'boolean') throw new Error(`${what}: ${String(v)} is not a boolean`);
      sink.u8(v ? 1 : 0);
      break;
    case GgufValueType.STRING:
      if (typeof v !== 'string') throw new Error(`${what}: ${String(v)} is not a string`);
      sink.str(v);
      break;
    default:
      throw new Error(`${what}: unknown GGUF value type ${String(type)}`);
  }
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

function encodeTensor(t: PlannedTensor, data: GgufTensorData): Uint8Array {
  const ne0 = t.shape.at(-1);
  if (ne0 === undefined) throw new Error(`tensor "${t.name}" has no dims`);
  if (data instanceof Float32Array) {
    if (data.length !== t.numel) throw new Error(`tensor "${t.name}": producer gave ${data.length} values, shape needs ${t.numel}`);
    if (t.type === GgmlType.F32) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (t.type === GgmlType.F16) return encodeFromFloat32(data, 'F16');
    data = quantizeMatrix(data, t.numel / ne0, ne0, t.type === GgmlType.Q8_0 ? 8 : 4);
  }
  if (!isQuantized(t.type)) throw new Error(`tensor "${t.name}": quantised data for a ${GgmlType[t.type]} tensor`);
  if (data.rows * data.cols !== t.numel || data.cols !== ne0) {
    throw new Error(`tensor "${t.name}": quantised [${data.rows}, ${data.cols}] does not match shape [${t.shape.join(', ')}]`);
  }
  return ggmlBlocks(data, t.type);
}

/** Collects metadata and tensors, then writes one GGUF file. Keys and tensors keep insertion order. */
export class GgufWriter {
  readonly alignment: number;
  private readonly kv = new Map<string, GgufValue>();
  private readonly tensors: PlannedTensor[] = [];
  private readonly tensorNames = new Set<string>();

  constructor(options: { alignment?: number } = {}) {
    this.alignment = options.alignment ?? GGUF_DEFAULT_ALIGNMENT;
    if (!Number.isInteger(this.alignment) || this.alignment < 8 || (this.alignment & (this.alignment - 1)) !== 0) {
      throw new Error(`alignment must be a power of two >= 8, got ${this.alignment}`);
    }
    if (this.alignment !== GGUF_DEFAULT_ALIGNMENT) this.set('general.alignment', gguf.u32(this.alignment));
  }

  set(key: string, value: GgufValue): this {
    if (this.kv.has(key)) throw new Error(`duplicate GGUF key "${key}"`);
    if (value.type === GgufValueType.ARRAY && (value.elementType as number) === GgufValueType.ARRAY) {
      throw new Error(`"${key}": nested arrays are not supported`);
    }
    this.kv.set(key, value);
    return this;
  }

  has(key: string): boolean {
    return this.kv.has(key);
  }

  get keys(): string[] {
    return [...this.kv.keys()];
  }

  addTensor(spec: GgufTensorSpec): this {
    if (this.tensorNames.has(spec.name)) throw new Error(`duplicate tensor "${spec.name}"`);
    if (Buffer.byteLength(spec.name, 'utf8') >= 64) throw new Error(`tensor name "${spec.name}" is longer than ggml's 63-byte limit`);
    if (spec.shape.length < 1 || spec.shape.length > 4) throw new Error(`tensor "${spec.name}" has ${spec.shape.length} dims (1..4 allowed)`);
    if (spec.shape.some((d) => !Number.isInteger(d) || d < 1)) throw new Error(`tensor "${spec.name}" has a bad shape [${spec.shape.join(', ')}]`);
    const numel = spec.shape.reduce((a, b) => a * b, 1);
    if (spec.data instanceof Float32Array && spec.data.length !== numel) {
      throw new Error(`tensor "${spec.name}": ${spec.data.length} values for shape [${spec.shape.join(', ')}]`);
    }
    const ne0 = spec.shape.at(-1)!; // 1..4 dims, checked above
    if (ne0 % ggmlBlockSize(spec.type) !== 0) {
      throw new Error(`tensor "${spec.name}": ${GgmlType[spec.type]} needs a row length (ne0) that is a multiple of ${ggmlBlockSize(spec.type)}, got ${ne0}`);
    }
    this.tensorNames.add(spec.name);
    this.tensors.push({ ...spec, numel, nbytes: (numel / ggmlBlockSize(spec.type)) * ggmlTypeSize(spec.type), offset: 0 });
    return this;
  }

  get tensorCount(): number {
    return this.tensors.length;
  }

  /** The header (everything before the tensor data), with tensor offsets assigned. */
  private header(): Buffer {
    const sink = new ByteSink();
    for (const ch of GGUF_MAGIC) sink.u8(ch.charCodeAt(0));
    sink.u32(GGUF_VERSION);
    sink.u64(this.tensors.length);
    sink.u64(this.kv.size);
    for (const [key, value] of this.kv) {
      sink.str(key);
      sink.u32(value.type);
      if (value.type === GgufValueType.ARRAY) {
        sink.u32(value.elementType);
        sink.u64(value.values.length);
        value.values.forEach((v, i) => writeScalar(sink, value.elementType, v, `${key}[${i}]`));
      } else {
        writeScalar(sink, value.type, value.value, key);
      }
    }
    let offset = 0;
    for (const t of this.tensors) {
      t.offset = offset;
      sink.str(t.name);
      sink.u32(t.shape.length);
      for (let d = t.shape.length - 1; d >= 0; d--) sink.u64(t.shape[d]!);
      sink.u32(t.type);
      sink.u64(offset);
      offset = alignUp(offset + t.nbytes, this.alignment);
    }
    sink.zeros(alignUp(sink.length, this.alignment) - sink.length);
    return sink.bytes();
  }

  /** Writes the file; tensor producers run one at a time, so peak memory is one encoded tensor. */
  write(filePath: string): GgufWriteResult {
    const head = this.header();
    const fd = openSync(filePath, 'w');
    let pos = 0;
    const put = (bytes: Uint8Array): void => {
      let done = 0;
      while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, pos + done);
      pos += bytes.length;
    };
    try {
      put(head);
      const dataOffset = pos;
      const pad = new Uint8Array(this.alignment);
      for (const t of this.tensors) {
        if (pos - dataOffset !== t.offset) throw new Error(`internal: tensor "${t.name}" at ${pos - dataOffset}, planned ${t.offset}`);
        put(encodeTensor(t, typeof t.data === 'function' ? t.data() : t.data));
        const padding = alignUp(pos - dataOffset, this.alignment) - (pos - dataOffset);
        if (padding > 0) put(pad.subarray(0, padding));
      }
      return { path: filePath, bytes: pos, tensorCount: this.tensors.length, kvCount: this.kv.size, dataOffset };
    } finally {
      closeSync(fd);
    }
  }
}
