// bench-lite (DeepSeek-V2-Lite's config, random BF16 weights, 31.4 GB): issue 11's start-up, memory and
// decode targets, each case in a fresh process (bench/quant_load.ts) so its peak RSS is its own.
//   1. the checkpoint, written when missing (bench/lite_checkpoint.ts; needs ~32 GB of disk);
//   2. without --quantization: refused in seconds with the memory message (src/main.ts);
//   3. int4 from BF16: ready <= 240 s, peak RSS <= 11 GiB, decode >= 8 tok/s. When the quantised cache
//      is already current (same checkpoint key and quantiser version) this run reads BF16 without a
//      cache, so the 9.7 GB cache is never deleted and rewritten; otherwise it writes the cache;
//   4. int4 from the quantised cache: ready <= 30 s, peak RSS <= 11 GiB;
//   5. --int8: int8 from BF16 with a 256 MiB KV cache, peak RSS <= 19 GiB; run only when MemAvailable
//      leaves 2 GiB above that (the machine is shared), else skipped with the figures;
//   6. llama.cpp on the same weights (GGUF Q4_0, written lazily one layer at a time when missing):
//      llama-bench tg at 1 and 2 threads.
// Time and speed targets are not judged on a loaded run (bench/machine/load.ts); memory targets are.
//   node --import tsx bench/lite_run.ts [--dir /work/cache/bench-lite] [--cache /work/cache/bench-lite-qcache]
//     [--gguf /work/cache/bench-lite-q4_0.gguf] [--llama-bench PATH] [--int8] [--cases refusal,cold,warm,peer]
// (the defaults are the paths shown; $LLAMA_BENCH also names llama-bench; --cases runs a subset, the
// verdicts of the others say "not run"). On 2 quiet cores ~10 minutes plus ~5 to write the GGUF once;
// on a loaded machine the cold and warm starts alone took 17 and 9 minutes.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { checkpointKey } from '../src/engine/quant/weights_cache.ts';
import { cpuSummary } from './cpu.ts';
import { peerEnv } from './server_process.ts';
import { convertDeepseekToGguf } from './gguf/convert_deepseek.ts';
import { readGguf } from './gguf/gguf_reader.ts';
import { GgmlType, ggmlBlockSize, ggmlTypeSize } from './gguf/gguf_writer.ts';
import { lazyModel } from './gguf/lazy_model.ts';
import { findLlamaBench } from './llama_bench_bin.ts';
import { BENCH_LITE_DIR, ensureBenchLite } from './lite_checkpoint.ts';
import { LoadMonitor, loadVerdict } from './machine/load.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const INT8_RSS_TARGET_GIB = 19;

interface LoadResult {
  readonly readySeconds: number;
  readonly peakRssGiB: number;
  readonly peakRssLoadGiB: number;
  readonly planTotalGiB: number;
  readonly decodeTokS: number | null;
  readonly warnings: readonly string[];
}

function load(dir: string, args: string[]): LoadResult {
  const out = execFileSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench/quant_load.ts'), '--model', dir, ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  return JSON.parse(out.trim().split('\n').pop()!) as LoadResult;
}

function refusal(dir: string): { seconds: number; message: string; exitCode: number | null } {
  const t0 = performance.now();
  const res = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/main.ts'), '--model', dir, '--port', '0'], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  const text = `${res.stdout}\n${res.stderr}`;
  const message = /the model does not fit in memory[^"\n]*/.exec(text)?.[0] ?? text.trim().split('\n').slice(-2).join(' ');
  return { seconds: (performance.now() - t0) / 1000, message, exitCode: res.status };
}

/** The cache folder QuantizedWeightsCache would use holds a complete int4 cache of this checkpoint. */
function cacheIsCurrent(dir: string, cache: string, numLayers: number): boolean {
  const key = checkpointKey(dir, 'int4');
  const folder = path.join(cache, `${path.basename(path.resolve(dir))}-int4-${key.slice(0, 16)}`);
  const groups = ['embed', 'head', ...Array.from({ length: numLayers }, (_, l) => `layer.${l}`)];
  return groups.every((g) => existsSync(path.join(folder, `${g}.safetensors`)));
}

function memAvailableGiB(): number {
  const m = /MemAvailable:\s*(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? (Number(m[1]) * 1024) / 2 ** 30 : 0;
}

/** llama-bench tg32 tokens/s (mean of 2 repetitions) at 1 and 2 threads, or why it failed. */
function peerTg(bin: string, gguf: string): { t1: number; t2: number } | string {
  const tg = (t: number): number => {
    const rows = JSON.parse(
      execFileSync(bin, ['-m', gguf, '-t', String(t), '-p', '0', '-n', '32', '-r', '2', '-o', 'json'], {
        encoding: 'utf8',
        maxBuffer: 1 << 24,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: peerEnv(),
      }),
    ) as { avg_ts: number }[];
    return rows[0]!.avg_ts;
  };
  try {
    return { t1: tg(1), t2: tg(2) };
  } catch (err) {
    return `llama-bench failed: ${((err as { stderr?: string }).stderr ?? String(err)).trim().split('\n').slice(-2).join(' ')}`;
  }
}

/** The GGUF's header parses and the file holds every tensor's bytes (an interrupted write is truncated). */
function ggufComplete(gguf: string): boolean {
  try {
    const g = readGguf(gguf);
    const end = Math.max(
      ...g.tensors.map((t) => t.offset + (t.ne.reduce((a, b) => a * b, 1) / ggmlBlockSize(t.type as GgmlType)) * ggmlTypeSize(t.type as GgmlType)),
    );
    return g.fileSize >= g.dataOffset + end;
  } catch {
    return false;
  }
}

/** Writes the Q4_0 GGUF when missing or incomplete, through a temporary name so a killed run leaves none. */
function ensureGguf(dir: string, gguf: string, log: (s: string) => void): void {
  if (existsSync(gguf) && ggufComplete(gguf)) return;
  log(`writing ${gguf} (missing or incomplete)`);
  rmSync(gguf, { force: true });
  const partial = `${gguf}.partial`;
  const model = lazyModel(dir);
  try {
    convertDeepseekToGguf(model, partial, { dtype: 'Q4_0' });
  } finally {
    model.close();
  }
  renameSync(partial, gguf);
}

/** llama-bench on the bench-lite weights as GGUF Q4_0 (written first when missing or incomplete). */
function peerOnSameWeights(dir: string, ggufFlag: string | undefined, binFlag: string | undefined): { text: string; best: number } {
  const gguf = ggufFlag ?? path.join(path.dirname(path.resolve(dir)), 'bench-lite-q4_0.gguf');
  ensureGguf(dir, gguf, (m) => process.stderr.write(`${m}\n`));
  const bin = findLlamaBench(binFlag);
  if (bin === null) return { text: 'llama-bench not found (skipped)', best: NaN };
  const r = peerTg(bin, gguf);
  if (typeof r === 'string') return { text: r, best: NaN };
  return { text: `${gguf}: t=1 ${r.t1.toFixed(2)}, t=2 ${r.t2.toFixed(2)} tok/s`, best: Math.max(r.t1, r.t2) };
}

const row = (name: string, r: LoadResult): string =>
  `| ${name} | ${r.readySeconds.toFixed(1)} | ${r.peakRssLoadGiB.toFixed(2)} / ${r.peakRssGiB.toFixed(2)} | ${r.planTotalGiB.toFixed(2)} | ${r.decodeTokS === null ? '-' : r.decodeTokS.toFixed(2)} |`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      dir: { type: 'string', default: BENCH_LITE_DIR },
      cache: { type: 'string', default: '/work/cache/bench-lite-qcache' },
      gguf: { type: 'string' },
      'llama-bench': { type: 'string' },
      int8: { type: 'boolean', default: false },
      cases: { type: 'string', default: 'refusal,cold,warm,peer' },
    },
  });
  const monitor = await LoadMonitor.afterIdleCheck(); // others' CPU use just before the start, not the lagging load average
  // Every figure is printed as soon as it exists, so a failure later in the run loses none of them.
  const emit = (...ls: string[]): void => void process.stdout.write(`${ls.join('\n')}\n`);
  emit(`# bench-lite (${new Date().toISOString()})`, '', `CPU: ${cpuSummary()}.`, '');
  const t0 = performance.now();
  const generated = !existsSync(path.join(values.dir, 'model.safetensors.index.json'));
  ensureBenchLite(values.dir, { log: (s) => process.stderr.write(`${s}\n`) });
  if (generated) emit(`Checkpoint written in ${((performance.now() - t0) / 1000).toFixed(0)} s.`, '');
  const numLayers = (JSON.parse(readFileSync(path.join(values.dir, 'config.json'), 'utf8')) as { num_hidden_layers: number }).num_hidden_layers;
  const current = cacheIsCurrent(values.dir, values.cache, numLayers);
  const cases = new Set(values.cases.split(','));
  const refused = cases.has('refusal') ? refusal(values.dir) : null;
  if (refused) emit(`Without --quantization: exit ${String(refused.exitCode)} after ${refused.seconds.toFixed(1)} s: "${refused.message}"`, '');
  emit('| case | ready s | peak RSS GiB (load / run) | plan GiB | decode tok/s |', '|---|---|---|---|---|');
  const cold = cases.has('cold') ? load(values.dir, ['--quantization', 'int4', ...(current ? [] : ['--cache', values.cache])]) : null;
  if (cold) emit(row(`int4 from BF16 (${current ? 'cache current: not used' : 'cache written'})`, cold));
  const warm = cases.has('warm') ? load(values.dir, ['--quantization', 'int4', '--cache', values.cache, '--decode', '0']) : null;
  if (warm) emit(row('int4 from the quantised cache', warm));
  const warmWarnings = warm && warm.warnings.length > 0 ? ` Warm-run warnings (a rebuilt cache file makes it a cold run): ${warm.warnings.join('; ')}` : '';
  let int8: LoadResult | null = null;
  const available = memAvailableGiB();
  let int8Note = values.int8 ? '' : 'int8: not run (pass --int8).';
  if (values.int8 && available < INT8_RSS_TARGET_GIB + 2)
    int8Note = `int8: skipped, MemAvailable ${available.toFixed(1)} GiB < ${INT8_RSS_TARGET_GIB + 2} GiB.`;
  else if (values.int8) {
    int8 = load(values.dir, ['--quantization', 'int8', '--kv', '256MiB']);
    emit(row('int8 from BF16 (KV 256 MiB)', int8));
  }
  emit('', `${int8Note}${warmWarnings}`);
  const peer = cases.has('peer') ? peerOnSameWeights(values.dir, values.gguf, values['llama-bench']) : null;
  emit('', `llama.cpp Q4_0 (same weights), llama-bench tg32: ${peer?.text ?? 'not run'}.`, '');
  const record = monitor.stop();
  const { loaded, reasons } = loadVerdict(record);
  const timed = (ok: boolean): string => (loaded ? 'not judged (loaded)' : ok ? 'met' : 'MISSED');
  const memory = (ok: boolean): string => (ok ? 'met' : 'MISSED');
  const best = peer?.best ?? NaN;
  const rss = Math.max(cold?.peakRssGiB ?? 0, warm?.peakRssGiB ?? 0);
  const notRun = '- | not run';
  emit('| target | measured | verdict |', '|---|---|---|');
  emit(
    `| refused in seconds without --quantization | ${refused ? `${refused.seconds.toFixed(1)} s, exit ${String(refused.exitCode)} | ${timed(refused.exitCode !== 0 && refused.seconds < 30)}` : notRun} |`,
  );
  emit(`| int4 ready <= 240 s from BF16 | ${cold ? `${cold.readySeconds.toFixed(0)} s | ${timed(cold.readySeconds <= 240)}` : notRun} |`);
  emit(`| int4 ready <= 30 s from the cache | ${warm ? `${warm.readySeconds.toFixed(0)} s | ${timed(warm.readySeconds <= 30)}` : notRun} |`);
  emit(`| int4 peak RSS <= 11 GiB | ${cold || warm ? `${rss.toFixed(2)} GiB | ${memory(rss <= 11)}` : notRun} |`);
  emit(`| int4 decode >= 8 tok/s | ${cold?.decodeTokS != null ? `${cold.decodeTokS.toFixed(2)} | ${timed(cold.decodeTokS >= 8)}` : notRun} |`);
  emit(
    `| int4 decode >= 1.0x llama.cpp Q4_0 (best thread count) | ${cold?.decodeTokS != null && !Number.isNaN(best) ? `${(cold.decodeTokS / best).toFixed(2)}x | ${timed(cold.decodeTokS >= best)}` : notRun} |`,
  );
  if (int8) emit(`| int8 peak RSS <= ${INT8_RSS_TARGET_GIB} GiB | ${int8.peakRssGiB.toFixed(2)} GiB | ${memory(int8.peakRssGiB <= INT8_RSS_TARGET_GIB)} |`);
  emit(
    '',
    `Load average ${record.loadAverageBefore.toFixed(2)} -> ${record.loadAverageAfter.toFixed(2)}, others used ${(record.othersShare * 100).toFixed(0)}% of the CPUs over ${record.seconds.toFixed(0)} s${loaded ? `: LOADED (${reasons.join('; ')}); times and speeds are indicative only` : ': quiet'}.`,
  );
}

await main();
