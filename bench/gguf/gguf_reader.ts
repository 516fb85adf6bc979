// Reads back what gguf_writer.ts writes (GGUF v2/v3 metadata, tensor infos, F32/F16/Q8_0/Q4_0 data): used by the
// tests and by the conversion check to inspect a converted file without llama.cpp.
import { closeSync, openSync, readSync, fstatSync } from 'node:fs';
import { f16ToFloat32 } from '../../src/engine/checkpoint/dtype.ts';
import { GGUF_DEFAULT_ALIGNMENT, GgmlType, GgufValueType, ggmlBlockSize, ggmlTypeSize, type GgufScalar } from './gguf_writer.ts';

export interface GgufTensorInfo {
  readonly name: string;
  /** ggml ne (fastest-varying first). */
  readonly ne: readonly number[];
  /** Row-major shape (ne reversed). */
  readonly shape: readonly number[];
  readonly type: number;
  /** Offset relative to the data section. */
  readonly offset: number;
}

export interface GgufFile {
  readonly version: number;
  readonly metadata: ReadonlyMap<string, GgufScalar | GgufScalar[]>;
  /** The GGUF value type of each key (for arrays: ARRAY; see arrayTypes for the element type). */
  readonly types: ReadonlyMap<string, GgufValueType>;
  readonly arrayTypes: ReadonlyMap<string, GgufValueType>;
  readonly tensors: readonly GgufTensorInfo[];
  readonly alignment: number;
  readonly dataOffset: number;
  readonly fileSize: number;
}

class Cursor {
  pos = 0;
  constructor(private readonly buf: Buffer) {}
  need(n: number): void {
    if (this.pos + n > this.buf.length) throw new RangeError('header larger than the read window');
  }
  u8(): number {
    this.need(1);
    return this.buf.readUInt8(this.pos++);
  }
  i8(): number {
    this.need(1);
    return this.buf.readInt8(this.pos++);
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }
  i16(): number {
    this.need(2);
    const v = this.buf.readInt16LE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  i32(): number {
    this.need(4);
    const v = this.buf.readInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    return v;
  }
  i64(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64LE(this.pos);
    this.pos += 8;
    return v;
  }
  f32(): number {
    this.need(4);
    const v = this.buf.readFloatLE(this.pos);
    this.pos += 4;
    return v;
  }
  f64(): number {
    this.need(8);
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }
  str(): string {
    const n = Number(this.u64());
    this.need(n);
    const s = this.buf.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
}

function readScalar(c: Cursor, type: GgufValueType): GgufScalar {
  switch (type) {
    case GgufValueType.UINT8:
      return c.u8();
    case GgufValueType.INT8:
      return c.i8();
    case GgufValueType.UINT16:
      return c.u16();
    case GgufValueType.INT16:
      return c.i16();
    case GgufValueType.UINT32:
      return c.u32();
    case GgufValueType.INT32:
      return c.i32();
    case GgufValueType.FLOAT32:
      return c.f32();
    case GgufValueType.BOOL:
      return c.u8() !== 0;
    case GgufValueType.STRING:
      return c.str();
    case GgufValueType.UINT64:
      return c.u64();
    case GgufValueType.INT64:
      return c.i64();
    case GgufValueType.FLOAT64:
      return c.f64();
    default:
      throw new Error(`unknown GGUF value type ${type}`);
  }
}

function parse(buf: Buffer, fileSize: number): GgufFile {
  const c = new Cursor(buf);
  const magic = String.fromCharCode(c.u8(), c.u8(), c.u8(), c.u8());
  if (magic !== 'GGUF') throw new Error(`not a GGUF file (magic "${magic}")`);
  const version = c.u32();
  if (version < 2 || version > 3) throw new Error(`unsupported GGUF version ${version}`);
  const nTensors = Number(c.u64());
  const nKv = Number(c.u64());
  const metadata = new Map<string, GgufScalar | GgufScalar[]>();
  const types = new Map<string, GgufValueType>();
  const arrayTypes = new Map<string, GgufValueType>();
  for (let i = 0; i < nKv; i++) {
    const key = c.str();
    const type = c.u32() as GgufValueType;
    types.set(key, type);
    if (type === GgufValueType.ARRAY) {
      const et = c.u32() as GgufValueType;
      const n = Number(c.u64());
      arrayTypes.set(key, et);
      const values: GgufScalar[] = new Array<GgufScalar>(n);
      for (let j = 0; j < n; j++) values[j] = readScalar(c, et);
      metadata.set(key, values);
    } else {
      metadata.set(key, readScalar(c, type));
    }
  }
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = c.str();
    const nDims = c.u32();
    const ne: number[] = [];
    for (let d = 0; d < nDims; d++) ne.push(Number(c.u64()));
    const type = c.u32();
    const offset = Number(c.u64());
    tensors.push({ name, ne, shape: [...ne].reverse(), type, offset });
  }
  const al = metadata.get('general.alignment');
  const alignment = typeof al === 'number' ? al : GGUF_DEFAULT_ALIGNMENT;
  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  return { version, metadata, types, arrayTypes, tensors, alignment, dataOffset, fileSize };
}

/** Parses the header of a GGUF file (grows the read window until the header fits). */
export function readGguf(filePath: string): GgufFile {
  const fd = openSync(filePath, 'r');
  try {
    const size = fstatSync(fd).size;
    for (let window = 1 << 20; ; window *= 4) {
      const n = Math.min(window, size);
      const buf = Buffer.alloc(n);
      readSync(fd, buf, 0, n, 0);
      try {
        return parse(buf, size);
      } catch (err) {
        if (!(err instanceof RangeError) || n === size) throw err;
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** Reads one tensor's data as float32 (F32, F16; Q8_0 and Q4_0 dequantised as ggml does). */
export function readGgufTensor(filePath: string, file: GgufFile, name: string): Float32Array {
  const t = file.tensors.find((x) => x.name === name);
  if (!t) throw new Error(`no tensor "${name}"`);
  const numel = t.ne.reduce((a, b) => a * b, 1);
  if (![GgmlType.F32, GgmlType.F16, GgmlType.Q8_0, GgmlType.Q4_0].includes(t.type)) throw new Error(`tensor "${name}" has unsupported ggml type ${t.type}`);
  const buf = Buffer.alloc((numel / ggmlBlockSize(t.type)) * ggmlTypeSize(t.type));
  const fd = openSync(filePath, 'r');
  try {
    readSync(fd, buf, 0, buf.length, file.dataOffset + t.offset);
  } finally {
    closeSync(fd);
  }
  const out = new Float32Array(numel);
  if (t.type === GgmlType.F32 || t.type === GgmlType.F16) {
    for (let i = 0; i < numel; i++) out[i] = t.type === GgmlType.F32 ? buf.readFloatLE(i * 4) : f16ToFloat32(buf.readUInt16LE(i * 2));
    return out;
  }
  const size = ggmlTypeSize(t.type);
  for (let b = 0; b < numel / 32; b++) {
    const d = f16ToFloat32(buf.readUInt16LE(b * size));
    for (let j = 0; j < 32; j++) {
      const q = t.type === GgmlType.Q8_0 ? buf.readInt8(b * size + 2 + j) : ((buf.readUInt8(b * size + 2 + (j % 16)) >> (j < 16 ? 0 : 4)) & 15) - 8;
      out[b * 32 + j] = q * d;
    }
  }
  return out;
}
