// `npm run bench:peer [-- --quick] [--model bench-mini]`: our engine vs llama.cpp's own binaries (llama-bench,
// llama-server; built once by bench/peer/build_llama.ts) on the same random F32 weights, in one run with its
// machine limits and load record. Writes bench/results/latest-<model>.{md,json} (the README quotes the .md)
// and a timestamped copy under bench/results/runs/ (git-ignored).
//   --quick                 pp512 / tg32 at depth 0; serving at 1 and 16 concurrent with 64/32-token requests
//   --rounds N              interleaved rounds (>= 5)      --reps N    repetitions per round (llama-bench -r)
//   --pp N --tg N --depth D[,D]                           --peer-threads 1,2   --threads T (ours and the probes)
//   --concurrency 1,16 --prompt-tokens N --output-tokens N --min-requests N (>= 100)
//   --peer-configs default,f32   which llama.cpp configurations run (PEER_CONFIGS ids; default: all)
//   --kv-cache-dtype DTYPE  ours only (engine and server): float32, bfloat16 or fp8; default: ours's default
//   --skip-single-stream --skip-serving
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureBenchCheckpoint, ensureBenchGguf } from '../checkpoints.ts';
import { measureCeilings } from '../machine/ceilings.ts';
import { LoadMonitor, loadAverage1, loadVerdict } from '../machine/load.ts';
import { BENCH_MODELS, benchModel } from '../models.ts';
import { findLlamaBuild } from '../peer/llama_cpp.ts';
import { startOurServer } from '../our_server.ts';
import { issue16Targets } from './issue_targets.ts';
import { judgeTargets } from './judge.ts';
import { PEER_CONFIGS, type PeerConfig } from './llama_bench.ts';
import { startLlamaServer, type RunningServer } from './llama_server.ts';
import { comparisonMarkdown, type ComparisonReport } from './report.ts';
import { MIN_ROUNDS } from './schedule.ts';
import { compareServing, nonUtf8ByteTokenIds, type ServingPlan } from './serving.ts';
import { compareSingleStream, type SingleStreamComparison, type SingleStreamPlan } from './single_stream.ts';
import { KV_CACHE_DTYPES, type KVCacheDtype } from '../../src/kvcache/kv_dtype.ts';

const RESULTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'results');
const MIN_REQUESTS = 100;

function ints(s: string, flag: string, min: number): number[] {
  const out = s.split(',').map((x) => Number(x.trim()));
  if (out.some((n) => !Number.isInteger(n) || n < min)) throw new Error(`${flag}: integers >= ${min} expected, got "${s}"`);
  return out;
}

function int(s: string, flag: string, min: number): number {
  const [n, ...more] = ints(s, flag, min);
  if (n === undefined || more.length > 0) throw new Error(`${flag}: one integer >= ${min} expected, got "${s}"`);
  return n;
}

function plans(argv: string[]): {
  model: string;
  mode: ComparisonReport['mode'];
  threads: number;
  configs: readonly PeerConfig[];
  /** Flags our server gets beyond the fixed ones (--kv-cache-dtype). */
  oursFlags: readonly string[];
  single: SingleStreamPlan | null;
  serving: ServingPlan | null;
} {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      model: { type: 'string', default: 'bench-mini' },
      rounds: { type: 'string', default: String(MIN_ROUNDS) },
      reps: { type: 'string', default: '5' },
      pp: { type: 'string' },
      tg: { type: 'string' },
      depth: { type: 'string' },
      'peer-threads': { type: 'string', default: '1,2' },
      threads: { type: 'string', default: '2' },
      concurrency: { type: 'string' },
      'prompt-tokens': { type: 'string' },
      'output-tokens': { type: 'string' },
      'min-requests': { type: 'string', default: String(MIN_REQUESTS) },
      'skip-single-stream': { type: 'boolean', default: false },
      'skip-serving': { type: 'boolean', default: false },
      'peer-configs': { type: 'string' },
      'kv-cache-dtype': { type: 'string' },
    },
  });
  const kvCacheDtype = v['kv-cache-dtype'] as KVCacheDtype | undefined;
  if (kvCacheDtype !== undefined && !KV_CACHE_DTYPES.includes(kvCacheDtype)) throw new Error(`--kv-cache-dtype: one of ${KV_CACHE_DTYPES.join(', ')}`);
  if (!BENCH_MODELS[v.model]) throw new Error(`--model: unknown bench model "${v.model}" (have: ${Object.keys(BENCH_MODELS).join(', ')})`);
  const model = benchModel(v.model);
  const q = v.quick;
  const custom = [v.pp, v.tg, v.depth, v.concurrency, v['prompt-tokens'], v['output-tokens']].some((x) => x !== undefined);
  const rounds = int(v.rounds, '--rounds', MIN_ROUNDS);
  const reps = int(v.reps, '--reps', 1);
  const threads = int(v.threads, '--threads', 1);
  const minRequests = int(v['min-requests'], '--min-requests', MIN_REQUESTS);
  const configs =
    v['peer-configs'] === undefined
      ? PEER_CONFIGS
      : v['peer-configs'].split(',').map((id) => {
          const c = PEER_CONFIGS.find((x) => x.id === id.trim());
          if (!c) throw new Error(`--peer-configs: unknown "${id}" (have: ${PEER_CONFIGS.map((x) => x.id).join(', ')})`);
          return c;
        });
  const single: SingleStreamPlan = {
    prompt: int(v.pp ?? '512', '--pp', 0),
    gen: int(v.tg ?? (q ? '32' : '128'), '--tg', 0),
    depths: ints(v.depth ?? (q ? '0' : '0,4096'), '--depth', 0),
    reps,
    rounds,
    oursThreads: threads,
    ...(kvCacheDtype && { oursKvCacheDtype: kvCacheDtype }),
    peerThreads: ints(v['peer-threads'], '--peer-threads', 1),
    configs,
  };
  const serving: ServingPlan = {
    concurrency: ints(v.concurrency ?? (q ? '1,16' : '1,4,16'), '--concurrency', 1),
    promptTokens: int(v['prompt-tokens'] ?? (q ? '64' : '256'), '--prompt-tokens', 1),
    outputTokens: int(v['output-tokens'] ?? (q ? '32' : '128'), '--output-tokens', 2),
    minRequests,
    rounds,
    bannedTokenIds: nonUtf8ByteTokenIds(model.vocab_size as number, [model.bos_token_id as number, model.eos_token_id as number]),
  };
  return {
    model: v.model,
    mode: custom ? 'custom' : q ? 'quick' : 'full',
    threads,
    configs,
    oursFlags: kvCacheDtype ? ['--kv-cache-dtype', kvCacheDtype] : [],
    single: v['skip-single-stream'] ? null : single,
    serving: v['skip-serving'] ? null : serving,
  };
}

async function runServing(
  dir: string,
  gguf: string,
  llamaServer: string,
  threads: number,
  configs: readonly PeerConfig[],
  oursFlags: readonly string[],
  plan: ServingPlan,
  vocab: number,
  log: (s: string) => void,
): Promise<NonNullable<ComparisonReport['serving']>> {
  const slots = Math.max(...plan.concurrency);
  const ctxPerSlot = Math.ceil((plan.promptTokens + plan.outputTokens + 16) / 256) * 256;
  const started: { id: string; label: string; url: string; model: string; command: string; startupMs: number; stop(): Promise<void> }[] = [];
  try {
    const ours = await startOurServer(dir, [
      '--threads',
      String(threads),
      '--max-num-seqs',
      String(slots),
      '--no-enable-prefix-caching',
      '--log-level',
      'warn',
      '--kv-cache-memory',
      '1GiB',
      ...oursFlags,
    ]);
    started.push({
      id: 'ours',
      label: 'ours',
      url: ours.url,
      model: ours.servedModelName,
      command: `${ours.command} ${ours.flags.join(' ')}`,
      startupMs: ours.startupMs,
      stop: ours.stop,
    });
    for (const config of configs) {
      const s: RunningServer = await startLlamaServer({ binary: llamaServer, gguf, threads, slots, ctxPerSlot, config });
      started.push(s);
    }
    log(`  servers up: ${started.map((s) => `${s.id} (${(s.startupMs / 1000).toFixed(1)} s)`).join(', ')}`);
    const points = await compareServing(started, plan, vocab, log);
    return { plan, servers: started.map(({ id, label, command, startupMs }) => ({ id, label, command, startupMs })), points };
  } finally {
    for (const s of started) await s.stop();
  }
}

async function main(): Promise<void> {
  const monitor = await LoadMonitor.afterIdleCheck(); // first: others' CPU use before anything of ours runs
  const t0 = performance.now();
  const log = (s: string): void => void process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${s}\n`);
  const p = plans(process.argv.slice(2));
  const build = findLlamaBuild();
  if (!build.ok) throw new Error(build.reason);
  log(`${p.mode} run on ${p.model}; llama.cpp ${build.info.commit.slice(0, 12)} from ${build.dir}; load average ${loadAverage1().toFixed(2)}`);
  const dir = ensureBenchCheckpoint(p.model, { log });
  const gguf = ensureBenchGguf(dir, 'deepseek32').path;
  log('machine limits');
  const ceilings = await measureCeilings(p.threads, undefined, log);
  const errors: { part: string; message: string }[] = [];
  const attempt = async <T>(part: string, fn: () => Promise<T>): Promise<T | null> => {
    try {
      return await fn();
    } catch (err) {
      errors.push({ part, message: err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err) });
      log(`FAILED ${part}: ${err instanceof Error ? err.stack : String(err)}`);
      return null;
    }
  };
  let single: SingleStreamComparison | null = null;
  if (p.single) {
    const plan = p.single;
    log('single stream: ours vs llama-bench');
    single = await attempt('single stream', () => compareSingleStream(dir, gguf, build.tools['llama-bench'], plan, log));
  }
  let serving: ComparisonReport['serving'] = null;
  if (p.serving) {
    const plan = p.serving;
    log('serving: ours vs llama-server');
    serving = await attempt('serving', () =>
      runServing(dir, gguf, build.tools['llama-server'], p.threads, p.configs, p.oursFlags, plan, benchModel(p.model).vocab_size as number, log),
    );
  }
  const loadRecord = monitor.stop();
  const verdict = loadVerdict(loadRecord);
  const targets = judgeTargets(issue16Targets({ model: p.model, singleStream: single, serving, readBandwidthGBs: ceilings.readBandwidthGBs.median }), verdict);
  const report: ComparisonReport = {
    date: new Date().toISOString(),
    mode: p.mode,
    model: p.model,
    seconds: (performance.now() - t0) / 1000,
    node: process.version,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    llamaCpp: build.info,
    ceilings,
    load: { ...loadRecord, ...verdict },
    singleStream: single,
    serving,
    targets,
    errors,
  };
  mkdirSync(path.join(RESULTS, 'runs'), { recursive: true });
  const md = comparisonMarkdown(report);
  const json = `${JSON.stringify(report, null, 1)}\n`;
  const stamp = report.date.replace(/[:.]/g, '-');
  writeFileSync(path.join(RESULTS, 'runs', `${stamp}-${p.model}-${p.mode}.json`), json);
  writeFileSync(path.join(RESULTS, `latest-${p.model}.json`), json);
  writeFileSync(path.join(RESULTS, `latest-${p.model}.md`), md);
  process.stdout.write(md);
  log(`done: bench/results/latest-${p.model}.{md,json}${verdict.loaded ? ' (LOADED run)' : ''}`);
  if (errors.length > 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:peer failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
