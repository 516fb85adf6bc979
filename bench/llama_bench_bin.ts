// Where the quantisation benches find llama.cpp's llama-bench: --llama-bench, else $LLAMA_BENCH, else the
// peer build in the bench cache (bench/peer/build_llama.ts: <cache>/llama.cpp-<commit>/bin/llama-bench;
// older builds left it in build/bin). Null when there is none: the caller skips the peer and says so.
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { benchCacheRoot } from './cache_dir.ts';

export function findLlamaBench(flag?: string): string | null {
  if (flag) return flag;
  if (process.env.LLAMA_BENCH) return process.env.LLAMA_BENCH;
  const root = benchCacheRoot();
  if (!existsSync(root)) return null;
  for (const d of readdirSync(root)
    .filter((n) => n.startsWith('llama.cpp-'))
    .sort()) {
    for (const sub of ['bin', 'build/bin']) {
      const p = path.join(root, d, sub, 'llama-bench');
      if (existsSync(p)) return p;
    }
  }
  return null;
}
