// DSA prefill against dense prefill on bench-mini-dsa (issue 16: a DSA prefill of 4096 tokens must never be
// slower than the dense one, >= 1.0x). Writes bench/results/latest-dsa-prefill.md (and stdout).
//
// Method: two engines in one process over the same weights, one with the indexer (DSA, the default) and one
// with --dense-attention; each round prefills the same random prompt once on each (prefix caching off,
// the server's 2048-token step budget, so a 4096-token prompt is two chunks), in alternating order, after
// one untimed warm-up prefill per engine. Time to the first token; median (min-max, n) of rounds, the
// ratio taken within each round.
//   node --import tsx bench/dsa_prefill.ts [--tokens 4096] [--rounds 5] [--kv-cache-dtype float32]
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureBenchCheckpoint } from './checkpoints.ts';
import { timePrefill } from './engine_runs.ts';
import { readCpuInfo } from './machine/cpu_info.ts';
import { LoadMonitor, loadVerdict } from './machine/load.ts';
import { randomTokens } from './single_stream.ts';
import { formatSpread, median, spread } from './stats.ts';
import { OfflineEngine } from '../src/engine/offline.ts';
import type { StepTimings } from '../src/engine/step_profiler.ts';
import { KV_CACHE_DTYPES, type KVCacheDtype } from '../src/kvcache/kv_dtype.ts';

const MODEL = 'bench-mini-dsa';
const TARGET = 1.0;
const RESULT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results', 'latest-dsa-prefill.md');

const { values } = parseArgs({
  options: {
    tokens: { type: 'string', default: '4096' },
    rounds: { type: 'string', default: '5' },
    'kv-cache-dtype': { type: 'string', default: 'float32' },
  },
});
const tokens = Number(values.tokens);
const rounds = Number(values.rounds);
const kvCacheDtype = values['kv-cache-dtype'] as KVCacheDtype;
if (!KV_CACHE_DTYPES.includes(kvCacheDtype)) throw new Error(`--kv-cache-dtype: one of ${KV_CACHE_DTYPES.join(', ')}`);
if (!Number.isInteger(tokens) || tokens < 1 || !Number.isInteger(rounds) || rounds < 1) throw new Error('--tokens and --rounds: positive integers');

const dir = ensureBenchCheckpoint(MODEL, { log: (s) => console.error(s) });
const open = (denseAttention: boolean): Promise<OfflineEngine> =>
  OfflineEngine.create(dir, {
    runner: { numThreads: 2, denseAttention, kvCacheDtype, kvCacheMemory: 2 ** 30 },
    scheduler: { maxNumSeqs: 1, maxNumBatchedTokens: 2048 },
    enablePrefixCaching: false,
  });
const engines = { dsa: await open(false), dense: await open(true) };
const prompt = randomTokens(tokens, engines.dsa.core.config.vocabSize, 5);
for (const e of Object.values(engines)) await timePrefill(e, prompt);

type Kind = keyof typeof engines;
const ms: Record<Kind, number[]> = { dsa: [], dense: [] };
const parts: Record<Kind, StepTimings[]> = { dsa: [], dense: [] };
const monitor = await LoadMonitor.afterIdleCheck();
for (let r = 0; r < rounds; r++) {
  const order: Kind[] = r % 2 === 0 ? ['dsa', 'dense'] : ['dense', 'dsa'];
  for (const k of order) {
    const t = await timePrefill(engines[k], prompt);
    ms[k].push(t.ms);
    parts[k].push(t.split);
  }
}
const load = monitor.stop();
for (const e of Object.values(engines)) await e.dispose();

const verdict = loadVerdict(load);
const ratios = ms.dsa.map((v, r) => ms.dense[r]! / v);
const ok = median(ratios) >= TARGET;
const part = (k: Kind, p: keyof StepTimings): string => median(parts[k].map((s) => s[p])).toFixed(0);
const lines = [
  `# DSA vs dense prefill, ${MODEL}, ${tokens} tokens, --kv-cache-dtype ${kvCacheDtype} (${new Date().toISOString()})`,
  '',
  `CPU ${readCpuInfo().modelName}, 2 threads. ${verdict.loaded ? `**LOADED** (${verdict.reasons.join('; ')}): no target is judged.` : `**Quiet run**: others used ${(load.othersShare * 100).toFixed(0)}% of the CPUs during the timed rounds (${(load.othersShareBefore * 100).toFixed(0)}% just before).`}`,
  `Method: one process, two engines (DSA; --dense-attention), the same ${tokens}-token prompt prefilled once per engine and round in alternating order after one untimed warm-up each, 2048-token steps, prefix caching off; ${rounds} rounds; median (min-max, n); the ratio per round.`,
  '',
  '| attention | ms to first token | tok/s | dense ms / DSA ms (per round) | target | verdict | parts (median ms): dense graphs / indexer / attention / experts |',
  '|---|---|---|---|---|---|---|',
  `| DSA | ${formatSpread(spread(ms.dsa), 0)} | ${((tokens / median(ms.dsa)) * 1000).toFixed(0)} | ${formatSpread(spread(ratios), 3)} | >= ${TARGET} | ${verdict.loaded ? 'not judged (loaded)' : ok ? 'met' : 'missed'} | ${part('dsa', 'dense')} / ${part('dsa', 'indexer')} / ${part('dsa', 'attention')} / ${part('dsa', 'experts')} |`,
  `| dense | ${formatSpread(spread(ms.dense), 0)} | ${((tokens / median(ms.dense)) * 1000).toFixed(0)} | 1 | - | - | ${part('dense', 'dense')} / ${part('dense', 'indexer')} / ${part('dense', 'attention')} / ${part('dense', 'experts')} |`,
];
const report = `${lines.join('\n')}\n`;
process.stdout.write(report);
mkdirSync(path.dirname(RESULT), { recursive: true });
writeFileSync(RESULT, report);
