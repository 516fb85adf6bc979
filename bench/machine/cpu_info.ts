// What the machine is: CPU model, physical cores, SIMD flags, and how many cores this process may use.
// From `lscpu` (util-linux; Debian has it in every image), with /proc/cpuinfo as the fallback for fields a
// hypervisor leaves out; the cgroup CPU quota from /sys/fs/cgroup/cpu.max. Parsers are pure (unit-tested).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';

export interface CpuInfo {
  readonly modelName: string;
  readonly vendor: string;
  /** CPU family / model numbers as lscpu prints them (decimal); null when unknown. */
  readonly family: number | null;
  readonly model: number | null;
  readonly sockets: number;
  readonly coresPerSocket: number;
  readonly threadsPerCore: number;
  /** Logical CPUs this process may run on (sched affinity: os.availableParallelism). */
  readonly usableCpus: number;
  /** CPUs' worth of time the cgroup grants (cpu.max quota / period), or null when unlimited. */
  readonly cgroupCpuLimit: number | null;
  readonly flags: readonly string[];
  /** lscpu's "CPU max MHz" (absent under most hypervisors), or null. */
  readonly maxMHz: number | null;
  /** Where the fields came from, e.g. "lscpu". */
  readonly source: string;
}

/** lscpu's "Key:   value" lines as a map (first occurrence wins; lscpu repeats some keys per cache level). */
export function parseKeyValueLines(text: string, separator = ':'): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(separator);
    if (i <= 0) continue;
    const key = line.slice(0, i).trim();
    if (!out.has(key)) out.set(key, line.slice(i + 1).trim());
  }
  return out;
}

const int = (s: string | undefined): number | null => {
  if (s === undefined || !/^\s*\d+\s*$/.test(s)) return null;
  return Number(s);
};

/** CpuInfo from lscpu output (plus /proc/cpuinfo text for missing fields, and the usable-CPU facts). */
export function parseCpuInfo(lscpu: string, procCpuinfo: string, usableCpus: number, cgroupCpuLimit: number | null): CpuInfo {
  const l = parseKeyValueLines(lscpu);
  const p = parseKeyValueLines(procCpuinfo);
  const sockets = int(l.get('Socket(s)')) ?? 1;
  const threadsPerCore = int(l.get('Thread(s) per core')) ?? 1;
  const coresPerSocket = int(l.get('Core(s) per socket')) ?? int(p.get('cpu cores')) ?? Math.max(1, Math.floor(usableCpus / threadsPerCore));
  const flags = (l.get('Flags') ?? p.get('flags') ?? '').split(/\s+/).filter(Boolean);
  return {
    modelName: l.get('Model name') ?? p.get('model name') ?? 'unknown',
    vendor: l.get('Vendor ID') ?? p.get('vendor_id') ?? 'unknown',
    family: int(l.get('CPU family')) ?? int(p.get('cpu family')),
    model: int(l.get('Model')) ?? int(p.get('model')),
    sockets,
    coresPerSocket,
    threadsPerCore,
    usableCpus,
    cgroupCpuLimit,
    flags,
    maxMHz: Number.isFinite(Number.parseFloat(l.get('CPU max MHz') ?? '')) ? Number.parseFloat(l.get('CPU max MHz') ?? '') : null,
    source: lscpu ? 'lscpu' : '/proc/cpuinfo',
  };
}

/** cpu.max ("max 100000" or "<quota> <period>") as CPUs' worth of time, or null when unlimited. */
export function parseCgroupCpuMax(text: string): number | null {
  const [quota, period] = text.trim().split(/\s+/);
  if (!quota || quota === 'max' || !period) return null;
  const q = Number(quota);
  const per = Number(period);
  return q > 0 && per > 0 ? q / per : null;
}

/**
 * Physical cores this process can keep busy at once, as an upper bound (the peak built on it must never be
 * too low): the machine's cores, capped by the logical CPUs it may run on and by the cgroup quota (rounded
 * up). Without the sibling topology, two usable logical CPUs count as two cores.
 */
export function usablePhysicalCores(cpu: CpuInfo): number {
  const physical = cpu.sockets * cpu.coresPerSocket;
  const byQuota = cpu.cgroupCpuLimit === null ? Infinity : Math.ceil(cpu.cgroupCpuLimit);
  return Math.max(1, Math.min(physical, cpu.usableCpus, byQuota));
}

export function readCpuInfo(): CpuInfo {
  const res = spawnSync('lscpu', [], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
  const lscpu = res.status === 0 ? res.stdout : '';
  const proc = existsSync('/proc/cpuinfo') ? (readFileSync('/proc/cpuinfo', 'utf8').split('\n\n')[0] ?? '') : '';
  const cpuMax = existsSync('/sys/fs/cgroup/cpu.max') ? parseCgroupCpuMax(readFileSync('/sys/fs/cgroup/cpu.max', 'utf8')) : null;
  return parseCpuInfo(lscpu, proc, os.availableParallelism(), cpuMax);
}
