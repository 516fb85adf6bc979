// bench-lite (DeepSeek-V2-Lite's config, random BF16 weights, 31.4 GB): issue 11's start-up, memory and
// decode targets, each case in a fresh process (bench/quant_load.ts) so its peak RSS is its own.
//   1. the checkpoint, written when missing (bench/lite_checkpoint.ts; needs ~32 GB of disk);
//   2. without --quantization: refused in seconds with the memory message (src/main.ts);
//   3. int4 from BF16 (cache empty, then written): ready <= 240 s, peak RSS <= 11 GiB, decode >= 8 tok/s;
//   4. int4 from the quantised cache: ready <= 30 s;
//   5. --int8: int8 with a 256 MiB KV cache, peak RSS <= 19 GiB (off by default: ~19 GiB on a shared machine);
//   6. llama.cpp on the same weights (GGUF Q4_0 written lazily, one layer at a time): llama-bench tg.
//   node --import tsx bench/lite_run.ts [--dir /work/cache/bench-lite] [--cache /work/cache/bench-lite-qcache] [--int8]
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuSummary } from './cpu.ts';
import { convertDeepseekToGguf } from './gguf/convert_deepseek.ts';
import { lazyModel } from './gguf/lazy_model.ts';
import { BENCH_LITE_DIR, ensureBenchLite } from './lite_checkpoint.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

interface LoadResult {
  readonly readySeconds: number;
  readonly peakRssGiB: number;
  readonly peakRssLoadGiB: number;
  readonly planTotalGiB: number;
  readonly decodeTokS: number | null;
}

function load(dir: string, args: string[]): LoadResult {
  const out = execFileSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench/quant_load.ts'), '--model', dir, ...args], { encoding: 'utf8', maxBuffer: 1 << 24 });
  return JSON.parse(out.trim().split('\n').pop()!) as LoadResult;
}

function refusal(dir: string): { seconds: number; message: string; exitCode: number | null } {
  const t0 = performance.now();
  const res = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/main.ts'), '--model', dir, '--port', '0'], { encoding: 'utf8', timeout: 120_000 });
  const text = `${res.stdout}\n${res.stderr}`;
  const message = /the model does not fit in memory[^"\n]*/.exec(text)?.[0] ?? text.trim().split('\n').slice(-2).join(' ');
  return { seconds: (performance.now() - t0) / 1000, message, exitCode: res.status };
}

function verdict(ok: boolean): string {
  return ok ? 'met' : 'MISSED';
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { dir: { type: 'string', default: BENCH_LITE_DIR }, cache: { type: 'string', default: '/work/cache/bench-lite-qcache' }, int8: { type: 'boolean', default: false } } });
  const lines = [`# bench-lite (${new Date().toISOString()})`, '', `CPU: ${cpuSummary()}; load average at start ${loadavg()[0]!.toFixed(2)}.`, ''];
  const t0 = performance.now();
  const generated = !existsSync(path.join(values.dir, 'model.safetensors.index.json'));
  ensureBenchLite(values.dir, { log: (s) => process.stderr.write(`${s}\n`) });
  if (generated) lines.push(`Checkpoint written in ${((performance.now() - t0) / 1000).toFixed(0)} s.`, '');
  const refused = refusal(values.dir);
  lines.push(`Without --quantization: exit ${String(refused.exitCode)} after ${refused.seconds.toFixed(1)} s: "${refused.message}"`, '');
  rmSync(values.cache, { recursive: true, force: true });
  const cold = load(values.dir, ['--quantization', 'int4', '--cache', values.cache]);
  const warm = load(values.dir, ['--quantization', 'int4', '--cache', values.cache, '--decode', '0']);
  lines.push('| case | ready s | peak RSS GiB (load / run) | plan GiB | decode tok/s |', '|---|---|---|---|---|');
  const row = (name: string, r: LoadResult): string =>
    `| ${name} | ${r.readySeconds.toFixed(1)} | ${r.peakRssLoadGiB.toFixed(2)} / ${r.peakRssGiB.toFixed(2)} | ${r.planTotalGiB.toFixed(2)} | ${r.decodeTokS === null ? '-' : r.decodeTokS.toFixed(2)} |`;
  lines.push(row('int4 from BF16', cold), row('int4 from the quantised cache', warm));
  let int8: LoadResult | null = null;
  if (values.int8) {
    int8 = load(values.dir, ['--quantization', 'int8', '--kv', '256MiB']);
    lines.push(row('int8 from BF16 (KV 256 MiB)', int8));
  }
  const gguf = path.join(path.dirname(values.dir), 'bench-lite-q4_0.gguf');
  if (!existsSync(gguf)) {
    const model = lazyModel(values.dir);
    try {
      convertDeepseekToGguf(model, gguf, { dtype: 'Q4_0' });
    } finally {
      model.close();
    }
  }
  const bench = process.env.LLAMA_BENCH ?? '/work/cache/llama.cpp-80fb11ac73e6/build/bin/llama-bench';
  let peer = NaN;
  if (existsSync(bench)) {
    for (const t of [1, 2]) {
      const rows = JSON.parse(execFileSync(bench, ['-m', gguf, '-t', String(t), '-p', '0', '-n', '32', '-r', '2', '-o', 'json'], { encoding: 'utf8' })) as { avg_ts: number }[];
      peer = Number.isNaN(peer) ? rows[0]!.avg_ts : Math.max(peer, rows[0]!.avg_ts);
    }
  }
  const loaded = loadavg()[0]! > 0.5;
  lines.push('', `llama.cpp Q4_0 (same weights), llama-bench tg32, best of 1 and 2 threads: ${Number.isNaN(peer) ? 'not run' : `${peer.toFixed(2)} tok/s`}.`, '');
  lines.push('| target | measured | verdict |', '|---|---|---|');
  lines.push(`| refused in seconds without --quantization | ${refused.seconds.toFixed(1)} s | ${verdict(refused.exitCode !== 0 && refused.seconds < 30)} |`);
  lines.push(`| int4 ready <= 240 s from BF16 | ${cold.readySeconds.toFixed(0)} s | ${verdict(cold.readySeconds <= 240)} |`);
  lines.push(`| int4 ready <= 30 s from the cache | ${warm.readySeconds.toFixed(0)} s | ${verdict(warm.readySeconds <= 30)} |`);
  lines.push(`| int4 peak RSS <= 11 GiB | ${Math.max(cold.peakRssGiB, warm.peakRssGiB).toFixed(2)} GiB | ${verdict(Math.max(cold.peakRssGiB, warm.peakRssGiB) <= 11)} |`);
  lines.push(`| int4 decode >= 8 tok/s | ${cold.decodeTokS?.toFixed(2)} | ${verdict((cold.decodeTokS ?? 0) >= 8)} |`);
  lines.push(`| int4 decode >= 1.0x llama.cpp Q4_0 | ${(cold.decodeTokS! / peer).toFixed(2)}x | ${Number.isNaN(peer) ? 'not run' : verdict(cold.decodeTokS! >= peer)} |`);
  if (int8) lines.push(`| int8 peak RSS <= 19 GiB | ${int8.peakRssGiB.toFixed(2)} GiB | ${verdict(int8.peakRssGiB <= 19)} |`);
  lines.push('', `Load average at the end ${loadavg()[0]!.toFixed(2)}${loaded ? ': LOADED machine, times and speeds are indicative only; no time or speed target is met from this run' : ''}.`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
