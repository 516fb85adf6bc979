// Runs cpu_probe.c (compiled on first use with the system C compiler into the bench cache, keyed by the
// source's hash): the all-cores-busy clock and the FMA throughput per cycle, each the median of repeated
// probes in this run (every probe is itself the fastest of many short trials, so preemption drops out).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchCacheRoot } from '../cache_dir.ts';
import { spread, type Spread } from '../stats.ts';

const SOURCE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'cpu_probe.c');

export interface CpuProbeResult {
  readonly threads: number;
  readonly simd: 'avx512' | 'avx2';
  /** Per probe: the fastest thread's clock (an upper bound for the peak), MHz. */
  readonly clockMHz: Spread;
  /** Per probe: the mean over threads of FP32 FLOP per cycle per core in the FMA loop. */
  readonly fmaFlopsPerCycle: Spread;
  readonly binary: string;
}

/** The compiled probe, or why it cannot be built here (not x86-64 Linux, no C compiler). */
export function cpuProbeBinary(): { ok: true; path: string } | { ok: false; reason: string } {
  if (process.platform !== 'linux' || process.arch !== 'x64')
    return { ok: false, reason: `cpu_probe.c is x86-64 Linux only (this is ${process.platform}-${process.arch})` };
  const hash = createHash('sha256').update(readFileSync(SOURCE)).digest('hex').slice(0, 12);
  const dir = path.join(benchCacheRoot(), 'probes');
  const bin = path.join(dir, `cpu_probe-${hash}`);
  if (existsSync(bin)) return { ok: true, path: bin };
  const cc = ['cc', 'gcc', 'clang'].find((c) => spawnSync('sh', ['-c', `command -v ${c}`], { stdio: 'ignore' }).status === 0);
  if (!cc) return { ok: false, reason: 'no C compiler (cc, gcc, clang) to build bench/machine/cpu_probe.c' };
  mkdirSync(dir, { recursive: true });
  const tmp = `${bin}.${process.pid}.tmp`;
  const res = spawnSync(cc, ['-O2', '-pthread', '-o', tmp, SOURCE], { encoding: 'utf8' });
  if (res.status !== 0) return { ok: false, reason: `${cc} failed on cpu_probe.c: ${res.stderr.trim().split('\n').slice(0, 3).join(' ')}` };
  renameSync(tmp, bin);
  return { ok: true, path: bin };
}

export function runCpuProbe(binary: string, threads: number, simd: 'avx512' | 'avx2', probes = 5, trials = 300): CpuProbeResult {
  const clocks: number[] = [];
  const fma: number[] = [];
  for (let i = 0; i < probes; i++) {
    const res = spawnSync(binary, [String(threads), String(trials), simd], { encoding: 'utf8', timeout: 60_000 });
    if (res.status !== 0) throw new Error(`${binary} exited ${String(res.status)}: ${res.stderr}`);
    const j = JSON.parse(res.stdout) as { clockMHz: number[]; fmaFlopsPerCycle: number[] };
    clocks.push(Math.max(...j.clockMHz));
    fma.push(j.fmaFlopsPerCycle.reduce((a, b) => a + b, 0) / j.fmaFlopsPerCycle.length);
  }
  return { threads, simd, clockMHz: spread(clocks), fmaFlopsPerCycle: spread(fma), binary };
}
