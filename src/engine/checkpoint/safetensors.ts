// Safetensors reading: header validation, tensor byte ranges via fd reads, and sharded model directories.
// Layout: [u64 LE header length N][N bytes JSON header][data section]; data_offsets are relative to the data section.
// Each tensor's bytes are read exactly once, on demand, so a shard is never held in memory whole.
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import path from 'node:path';
import { CheckpointError } from '../../common/errors.ts';
import { resolveModelFile } from '../../common/model_files.ts';

export { resolveModelFile };

export const DTYPE_SIZE = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
} as const;

export type DType = keyof typeof DTYPE_SIZE;

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface TensorInfo {
  readonly name: string;
  readonly file: string; // file name as shown in error messages
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly dataOffsets: readonly [number, number]; // [begin, end) within the data section
}

export interface SafetensorsHeader {
  readonly metadata: Readonly<Record<string, string>>;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
}

function fail(file: string, message: string): never {
  throw new CheckpointError('DSV_ERR_CHECKPOINT', file, message);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isUint(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Validates a header's JSON bytes against a data section of `dataSize` bytes. */
export function parseHeader(file: string, json: Uint8Array, dataSize: number): SafetensorsHeader {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json));
  } catch (e) {
    fail(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!isRecord(raw)) fail(file, 'header JSON is not an object');
  let metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(raw)) {
    if (name === '__metadata__') metadata = parseMetadata(file, entry);
    else tensors.set(name, parseEntry(file, name, entry, dataSize));
  }
  checkNoOverlap(file, [...tensors.values()]);
  return { metadata: Object.freeze(metadata), tensors };
}

function parseMetadata(file: string, entry: unknown): Record<string, string> {
  if (!isRecord(entry) || !Object.values(entry).every((v) => typeof v === 'string')) {
    fail(file, '"__metadata__" must be an object of string values');
  }
  return { ...(entry as Record<string, string>) };
}

function parseEntry(file: string, name: string, entry: unknown, dataSize: number): TensorInfo {
  const t = `tensor "${name}"`;
  if (!isRecord(entry)) fail(file, `${t}: header entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_SIZE, dtype)) {
    fail(file, `${t} has unknown or unsupported dtype ${JSON.stringify(dtype)}`);
  }
  if (!Array.isArray(shape) || !shape.every(isUint)) fail(file, `${t} has an invalid shape ${JSON.stringify(shape)}`);
  const [begin, end] = Array.isArray(offsets) && offsets.length === 2 && offsets.every(isUint) ? offsets : [];
  if (begin === undefined || end === undefined || begin > end) fail(file, `${t} has invalid data_offsets ${JSON.stringify(offsets)}`);
  const size = DTYPE_SIZE[dtype as DType];
  const needed = shape.reduce((a: number, b: number) => a * b, 1) * size;
  if (end - begin !== needed) {
    fail(
      file,
      `${t} data_offsets [${begin}, ${end}] span ${end - begin} bytes, but shape [${shape.join(', ')}] of ${dtype} (${size} bytes each) needs ${needed}`,
    );
  }
  if (end > dataSize) {
    fail(
      file,
      `${t} data_offsets [${begin}, ${end}] point past the end of the data section (${dataSize} bytes): the file is truncated or the header is corrupt`,
    );
  }
  return { name, file, dtype: dtype as DType, shape: Object.freeze([...shape]), dataOffsets: [begin, end] };
}

function checkNoOverlap(file: string, infos: TensorInfo[]): void {
  // Zero-byte tensors own no bytes, so they cannot overlap anything.
  const sorted = infos.filter((t) => t.dataOffsets[1] > t.dataOffsets[0]).sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0]);
  let last: TensorInfo | null = null;
  for (const t of sorted) {
    if (last !== null && t.dataOffsets[0] < last.dataOffsets[1]) {
      fail(file, `tensors "${last.name}" [${last.dataOffsets.join(', ')}] and "${t.name}" [${t.dataOffsets.join(', ')}] have overlapping data_offsets`);
    }
    if (last === null || t.dataOffsets[1] > last.dataOffsets[1]) last = t;
  }
}

function readExact(fd: number, file: string, buf: Uint8Array, position: number, what: string): void {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, buf.length - done, position + done);
    if (n === 0) fail(file, `truncated file: unexpected end of file while reading ${what}`);
    done += n;
  }
}

/** One open .safetensors file; call close() when done. */
export class SafetensorsFile {
  private constructor(
    readonly file: string,
    private fd: number | null,
    private readonly dataStart: number,
    readonly header: SafetensorsHeader,
  ) {}

  /** `file` names the file in error messages (defaults to the base name). */
  static open(filePath: string, file = path.basename(filePath)): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(filePath, 'r');
    } catch (e) {
      fail(file, `cannot open (${(e as Error).message})`);
    }
    try {
      const { dataStart, header } = readHeader(fd, file);
      return new SafetensorsFile(file, fd, dataStart, header);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  get tensors(): ReadonlyMap<string, TensorInfo> {
    return this.header.tensors;
  }

  /** The tensor's raw bytes in a fresh, zero-offset buffer (safe for any typed-array view). */
  read(name: string): Uint8Array {
    const info = this.header.tensors.get(name);
    if (info === undefined) fail(this.file, `tensor "${name}" not found`);
    if (this.fd === null) fail(this.file, `read of tensor "${name}" after close`);
    const [begin, end] = info.dataOffsets;
    const bytes = new Uint8Array(end - begin);
    readExact(this.fd, this.file, bytes, this.dataStart + begin, `tensor "${name}"`);
    return bytes;
  }

  /** Bytes [begin, end) of the tensor's data into `out` (length end - begin): streaming readers read row chunks. */
  readRange(name: string, begin: number, out: Uint8Array): void {
    const info = this.header.tensors.get(name);
    if (info === undefined) fail(this.file, `tensor "${name}" not found`);
    if (this.fd === null) fail(this.file, `read of tensor "${name}" after close`);
    const [b, e] = info.dataOffsets;
    if (begin < 0 || b + begin + out.length > e) fail(this.file, `range [${begin}, ${begin + out.length}) outside tensor "${name}" (${e - b} bytes)`);
    readExact(this.fd, this.file, out, this.dataStart + b + begin, `tensor "${name}"`);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

function readHeader(fd: number, file: string): { dataStart: number; header: SafetensorsHeader } {
  const size = fstatSync(fd).size;
  if (size < 8) fail(file, `truncated file: ${size} bytes, too short for the 8-byte header length`);
  const lenBytes = Buffer.alloc(8);
  readExact(fd, file, lenBytes, 0, 'the header length');
  const headerLen = lenBytes.readBigUInt64LE(0);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) fail(file, `header length ${headerLen} bytes is absurd (limit ${MAX_HEADER_BYTES}); not a safetensors file?`);
  const n = Number(headerLen);
  if (n > size - 8) fail(file, `header length ${n} exceeds the file size (${size} bytes): truncated file or not a safetensors file`);
  const json = new Uint8Array(n);
  readExact(fd, file, json, 8, 'the header');
  return { dataStart: 8 + n, header: parseHeader(file, json, size - 8 - n) };
}

/** A model directory's tensors: one model.safetensors, or shards listed by model.safetensors.index.json. */
export class Checkpoint {
  private constructor(
    readonly dir: string,
    private readonly files: readonly SafetensorsFile[],
    private readonly location: ReadonlyMap<string, SafetensorsFile>,
    private readonly defaultFile: string,
  ) {}

  /** Like HF transformers, a single model.safetensors wins over an index. */
  static open(dir: string): Checkpoint {
    if (!existsSync(path.join(dir, SINGLE_FILE))) {
      if (existsSync(path.join(dir, INDEX_FILE))) return Checkpoint.openSharded(dir);
      fail(SINGLE_FILE, `not found in ${dir} (and no ${INDEX_FILE} either)`);
    }
    const file = SafetensorsFile.open(resolveModelFile(dir, SINGLE_FILE, SINGLE_FILE, 'model file'), SINGLE_FILE);
    return new Checkpoint(dir, [file], new Map([...file.tensors.keys()].map((n) => [n, file])), SINGLE_FILE);
  }

  private static openSharded(dir: string): Checkpoint {
    const weightMap = readIndex(dir);
    const byShard = new Map<string, SafetensorsFile>();
    const location = new Map<string, SafetensorsFile>();
    try {
      for (const [tensor, shard] of Object.entries(weightMap)) {
        let file = byShard.get(shard);
        if (file === undefined) {
          file = SafetensorsFile.open(resolveModelFile(dir, shard, INDEX_FILE, `weight_map["${tensor}"]`), shard);
          byShard.set(shard, file);
        }
        location.set(tensor, file);
      }
    } catch (e) {
      for (const f of byShard.values()) f.close();
      throw e;
    }
    return new Checkpoint(dir, [...byShard.values()], location, INDEX_FILE);
  }

  /** Every tensor name of the checkpoint. */
  names(): IterableIterator<string> {
    return this.location.keys();
  }

  /** Header entry of `name`, or undefined when no file holds it. */
  get(name: string): TensorInfo | undefined {
    return this.location.get(name)?.tensors.get(name);
  }

  /** The file that holds (or, per the index, should hold) `name`: the file to name in error messages. */
  fileOf(name: string): string {
    return this.location.get(name)?.file ?? this.defaultFile;
  }

  read(name: string): Uint8Array {
    const file = this.location.get(name);
    if (file === undefined) fail(this.defaultFile, `tensor "${name}" not found`);
    return file.read(name);
  }

  /** Bytes [begin, begin + out.length) of a tensor's data into `out`. */
  readRange(name: string, begin: number, out: Uint8Array): void {
    const file = this.location.get(name);
    if (file === undefined) fail(this.defaultFile, `tensor "${name}" not found`);
    file.readRange(name, begin, out);
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}

function readIndex(dir: string): Record<string, string> {
  const indexPath = resolveModelFile(dir, INDEX_FILE, INDEX_FILE, 'index file');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(indexPath, 'utf8'));
  } catch (e) {
    fail(INDEX_FILE, `not valid JSON (${(e as Error).message})`);
  }
  const map = isRecord(raw) ? raw.weight_map : undefined;
  if (!isRecord(map)) fail(INDEX_FILE, 'key "weight_map" must be an object mapping tensor names to shard files');
  for (const [tensor, shard] of Object.entries(map)) {
    if (typeof shard !== 'string') fail(INDEX_FILE, `weight_map["${tensor}"] must be a file name, got ${JSON.stringify(shard)}`);
  }
  return map as Record<string, string>;
}
