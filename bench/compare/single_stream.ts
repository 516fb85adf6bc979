// Batch-1 decode and prefill, ours vs llama-bench, in interleaved rounds. Participants per round, in this
// order: ours (ours_bench.ts in its own process), then llama-bench for every peer configuration x thread
// count (e.g. defaults at 1 and 2 threads, F32 cache / no flash attention at 1 and 2 threads). Every
// participant runs every test with `reps` repetitions per round; a round's figure of a test is the median of
// its repetitions; the reported figure is the median of the round figures with their range. The peer
// figure of a configuration is its better thread count (the higher median); ratios ours / peer are taken
// within each round.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, roundRatios, spread, type Spread } from '../stats.ts';
import { testKey, type BenchTest, type TestSamples } from './bench_test.ts';
import { llamaBenchArgs, runLlamaBench, type PeerConfig } from './llama_bench.ts';
import { interleavedSchedule, runInterleaved } from './schedule.ts';
import type { KVCacheDtype } from '../../src/kvcache/kv_dtype.ts';

const OURS_BENCH = path.join(path.dirname(fileURLToPath(import.meta.url)), 'ours_bench.ts');
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface SingleStreamPlan {
  readonly prompt: number;
  readonly gen: number;
  readonly depths: readonly number[];
  readonly reps: number;
  readonly rounds: number;
  readonly oursThreads: number;
  /** Our --kv-cache-dtype (absent: our default). */
  readonly oursKvCacheDtype?: KVCacheDtype;
  readonly peerThreads: readonly number[];
  readonly configs: readonly PeerConfig[];
}

export interface ParticipantResult {
  readonly id: string;
  readonly label: string;
  readonly threads: number;
  readonly configId: string | null;
  /** Per test key: the round figures (median of each round's repetitions) and their spread. */
  readonly tests: Readonly<
    Record<string, { readonly test: BenchTest; readonly rounds: readonly number[]; readonly spread: Spread; readonly samples: readonly (readonly number[])[] }>
  >;
}

export interface PeerBest {
  readonly configId: string;
  readonly testKey: string;
  /** The participant (thread count) with the higher median. */
  readonly participantId: string;
  readonly threads: number;
  readonly spread: Spread;
  /** ours / this peer, one ratio per round. */
  readonly ratio: Spread;
}

export interface SingleStreamComparison {
  readonly plan: SingleStreamPlan;
  readonly participants: readonly ParticipantResult[];
  readonly peerBest: readonly PeerBest[];
  readonly weightBytesPerDecodeToken: number | null;
  /** Ours: graph runs per decode token, per decode test ("tg32@d0"). */
  readonly graphRunsPerDecodeToken: Readonly<Record<string, number>>;
}

interface OursOutput {
  readonly samples: readonly TestSamples[];
  readonly weightBytesPerDecodeToken: number;
}

function runOursBench(modelDir: string, plan: SingleStreamPlan): Promise<OursOutput> {
  const args = [
    '--import',
    'tsx',
    OURS_BENCH,
    '--model',
    modelDir,
    '-p',
    String(plan.prompt),
    '-n',
    String(plan.gen),
    '-d',
    plan.depths.join(','),
    '-r',
    String(plan.reps),
    '-t',
    String(plan.oursThreads),
    ...(plan.oursKvCacheDtype ? ['--kv-cache-dtype', plan.oursKvCacheDtype] : []),
  ];
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (b: Buffer) => void (out += b.toString('utf8')));
    proc.stderr.on('data', (b: Buffer) => void (err = (err + b.toString('utf8')).slice(-4000)));
    proc.once('error', reject);
    proc.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`ours_bench exited ${String(code)}:\n${err}`));
      try {
        resolve(JSON.parse(out) as OursOutput);
      } catch (e) {
        reject(new Error(`ours_bench printed no JSON: ${String(e)}: ${out.slice(0, 300)}`));
      }
    });
  });
}

type Participant = { readonly id: string; readonly label: string; readonly threads: number; readonly config: PeerConfig | null };

export function participantsOf(plan: SingleStreamPlan): Participant[] {
  const out: Participant[] = [{ id: 'ours', label: 'ours', threads: plan.oursThreads, config: null }];
  for (const config of plan.configs)
    for (const t of plan.peerThreads) out.push({ id: `${config.id}-t${t}`, label: `${config.label}, ${t} thread${t > 1 ? 's' : ''}`, threads: t, config });
  return out;
}

function collect(p: Participant, perRound: readonly (readonly TestSamples[])[]): ParticipantResult {
  const tests: Record<string, { test: BenchTest; rounds: number[]; spread: Spread; samples: number[][] }> = {};
  for (const round of perRound) {
    for (const s of round) {
      const k = testKey(s.test);
      tests[k] ??= { test: s.test, rounds: [], spread: spread([1]), samples: [] };
      tests[k].rounds.push(median(s.samplesTs));
      tests[k].samples.push([...s.samplesTs]);
    }
  }
  for (const t of Object.values(tests)) t.spread = spread(t.rounds);
  return { id: p.id, label: p.label, threads: p.threads, configId: p.config?.id ?? null, tests };
}

/** Per configuration and test: the better thread count, and ours / it per round. */
export function bestPeers(participants: readonly ParticipantResult[]): PeerBest[] {
  const ours = participants.find((p) => p.id === 'ours');
  const out: PeerBest[] = [];
  const configs = [...new Set(participants.map((p) => p.configId).filter((c): c is string => c !== null))];
  for (const configId of configs) {
    const candidates = participants.filter((p) => p.configId === configId);
    for (const key of Object.keys(candidates[0]?.tests ?? {})) {
      const best = candidates.reduce((a, b) => ((b.tests[key]?.spread.median ?? -1) > (a.tests[key]?.spread.median ?? -1) ? b : a));
      const bt = best.tests[key];
      const ot = ours?.tests[key];
      if (!bt || !ot) continue;
      out.push({ configId, testKey: key, participantId: best.id, threads: best.threads, spread: bt.spread, ratio: spread(roundRatios(ot.rounds, bt.rounds)) });
    }
  }
  return out;
}

export async function compareSingleStream(
  modelDir: string,
  gguf: string,
  llamaBench: string,
  plan: SingleStreamPlan,
  log: (s: string) => void,
): Promise<SingleStreamComparison> {
  const participants = participantsOf(plan);
  let weightBytes: number | null = null;
  const graphRuns: Record<string, number> = {};
  const schedule = interleavedSchedule(participants, plan.rounds);
  const results = await runInterleaved(schedule, async ({ round, participant: p }) => {
    let samples: readonly TestSamples[];
    if (p.config === null) {
      const o = await runOursBench(modelDir, plan);
      weightBytes = o.weightBytesPerDecodeToken;
      samples = o.samples;
      for (const s of samples) if (s.graphRunsPerToken !== undefined) graphRuns[testKey(s.test)] = s.graphRunsPerToken;
    } else {
      samples = await runLlamaBench(llamaBench, llamaBenchArgs(gguf, plan.prompt, plan.gen, plan.depths, p.threads, plan.reps, p.config));
    }
    log(`    round ${round + 1}/${plan.rounds} ${p.id}: ${samples.map((s) => `${testKey(s.test)} ${median(s.samplesTs).toFixed(1)}`).join(', ')} tok/s`);
    return samples;
  });
  const collected = participants.map((p) => collect(p, results.get(p) ?? []));
  return { plan, participants: collected, peerBest: bestPeers(collected), weightBytesPerDecodeToken: weightBytes, graphRunsPerDecodeToken: graphRuns };
}
