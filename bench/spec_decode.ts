// Speculative decoding (MTP) against plain decoding on a random-weight bench checkpoint with MTP tensors
// (written once under the bench cache: the bench model's weights plus one MTP module, seed 7, so the main
// weights equal bench/models/<name>'s). Decode throughput at several batch sizes, both engines loaded at
// once and run interleaved per repetition; decode tok/s = B x (N - 1) / (time(N tokens) - time(1 token)).
// Speculation is forced on at every batch size (disable_by_batch_size off) so the table shows where it
// stops paying: with random weights the drafts are almost never accepted, so the ratio is the cost side.
// With --disable-by-batch-size the rule applies instead (the 16-concurrent check of the budget rule).
// --dir runs an existing checkpoint with MTP tensors instead (the default model: --dir models/default), and
// --prompts-from takes the prompts from a uint16 token stream (BOS-aligned 32-token windows of held-out text,
// tools/train/data/valid.u16) instead of random ids; the table then also shows the acceptance per draft position.
//   node --import tsx bench/spec_decode.ts [--model bench-mini | --dir DIR] [--prompts-from FILE.u16] [--k 1]
//     [--batches 1,4,16] [--tokens 32] [--reps 3] [--threads 2] [--disable-by-batch-size N] [--kv-cache-dtype float32]
// Below the table: per engine and batch, the mean decode step (steps that scheduled no prefill token) split
// by part (StepTimings), its graph runs, the time inside them and the rest (JS), and its generated tokens,
// so a step's cost can be traced to its parts.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { KV_CACHE_DTYPES, type KVCacheDtype } from '../src/kvcache/kv_dtype.ts';
import { OfflineEngine } from '../src/engine/offline.ts';
import { emptyTimings, type StepTimings } from '../src/engine/step_profiler.ts';
import type { StepStats } from '../src/engine/step_stats.ts';
import { randomCheckpoint } from '../tools/checkpoint/random_weights.ts';
import { writeCheckpoint } from '../tools/checkpoint/safetensors_writer.ts';
import { benchCacheRoot } from './cache_dir.ts';
import { BENCH_MODELS } from './models.ts';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'bench-mini' },
    dir: { type: 'string' },
    'prompts-from': { type: 'string' },
    k: { type: 'string', default: '1' },
    batches: { type: 'string', default: '1,4,16' },
    tokens: { type: 'string', default: '32' },
    reps: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    // Speculation's budget rule; default: off (speculation at every batch size).
    'disable-by-batch-size': { type: 'string' },
    // Explicit, so the figures do not move when the default KV dtype of a checkpoint changes.
    'kv-cache-dtype': { type: 'string', default: 'float32' },
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

function randomPrompts(b: number, len: number, vocab: number, seed: number): number[][] {
  return Array.from({ length: b }, (_, i) => Array.from({ length: len }, (_, j) => ((j * 7919 + (seed * 31 + i) * 104729) % (vocab - 2)) + 2));
}

/** b windows of len tokens starting at BOS (id 0) positions of a token stream, chosen by seed. */
function textPrompts(stream: Uint16Array, b: number, len: number, seed: number): number[][] {
  const starts: number[] = [];
  for (let i = 0; i + len <= stream.length; i++) if (stream[i] === 0) starts.push(i);
  if (starts.length === 0) throw new Error(`--prompts-from: no BOS (id 0) in the stream`);
  return Array.from({ length: b }, (_, i) => {
    const s = starts[(seed * 7 + i * 13) % starts.length]!;
    return Array.from(stream.subarray(s, s + len));
  });
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

const dir = args.dir ?? ensureMtpCheckpoint(args.model!);
const vocab = (JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as { vocab_size: number }).vocab_size;
const promptStream = args['prompts-from'] ? new Uint16Array(new Uint8Array(readFileSync(args['prompts-from'])).buffer) : null;
const prompts = (b: number, len: number, seed: number): number[][] =>
  promptStream ? textPrompts(promptStream, b, len, seed) : randomPrompts(b, len, vocab, seed);
const k = Number(args.k);
const N = Number(args.tokens);
const reps = Number(args.reps);
const batches = args.batches!.split(',').map(Number);
const kvCacheDtype = args['kv-cache-dtype'] as KVCacheDtype;
if (!KV_CACHE_DTYPES.includes(kvCacheDtype)) throw new Error(`--kv-cache-dtype: one of ${KV_CACHE_DTYPES.join(', ')}`);
const runner = { numThreads: Number(args.threads), kvCacheMemory: 2 ** 28, kvCacheDtype };
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
const source = promptStream ? `prompts from ${args['prompts-from']}` : 'random prompts';
console.log(
  `${args.dir ?? `${args.model} + MTP`}, k ${k}, ${rule}, ${N} tokens, ${reps} reps, threads ${args.threads}, --kv-cache-dtype ${kvCacheDtype}, ${source}; loadavg before: ${load0}`,
);
console.log('| batch | plain decode tok/s | spec decode tok/s | spec / plain | accepted / draft tokens | accepted per position / drafts |');
console.log('|---|---|---|---|---|---|');
/** Sums of the decode steps (no prefill token) of one engine at one batch size. */
interface DecodeSteps {
  steps: number;
  ms: number;
  graphRuns: number;
  graphRunMs: number;
  tokens: number;
  readonly split: Record<keyof StepTimings, number>;
}
const profiles: { b: number; mode: string; d: DecodeSteps }[] = [];
for (const b of batches) {
  const decode: Record<'plain' | 'spec', DecodeSteps> = {
    plain: { steps: 0, ms: 0, graphRuns: 0, graphRunMs: 0, tokens: 0, split: { ...emptyTimings() } },
    spec: { steps: 0, ms: 0, graphRuns: 0, graphRunMs: 0, tokens: 0, split: { ...emptyTimings() } },
  };
  const tps: Record<'plain' | 'spec', number[]> = { plain: [], spec: [] };
  let accepted = 0;
  let drafted = 0;
  let drafts = 0;
  const perPos: number[] = [];
  for (let r = 0; r <= reps; r++) {
    for (const mode of ['plain', 'spec'] as const) {
      const ps = prompts(b, 32, r * 100 + b);
      const one = await timeRun(engines[mode], ps, 1);
      const full = await timeRun(engines[mode], ps, N);
      if (r === 0) continue; // warm-up
      tps[mode].push((b * (N - 1)) / ((full.ms - one.ms) / 1000));
      for (const st of full.stats) {
        if (st.numPrefillTokens > 0 || st.numScheduledTokens === 0) continue;
        const d = decode[mode];
        d.steps++;
        d.ms += st.stepMs;
        d.graphRuns += st.numGraphRuns;
        d.graphRunMs += st.graphRunMs;
        d.tokens += st.numGeneratedTokens;
        for (const part of Object.keys(d.split) as (keyof StepTimings)[]) d.split[part] += st.timings[part];
      }
      for (const s of full.stats) {
        accepted += s.specDecode?.numAcceptedTokens ?? 0;
        drafted += s.specDecode?.numDraftTokens ?? 0;
        drafts += s.specDecode?.numDrafts ?? 0;
        s.specDecode?.acceptedPerPos.forEach((n, i) => (perPos[i] = (perPos[i] ?? 0) + n));
      }
    }
  }
  profiles.push({ b, mode: 'plain', d: decode.plain }, { b, mode: 'spec', d: decode.spec });
  const p = median(tps.plain);
  const s = median(tps.spec);
  console.log(
    `| ${b} | ${p.toFixed(1)} (${Math.min(...tps.plain).toFixed(1)}-${Math.max(...tps.plain).toFixed(1)}) | ${s.toFixed(1)} (${Math.min(...tps.spec).toFixed(1)}-${Math.max(...tps.spec).toFixed(1)}) | ${(s / p).toFixed(2)} | ${accepted} / ${drafted} | ${perPos.map((n) => (n / Math.max(1, drafts)).toFixed(3)).join(', ')} (${drafts}) |`,
  );
}
console.log('\nMean decode step (steps without prefill tokens; ms per step):');
console.log(`| batch | engine | steps | step ms | graph runs | in graph runs ms | JS ms | tokens / step | ${Object.keys(emptyTimings()).join(' | ')} |`);
console.log(
  `|---|---|---|---|---|---|---|---|${Object.keys(emptyTimings())
    .map(() => '---|')
    .join('')}`,
);
for (const { b, mode, d } of profiles) {
  const per = (x: number): string => (x / Math.max(1, d.steps)).toFixed(2);
  const parts = (Object.keys(d.split) as (keyof StepTimings)[]).map((p) => per(d.split[p])).join(' | ');
  const js = per(d.ms - d.graphRunMs);
  console.log(`| ${b} | ${mode} | ${d.steps} | ${per(d.ms)} | ${per(d.graphRuns)} | ${per(d.graphRunMs)} | ${js} | ${per(d.tokens)} | ${parts} |`);
}
console.log(`loadavg after: ${(await import('node:fs')).readFileSync('/proc/loadavg', 'utf8').trim()}`);
await engines.plain.dispose();
await engines.spec.dispose();
