// Batch-1 decode with --quantization (issue 11's speed targets on bench-mini): ours at none / int8 / int4
// through the serving path (bench/engine_runs.ts timeDecode), against llama.cpp's llama-bench (tg, best
// of 1 and 2 threads) on the same weights written as GGUF Q8_0 / Q4_0 by bench/gguf (the engine's own
// quantiser: identical codes and scales) and F32.
// Targets: int8 >= 2.2x our float32, int4 >= 3x; each >= 1.0x llama.cpp at its type.
//   node --import tsx bench/quant_decode.ts [--model bench-mini] [--steps 64] [--llama-bench PATH]
// llama-bench: --llama-bench, else $LLAMA_BENCH, else /work/cache/llama.cpp-*/build/bin/llama-bench (see
// DESIGN.md section 8 for building it from node-llama-cpp's bundled source); skipped when absent.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadModel } from '../src/engine/checkpoint/weights.ts';
import type { QuantizationMode } from '../src/engine/quant/quant_mode.ts';
import { ensureBenchCheckpoint } from './checkpoints.ts';
import { cpuSummary } from './cpu.ts';
import { openBenchEngine, timeDecode } from './engine_runs.ts';
import { convertDeepseekToGguf, type GgufDtype } from './gguf/convert_deepseek.ts';
import { decodeWeightBytes } from '../src/engine/memory_plan.ts';

const MODES: readonly QuantizationMode[] = ['none', 'int8', 'int4'];
const GGUF_TYPE: Record<QuantizationMode, GgufDtype> = { none: 'F32', int8: 'Q8_0', int4: 'Q4_0' };

function findLlamaBench(flag: string | undefined): string | null {
  if (flag) return flag;
  if (process.env.LLAMA_BENCH) return process.env.LLAMA_BENCH;
  const cache = '/work/cache';
  if (!existsSync(cache)) return null;
  for (const d of readdirSync(cache).filter((n) => n.startsWith('llama.cpp-'))) {
    const p = path.join(cache, d, 'build', 'bin', 'llama-bench');
    if (existsSync(p)) return p;
  }
  return null;
}

/** llama-bench tg tokens/s at `threads` (mean of its repetitions). */
function llamaBenchTg(bin: string, gguf: string, threads: number, nGen: number): number {
  const out = execFileSync(bin, ['-m', gguf, '-t', String(threads), '-p', '0', '-n', String(nGen), '-r', '3', '-o', 'json'], { encoding: 'utf8', maxBuffer: 1 << 24 });
  const rows = JSON.parse(out) as { n_gen: number; avg_ts: number }[];
  const tg = rows.find((r) => r.n_gen === nGen);
  if (!tg) throw new Error(`llama-bench gave no tg${nGen} row`);
  return tg.avg_ts;
}

async function ours(dir: string, mode: QuantizationMode, steps: number): Promise<number> {
  const engine = await openBenchEngine(dir, { quantization: mode, kvCacheMemory: 256 * 2 ** 20, numThreads: 2 });
  try {
    const prompt = Array.from({ length: 16 }, (_, i) => 2 + ((i * 37) % 1000));
    const { msPerToken } = await timeDecode(engine, prompt, 8, steps);
    return 1000 / msPerToken;
  } finally {
    await engine.dispose();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { model: { type: 'string', default: 'bench-mini' }, steps: { type: 'string', default: '64' }, 'llama-bench': { type: 'string' } } });
  const steps = Number(values.steps);
  const load0 = loadavg()[0]!;
  const dir = ensureBenchCheckpoint(values.model, { log: (s) => process.stderr.write(`${s}\n`) });
  const config = loadModel(dir).config;
  const tokS = new Map<QuantizationMode, number>();
  for (const mode of MODES) tokS.set(mode, await ours(dir, mode, steps));
  const bin = findLlamaBench(values['llama-bench']);
  const peer = new Map<QuantizationMode, { t1: number; t2: number }>();
  if (bin) {
    const model = loadModel(dir);
    for (const mode of MODES) {
      const gguf = path.join(dir, `${values.model}-${GGUF_TYPE[mode].toLowerCase()}.gguf`);
      if (!existsSync(gguf)) convertDeepseekToGguf(model, gguf, { dtype: GGUF_TYPE[mode] });
      peer.set(mode, { t1: llamaBenchTg(bin, gguf, 1, steps), t2: llamaBenchTg(bin, gguf, 2, steps) });
    }
  }
  const load1 = loadavg()[0]!;
  const lines = [`# --quantization decode, ${values.model} (${new Date().toISOString()})`, ''];
  lines.push(`CPU: ${cpuSummary()}; ours: 2 ORT threads, MatMulNBits accuracy level 4; llama.cpp: ${bin ?? 'llama-bench not found (skipped)'}.`);
  lines.push(`Load average ${load0.toFixed(2)} -> ${load1.toFixed(2)}${load0 > 0.5 || load1 > 0.5 ? ': LOADED machine, ratios indicative only, no target may be called met from this run' : ''}.`, '');
  lines.push('| mode | weights read / token | ours tok/s | vs our f32 | llama.cpp type | llama.cpp t=1 | t=2 | ours / best llama.cpp |', '|---|---|---|---|---|---|---|---|');
  for (const mode of MODES) {
    const t = tokS.get(mode)!;
    const p = peer.get(mode);
    const best = p ? Math.max(p.t1, p.t2) : NaN;
    lines.push(`| ${mode} | ${(decodeWeightBytes(config, mode) / 1e6).toFixed(1)} MB | ${t.toFixed(1)} | ${(t / tokS.get('none')!).toFixed(2)}x | ${GGUF_TYPE[mode]} | ${p ? p.t1.toFixed(1) : '-'} | ${p ? p.t2.toFixed(1) : '-'} | ${p ? `${(t / best).toFixed(2)}x` : '-'} |`);
  }
  lines.push('', 'Targets: int8 >= 2.2x our f32, int4 >= 3x; each >= 1.0x llama.cpp (best of 1 and 2 threads).');
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
