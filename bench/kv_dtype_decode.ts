// Decode speed by --kv-cache-dtype on bench-mini-dsa (the speed targets): batch-1 decode at a
// 16k-token context, and aggregate decode tokens/s of 16 concurrent sequences, for float32, bfloat16
// and fp8, through the offline driver (the serving path). Writes a markdown table to
// bench/results/latest-kv-dtype.md (and stdout), labelled LOADED when other processes used the CPUs just
// before or during the run (bench/machine/load.ts: the idle check, not the lagging load average).
//   node --import tsx bench/kv_dtype_decode.ts [--context 16384] [--steps 32] [--concurrent-prompt 1024]
//        [--dtypes float32,bfloat16,fp8] [--rounds 1] [--no-batch1]
// --rounds N repeats the dtypes in turn N times, rotating which goes first (A/B on a shared machine:
// compare within one run; the report gives medians and per-round ratios to the first dtype listed);
// --no-batch1 measures the 16-sequence decode only.
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureBenchCheckpoint } from './checkpoints.ts';
import { openBenchEngine, timeDecode } from './engine_runs.ts';
import { oursKvBytesPerToken, kvShape, tokensPerGiB } from './kv_memory.ts';
import { LoadMonitor, loadVerdict } from './machine/load.ts';
import { benchModel } from './models.ts';
import { formatSpread, roundRatios, spread } from './stats.ts';
import { randomTokens } from './single_stream.ts';
import { KV_CACHE_DTYPES, type KVCacheDtype } from '../src/kvcache/kv_dtype.ts';
import type { StepStats } from '../src/engine/step_stats.ts';

const { values } = parseArgs({
  options: {
    context: { type: 'string', default: '16384' },
    steps: { type: 'string', default: '32' },
    'concurrent-prompt': { type: 'string', default: '1024' },
    dtypes: { type: 'string', default: KV_CACHE_DTYPES.join(',') },
    rounds: { type: 'string', default: '1' },
    'no-batch1': { type: 'boolean', default: false },
  },
});
const DTYPES = values.dtypes.split(',').map((d) => {
  if (!(KV_CACHE_DTYPES as readonly string[]).includes(d)) throw new Error(`--dtypes: unknown dtype "${d}" (have ${KV_CACHE_DTYPES.join(', ')})`);
  return d as KVCacheDtype;
});
const ROUNDS = Number(values.rounds);
const CONTEXT = Number(values.context);
const STEPS = Number(values.steps);
const CONCURRENT_PROMPT = Number(values['concurrent-prompt']);
const MODEL = 'bench-mini-dsa';
const RESULT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results', 'latest-kv-dtype.md');

async function batch1(dir: string, dtype: KVCacheDtype): Promise<number> {
  const engine = await openBenchEngine(dir, { kvCacheDtype: dtype, numThreads: 2, numKvBlocks: Math.ceil((CONTEXT + STEPS + 16) / 64) + 2 });
  try {
    const r = await timeDecode(engine, randomTokens(CONTEXT, engine.core.config.vocabSize, 7), 4, STEPS);
    return 1000 / r.msPerToken;
  } finally {
    await engine.dispose();
  }
}

/** Output tokens/s over the steps where all 16 sequences decode (no prefill in the step). */
async function concurrent16(dir: string, dtype: KVCacheDtype): Promise<number> {
  const engine = await openBenchEngine(dir, { kvCacheDtype: dtype, numThreads: 2, kvCacheMemory: 2 ** 30 }, 16);
  let tokens = 0;
  let ms = 0;
  let last = 0;
  const onStep = (s: StepStats): void => {
    const now = performance.now();
    if (s.numPrefillTokens === 0 && s.numDecodeTokens === 16 && last > 0) {
      tokens += 16;
      ms += now - last;
    }
    last = now;
  };
  try {
    const vocab = engine.core.config.vocabSize;
    const requests = Array.from({ length: 16 }, (_, i) => ({
      promptTokenIds: randomTokens(CONCURRENT_PROMPT, vocab, 100 + i),
      params: { temperature: 0, maxTokens: STEPS + 2, ignoreEos: true },
    }));
    await engine.generate(requests, onStep);
    return (tokens / ms) * 1000;
  } finally {
    await engine.dispose();
  }
}

const dir = ensureBenchCheckpoint(MODEL);
const shape = kvShape(benchModel(MODEL));
const monitor = await LoadMonitor.afterIdleCheck();
const rows: string[] = [];
// Per dtype, one figure per round; each round starts from a different dtype (rotated order) so that the
// first run of a process (cold page cache, fresh heap) does not always fall on the same dtype.
const batch1Tps = new Map<KVCacheDtype, number[]>(DTYPES.map((d) => [d, []]));
const concurrentTps = new Map<KVCacheDtype, number[]>(DTYPES.map((d) => [d, []]));
for (let round = 0; round < ROUNDS; round++)
  for (let i = 0; i < DTYPES.length; i++) {
    const dtype = DTYPES[(round + i) % DTYPES.length]!;
    const c0 = process.cpuUsage();
    const b1 = values['no-batch1'] ? NaN : await batch1(dir, dtype);
    const c16 = await concurrent16(dir, dtype);
    const cpu = process.cpuUsage(c0);
    batch1Tps.get(dtype)!.push(b1);
    concurrentTps.get(dtype)!.push(c16);
    const bytes = oursKvBytesPerToken(shape, true, dtype);
    rows.push(
      `| ${round + 1} | ${dtype} | ${bytes} | ${tokensPerGiB(bytes)} | ${b1.toFixed(1)} | ${c16.toFixed(1)} | ${((cpu.user + cpu.system) / 1e6).toFixed(0)} |`,
    );
    process.stderr.write(`${rows[rows.length - 1]}\n`);
  }
/** "median (min-max, n)" of a series, and of its per-round ratios to the first dtype's. */
const summary = (series: ReadonlyMap<KVCacheDtype, number[]>, dtype: KVCacheDtype): string => {
  const v = series.get(dtype)!;
  if (v.some((x) => Number.isNaN(x))) return '- | -';
  const base = series.get(DTYPES[0]!)!;
  return `${formatSpread(spread(v))} | ${dtype === DTYPES[0] ? '1' : formatSpread(spread(roundRatios(v, base)), 3)}`;
};
const summaryRows = DTYPES.map((d) => `| ${d} | ${summary(batch1Tps, d)} | ${summary(concurrentTps, d)} |`);
const load = monitor.stop();
const verdict = loadVerdict(load);
const report = [
  `# KV cache dtype: capacity and decode speed, ${MODEL} (${new Date().toISOString()})`,
  '',
  `CPU ${cpus()[0]?.model} x ${cpus().length}; load average ${load.loadAverageBefore.toFixed(2)} before, ${load.loadAverageAfter.toFixed(2)} after; other processes used ${(load.othersShareBefore * 100).toFixed(0)}% of the CPUs just before the start and ${(load.othersShare * 100).toFixed(0)}% during the run (worst ~5 s window ${(load.othersShareMaxWindow * 100).toFixed(0)}%).`,
  `Batch-1 decode at context ${CONTEXT} (${STEPS} timed steps after 4 warm-up); 16 concurrent sequences of ${CONCURRENT_PROMPT}-token prompts, decode-only steps.`,
  '',
  `Medians over ${ROUNDS} round(s) (min-max, n); ratios to ${DTYPES[0]} taken within each round:`,
  '',
  `| --kv-cache-dtype | batch-1 decode tok/s | / ${DTYPES[0]} | 16-concurrent decode tok/s | / ${DTYPES[0]} |`,
  '| --- | --- | --- | --- | --- |',
  ...summaryRows,
  '',
  'Every run, in order:',
  '',
  '| round | --kv-cache-dtype | KV bytes/token (DSA) | tokens per GiB | batch-1 decode tok/s at context | 16-concurrent decode tok/s | process CPU s |',
  '| --- | --- | --- | --- | --- | --- | --- |',
  ...rows,
  '',
  verdict.loaded ? `LOADED (${verdict.reasons.join('; ')}): not a measurement of the targets.` : 'Quiet: no other CPU use above 10% before or during the run.',
  '',
].join('\n');
writeFileSync(RESULT, report);
process.stdout.write(report);
