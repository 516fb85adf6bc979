// `npm run bench [-- --quick]`: ours vs llama.cpp (same random weights, converted to GGUF) vs the machine's
// measured limits, in one run. Writes bench/results/<stamp>[-quick].json, latest[-quick].md and PNG plots.
// One file per measurement family:
//   probe.ts          read bandwidth + GEMM peak (the machine limits)
//   single_stream.ts  prefill tok/s and batch-1 decode tok/s vs context (ours DSA / dense, llama.cpp deepseek32 / deepseek2)
//   serving.ts        our HTTP server under a closed-loop streaming load (TTFT, ITL), start-up time
//   peer_serving.ts   llama.cpp under the same load through node-llama-cpp's batched sequences
//   kv_memory.ts      KV bytes per token and sequences per cache budget
//   throughput.ts     (full run) offline engine loop at 16 concurrent: the per-step time split
//   targets.ts        the issue's targets as ratios;  report.ts  Markdown + plots (plot/: PNG encoder, charts)
// Options: --quick (bench-mini only, < 3 min), --smoke (every part at tiny sizes, a functional check; bench/results/tmp/), --skip-peer, --peer-kv f32|f16, --peer-flash-attention,
//          --no-base (full run without the ~3 GB bench-base).
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { checkpointBytes, ensureBenchCheckpoint, ensureBenchGguf } from './checkpoints.ts';
import { kvShape, maxSequences, mhaKvBytesPerToken, oursKvBytesPerToken } from './kv_memory.ts';
import { BENCH_MODELS } from './models.ts';
import { disposePeerRuntime, installPeer, peerRuntime, peerUnavailableReason, peerVersions } from './peer_llama.ts';
import { peerServing } from './peer_serving.ts';
import { probeMachine } from './probe.ts';
import { markdown, writePlots, type BenchReport, type KvRow } from './report.ts';
import { oursServing, type LoadSpec, type ServingLevelResult } from './serving.ts';
import { oursSingleStream, peerSingleStream, type SingleStreamResult, type SingleStreamSpec } from './single_stream.ts';
import { evaluateTargets, ratio, type TargetSpec } from './targets.ts';
import { benchThroughput, type ThroughputResult } from './throughput.ts';

const RESULTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');
const THREADS = 2;
const KV_BUDGET = { bytes: 2 ** 30, tokensPerSequence: 4096 };

// Controls: peer-deepseek32-1t = llama.cpp on 1 thread (on this VM its 2-thread decode was slower than on 1
// thread); peer-deepseek32-fa16 = llama.cpp with flash attention and an F16 KV cache (faster at long context,
// but its log-probs differ from F32 by ~1e-2, so it is not the like-for-like default).
type Variant = 'ours-dsa' | 'ours-dense' | 'peer-deepseek32' | 'peer-deepseek2' | 'peer-deepseek32-1t' | 'peer-deepseek32-fa16';
const PEER_1T = 'llama.cpp deepseek32, 1 thread';
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

const ALL: readonly Variant[] = ['ours-dsa', 'ours-dense', 'peer-deepseek32', 'peer-deepseek2'];
const OURS_VS_PEER: readonly Variant[] = ['ours-dsa', 'peer-deepseek32'];
/** The control run on bench-mini: llama.cpp deepseek32 on 1 thread, batch-1 decode at 0 / 512 and prefill 512. */
const CONTROL = { model: 'bench-mini', variants: ['peer-deepseek32-1t'] as readonly Variant[], contexts: [0, 512], prefillLengths: [512] };
const load = (c: number, n: number): LoadSpec => ({ concurrency: c, numRequests: n, promptTokens: 256, outputTokens: 128 });
const ss = { threads: THREADS };

const QUICK: Plan = {
  singleStream: [
    { ...ss, model: 'bench-mini', variants: ALL, contexts: [0, 512, 4096], prefillLengths: [512, 4096], decodeSteps: 24, decodeWarmup: 4, prefillReps: 2 },
    { ...ss, ...CONTROL, decodeSteps: 24, decodeWarmup: 4, prefillReps: 2 },
  ],
  longContextModel: 'bench-mini',
  servingModel: 'bench-mini',
  serving: [1, 4, 16].map((c) => load(c, Math.max(4, c))),
  profile: false,
};

/** --smoke: a functional check of every part in seconds (tiny settings; results go to bench/results/tmp/). */
const SMOKE: Plan = {
  singleStream: [{ ...ss, model: 'bench-mini', variants: ALL, contexts: [0, 48], prefillLengths: [16, 48], longPrefill: 32, decodeSteps: 2, decodeWarmup: 1, prefillReps: 1 }],
  longContextModel: 'bench-mini',
  servingModel: 'bench-mini',
  serving: [1, 2].map((c) => ({ concurrency: c, numRequests: 2, promptTokens: 16, outputTokens: 4 })),
  profile: false,
};

function fullPlan(withBase: boolean): Plan {
  return {
    singleStream: [
      { ...ss, model: 'bench-mini', variants: OURS_VS_PEER, contexts: [0, 512], prefillLengths: [512], decodeSteps: 64, decodeWarmup: 8, prefillReps: 3 },
      { ...ss, ...CONTROL, decodeSteps: 64, decodeWarmup: 8, prefillReps: 3 },
      { ...ss, model: 'bench-mini-dsa', variants: ALL, contexts: [0, 512, 4096, 16384], prefillLengths: [512, 4096], decodeSteps: 48, decodeWarmup: 8, prefillReps: 3 },
      { ...ss, model: 'bench-mini-dsa', variants: ['peer-deepseek32-fa16'], contexts: [0, 4096], prefillLengths: [512, 4096], decodeSteps: 48, decodeWarmup: 8, prefillReps: 3 },
      ...(withBase ? [{ ...ss, model: 'bench-base', variants: OURS_VS_PEER, contexts: [0, 512], prefillLengths: [512], decodeSteps: 16, decodeWarmup: 4, prefillReps: 2 }] : []),
    ],
    longContextModel: 'bench-mini-dsa',
    servingModel: 'bench-mini',
    serving: [1, 4, 16, 64].map((c) => load(c, Math.max(8, 2 * c))),
    profile: true,
  };
}

const maxOf = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : Math.max(a, b));

const SERVER_FLAGS = ['--threads', String(THREADS), '--max-num-seqs', '64', '--no-enable-prefix-caching', '--log-level', 'warn', '--kv-cache-memory', '1GiB'];

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      smoke: { type: 'boolean', default: false },
      'skip-peer': { type: 'boolean', default: false },
      'peer-kv': { type: 'string', default: 'f32' },
      'peer-flash-attention': { type: 'boolean', default: false },
      'no-base': { type: 'boolean', default: false },
    },
  });
  const smoke = values.smoke;
  const quick = values.quick || smoke;
  const plan = smoke ? SMOKE : quick ? QUICK : fullPlan(!values['no-base']);
  const peerKv = values['peer-kv'].toUpperCase() === 'F16' ? 'F16' : 'F32';
  const peerFa = values['peer-flash-attention'];
  const t0 = performance.now();
  const loadAverageAtStart = os.loadavg()[0];
  const log = (s: string): void => void process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${s}\n`);
  const errors: { part: string; message: string }[] = [];
  const attempt = async <T>(part: string, fn: () => Promise<T>): Promise<T | null> => {
    try {
      return await fn();
    } catch (err) {
      const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
      errors.push({ part, message });
      log(`FAILED ${part}: ${err instanceof Error ? err.stack : message}`);
      return null;
    }
  };

  log(`${quick ? 'quick' : 'full'} run: probing the machine (1-minute load average ${loadAverageAtStart.toFixed(2)})`);
  if (loadAverageAtStart > 0.7) log('WARNING: the machine is busy; llama.cpp in particular slows down badly when its threads are preempted');
  const limits = await probeMachine(THREADS);
  log(`  read ${limits.readBandwidthGBs.toFixed(1)} GB/s, GEMM ${limits.gemmGflops.toFixed(0)} GFLOP/s`);

  // the peer: installed on demand (bench/peer/install.sh, offline from its lockfile), skipped with the reason otherwise
  let peerReason: string | null = values['skip-peer'] ? 'skipped by --skip-peer' : peerUnavailableReason();
  if (peerReason !== null && !values['skip-peer']) {
    log(`peer not installed (${peerReason}); running bench/peer/install.sh`);
    const res = installPeer({ quiet: true });
    peerReason = res.ok ? null : res.reason;
  }
  let runtimeInitMs: number | null = null;
  if (peerReason === null) {
    const r0 = performance.now();
    const ok = await attempt('llama.cpp runtime', () => peerRuntime(THREADS));
    if (ok) runtimeInitMs = performance.now() - r0;
    else peerReason = 'node-llama-cpp failed to start (see errors)';
  }
  if (peerReason !== null) log(`llama.cpp part SKIPPED: ${peerReason}`);
  const peerOn = peerReason === null;

  // single-stream: prefill and decode vs context
  const singleStream: SingleStreamResult[] = [];
  for (const p of plan.singleStream) {
    const needBytes = checkpointBytes(p.model) * (1 + new Set(p.variants.filter((v) => v.startsWith('peer')).map((v) => v.includes('deepseek2'))).size);
    const dir = await attempt(`${p.model} checkpoint`, async () => ensureBenchCheckpoint(p.model, { needBytes, log }));
    if (!dir) continue;
    const vocab = BENCH_MODELS[p.model].vocab_size as number;
    for (const v of p.variants) {
      log(`${p.model}: ${v}`);
      let res: SingleStreamResult | null = null;
      if (v === 'ours-dsa' || v === 'ours-dense') {
        res = await attempt(`${p.model} ${v}`, () => oursSingleStream(dir, p.model, v === 'ours-dsa' ? 'dsa' : 'dense', p, log));
      } else if (peerOn) {
        const arch = v === 'peer-deepseek2' ? 'deepseek2' : 'deepseek32';
        res = await attempt(`${p.model} ${v}`, async () => {
          const g = ensureBenchGguf(dir, arch);
          if (g.converted) log(`  converted ${path.basename(g.path)}`);
          const control = v.endsWith('-1t') ? { threads: 1, labelSuffix: ', 1 thread' }
            : v.endsWith('-fa16') ? { kvCacheType: 'F16' as const, flashAttention: true, labelSuffix: ', flash attn + F16 cache' } : {};
          return peerSingleStream(g.path, vocab, p.model, arch, p, log, { kvCacheType: peerKv, flashAttention: peerFa, threads: THREADS, ...control });
        });
      }
      if (res) singleStream.push(res);
    }
  }

  // serving: our HTTP server, then llama.cpp's batched API, same load
  log(`serving load on ${plan.servingModel}: concurrency ${plan.serving.map((s) => s.concurrency).join(', ')}`);
  const servingDir = ensureBenchCheckpoint(plan.servingModel);
  const servingVocab = BENCH_MODELS[plan.servingModel].vocab_size as number;
  const ours = await attempt('serving, ours', () => oursServing(servingDir, { levels: plan.serving, vocab: servingVocab, serverFlags: SERVER_FLAGS, log }));
  let peerLevels: ServingLevelResult[] | null = null;
  if (peerOn) {
    const r = await attempt('serving, llama.cpp', () => peerServing(ensureBenchGguf(servingDir, 'deepseek32').path, { levels: plan.serving, vocab: servingVocab, threads: THREADS, kvCacheType: peerKv, flashAttention: peerFa, log }));
    peerLevels = r?.levels ?? null;
  }
  if (peerOn) await disposePeerRuntime();

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
    const shape = kvShape(BENCH_MODELS[model]);
    const row = (cache: string, bytes: number | null, source: string, blockSize = 1): KvRow => ({
      model, cache, bytesPerToken: bytes, source, maxSequences: bytes ? maxSequences(KV_BUDGET.bytes, bytes, KV_BUDGET.tokensPerSequence, blockSize) : null,
    });
    kvRows.push(row('ours, DSA (latent + indexer key)', oursKvBytesPerToken(shape, true), 'PagedKVStorage.bytesPerToken', 64));
    kvRows.push(row('ours, DSA, --kv-cache-dtype bfloat16', oursKvBytesPerToken(shape, true, 'bfloat16'), 'PagedKVStorage.bytesPerToken', 64));
    kvRows.push(row('ours, DSA, --kv-cache-dtype fp8 (V3.2 layout)', oursKvBytesPerToken(shape, true, 'fp8'), 'PagedKVStorage.bytesPerToken', 64));
    kvRows.push(row('ours, --dense-attention (latent only)', oursKvBytesPerToken(shape, false), 'PagedKVStorage.bytesPerToken', 64));
    for (const r of singleStream.filter((x) => x.model === model && x.engine === 'llama.cpp' && !x.label.includes('1 thread'))) {
      kvRows.push(row(r.label.includes('F16') ? r.label : `${r.label}, ${peerKv} cache`, r.kvBytesPerToken, "llama.cpp's llama_kv_cache log lines"));
    }
    kvRows.push(row('MHA cache of the same model (K nope+rope, V)', mhaKvBytesPerToken(shape), 'layers x heads x (nope+rope+v) x 4'));
  }

  // targets
  const dec = (model: string, label: string, c: number): number | null => find(model, label)?.decode.find((d) => d.context === c)?.tokensPerSecond ?? null;
  const pre = (model: string, label: string, n: number): number | null => find(model, label)?.prefill.find((p) => p.tokens === n)?.tokensPerSecond ?? null;
  const long = plan.longContextModel;
  const maxCtx = Math.max(...(plan.singleStream.find((p) => p.model === long)?.contexts ?? [0]));
  const tput = (list: readonly ServingLevelResult[] | null | undefined, c: number): number | null => list?.find((l) => l.concurrency === c)?.outputTokensPerSecond ?? null;
  const detail = (a: number | null, b: number | null, an: string, bn: string, unit: string): string => `${an} ${a?.toFixed(1) ?? '-'} / ${bn} ${b?.toFixed(1) ?? '-'} ${unit}`;
  const ourKv = kvRows.find((k) => k.model === long && k.cache.startsWith('ours, DSA'))?.bytesPerToken ?? null;
  const peerKvBytes = find(long, 'llama.cpp deepseek32')?.kvBytesPerToken ?? null;
  const specs: TargetSpec[] = [
    { id: 'decode', name: 'batch-1 decode, bench-mini: ours / llama.cpp', value: ratio(dec('bench-mini', 'ours DSA', 0), dec('bench-mini', 'llama.cpp deepseek32', 0)), direction: '>=', target: 1.0, detail: detail(dec('bench-mini', 'ours DSA', 0), dec('bench-mini', 'llama.cpp deepseek32', 0), 'ours', 'llama.cpp', 'tok/s at context 0') },
    { id: 'decode-strongest', name: 'batch-1 decode, bench-mini: ours / llama.cpp at its faster thread count (1 or 2)', value: ratio(dec('bench-mini', 'ours DSA', 0), maxOf(dec('bench-mini', 'llama.cpp deepseek32', 0), dec('bench-mini', PEER_1T, 0))), direction: '>=', target: 1.0, detail: detail(dec('bench-mini', 'ours DSA', 0), maxOf(dec('bench-mini', 'llama.cpp deepseek32', 0), dec('bench-mini', PEER_1T, 0)), 'ours', 'llama.cpp', 'tok/s at context 0') },
    { id: 'prefill', name: 'prefill 512, bench-mini: ours / llama.cpp', value: ratio(pre('bench-mini', 'ours DSA', 512), pre('bench-mini', 'llama.cpp deepseek32', 512)), direction: '>=', target: 0.8, detail: detail(pre('bench-mini', 'ours DSA', 512), pre('bench-mini', 'llama.cpp deepseek32', 512), 'ours', 'llama.cpp', 'tok/s') },
    { id: 'prefill-strongest', name: 'prefill 512, bench-mini: ours / llama.cpp at its faster thread count', value: ratio(pre('bench-mini', 'ours DSA', 512), maxOf(pre('bench-mini', 'llama.cpp deepseek32', 512), pre('bench-mini', PEER_1T, 512))), direction: '>=', target: 0.8, detail: detail(pre('bench-mini', 'ours DSA', 512), maxOf(pre('bench-mini', 'llama.cpp deepseek32', 512), pre('bench-mini', PEER_1T, 512)), 'ours', 'llama.cpp', 'tok/s') },
    { id: 'serving16', name: 'output tok/s at 16 concurrent: ours / llama.cpp', value: ratio(tput(ours?.levels, 16), tput(peerLevels, 16)), direction: '>=', target: 1.5, detail: detail(tput(ours?.levels, 16), tput(peerLevels, 16), 'ours', 'llama.cpp', 'tok/s') },
    { id: 'dsa-flat', name: `DSA decode at ${maxCtx} / at 512 (${long})`, value: ratio(dec(long, 'ours DSA', maxCtx), dec(long, 'ours DSA', 512)), direction: '>=', target: 0.8, detail: detail(dec(long, 'ours DSA', maxCtx), dec(long, 'ours DSA', 512), `${maxCtx}:`, '512:', 'tok/s') },
    { id: 'dsa-vs-dense', name: `decode at ${maxCtx}: DSA / dense (${long})`, value: ratio(dec(long, 'ours DSA', maxCtx), dec(long, 'ours dense', maxCtx)), direction: '>=', target: 2.0, detail: detail(dec(long, 'ours DSA', maxCtx), dec(long, 'ours dense', maxCtx), 'DSA', 'dense', 'tok/s') },
    { id: 'kv', name: `KV bytes per token: ours / llama.cpp (${long}, F32)`, value: peerKv === 'F32' ? ratio(ourKv, peerKvBytes) : null, direction: '<=', target: 1.0, detail: detail(ourKv, peerKvBytes, 'ours', 'llama.cpp', 'B') },
  ];

  const report: BenchReport = {
    date: new Date().toISOString(),
    mode: smoke ? 'smoke' : quick ? 'quick' : 'full',
    seconds: (performance.now() - t0) / 1000,
    machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, loadAverageAtStart },
    limits,
    threads: THREADS,
    peer: { available: peerOn, reason: peerReason, versions: peerOn ? peerVersions() : null, kvCacheType: peerKv, flashAttention: peerFa, runtimeInitMs },
    singleStream,
    serving: ours || peerLevels ? { model: plan.servingModel, ours: ours?.levels ?? [], peer: peerLevels, ourServer: ours ? { command: ours.command, flags: ours.flags } : null } : null,
    kv: { budget: KV_BUDGET, rows: kvRows },
    startup: {
      model: 'bench-mini',
      oursSpawnToHealthMs: plan.servingModel === 'bench-mini' ? ours?.startupMs ?? null : null,
      oursExecutorLoadMs: find('bench-mini', 'ours DSA')?.loadMs ?? null,
      peerLoadMs: find('bench-mini', 'llama.cpp deepseek32')?.loadMs ?? null,
      peerRuntimeInitMs: runtimeInitMs,
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
  log(`done in ${((performance.now() - t0) / 1000).toFixed(0)} s: ${path.relative(process.cwd(), path.join(outDir, `${prefix}.md`))}, ${path.relative(process.cwd(), jsonPath)}, ${plots.length} plots`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
