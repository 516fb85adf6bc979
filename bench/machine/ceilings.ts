// The machine limits of one bench run, measured once at its start and used everywhere in that run's
// report: CPU facts (lscpu), the measured all-core clock and FMA throughput (cpu_probe.c), the computed FMA
// peak, and the attainable read bandwidth and GEMM throughput through ONNX Runtime (ort_probes.ts). Every
// figure is the median of repeated probes in this run, reported with its range; a GEMM figure above the
// FMA peak is rejected (physics), and the compute ceiling then falls back to the peak itself.
import { spread, type Spread } from '../stats.ts';
import { readCpuInfo, usablePhysicalCores, type CpuInfo } from './cpu_info.ts';
import { cpuProbeBinary, runCpuProbe, type CpuProbeResult } from './cpu_probe.ts';
import { checkGemm, fmaPeak, fmaShape, PEAK_TOLERANCE, type FmaPeak, type FmaShape, type GemmVerdict } from './fma_peak.ts';
import { probeGemm, probeReadBandwidth } from './ort_probes.ts';

export interface MachineCeilings {
  readonly cpu: CpuInfo;
  /** Threads every probe (and the benchmark) uses. */
  readonly threads: number;
  readonly cpuProbe: CpuProbeResult | null;
  /** Why there is no clock probe (no compiler, not x86-64), or null. */
  readonly cpuProbeNote: string | null;
  /** null when no clock is known (no probe and no "CPU max MHz"): the GEMM figure is then unchecked. */
  readonly fmaPeak: FmaPeak | null;
  readonly readBandwidthGBs: Spread;
  readonly gemmGflops: Spread;
  /** The physics check of the GEMM median against the FMA peak; null when there is no peak. */
  readonly gemmCheck: GemmVerdict | null;
  /** The run's one compute ceiling: the GEMM median when it passed the check, else the FMA peak, else null. */
  readonly computeCeilingGflops: number | null;
  readonly computeCeilingSource: string;
}

export interface CeilingProbeCounts {
  readonly bandwidth: number;
  readonly gemm: number;
  readonly cpu: number;
}

export const DEFAULT_PROBES: CeilingProbeCounts = { bandwidth: 7, gemm: 9, cpu: 5 };

/** The FMA shape from the table, raised to the measured FLOP/cycle if the loop beat it (the table is then wrong here). */
function checkedShape(cpu: CpuInfo, probe: CpuProbeResult | null): FmaShape {
  const shape = fmaShape(cpu.vendor, cpu.family, cpu.flags);
  if (!probe) return shape;
  const measured = probe.fmaFlopsPerCycle.median;
  if (measured <= shape.unitsPerCore * shape.lanesPerUnit * 2 * (1 + PEAK_TOLERANCE)) return shape;
  const lanes = 2 ** Math.ceil(Math.log2(measured / (2 * shape.unitsPerCore)));
  return {
    unitsPerCore: shape.unitsPerCore,
    lanesPerUnit: lanes,
    source: `${shape.source}; RAISED to ${lanes} lanes: the FMA loop measured ${measured.toFixed(1)} FLOP/cycle/core`,
  };
}

function describeCores(cpu: CpuInfo, cores: number, threads: number): string {
  const quota = cpu.cgroupCpuLimit === null ? 'no cgroup CPU quota' : `cgroup quota ${cpu.cgroupCpuLimit} CPUs`;
  return `${cpu.source}: ${cpu.sockets} socket(s) x ${cpu.coresPerSocket} cores, ${cpu.threadsPerCore} thread(s) per core; ${cpu.usableCpus} usable CPUs; ${quota}; probes use ${threads} thread(s) -> ${cores} core(s)`;
}

export async function measureCeilings(
  threads: number,
  counts: CeilingProbeCounts = DEFAULT_PROBES,
  log: (s: string) => void = () => {},
): Promise<MachineCeilings> {
  const cpu = readCpuInfo();
  const cores = Math.min(usablePhysicalCores(cpu), threads);
  let cpuProbe: CpuProbeResult | null = null;
  let cpuProbeNote: string | null = null;
  const simd = cpu.flags.includes('avx512f') ? 'avx512' : cpu.flags.includes('fma') ? 'avx2' : null;
  const bin = cpuProbeBinary();
  if (!bin.ok) cpuProbeNote = bin.reason;
  else if (simd === null) cpuProbeNote = 'the CPU has no FMA instructions (no fma / avx512f flag)';
  else cpuProbe = runCpuProbe(bin.path, cores, simd, counts.cpu);
  const clockGHz = cpuProbe ? cpuProbe.clockMHz.median / 1000 : cpu.maxMHz !== null ? cpu.maxMHz / 1000 : null;
  const clockSource = cpuProbe
    ? `measured: dependent-add chain on ${cores} busy core(s), median of ${cpuProbe.clockMHz.n} probes (${cpuProbe.clockMHz.min.toFixed(0)}-${cpuProbe.clockMHz.max.toFixed(0)} MHz)`
    : `lscpu "CPU max MHz" (${cpuProbeNote ?? ''})`;
  const peak =
    clockGHz === null ? null : fmaPeak(cores, checkedShape(cpu, cpuProbe), clockGHz, { cores: describeCores(cpu, cores, threads), clock: clockSource });
  log(
    `  cpu: ${cpu.modelName} (family ${cpu.family ?? '?'} model ${cpu.model ?? '?'}), ${cores} cores; clock ${clockGHz?.toFixed(2) ?? '?'} GHz; FMA peak ${peak?.gflops.toFixed(0) ?? '?'} GFLOP/s`,
  );

  const readBandwidthGBs = spread(await probeReadBandwidth(threads, counts.bandwidth));
  const gemmGflops = spread(await probeGemm(threads, counts.gemm));
  const gemmCheck = peak ? checkGemm(gemmGflops.median, peak) : null;
  let computeCeilingGflops: number | null;
  let computeCeilingSource: string;
  if (gemmCheck?.ok)
    [computeCeilingGflops, computeCeilingSource] = [gemmGflops.median, `GEMM probe median (${(gemmCheck.fractionOfPeak * 100).toFixed(0)}% of the FMA peak)`];
  else if (peak)
    [computeCeilingGflops, computeCeilingSource] = [peak.gflops, `FMA peak (GEMM probe rejected: ${gemmCheck && !gemmCheck.ok ? gemmCheck.reason : ''})`];
  else [computeCeilingGflops, computeCeilingSource] = [null, 'none: no clock, so the GEMM figure cannot be checked against physics'];
  log(
    `  read ${readBandwidthGBs.median.toFixed(1)} GB/s (${readBandwidthGBs.min.toFixed(1)}-${readBandwidthGBs.max.toFixed(1)}), GEMM ${gemmGflops.median.toFixed(0)} GFLOP/s (${gemmGflops.min.toFixed(0)}-${gemmGflops.max.toFixed(0)}): ${computeCeilingSource}`,
  );
  return { cpu, threads, cpuProbe, cpuProbeNote, fmaPeak: peak, readBandwidthGBs, gemmGflops, gemmCheck, computeCeilingGflops, computeCeilingSource };
}
