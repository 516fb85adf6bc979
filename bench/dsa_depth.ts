// DSA batch-1 decode speed against context length (issue 16: decode at 16k >= 0.8x and at 64k >= 0.6x of
// decode at 512, bench-mini-dsa). Writes bench/results/latest-dsa-depth.md (and stdout).
//
// Method: each depth's prompt is prefilled once (untimed; prefix caching keeps its blocks). Then every
// round decodes `steps` tokens at each depth in turn: the same prompt again is a prefix hit, so only its
// last partial block is recomputed before the timed decode steps. Depths are interleaved round by round and
// the ratios are taken within a round, so a slow phase of the machine hits every depth alike. The idle
// check runs after the prefills, just before the timed rounds (a long prefill on a shared machine is
// allowed; the timed part must be quiet to mark anything met).
// bench-mini-dsa declares max_position_embeddings 32768, so the 64k point needs a copy of it whose
// config.json raises that key (the random weights have no trained length; RoPE has no limit):
//   mkdir /tmp/dsa-long && ln bench/models/bench-mini-dsa/model.safetensors /tmp/dsa-long/ && \
//   sed 's/"max_position_embeddings": 32768/"max_position_embeddings": 131072/' \
//     bench/models/bench-mini-dsa/config.json > /tmp/dsa-long/config.json
//   node --import tsx bench/dsa_depth.ts [--depths 512,16384] [--model-dir /tmp/dsa-long --depths 512,16384,65536]
//     [--rounds 5] [--steps 24] [--kv-cache-dtype float32]
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureBenchCheckpoint } from './checkpoints.ts';
import { readCpuInfo } from './machine/cpu_info.ts';
import { LoadMonitor, loadVerdict } from './machine/load.ts';
import { randomTokens } from './single_stream.ts';
import { formatSpread, median, spread } from './stats.ts';
import { OfflineEngine } from '../src/engine/offline.ts';
import type { StepStats } from '../src/engine/step_stats.ts';
import { KV_CACHE_DTYPES, type KVCacheDtype } from '../src/kvcache/kv_dtype.ts';

const MODEL = 'bench-mini-dsa';
const WARMUP_STEPS = 3;
/** Issue 16's targets: decode tok/s at depth d over decode tok/s at the first (shortest) depth. */
const TARGETS: Readonly<Record<number, number>> = { 16384: 0.8, 65536: 0.6 };
const RESULT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results', 'latest-dsa-depth.md');

const { values } = parseArgs({
  options: {
    depths: { type: 'string', default: '512,16384' },
    'model-dir': { type: 'string' },
    rounds: { type: 'string', default: '5' },
    steps: { type: 'string', default: '24' },
    'kv-cache-dtype': { type: 'string', default: 'float32' },
  },
});
const depths = values.depths.split(',').map(Number);
const rounds = Number(values.rounds);
const steps = Number(values.steps);
const kvCacheDtype = values['kv-cache-dtype'] as KVCacheDtype;
if (!KV_CACHE_DTYPES.includes(kvCacheDtype)) throw new Error(`--kv-cache-dtype: one of ${KV_CACHE_DTYPES.join(', ')}`);
const BYTES_PER_TOKEN = 11264; // float32 latent + indexer key rows of bench-mini-dsa, all layers (an upper bound for the other dtypes)
const kvCacheMemory = Math.ceil(((Math.max(...depths) + 4096) * BYTES_PER_TOKEN * depths.length) / 2 ** 20) * 2 ** 20;

/** ms per decode token of one request: wall time between step ends after the warm-up steps. */
async function timedDecode(engine: OfflineEngine, prompt: readonly number[]): Promise<number> {
  const ends: number[] = [];
  const onStep = (s: StepStats): void => void (s.numPrefillTokens === 0 && ends.push(performance.now()));
  await engine.generate([{ promptTokenIds: prompt, params: { temperature: 0, maxTokens: WARMUP_STEPS + steps + 1, ignoreEos: true } }], onStep);
  return (ends[ends.length - 1]! - ends[WARMUP_STEPS - 1]!) / (ends.length - WARMUP_STEPS);
}

const dir = values['model-dir'] ?? ensureBenchCheckpoint(MODEL, { log: (s) => console.error(s) });
const engine = await OfflineEngine.create(dir, {
  runner: { numThreads: 2, kvCacheMemory, kvCacheDtype },
  scheduler: { maxNumSeqs: 1, maxNumBatchedTokens: 2048 },
  enablePrefixCaching: true,
});
const { vocabSize: vocab, maxPositionEmbeddings } = engine.core.config;
const longest = Math.max(...depths) + rounds * (WARMUP_STEPS + steps + 1);
if (longest > maxPositionEmbeddings) {
  await engine.dispose();
  throw new Error(
    `depth ${Math.max(...depths)} needs ${longest} positions; ${dir} allows ${maxPositionEmbeddings}: pass --model-dir with a raised max_position_embeddings (see the header)`,
  );
}
const prompts = depths.map((d, i) => randomTokens(d, vocab, 11 + i));
const prefillSeconds: number[] = [];
for (const p of prompts) {
  const t0 = performance.now();
  await engine.generate([{ promptTokenIds: p, params: { temperature: 0, maxTokens: 1, ignoreEos: true } }]);
  prefillSeconds.push((performance.now() - t0) / 1000);
}
const monitor = await LoadMonitor.afterIdleCheck();
const ms: number[][] = depths.map(() => []);
for (let r = 0; r < rounds; r++) for (const [i, p] of prompts.entries()) ms[i]!.push(await timedDecode(engine, p));
const load = monitor.stop();
await engine.dispose();

const verdict = loadVerdict(load);
const lines = [
  `# DSA decode vs context length, ${MODEL}, --kv-cache-dtype ${kvCacheDtype} (${new Date().toISOString()})`,
  '',
  `CPU ${readCpuInfo().modelName}, 2 threads. ${verdict.loaded ? `**LOADED** (${verdict.reasons.join('; ')}): no target is judged.` : `**Quiet run**: others used ${(load.othersShare * 100).toFixed(0)}% of the CPUs during the timed rounds (${(load.othersShareBefore * 100).toFixed(0)}% just before).`}`,
  `Method: batch-1 decode, ${steps} timed steps after ${WARMUP_STEPS} warm-up per depth and round, depths interleaved in ${rounds} rounds (prefix hits after one untimed prefill per depth: ${prefillSeconds.map((s, i) => `${depths[i]} in ${s.toFixed(0)} s`).join(', ')}); median (min-max, n) of rounds; ratios per round.`,
  '',
  `| context | ms/token | tok/s | tok/s / tok/s at ${depths[0]} (per round) | target | verdict |`,
  '|---|---|---|---|---|---|',
];
for (const [i, d] of depths.entries()) {
  const ratios = ms[i]!.map((v, r) => ms[0]![r]! / v);
  const target = TARGETS[d];
  const ok = median(ratios) >= (target ?? 0);
  const judged = target === undefined ? '-' : verdict.loaded ? 'not judged (loaded)' : ok ? 'met' : 'missed';
  lines.push(
    `| ${d} | ${formatSpread(spread(ms[i]!), 2)} | ${(1000 / median(ms[i]!)).toFixed(1)} | ${i === 0 ? '1' : formatSpread(spread(ratios), 3)} | ${target === undefined ? '-' : `>= ${target}`} | ${judged} |`,
  );
}
const report = `${lines.join('\n')}\n`;
process.stdout.write(report);
mkdirSync(path.dirname(RESULT), { recursive: true });
writeFileSync(RESULT, report);
