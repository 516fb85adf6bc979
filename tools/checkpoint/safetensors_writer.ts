// Writes HF-layout checkpoints: config.json + safetensors, optionally sharded and/or FP8 with 128x128
// block scales like DeepSeek's own FP8 releases. Used by tests, the benchmark and the model generators.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { encodeFromFloat32, quantizeFp8Blocks } from '../../src/engine/checkpoint/dtype.ts';

export type WriteDType = 'F32' | 'BF16' | 'F16' | 'F8_E4M3';

export interface HostTensor {
  readonly data: Float32Array;
  readonly shape: readonly number[];
}

export interface RawTensor {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

export type HfConfig = Record<string, unknown>;

/** Serialises tensors in the given order; the JSON header is space-padded to a multiple of 8 like the reference writer. */
export function safetensorsBytes(entries: readonly RawTensor[], metadata: Record<string, string> = { format: 'pt' }): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const e of entries) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + e.bytes.length] };
    offset += e.bytes.length;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const headerLen = Math.ceil(json.length / 8) * 8;
  const out = Buffer.alloc(8 + headerLen + offset, 0x20);
  out.writeBigUInt64LE(BigInt(headerLen), 0);
  json.copy(out, 8);
  let at = 8 + headerLen;
  for (const e of entries) {
    out.set(e.bytes, at);
    at += e.bytes.length;
  }
  return out;
}

// Real DeepSeek FP8 checkpoints quantise linear weights only; these stay in high precision.
function staysFullPrecision(name: string, shape: readonly number[]): boolean {
  return shape.length !== 2 || /norm/.test(name) || name.endsWith('mlp.gate.weight') || name === 'model.embed_tokens.weight' || name === 'lm_head.weight';
}

function encodeTensor(name: string, t: HostTensor, dtype: WriteDType): RawTensor[] {
  if (dtype !== 'F8_E4M3') return [{ name, dtype, shape: t.shape, bytes: encodeFromFloat32(t.data, dtype) }];
  if (staysFullPrecision(name, t.shape)) return [{ name, dtype: 'F32', shape: t.shape, bytes: encodeFromFloat32(t.data, 'F32') }];
  const [rows, cols] = t.shape as readonly [number, number]; // 2-D: staysFullPrecision took the rest
  const { q, scaleInv } = quantizeFp8Blocks(t.data, rows, cols);
  return [
    { name, dtype: 'F8_E4M3', shape: t.shape, bytes: q },
    { name: `${name}_scale_inv`, dtype: 'F32', shape: [Math.ceil(rows / 128), Math.ceil(cols / 128)], bytes: encodeFromFloat32(scaleInv, 'F32') },
  ];
}

function splitShards(entries: RawTensor[], shards: number): RawTensor[][] {
  const total = entries.reduce((s, e) => s + e.bytes.length, 0);
  const out: RawTensor[][] = Array.from({ length: shards }, () => []);
  let acc = 0;
  for (const e of entries) {
    out[Math.min(shards - 1, Math.floor((acc * shards) / total))]!.push(e);
    acc += e.bytes.length;
  }
  return out;
}

export interface WriteOptions {
  readonly dtype: WriteDType;
  readonly shards?: number;
}

/** Writes config.json plus model.safetensors, or N shards and model.safetensors.index.json when shards > 1. */
export function writeCheckpoint(dir: string, hfConfig: HfConfig, tensors: ReadonlyMap<string, HostTensor>, opts: WriteOptions): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(hfConfig, null, 2));
  const entries = [...tensors].flatMap(([name, t]) => encodeTensor(name, t, opts.dtype));
  const shards = opts.shards ?? 1;
  if (shards <= 1) {
    writeFileSync(path.join(dir, 'model.safetensors'), safetensorsBytes(entries));
    return;
  }
  const weightMap: Record<string, string> = {};
  splitShards(entries, shards).forEach((group, i) => {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    writeFileSync(path.join(dir, file), safetensorsBytes(group));
    for (const e of group) weightMap[e.name] = file;
  });
  const totalSize = entries.reduce((s, e) => s + e.bytes.length, 0);
  writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2));
}
