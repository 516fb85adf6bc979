// The comparison's report: its JSON shape and its Markdown (bench/results/latest-<model>.md, which the
// README quotes). Every ceiling and "% of" figure in one report comes from its one MachineCeilings.
import type { LlamaBuildInfo } from '../peer/llama_cpp.ts';
import type { MachineCeilings } from '../machine/ceilings.ts';
import type { LoadRecord } from '../machine/load.ts';
import { formatSpread, type Spread } from '../stats.ts';
import type { TargetResult } from '../targets.ts';
import type { ServingPlan, ServingPointResult } from './serving.ts';
import type { SingleStreamComparison } from './single_stream.ts';

export interface ComparisonReport {
  readonly date: string;
  readonly mode: 'quick' | 'full' | 'custom';
  readonly model: string;
  readonly seconds: number;
  readonly node: string;
  readonly memoryGiB: number;
  readonly llamaCpp: LlamaBuildInfo;
  readonly ceilings: MachineCeilings;
  readonly load: LoadRecord & { readonly loaded: boolean; readonly reasons: readonly string[] };
  readonly singleStream: SingleStreamComparison | null;
  readonly serving: {
    readonly plan: ServingPlan;
    readonly servers: readonly { readonly id: string; readonly label: string; readonly command: string; readonly startupMs: number }[];
    readonly points: readonly ServingPointResult[];
  } | null;
  readonly targets: readonly TargetResult[];
  readonly errors: readonly { readonly part: string; readonly message: string }[];
}

const f = (n: number | null | undefined, d = 1): string => (n === null || n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(d));
const sp = (s: Spread | undefined, d = 1): string => (s ? formatSpread(s, d) : '-');

function machineLines(r: ComparisonReport): string[] {
  const c = r.ceilings;
  const simd = ['avx512f', 'avx512_vnni', 'avx512_bf16', 'avx2', 'fma', 'avx_vnni'].filter((x) => c.cpu.flags.includes(x)).join(' ');
  const peak = c.fmaPeak;
  const out = [
    `**Machine**: ${c.cpu.modelName} (${c.cpu.vendor}, family ${c.cpu.family ?? '?'} model ${c.cpu.model ?? '?'}), ${c.cpu.sockets * c.cpu.coresPerSocket} cores / ${c.cpu.usableCpus} usable CPUs, SIMD ${simd}; ${r.memoryGiB} GiB; Node ${r.node}. Threads (ours, the servers, the probes): ${c.threads}.`,
    '',
    '| limit (this run, used everywhere in this report) | figure | how |',
    '|---|---|---|',
    `| core clock, all cores busy | ${c.cpuProbe ? `${sp(c.cpuProbe.clockMHz, 0)} MHz` : f(peak?.clockGHz ? peak.clockGHz * 1000 : null, 0)} | ${peak?.sources.clock ?? c.cpuProbeNote ?? '-'} |`,
    `| FMA units x fp32 lanes per core | ${peak ? `${peak.unitsPerCore} x ${peak.lanesPerUnit}` : '-'} | ${peak?.sources.shape ?? '-'}${c.cpuProbe ? `; FMA loop measured ${sp(c.cpuProbe.fmaFlopsPerCycle, 1)} FLOP/cycle/core` : ''} |`,
    `| cores | ${peak?.cores ?? '-'} | ${peak?.sources.cores ?? '-'} |`,
    `| **FMA peak** | **${f(peak?.gflops, 0)} GFLOP/s** | cores x units x lanes x 2 x clock |`,
    `| read bandwidth | ${sp(c.readBandwidthGBs, 1)} GB/s | ONNX Runtime batch-1 MatMul over a 512 MiB weight, ${c.threads} thread(s); median (min-max, n) of probes |`,
    `| GEMM | ${sp(c.gemmGflops, 0)} GFLOP/s | ONNX Runtime MatMul 512x2048x2048; ${c.gemmCheck ? (c.gemmCheck.ok ? `${f(c.gemmCheck.fractionOfPeak * 100, 0)}% of the FMA peak: passes` : `REJECTED: ${c.gemmCheck.reason}`) : 'unchecked (no peak)'} |`,
    `| **compute ceiling** | **${f(c.computeCeilingGflops, 0)} GFLOP/s** | ${c.computeCeilingSource} |`,
  ];
  return out;
}

function loadLines(r: ComparisonReport): string[] {
  const l = r.load;
  const head = l.loaded ? `**LOADED RUN: no target can be marked met.** ${l.reasons.join('; ')}.` : '**Quiet run.**';
  return [
    `${head} Load record: others used ${Number.isFinite(l.othersShareBefore) ? `${f(l.othersShareBefore * 100, 0)}%` : 'an unmeasured share'} of the CPUs in the 5 s before the run; 1-minute load average ${f(l.loadAverageBefore, 2)} before the run and ${f(l.loadAverageAfter, 2)} after it (our own threads raise it meanwhile); other processes and steal used ${f(l.othersShare * 100, 0)}% of the ${l.cpus} CPUs over the ${f(l.seconds, 0)} s (worst ~5 s window ${f(l.othersShareMaxWindow * 100, 0)}%).`,
  ];
}

function singleStreamLines(r: ComparisonReport): string[] {
  const ss = r.singleStream;
  if (!ss) return [];
  const keys = Object.keys(ss.participants[0]?.tests ?? {});
  const out = [
    `**Single stream** (${r.model}, F32 weights; ${ss.plan.rounds} interleaved rounds, ${ss.plan.reps} repetitions per round; tok/s as median of round medians (min-max, n rounds); ours ${ss.plan.oursThreads} thread${ss.plan.oursThreads > 1 ? 's' : ''}${ss.plan.oursKvCacheDtype ? `, --kv-cache-dtype ${ss.plan.oursKvCacheDtype}` : ''})`,
    '',
    `| participant | ${keys.join(' | ')} |`,
    `|---|${keys.map(() => '---').join('|')}|`,
    ...ss.participants.map((p) => `| ${p.label} | ${keys.map((k) => sp(p.tests[k]?.spread)).join(' | ')} |`),
    '',
    '| ours / peer (its better thread count), per-round ratios | ' + keys.join(' | ') + ' |',
    `|---|${keys.map(() => '---').join('|')}|`,
  ];
  for (const configId of [...new Set(ss.peerBest.map((b) => b.configId))]) {
    const label = ss.participants.find((p) => p.configId === configId)?.label.replace(/, \d+ threads?$/, '') ?? configId;
    out.push(
      `| vs ${label} | ${keys
        .map((k) => {
          const b = ss.peerBest.find((x) => x.configId === configId && x.testKey === k);
          return b ? `${sp(b.ratio, 2)} (peer ${b.threads}t)` : '-';
        })
        .join(' | ')} |`,
    );
  }
  if (ss.weightBytesPerDecodeToken) {
    const floor = (r.ceilings.readBandwidthGBs.median * 1e9) / ss.weightBytesPerDecodeToken;
    const gemmCeil = r.ceilings.computeCeilingGflops ? (r.ceilings.computeCeilingGflops * 1e9) / (2 * (ss.weightBytesPerDecodeToken / 4)) : null;
    out.push(
      '',
      `Ceilings of this run: decode bandwidth floor ${f(floor)} tok/s (${f(r.ceilings.readBandwidthGBs.median)} GB/s / ${f(ss.weightBytesPerDecodeToken / 1e6)} MB of weights per token); prefill compute ceiling, weights only, ${f(gemmCeil, 0)} tok/s (${f(r.ceilings.computeCeilingGflops, 0)} GFLOP/s / ${f((2 * ss.weightBytesPerDecodeToken) / 4 / 1e6, 0)} MFLOP per token).`,
    );
  }
  const runs = Object.entries(ss.graphRunsPerDecodeToken ?? {});
  if (runs.length > 0) out.push('', `ONNX Runtime graph runs per decode token (ours): ${runs.map(([t, n]) => `${t} ${f(n, 1)}`).join(', ')}.`);
  return out;
}

function servingLines(r: ComparisonReport): string[] {
  const s = r.serving;
  if (!s) return [];
  return [
    `**Serving** (${r.model}; ${s.plan.promptTokens}-token prompts, ${s.plan.outputTokens} output tokens forced with ignore_eos, greedy (the ${s.plan.bannedTokenIds.length} byte tokens that are not UTF-8 on their own banned with logit_bias -100 on both servers: llama-server ends a stream whose text is not valid UTF-8), streamed; one load generator over HTTP, closed loop; ${s.plan.rounds} interleaved rounds per concurrency; output tok/s = median of round figures (min-max, n); TTFT/ITL pooled over all requests)`,
    '',
    '| concurrency | server | requests | output tok/s | ours / it (per round) | TTFT p50 / p99 ms | ITL p50 / p99 ms | tokens per chunk |',
    '|---|---|---|---|---|---|---|---|',
    ...s.points.map(
      (p) =>
        `| ${p.concurrency} | ${p.serverId} | ${p.requests} | ${sp(p.outputTokensPerSecond)} | ${p.oursRatio ? sp(p.oursRatio, 2) : '-'} | ${f(p.ttftMs.p50, 0)} / ${f(p.ttftMs.p99, 0)} | ${f(p.itlMs.p50, 2)} / ${f(p.itlMs.p99, 2)} | ${f(p.tokensPerChunk, 2)} |`,
    ),
    '',
    ...s.servers.map((x) => `- ${x.id}: \`${x.command}\` (ready in ${f(x.startupMs / 1000, 2)} s)`),
  ];
}

export function comparisonMarkdown(r: ComparisonReport): string {
  const b = r.llamaCpp;
  const lines = [
    `# ${r.model}: ours vs llama.cpp (${r.mode} run, ${r.date}, ${f(r.seconds, 0)} s)`,
    '',
    `Peer: llama.cpp ${b.commit.slice(0, 12)} (${b.llamaCppTag ?? 'untagged'}, shipped by node-llama-cpp ${b.nodeLlamaCppVersion}), built by bench/peer/build_llama.ts: ${b.compiler}; ${b.cmakeFlags.filter((x) => x.startsWith('-DGGML_NATIVE') || x.startsWith('-DCMAKE_BUILD_TYPE')).join(' ')}; patches: ${Object.entries(
      b.patches,
    )
      .map(([k, v]) => `${k} (${v})`)
      .join(', ')}.`,
    '',
    ...loadLines(r),
    '',
    ...machineLines(r),
    '',
    ...singleStreamLines(r),
    '',
    ...servingLines(r),
    '',
    '**Targets (issue 16)**',
    '',
    '| target | measured | wanted | verdict | from |',
    '|---|---|---|---|---|',
    ...r.targets.map((t) => `| ${t.name} | ${f(t.value, 2)} | ${t.direction} ${t.target} | ${t.verdict} | ${t.detail ?? ''} |`),
  ];
  if (r.errors.length > 0) lines.push('', '**Errors**', '', ...r.errors.map((e) => `- ${e.part}: ${e.message}`));
  return `${lines.join('\n')}\n`;
}
