// `npm run bench [-- --quick]`: our engine alone (DSA vs dense attention, long context, serving, KV memory,
// the step profile) vs the machine's measured limits, in one run. Writes bench/results/<stamp>[-quick].json,
// latest[-quick].md and PNG plots (all git-ignored). The comparison with llama.cpp is `npm run bench:peer`
// (bench/compare/: llama.cpp's own llama-bench and llama-server, built by bench/peer/build_llama.ts); the
// in-process node-llama-cpp peer this file used to drive is kept only for the logit cross-check
// (bench/peer_check.ts). One file per measurement family:
//   probe.ts          read bandwidth + compute ceiling (bench/machine/: medians, checked against the FMA peak)
//   single_stream.ts  prefill tok/s and batch-1 decode tok/s vs context (ours DSA / dense)
//   serving.ts        our HTTP server under a closed-loop streaming load (TTFT, ITL), start-up time
//   kv_memory.ts      KV bytes per token and sequences per cache budget
//   throughput.ts     (full run) offline engine loop at 16 concurrent: the per-step time split
//   targets.ts        the issue's targets as ratios;  report.ts  Markdown + plots (plot/: PNG encoder, charts)
// Options: --quick (bench-mini only, < 3 min), --smoke (every part at tiny sizes, a functional check; bench/results/tmp/),
//          --no-base (full run without the ~3 GB bench-base).
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { checkpointBytes, ensureBenchCheckpoint } from './checkpoints.ts';
import { kvShape, maxSequences, mhaKvBytesPerToken, oursKvBytesPerToken } from './kv_memory.ts';
import { benchModel } from './models.ts';
import { probeMachine } from './probe.ts';
import { markdown, writePlots, type BenchReport, type KvRow } from './report.ts';
import { oursServing, type LoadSpec } from './serving.ts';
import { oursSingleStream, type SingleStreamResult, type SingleStreamSpec } from './single_stream.ts';
import { evaluateTargets, ratio, type TargetSpec } from './targets.ts';
import { benchThroughput, type ThroughputResult } from './throughput.ts';
import { loadAverage1 } from './machine/load.ts';

const RESULTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');
const THREADS = 2;
const KV_BUDGET = { bytes: 2 ** 30, tokensPerSequence: 4096 };

type Variant = 'ours-dsa' | 'ours-dense';
interface SingleStreamPlan extends SingleStreamSpec {
  readonly model: string;
  readonly variants: readonly Variant[];
}
interface Plan {
  readonly singleStream: readonly SingleStreamPlan[];
  /** Model whose decode-vs-context curve carries the long-context targets. */
  readonly longContextModel: string;
  readonly servingModel: string;
  readonly serving: readonly LoadSpec[];
  readonly profile: boolean;
}

const ALL: readonly Variant[] = ['ours-dsa', 'ours-dense'];
const DSA: readonly Variant[] = ['ours-dsa'];
const load = (c: number, n: number): LoadSpec => ({ concurrency: c, numRequests: n, promptTokens: 256, outputTokens: 128 });
const ss = { threads: THREADS };

const QUICK: Plan = {
  singleStream: [
    { ...ss, model: 'bench-mini', variants: ALL, contexts: [0, 512, 4096], prefillLengths: [512, 4096], decodeSteps: 24, decodeWarmup: 4, prefillReps: 2 },
  ],
  longContextModel: 'bench-mini',
  servingModel: 'bench-mini',
  serving: [1, 4, 16].map((c) => load(c, Math.max(4, c))),
  profile: false,
};

/** --smoke: a functional check of every part in seconds (tiny settings; results go to bench/results/tmp/). */
const SMOKE: Plan = {
  singleStream: [
    {
      ...ss,
      model: 'bench-mini',
      variants: ALL,
      contexts: [0, 48],
      prefillLengths: [16, 48],
      longPrefill: 32,
      decodeSteps: 2,
      decodeWarmup: 1,
      prefillReps: 1,
    },
  ],
  longContextModel: 'bench-mini',
  servingModel: 'bench-mini',
  serving: [1, 2].map((c) => ({ concurrency: c, numRequests: 2, promptTokens: 16, outputTokens: 4 })),
  profile: false,
};

function fullPlan(withBase: boolean): Plan {
  return {
    singleStream: [
      { ...ss, model: 'bench-mini', variants: DSA, contexts: [0, 512], prefillLengths: [512], decodeSteps: 64, decodeWarmup: 8, prefillReps: 3 },
      {
        ...ss,
        model: 'bench-mini-dsa',
        variants: ALL,
        contexts: [0, 512, 4096, 16384],
        prefillLengths: [512, 4096],
        decodeSteps: 48,
        decodeWarmup: 8,
        prefillReps: 3,
      },
      ...(withBase
        ? [{ ...ss, model: 'bench-base', variants: DSA, contexts: [0, 512], prefillLengths: [512], decodeSteps: 16, decodeWarmup: 4, prefillReps: 2 }]
        : []),
    ],
    longContextModel: 'bench-mini-dsa',
    servingModel: 'bench-mini',
    serving: [1, 4, 16, 64].map((c) => load(c, Math.max(8, 2 * c))),
    profile: true,
  };
}

const SERVER_FLAGS = ['--threads', String(THREADS), '--max-num-seqs', '64', '--no-enable-prefix-caching', '--log-level', 'warn', '--kv-cache-memory', '1GiB'];

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      smoke: { type: 'boolean', default: false },
      'no-base': { type: 'boolean', default: false },
    },
  });
  const smoke = values.smoke;
  const quick = values.quick || smoke;
  const plan = smoke ? SMOKE : quick ? QUICK : fullPlan(!values['no-base']);
  const t0 = performance.now();
  const loadAverageAtStart = loadAverage1();
  const log = (s: string): void => void process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${s}\n`);
  const errors: { part: string; message: string }[] = [];
  const attempt = async <T>(part: string, fn: () => Promise<T>): Promise<T | null> => {
    try {
      return await fn();
    } catch (err) {
      const message = err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err);
      errors.push({ part, message });
      log(`FAILED ${part}: ${err instanceof Error ? err.stack : message}`);
      return null;
    }
  };

  log(`${quick ? 'quick' : 'full'} run: probing the machine (1-minute load average ${loadAverageAtStart.toFixed(2)})`);
  if (loadAverageAtStart > 0.5) log('WARNING: the machine is busy: every figure of this run is a loaded one');
  const limits = await probeMachine(THREADS);
  log(`  read ${limits.readBandwidthGBs.toFixed(1)} GB/s, compute ceiling ${limits.gemmGflops.toFixed(0)} GFLOP/s (${limits.ceilings.computeCeilingSource})`);

  // single-stream: prefill and decode vs context
  const singleStream: SingleStreamResult[] = [];
  for (const p of plan.singleStream) {
    const dir = await attempt(`${p.model} checkpoint`, async () => ensureBenchCheckpoint(p.model, { needBytes: checkpointBytes(p.model), log }));
    if (!dir) continue;
    for (const v of p.variants) {
      log(`${p.model}: ${v}`);
      const res = await attempt(`${p.model} ${v}`, () => oursSingleStream(dir, p.model, v === 'ours-dsa' ? 'dsa' : 'dense', p, log));
      if (res) singleStream.push(res);
    }
  }

  // serving: our HTTP server (llama-server under the same load: npm run bench:peer)
  log(`serving load on ${plan.servingModel}: concurrency ${plan.serving.map((s) => s.concurrency).join(', ')}`);
  const servingDir = ensureBenchCheckpoint(plan.servingModel);
  const servingVocab = benchModel(plan.servingModel).vocab_size as number;
  const ours = await attempt('serving, ours', () => oursServing(servingDir, { levels: plan.serving, vocab: servingVocab, serverFlags: SERVER_FLAGS, log }));

  // profile (full run): the offline engine loop's per-step split at 16 concurrent
  let profile: ThroughputResult | null = null;
  if (plan.profile) {
    log('profile: offline engine loop at 16 concurrent');
    profile = await attempt('profile', () =>
      benchThroughput(servingDir, { numThreads: THREADS, kvCacheMemory: 2 ** 30 }, { concurrency: 16, numRequests: 32, promptTokens: 256, outputTokens: 128 }),
    );
  }

  // KV memory
  const find = (model: string, label: string): SingleStreamResult | undefined => singleStream.find((s) => s.model === model && s.label === label);
  const kvRows: KvRow[] = [];
  for (const model of [...new Set(plan.singleStream.map((p) => p.model))]) {
    const shape = kvShape(benchModel(model));
    const row = (cache: string, bytes: number | null, source: string, blockSize = 1): KvRow => ({
      model,
      cache,
      bytesPerToken: bytes,
      source,
      maxSequences: bytes ? maxSequences(KV_BUDGET.bytes, bytes, KV_BUDGET.tokensPerSequence, blockSize) : null,
    });
    kvRows.push(row('ours, DSA (latent + indexer key)', oursKvBytesPerToken(shape, true), 'PagedKVStorage.bytesPerToken', 64));
    kvRows.push(row('ours, DSA, --kv-cache-dtype bfloat16', oursKvBytesPerToken(shape, true, 'bfloat16'), 'PagedKVStorage.bytesPerToken', 64));
    kvRows.push(row('ours, DSA, --kv-cache-dtype fp8 (V3.2 layout)', oursKvBytesPerToken(shape, true, 'fp8'), 'PagedKVStorage.bytesPerToken', 64));
    kvRows.push(row('ours, --dense-attention (latent only)', oursKvBytesPerToken(shape, false), 'PagedKVStorage.bytesPerToken', 64));
    kvRows.push(row('MHA cache of the same model (K nope+rope, V)', mhaKvBytesPerToken(shape), 'layers x heads x (nope+rope+v) x 4'));
  }

  // targets
  const dec = (model: string, label: string, c: number): number | null => find(model, label)?.decode.find((d) => d.context === c)?.tokensPerSecond ?? null;
  const long = plan.longContextModel;
  const maxCtx = Math.max(...(plan.singleStream.find((p) => p.model === long)?.contexts ?? [0]));
  const detail = (a: number | null, b: number | null, an: string, bn: string, unit: string): string =>
    `${an} ${a?.toFixed(1) ?? '-'} / ${bn} ${b?.toFixed(1) ?? '-'} ${unit}`;
  const specs: TargetSpec[] = [
    {
      id: 'dsa-flat',
      name: `DSA decode at ${maxCtx} / at 512 (${long})`,
      value: ratio(dec(long, 'ours DSA', maxCtx), dec(long, 'ours DSA', 512)),
      direction: '>=',
      target: 0.8,
      detail: detail(dec(long, 'ours DSA', maxCtx), dec(long, 'ours DSA', 512), `${maxCtx}:`, '512:', 'tok/s'),
    },
    {
      id: 'dsa-vs-dense',
      name: `decode at ${maxCtx}: DSA / dense (${long})`,
      value: ratio(dec(long, 'ours DSA', maxCtx), dec(long, 'ours dense', maxCtx)),
      direction: '>=',
      target: 2.0,
      detail: detail(dec(long, 'ours DSA', maxCtx), dec(long, 'ours dense', maxCtx), 'DSA', 'dense', 'tok/s'),
    },
  ];

  const report: BenchReport = {
    date: new Date().toISOString(),
    mode: smoke ? 'smoke' : quick ? 'quick' : 'full',
    seconds: (performance.now() - t0) / 1000,
    machine: {
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      loadAverageAtStart,
    },
    limits,
    threads: THREADS,
    singleStream,
    serving: ours ? { model: plan.servingModel, ours: ours.levels, ourServer: { command: ours.command, flags: ours.flags } } : null,
    kv: { budget: KV_BUDGET, rows: kvRows },
    startup: {
      model: 'bench-mini',
      oursSpawnToHealthMs: plan.servingModel === 'bench-mini' ? (ours?.startupMs ?? null) : null,
      oursExecutorLoadMs: find('bench-mini', 'ours DSA')?.loadMs ?? null,
    },
    profile,
    targets: evaluateTargets(specs),
    errors,
    plots: [],
  };
  const outDir = smoke ? path.join(RESULTS, 'tmp') : RESULTS;
  mkdirSync(outDir, { recursive: true });
  const stamp = report.date.replace(/[:.]/g, '-');
  const suffix = smoke ? '-smoke' : quick ? '-quick' : '';
  const prefix = `latest${suffix}`;
  const plots = writePlots(report, outDir, prefix);
  const final: BenchReport = { ...report, plots: plots.map((p) => path.relative(path.join(RESULTS, '..', '..'), p)) };
  const jsonPath = path.join(outDir, `${stamp}${suffix}.json`);
  writeFileSync(jsonPath, `${JSON.stringify(final, null, 2)}\n`);
  const md = markdown(final);
  writeFileSync(path.join(outDir, `${prefix}.md`), md);
  process.stdout.write(md);
  log(
    `done in ${((performance.now() - t0) / 1000).toFixed(0)} s: ${path.relative(process.cwd(), path.join(outDir, `${prefix}.md`))}, ${path.relative(process.cwd(), jsonPath)}, ${plots.length} plots`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
