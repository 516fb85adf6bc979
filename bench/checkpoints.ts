// Generates (once) the random-weight benchmark checkpoints under bench/models/ (git-ignored), and their
// GGUF conversions for the peer (bench/models/<name>/<name>-<arch>-f32.gguf).
import { existsSync, renameSync, rmSync, statfsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomCheckpoint } from '../tools/checkpoint/random_weights.ts';
import { writeCheckpoint } from '../tools/checkpoint/safetensors_writer.ts';
import { ensureGguf, type GgufArch } from './gguf/convert_deepseek.ts';
import { BENCH_MODELS, benchModel, countParams } from './models.ts';

export const BENCH_MODEL_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'models');

/** Free bytes on the file system holding `dir` (or its nearest existing parent). */
export function freeDiskBytes(dir: string): number {
  let d = dir;
  while (!existsSync(d) && path.dirname(d) !== d) d = path.dirname(d);
  const s = statfsSync(d);
  return Number(s.bavail) * Number(s.bsize);
}

/** Bytes of a bench model's F32 safetensors file (weights only). */
export function checkpointBytes(name: string): number {
  return countParams(benchModel(name)) * 4;
}

/**
 * Returns the checkpoint directory of a bench model, writing it first if it is missing. `needBytes` is
 * the disk space the caller will use for it in total (checkpoint + GGUF files); writing refuses to start
 * when less is free (plus 1 GiB of headroom).
 */
export function ensureBenchCheckpoint(name: string, opts: { readonly needBytes?: number; readonly log?: (s: string) => void } = {}): string {
  const config = benchModel(name);
  const dir = path.join(BENCH_MODEL_ROOT, name);
  if (!existsSync(path.join(dir, 'model.safetensors')) && !existsSync(path.join(dir, 'model.safetensors.index.json'))) {
    const need = (opts.needBytes ?? checkpointBytes(name)) + 2 ** 30;
    const free = freeDiskBytes(BENCH_MODEL_ROOT);
    if (free < need)
      throw new Error(`not enough disk space for ${name}: need ${(need / 1e9).toFixed(1)} GB under ${BENCH_MODEL_ROOT}, ${(free / 1e9).toFixed(1)} GB free`);
    opts.log?.(`writing the random-weight checkpoint ${name} (${(checkpointBytes(name) / 1e9).toFixed(2)} GB F32) to ${dir}`);
    // fs.writeFileSync writes at most 2 GiB at once: shard bigger checkpoints; write aside, then rename, so an
    // interrupted run leaves no half-written checkpoint behind
    const shards = Math.ceil(checkpointBytes(name) / 1.5e9);
    const partial = `${dir}.partial`;
    rmSync(partial, { recursive: true, force: true });
    writeCheckpoint(partial, config, randomCheckpoint(config, { seed: 7 }), { dtype: 'F32', shards });
    rmSync(dir, { recursive: true, force: true });
    renameSync(partial, dir);
  }
  return dir;
}

/** The F32 GGUF of a bench checkpoint for llama.cpp's `arch` (converted when missing or older than the checkpoint). */
export function ensureBenchGguf(checkpointDir: string, arch: GgufArch): { path: string; converted: boolean } {
  const out = path.join(checkpointDir, `${path.basename(checkpointDir)}-${arch}-f32.gguf`);
  if (!existsSync(out)) {
    const name = path.basename(checkpointDir);
    const need = BENCH_MODELS[name] ? checkpointBytes(name) + 2 ** 30 : 0;
    const free = freeDiskBytes(checkpointDir);
    if (free < need) throw new Error(`not enough disk space for ${out}: need ${(need / 1e9).toFixed(1)} GB, ${(free / 1e9).toFixed(1)} GB free`);
  }
  return ensureGguf(checkpointDir, out, { arch, dtype: 'F32' });
}
