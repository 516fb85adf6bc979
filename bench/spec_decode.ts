// Speculative decoding (MTP) against plain decoding on a random-weight bench checkpoint with MTP tensors
// (written once under the bench cache: the bench model's weights plus one MTP module, seed 7, so the main
// weights equal bench/models/<name>'s). Decode throughput at several batch sizes, both engines loaded at
// once and run interleaved per repetition; decode tok/s = B x (N - 1) / (time(N tokens) - time(1 token)).
// Speculation is forced on at every batch size (disable_by_batch_size off) so the table shows where it
// stops paying: with random weights the drafts are almost never accepted, so the ratio is the cost side.
// With --disable-by-batch-size the rule applies instead (the 16-concurrent check of the budget rule).
//   node --import tsx bench/spec_decode.ts [--model bench-mini] [--k 1] [--batches 1,4,16] [--tokens 32] [--reps 3] [--threads 2]
//     [--disable-by-batch-size N]
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { OfflineEngine } from '../src/engine/offline.ts';
import type { StepStats } from '../src/engine/step_stats.ts';
import { randomCheckpoint } from '../tools/checkpoint/random_weights.ts';
import { writeCheckpoint } from '../tools/checkpoint/safetensors_writer.ts';
import { benchCacheRoot } from './cache_dir.ts';
import { BENCH_MODELS } from './models.ts';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'bench-mini' },
    k: { type: 'string', default: '1' },
    batches: { type: 'string', default: '1,4,16' },
    tokens: { type: 'string', default: '32' },
    reps: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    // Speculation's budget rule; default: off (speculation at every batch size).
    'disable-by-batch-size': { type: 'string' },
  },
});

function ensureMtpCheckpoint(name: string): string {
  const base = BENCH_MODELS[name];
  if (!base) throw new Error(`unknown bench model "${name}"`);
  const dir = path.join(benchCacheRoot(), 'mtp-models', `${name}-mtp`);
  if (!existsSync(path.join(dir, 'model.safetensors'))) {
    const config = { ...base, num_nextn_predict_layers: 1 };
    const partial = `${dir}.partial`;
    rmSync(partial, { recursive: true, force: true });
    mkdirSync(path.dirname(dir), { recursive: true });
    writeCheckpoint(partial, config, randomCheckpoint(config, { seed: 7, mtp: true }), { dtype: 'F32' });
    renameSync(partial, dir);
  }
  return dir;
}

function prompts(b: number, len: number, vocab: number, seed: number): number[][] {
  return Array.from({ length: b }, (_, i) => Array.from({ length: len }, (_, j) => ((j * 7919 + (seed * 31 + i) * 104729) % (vocab - 2)) + 2));
}

async function timeRun(engine: OfflineEngine, ps: number[][], maxTokens: number): Promise<{ ms: number; stats: StepStats[] }> {
  const stats: StepStats[] = [];
  const t0 = performance.now();
  await engine.generate(
    ps.map((promptTokenIds) => ({ promptTokenIds, params: { temperature: 0, maxTokens, ignoreEos: true } })),
    (s) => stats.push(s),
  );
  return { ms: performance.now() - t0, stats };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const dir = ensureMtpCheckpoint(args.model!);
const k = Number(args.k);
const N = Number(args.tokens);
const reps = Number(args.reps);
const batches = args.batches!.split(',').map(Number);
const runner = { numThreads: Number(args.threads), kvCacheMemory: 2 ** 28 };
const scheduler = { maxNumSeqs: 64 };
const engines = {
  plain: await OfflineEngine.create(dir, { runner, scheduler }),
  spec: await OfflineEngine.create(dir, {
    runner,
    scheduler,
    speculative: { method: 'mtp', numSpeculativeTokens: k, disableByBatchSize: Number(args['disable-by-batch-size'] ?? 1 << 20) },
  }),
};
const load0 = (await import('node:fs')).readFileSync('/proc/loadavg', 'utf8').trim();
const rule = args['disable-by-batch-size'] === undefined ? 'speculation at every batch size' : `disable_by_batch_size ${args['disable-by-batch-size']}`;
console.log(`${args.model} + MTP, k ${k}, ${rule}, ${N} tokens, ${reps} reps, threads ${args.threads}; loadavg before: ${load0}`);
console.log('| batch | plain decode tok/s | spec decode tok/s | spec / plain | accepted / draft tokens |');
console.log('|---|---|---|---|---|');
for (const b of batches) {
  const tps: Record<'plain' | 'spec', number[]> = { plain: [], spec: [] };
  let accepted = 0;
  let drafted = 0;
  for (let r = 0; r <= reps; r++) {
    for (const mode of ['plain', 'spec'] as const) {
      const ps = prompts(b, 32, 32000, r * 100 + b);
      const one = await timeRun(engines[mode], ps, 1);
      const full = await timeRun(engines[mode], ps, N);
      if (r === 0) continue; // warm-up
      tps[mode].push((b * (N - 1)) / ((full.ms - one.ms) / 1000));
      for (const s of full.stats) {
        accepted += s.specDecode?.numAcceptedTokens ?? 0;
        drafted += s.specDecode?.numDraftTokens ?? 0;
      }
    }
  }
  const p = median(tps.plain);
  const s = median(tps.spec);
  console.log(
    `| ${b} | ${p.toFixed(1)} (${Math.min(...tps.plain).toFixed(1)}-${Math.max(...tps.plain).toFixed(1)}) | ${s.toFixed(1)} (${Math.min(...tps.spec).toFixed(1)}-${Math.max(...tps.spec).toFixed(1)}) | ${(s / p).toFixed(2)} | ${accepted} / ${drafted} |`,
  );
}
console.log(`loadavg after: ${(await import('node:fs')).readFileSync('/proc/loadavg', 'utf8').trim()}`);
await engines.plain.dispose();
await engines.spec.dispose();
