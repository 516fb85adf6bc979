// `npm run bench [-- --quick]`: measures the engine on the random-weight bench-mini checkpoint and
// the machine's own limits in one run, and writes bench/results/<stamp>.{json,md} and latest.md.
// Every figure is measured side by side in this run; targets are checked as ratios.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createModelExecutor } from '../src/engine/model_executor.ts';
import { ensureBenchCheckpoint } from './checkpoints.ts';
import { benchEngineCore, type EngineCoreResult } from './engine_core.ts';
import { probeMachine, type MachineLimits } from './probe.ts';
import { benchThroughput, type ThroughputResult } from './throughput.ts';

const RESULTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');

interface BenchReport {
  readonly date: string;
  readonly machine: { readonly cpu: string; readonly cores: number; readonly memoryGiB: number; readonly node: string };
  readonly limits: MachineLimits;
  readonly engineCore: EngineCoreResult;
  readonly throughput: { readonly batch1: ThroughputResult; readonly batch16: ThroughputResult };
  readonly targets: readonly { readonly name: string; readonly value: number; readonly target: number; readonly met: boolean }[];
}

function fmt(n: number, digits = 1): string {
  return n.toFixed(digits);
}

function markdown(r: BenchReport): string {
  const e = r.engineCore;
  const floorMs = (e.weightBytesPerDecodeToken / (r.limits.readBandwidthGBs * 1e9)) * 1000;
  const split = (s: Record<string, number>) => Object.entries(s).map(([k, v]) => `${k} ${fmt(v, 2)}`).join(', ');
  return [
    `Machine: ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.memoryGiB} GiB, Node ${r.machine.node}; measured read bandwidth ${fmt(r.limits.readBandwidthGBs)} GB/s, fp32 GEMM ${fmt(r.limits.gemmGflops, 0)} GFLOP/s (${r.date}).`,
    '',
    '| measure (bench-mini, F32, random weights) | value |',
    '|---|---|',
    `| weights read per decode token | ${fmt(e.weightBytesPerDecodeToken / 1e6)} MB (floor ${fmt(floorMs, 2)} ms/token at the measured bandwidth) |`,
    `| batch-1 decode (context ${e.decodeContext}) | ${fmt(e.decodeTokensPerSecond)} tok/s = ${fmt(e.decodeMsPerToken, 2)} ms/token = ${fmt((100 * floorMs) / e.decodeMsPerToken, 0)}% of the bandwidth floor |`,
    `| decode step split (ms) | ${split(e.decodeSplitMs as unknown as Record<string, number>)} |`,
    `| prefill, ${e.prefillTokens}-token prompt | ${fmt(e.prefillTokensPerSecond, 0)} tok/s |`,
    `| prefill split (ms) | ${split(e.prefillSplitMs as unknown as Record<string, number>)} |`,
    `| offline decode, 1 sequence | ${fmt(r.throughput.batch1.decodeTokensPerSecond)} tok/s |`,
    `| offline decode, 16 concurrent (mean batch ${fmt(r.throughput.batch16.meanDecodeBatch)}) | ${fmt(r.throughput.batch16.decodeTokensPerSecond)} tok/s aggregate |`,
    `| offline end-to-end, ${r.throughput.batch16.numRequests} requests x ${r.throughput.batch16.promptTokens} prompt + ${r.throughput.batch16.outputTokens / r.throughput.batch16.numRequests} output, 16 concurrent | ${fmt(r.throughput.batch16.outputTokensPerSecond)} output tok/s |`,
    `| step split at 16 concurrent (mean ms/step) | ${split(r.throughput.batch16.stepSplitMs)} |`,
    '',
    '| target | measured | target | met |',
    '|---|---|---|---|',
    ...r.targets.map((t) => `| ${t.name} | ${fmt(t.value, 2)} | ${t.target} | ${t.met ? 'yes' : 'NO'} |`),
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
  const quick = values.quick;
  const limits = await probeMachine();
  const dir = ensureBenchCheckpoint('bench-mini');
  const engineCore = await benchEngineCore(dir, 'bench-mini', { quick });
  const exec = await createModelExecutor(dir, { kvCacheMemory: 2 * 2 ** 30, enablePrefixCaching: false });
  const output = quick ? 32 : 128;
  const batch1 = await benchThroughput(exec, { concurrency: 1, numRequests: 2, promptTokens: 256, outputTokens: output });
  const batch16 = await benchThroughput(exec, { concurrency: 16, numRequests: quick ? 16 : 64, promptTokens: 256, outputTokens: output });
  await exec.model.dispose();
  const floorMs = (engineCore.weightBytesPerDecodeToken / (limits.readBandwidthGBs * 1e9)) * 1000;
  const targets = [
    { name: 'batch-1 decode / bandwidth floor', value: floorMs / engineCore.decodeMsPerToken, target: 0.5 },
    { name: 'decode at 16 concurrent / batch-1 decode', value: batch16.decodeTokensPerSecond / batch1.decodeTokensPerSecond, target: 4 },
    { name: 'scheduling share of step time (max)', value: Math.max(batch1.schedulingShare, batch16.schedulingShare), target: 0.05 },
  ].map((t) => ({ ...t, met: t.name.includes('(max)') ? t.value < t.target : t.value >= t.target }));
  const report: BenchReport = {
    date: new Date().toISOString(),
    machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
    limits,
    engineCore,
    throughput: { batch1, batch16 },
    targets,
  };
  mkdirSync(RESULTS, { recursive: true });
  const stamp = report.date.replace(/[:.]/g, '-');
  writeFileSync(path.join(RESULTS, `${stamp}${quick ? '-quick' : ''}.json`), `${JSON.stringify(report, null, 2)}\n`);
  const md = markdown(report);
  writeFileSync(path.join(RESULTS, quick ? 'latest-quick.md' : 'latest.md'), md);
  process.stdout.write(md);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
