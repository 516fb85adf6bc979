// One file of the quantised-weights cache: a safetensors file holding a group of named tensors (a layer's
// quantised codes as U8, their scales and any float32 tensors as F32), with a CRC-32 of the data section in
// its metadata so a corrupt or truncated file is detected before anything in it is used.
//
// Why CRC-32 and not a cryptographic hash: the check guards against corruption (a bad disk, a torn copy,
// a truncated write), not against someone who can write the cache folder (they could write any weights
// with a matching digest either way). Every start verifies every byte, so its cost is start-up time:
// node's sha256 ran at 0.7-1.0 GB/s here against zlib's crc32 at 3-4 GB/s, i.e. bench-lite's 9.8 GB of
// int4 weights cost ~10-14 CPU seconds of sha256 on a 2-core machine where the loader threads share the
// second core. A random error escapes CRC-32 with probability 2^-32; every burst of up to 32 bits is caught.
// The data is checked in chunks as it is read, while each chunk is still in cache. Files written with a
// sha256 (before this change) are still verified with it, so an existing cache is not rebuilt.
//
// Layout: F32 tensors first, then F16, then U8, with no holes (the safetensors rule); the header is
// space-padded to a multiple of 8, so every F32 / F16 tensor is aligned in a buffer read from offset 0 of the data.
// A quantised tensor `name` is stored as `name:codes` U8 [rows, kBlocks, blob] and `name:scales` F32
// [rows * kBlocks], with bits/rows/cols in the metadata (`name:q` = "bits,rows,cols").
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { blobBytes, kBlocks, type QuantBits, type QuantizedMatrix } from './block_quant.ts';
import type { HalfMatrix } from '../../common/quantized.ts';
import { parseHeader } from '../checkpoint/safetensors.ts';

export const CACHE_FORMAT = 'dsv32-quantized-weights/1';

export type CachedTensor =
  | { readonly kind: 'quantized'; readonly matrix: QuantizedMatrix }
  | { readonly kind: 'half'; readonly matrix: HalfMatrix }
  | { readonly kind: 'f32'; readonly data: Float32Array; readonly shape: readonly number[] };

interface Entry {
  readonly name: string;
  readonly dtype: 'F32' | 'F16' | 'U8';
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

function bytesOf(a: Float32Array | Uint16Array | Uint8Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function entries(tensors: ReadonlyMap<string, CachedTensor>): { list: Entry[]; meta: Record<string, string> } {
  const f32: Entry[] = [];
  const f16: Entry[] = [];
  const u8: Entry[] = [];
  const meta: Record<string, string> = {};
  for (const [name, t] of tensors) {
    if (t.kind === 'f32') {
      f32.push({ name, dtype: 'F32', shape: t.shape, bytes: bytesOf(t.data) });
      continue;
    }
    if (t.kind === 'half') {
      f16.push({ name, dtype: 'F16', shape: t.matrix.shape, bytes: bytesOf(t.matrix.half) });
      continue;
    }
    const m = t.matrix;
    meta[`${name}:q`] = `${m.bits},${m.rows},${m.cols}`;
    f32.push({ name: `${name}:scales`, dtype: 'F32', shape: [m.scales.length], bytes: bytesOf(m.scales) });
    u8.push({ name: `${name}:codes`, dtype: 'U8', shape: [m.rows, kBlocks(m.cols), blobBytes(m.bits)], bytes: m.packed });
  }
  return { list: [...f32, ...f16, ...u8], meta };
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
}

/**
 * Writes `tensors` to `file` via a temporary name and a rename, so a crash never leaves a half-written file
 * under the real name. Throws on I/O errors (the caller decides what a failed cache write means).
 */
export function writeCacheFile(file: string, key: string, tensors: ReadonlyMap<string, CachedTensor>): number {
  const { list, meta } = entries(tensors);
  const header: Record<string, unknown> = {};
  let offset = 0;
  let crc = 0;
  for (const e of list) {
    crc = crc32(e.bytes, crc);
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + e.bytes.length] };
    offset += e.bytes.length;
  }
  header.__metadata__ = { ...meta, format: CACHE_FORMAT, key, crc32: crc32Hex(crc) };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const headerLen = Math.ceil(json.length / 8) * 8;
  const head = Buffer.alloc(8 + headerLen, 0x20);
  head.writeBigUInt64LE(BigInt(headerLen), 0);
  json.copy(head, 8);
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    writeAll(fd, head, 0);
    let pos = head.length;
    for (const e of list) {
      writeAll(fd, e.bytes, pos);
      pos += e.bytes.length;
    }
    closeSync(fd);
    renameSync(tmp, file);
    return pos;
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** Bytes read (and checksummed) at a time: small enough to be checked while still in the CPU's cache. */
const CHECK_CHUNK = 4 * 2 ** 20;

function crc32Hex(crc: number): string {
  return (crc >>> 0).toString(16).padStart(8, '0');
}

/** Fills `bytes` from `position`; `onChunk` sees each piece as it arrives. */
function readAll(fd: number, bytes: Uint8Array, position: number, onChunk?: (chunk: Uint8Array) => void): void {
  let done = 0;
  while (done < bytes.length) {
    const n = readSync(fd, bytes, done, Math.min(bytes.length - done, CHECK_CHUNK), position + done);
    if (n === 0) throw new Error('truncated file');
    onChunk?.(bytes.subarray(done, done + n));
    done += n;
  }
}

/** Reads the data section and verifies it against the file's crc32 (or, for older files, sha256). */
function readVerified(fd: number, data: Uint8Array, position: number, meta: Readonly<Record<string, string>>): void {
  if (meta.crc32 !== undefined) {
    let crc = 0;
    readAll(fd, data, position, (chunk) => (crc = crc32(chunk, crc)));
    if (crc32Hex(crc) !== meta.crc32) throw new Error('checksum mismatch (corrupt file)');
  } else if (meta.sha256 !== undefined) {
    const hash = createHash('sha256');
    readAll(fd, data, position, (chunk) => hash.update(chunk));
    if (hash.digest('hex') !== meta.sha256) throw new Error('checksum mismatch (corrupt file)');
  } else {
    throw new Error('no checksum in the metadata');
  }
}

/**
 * Reads and verifies a cache file written for `key`. Returns the tensors (views over one buffer) or
 * throws an Error saying what is wrong (missing, truncated, other key or format, checksum mismatch).
 */
export function readCacheFile(file: string, key: string): Map<string, CachedTensor> {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const lenBytes = Buffer.alloc(8);
    readAll(fd, lenBytes, 0);
    const headerLen = Number(lenBytes.readBigUInt64LE(0));
    if (headerLen > size - 8) throw new Error('truncated header');
    const json = new Uint8Array(headerLen);
    readAll(fd, json, 8);
    const header = parseHeader(file, json, size - 8 - headerLen);
    const meta = header.metadata;
    if (meta.format !== CACHE_FORMAT) throw new Error(`format ${JSON.stringify(meta.format)}, expected ${CACHE_FORMAT}`);
    if (meta.key !== key) throw new Error('written for another checkpoint or mode');
    const data = new Uint8Array(size - 8 - headerLen);
    readVerified(fd, data, 8 + headerLen, meta);
    return tensorsOf(header.tensors, meta, data);
  } finally {
    closeSync(fd);
  }
}

function tensorsOf(infos: ReturnType<typeof parseHeader>['tensors'], meta: Readonly<Record<string, string>>, data: Uint8Array): Map<string, CachedTensor> {
  const view = (name: string): Uint8Array => {
    const info = infos.get(name);
    if (info === undefined) throw new Error(`tensor "${name}" missing`);
    return data.subarray(info.dataOffsets[0], info.dataOffsets[1]);
  };
  const f32 = (bytes: Uint8Array): Float32Array => new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const out = new Map<string, CachedTensor>();
  for (const [name, info] of infos) {
    if (name.endsWith(':codes')) {
      const base = name.slice(0, -':codes'.length);
      const [bits, rows = 0, cols = 0] = (meta[`${base}:q`] ?? '').split(',').map(Number);
      if (!(bits === 4 || bits === 8) || !(rows > 0) || !(cols > 0)) throw new Error(`bad quantisation metadata for "${base}"`);
      const packed = view(name);
      const scales = f32(view(`${base}:scales`));
      if (packed.length !== rows * kBlocks(cols) * blobBytes(bits) || scales.length !== rows * kBlocks(cols)) throw new Error(`"${base}" has the wrong size`);
      out.set(base, { kind: 'quantized', matrix: { bits: bits as QuantBits, rows, cols, packed, scales } });
    } else if (info.dtype === 'F16' && info.shape.length === 2) {
      const b = view(name);
      out.set(name, { kind: 'half', matrix: { half: new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2), shape: [info.shape[0]!, info.shape[1]!] } });
    } else if (!name.endsWith(':scales')) {
      if (info.dtype !== 'F32') throw new Error(`tensor "${name}" has dtype ${info.dtype}`);
      out.set(name, { kind: 'f32', data: f32(view(name)), shape: info.shape });
    }
  }
  return out;
}
