// The bench's cache folder outside git (built llama.cpp, compiled probes): $DSV32_BENCH_CACHE, else
// /work/cache when that folder exists (the shared development machine), else ${XDG_CACHE_HOME:-~/.cache}/dsv32-bench.
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function benchCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DSV32_BENCH_CACHE) return path.resolve(env.DSV32_BENCH_CACHE);
  if (existsSync('/work/cache')) return '/work/cache';
  return path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'dsv32-bench');
}
