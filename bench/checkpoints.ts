// Generates (once) the random-weight benchmark checkpoints under bench/models/ (git-ignored).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomCheckpoint } from '../tools/checkpoint/random_weights.ts';
import { writeCheckpoint } from '../tools/checkpoint/safetensors_writer.ts';
import { BENCH_MODELS } from './models.ts';

export const BENCH_MODEL_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'models');

/** Returns the checkpoint directory of a bench model, writing it first if it is missing. */
export function ensureBenchCheckpoint(name: string): string {
  const config = BENCH_MODELS[name];
  if (!config) throw new Error(`unknown bench model "${name}" (have: ${Object.keys(BENCH_MODELS).join(', ')})`);
  const dir = path.join(BENCH_MODEL_ROOT, name);
  if (!existsSync(path.join(dir, 'model.safetensors'))) {
    writeCheckpoint(dir, config, randomCheckpoint(config, { seed: 7 }), { dtype: 'F32' });
  }
  return dir;
}
