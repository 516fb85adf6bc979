// The quantised-weights cache (--quantized-weights-dir): the loader's quantised tensors, one file per
// group (a layer, the embedding, the head), so the next start reads 1/4 (int8) to 1/7 (int4) of the
// checkpoint's BF16 bytes and skips quantising.
//
// Key: sha256 of the cache format, the quantiser version, the mode, config.json, and for every
// safetensors file of the model (and its index) the name, size, mtime and header bytes. Hashing the
// 31 GB of tensor data would cost as much as quantising it; the header pins every tensor's name, dtype,
// shape and offsets, and a rewritten file (a new download, a re-export) gets a new size or mtime. What
// it does not catch is tensor bytes edited in place with size and mtime restored: an accepted risk.
// The cache files themselves carry a CRC-32 of their data (cache_file.ts), so a corrupt file is rebuilt, never used.
//
// Failures never stop serving: an unwritable or full folder disables the cache with one warning.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CACHE_FORMAT, readCacheFile, writeCacheFile, type CachedTensor } from './cache_file.ts';
import type { QuantizationMode } from './quant_mode.ts';

/** Bump when block_quant.ts changes what it produces: old caches then miss instead of being used. */
export const QUANTIZER_VERSION = 'block32-symmetric-f16snap/1 embedding-f16';
/** Free space a cache write leaves on the disk. */
export const MIN_FREE_BYTES = 2 ** 30;
const SOURCE_FILE = 'source.json';

export interface CacheLog {
  info(message: string): void;
  warn(message: string): void;
}

/** The JSON header of a safetensors file, without its data (a bad length yields what is there). */
function headerBytes(file: string): Buffer {
  const fd = openSync(file, 'r');
  try {
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const n = Math.min(Number(len.readBigUInt64LE(0)), 100 * 2 ** 20, statSync(file).size);
    const json = Buffer.alloc(n);
    const got = readSync(fd, json, 0, n, 8);
    return json.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/** The cache key of a model directory at a mode (hex). Reads config.json and the safetensors headers only. */
export function checkpointKey(modelDir: string, mode: QuantizationMode): string {
  const hash = createHash('sha256').update(`${CACHE_FORMAT}\n${QUANTIZER_VERSION}\n${mode}\n`);
  hash.update(readFileSync(path.join(modelDir, 'config.json')));
  const files = readdirSync(modelDir)
    .filter((f) => f.endsWith('.safetensors') || f === 'model.safetensors.index.json')
    .sort();
  for (const f of files) {
    const p = path.join(modelDir, f);
    const st = statSync(p);
    hash.update(`\n${f}\n${st.size}\n${Math.round(st.mtimeMs)}\n`);
    hash.update(f.endsWith('.json') ? readFileSync(p) : headerBytes(p));
  }
  return hash.digest('hex');
}

interface Source {
  readonly modelDir: string;
  readonly mode: QuantizationMode;
  readonly key: string;
}

function readSource(dir: string): Source | null {
  try {
    return JSON.parse(readFileSync(path.join(dir, SOURCE_FILE), 'utf8')) as Source;
  } catch {
    return null;
  }
}

function errorText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code}: ${e.message}` : String(e.message ?? err);
}

function tensorBytes(tensors: ReadonlyMap<string, CachedTensor>): number {
  let n = 0;
  for (const t of tensors.values()) {
    n += t.kind === 'f32' ? t.data.byteLength : t.kind === 'half' ? t.matrix.half.byteLength : t.matrix.packed.byteLength + t.matrix.scales.byteLength;
  }
  return n;
}

export class QuantizedWeightsCache {
  private disabled = false;

  private constructor(
    readonly dir: string,
    private readonly key: string,
    private readonly log: CacheLog,
  ) {}

  /**
   * The cache of `modelDir` at `mode` under `root`. Removes the caches of older versions of the same model
   * directory (same path and mode, another key). An unusable root gives a disabled cache and one warning.
   */
  static open(root: string, modelDir: string, mode: QuantizationMode, log: CacheLog): QuantizedWeightsCache {
    const model = path.resolve(modelDir);
    const key = checkpointKey(model, mode);
    const dir = path.join(path.resolve(root), `${path.basename(model)}-${mode}-${key.slice(0, 16)}`);
    const cache = new QuantizedWeightsCache(dir, key, log);
    try {
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, SOURCE_FILE), JSON.stringify({ modelDir: model, mode, key } satisfies Source, null, 2));
      cache.removeStale(path.resolve(root), model, mode);
    } catch (err) {
      cache.disable(`cannot use ${dir} (${errorText(err)})`);
    }
    return cache;
  }

  get enabled(): boolean {
    return !this.disabled;
  }

  private removeStale(root: string, model: string, mode: QuantizationMode): void {
    for (const name of readdirSync(root)) {
      const other = path.join(root, name);
      if (other === this.dir) continue;
      const src = readSource(other);
      if (src !== null && src.modelDir === model && src.mode === mode && src.key !== this.key) {
        rmSync(other, { recursive: true, force: true });
        this.log.info(`quantized weights cache: removed ${other} (written for an older version of ${model})`);
      }
    }
  }

  private disable(why: string): void {
    if (this.disabled) return;
    this.disabled = true;
    this.log.warn(`quantized weights cache disabled: ${why}; serving continues without it`);
  }

  private file(group: string): string {
    return path.join(this.dir, `${group}.safetensors`);
  }

  /** The group's tensors, or null when absent; a corrupt or stale file is reported, deleted and null. */
  read(group: string): Map<string, CachedTensor> | null {
    const file = this.file(group);
    if (this.disabled || !existsSync(file)) return null;
    try {
      return readCacheFile(file, this.key);
    } catch (err) {
      this.log.warn(`quantized weights cache: ${file} is not usable (${errorText(err)}); rebuilding it`);
      rmSync(file, { force: true });
      return null;
    }
  }

  /** Stores a group; a full or unwritable disk disables the cache (with a warning) instead of failing. */
  write(group: string, tensors: ReadonlyMap<string, CachedTensor>): void {
    if (this.disabled) return;
    const need = tensorBytes(tensors);
    try {
      const fs = statfsSync(this.dir);
      const free = Number(fs.bavail) * Number(fs.bsize);
      if (free - need < MIN_FREE_BYTES) {
        this.disable(
          `${this.dir} has ${(free / 1e9).toFixed(1)} GB free, a write of ${(need / 1e9).toFixed(2)} GB would leave less than ${MIN_FREE_BYTES / 2 ** 30} GiB`,
        );
        return;
      }
      writeCacheFile(this.file(group), this.key, tensors);
    } catch (err) {
      this.disable(`cannot write ${this.file(group)} (${errorText(err)})`);
    }
  }
}
