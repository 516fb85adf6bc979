// bench-lite: DeepSeek-V2-Lite's exact config (bench/models.ts benchLite) with random BF16 weights, written
// on demand into a cache folder outside the repo (31.4 GB; never in CI, never committed). Written as a
// stream, tensor by tensor in chunks, so the writer's memory stays at a few tens of MB whatever the size:
// every shard's header is computed from the config before any data is generated.
//
// Values: fan-in scaled like tools/checkpoint/random_weights.ts (std 1/sqrt(in) for matrices, norms
// 1 + 0.1 noise, biases 0.1 noise) but uniform instead of normal (same variance): a normal per weight
// would cost minutes for 15.7B weights and the benchmark only needs realistic magnitudes.
//
//   node --import tsx bench/lite_checkpoint.ts [--dir /work/cache/bench-lite] [--shard-gb 4] [--seed 7]
import { closeSync, existsSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { parseModelConfig } from '../src/engine/checkpoint/config.ts';
import { numel, weightManifest, type WeightSpec } from '../src/engine/checkpoint/manifest.ts';
import { freeDiskBytes } from './checkpoints.ts';
import { benchLite } from './models.ts';

export const BENCH_LITE_DIR = '/work/cache/bench-lite';
const CHUNK = 1 << 22; // values generated per write

interface Shard {
  readonly file: string;
  readonly specs: WeightSpec[];
  bytes: number;
}

function planShards(specs: readonly WeightSpec[], shardBytes: number): Shard[] {
  const shards: Shard[] = [];
  for (const spec of specs) {
    const bytes = numel(spec) * 2;
    let last = shards.at(-1);
    if (last === undefined || (last.bytes > 0 && last.bytes + bytes > shardBytes)) {
      last = { file: '', specs: [], bytes: 0 };
      shards.push(last);
    }
    last.specs.push(spec);
    last.bytes += bytes;
  }
  const n = shards.length;
  shards.forEach((s, i) => ((s as { file: string }).file = `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`));
  return shards;
}

function headerBytes(specs: readonly WeightSpec[]): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const s of specs) {
    header[s.name] = { dtype: 'BF16', shape: s.shape, data_offsets: [offset, offset + numel(s) * 2] };
    offset += numel(s) * 2;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Math.ceil(json.length / 8) * 8;
  const out = Buffer.alloc(8 + len, 0x20);
  out.writeBigUInt64LE(BigInt(len), 0);
  json.copy(out, 8);
  return out;
}

/** xorshift32 state advanced per value; one instance per tensor (seeded from the tensor's index). */
class Uniform {
  constructor(private s: number) {
    if (this.s === 0) this.s = 0x9e3779b9;
  }
  /** Fills out with BF16 bits of offset + U(-a, a) (truncated to bf16). */
  fill(out: Uint16Array, f32: Float32Array, offset: number, a: number): void {
    const hi = new Uint16Array(f32.buffer, f32.byteOffset, f32.length * 2);
    let s = this.s;
    for (let i = 0; i < out.length; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      f32[i] = offset + ((s >>> 0) * 2 ** -31 - 1) * a;
    }
    // hi views f32 (at least out.length floats, filled above) as halves; the high half is the bf16 truncation.
    for (let i = 0; i < out.length; i++) out[i] = hi[2 * i + 1]!;
    this.s = s;
  }
}

function amplitude(spec: WeightSpec): { offset: number; a: number } {
  const sqrt3 = Math.sqrt(3); // U(-a, a) has std a / sqrt(3)
  if (spec.role === 'vector') return spec.name.endsWith('bias') ? { offset: 0, a: 0.1 * sqrt3 } : { offset: 1, a: 0.1 * sqrt3 };
  return { offset: 0, a: sqrt3 / Math.sqrt(spec.shape[1]!) };
}

function writeShard(dir: string, shard: Shard, firstIndex: number, seed: number): void {
  const fd = openSync(path.join(dir, shard.file), 'w');
  const out = new Uint16Array(CHUNK);
  const f32 = new Float32Array(CHUNK);
  try {
    const head = headerBytes(shard.specs);
    let pos = 0;
    const put = (bytes: Uint8Array): void => {
      let done = 0;
      while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, pos + done);
      pos += bytes.length;
    };
    put(head);
    shard.specs.forEach((spec, j) => {
      const rng = new Uniform((seed * 0x10001 + (firstIndex + j) * 0x9e3779b1) >>> 0);
      const { offset, a } = amplitude(spec);
      for (let left = numel(spec); left > 0; left -= CHUNK) {
        const n = Math.min(CHUNK, left);
        rng.fill(out.subarray(0, n), f32.subarray(0, n), offset, a);
        put(new Uint8Array(out.buffer, 0, n * 2));
      }
    });
  } finally {
    closeSync(fd);
  }
}

export interface StreamOptions {
  readonly shardBytes?: number;
  readonly seed?: number;
  readonly log?: (s: string) => void;
}

/**
 * Writes a sharded random BF16 checkpoint of `hfConfig` into `dir` (via dir.partial, renamed when complete).
 * Memory: one chunk of values, whatever the model size.
 */
export function writeRandomBf16Checkpoint(dir: string, hfConfig: Record<string, unknown>, opts: StreamOptions = {}): void {
  const specs = weightManifest(parseModelConfig(hfConfig));
  const total = specs.reduce((n, s) => n + numel(s) * 2, 0);
  const free = freeDiskBytes(path.dirname(dir));
  if (free < total + 2 ** 30)
    throw new Error(`not enough disk space: need ${(total / 1e9).toFixed(1)} GB + 1 GiB under ${path.dirname(dir)}, ${(free / 1e9).toFixed(1)} GB free`);
  const partial = `${dir}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  const shards = planShards(specs, opts.shardBytes ?? 4e9);
  const t0 = performance.now();
  let index = 0;
  for (const shard of shards) {
    writeShard(partial, shard, index, opts.seed ?? 7);
    index += shard.specs.length;
    opts.log?.(`${shard.file}: ${(shard.bytes / 1e9).toFixed(2)} GB, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  const weightMap = Object.fromEntries(shards.flatMap((s) => s.specs.map((spec) => [spec.name, s.file])));
  writeFileSync(path.join(partial, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 1));
  writeFileSync(path.join(partial, 'config.json'), JSON.stringify(hfConfig, null, 2));
  rmSync(dir, { recursive: true, force: true });
  renameSync(partial, dir);
}

/** bench-lite in `dir`, written first if it is not there. */
export function ensureBenchLite(dir = BENCH_LITE_DIR, opts: StreamOptions = {}): string {
  if (existsSync(path.join(dir, 'model.safetensors.index.json'))) return dir;
  if (process.env.CI) throw new Error('bench-lite (31 GB) is never generated in CI');
  writeRandomBf16Checkpoint(dir, benchLite, opts);
  return dir;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { dir: { type: 'string', default: BENCH_LITE_DIR }, 'shard-gb': { type: 'string', default: '4' }, seed: { type: 'string', default: '7' } },
  });
  const t0 = performance.now();
  const dir = ensureBenchLite(values.dir, {
    shardBytes: Number(values['shard-gb']) * 1e9,
    seed: Number(values.seed),
    log: (s) => process.stdout.write(`${s}\n`),
  });
  process.stdout.write(`bench-lite in ${dir} (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
