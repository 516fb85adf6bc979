// Was the machine quiet while we measured? The 1-minute load average before the run (nothing of ours is
// running yet) and after it, and, during the run, the CPU time used by everything that is NOT this bench
// (its own process tree, children included: the servers and llama-bench it spawns) plus the time the
// hypervisor gave our vCPUs to others (steal). The load average during the run cannot answer that question:
// our own busy threads raise it. Parsers and the verdict are pure (unit-tested in test/bench/machine.test.ts).
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';

/** The 1-minute load average (0 where the platform reports none). */
export function loadAverage1(): number {
  const [oneMinute = 0] = os.loadavg();
  return oneMinute;
}

/** /proc/stat's aggregate "cpu" line: busy (incl. steal) and total clock ticks since boot. */
export function parseProcStat(text: string): { busy: number; total: number } {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) throw new Error('/proc/stat has no aggregate "cpu" line');
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  if (user === undefined || nice === undefined || system === undefined || idle === undefined || irq === undefined || softirq === undefined) {
    throw new Error(`/proc/stat: the "cpu" line has too few fields: ${line}`);
  }
  const busy = user + nice + system + irq + softirq + (steal || 0);
  return { busy, total: busy + idle + (iowait || 0) };
}

/** /proc/<pid>/stat: parent pid and the CPU ticks of the process and its waited-for children. */
export function parseProcPidStat(text: string): { ppid: number; ticks: number } | null {
  const close = text.lastIndexOf(')'); // the command name may contain spaces and parentheses
  if (close < 0) return null;
  const f = text.slice(close + 2).split(' '); // f[0] = state (field 3), so field k is f[k - 3]
  const ppid = Number(f[1]);
  const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]); // utime stime cutime cstime
  return Number.isFinite(ppid) && Number.isFinite(ticks) ? { ppid, ticks } : null;
}

/** CPU ticks of `root` and all its live descendants (exited children are in root's cutime/cstime). */
export function treeTicks(processes: ReadonlyMap<number, { ppid: number; ticks: number }>, root: number): number {
  const children = new Map<number, number[]>();
  for (const [pid, p] of processes) children.set(p.ppid, [...(children.get(p.ppid) ?? []), pid]);
  let sum = 0;
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop() as number;
    sum += processes.get(pid)?.ticks ?? 0;
    stack.push(...(children.get(pid) ?? []));
  }
  return sum;
}

function readProcesses(): Map<number, { ppid: number; ticks: number }> {
  const out = new Map<number, { ppid: number; ticks: number }>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const p = parseProcPidStat(readFileSync(`/proc/${name}/stat`, 'utf8'));
      if (p) out.set(Number(name), p);
    } catch {
      // the process exited while we looked
    }
  }
  return out;
}

interface Sample {
  readonly busy: number;
  readonly total: number;
  readonly ours: number;
}

function sample(): Sample {
  const { busy, total } = parseProcStat(readFileSync('/proc/stat', 'utf8'));
  return { busy, total, ours: treeTicks(readProcesses(), process.pid) };
}

/** Share of the machine (0..1 of all CPUs) that others used between two samples. */
export function othersShare(a: Sample, b: Sample): number {
  const total = b.total - a.total;
  if (!(total > 0)) return 0;
  return Math.max(0, (b.busy - a.busy - (b.ours - a.ours)) / total);
}

export interface LoadRecord {
  readonly loadAverageBefore: number;
  /**
   * Others' share of all CPUs in a few seconds sampled just before the start (NaN when not sampled). The
   * 1-minute load average lags by minutes: after other work stops (or is paused for the run) it still
   * reads high although the CPUs are idle, so when this is known the verdict uses it instead.
   */
  readonly othersShareBefore: number;
  readonly loadAverageAfter: number;
  /** Others' share of all CPUs over the whole measurement (0..1). */
  readonly othersShare: number;
  /** The largest others' share in any sampling window (~5 s). */
  readonly othersShareMaxWindow: number;
  readonly cpus: number;
  readonly seconds: number;
}

/** Samples from start() to stop(); Linux only (elsewhere the shares are NaN and the run counts as loaded). */
export class LoadMonitor {
  private readonly start: Sample | null;
  private last: Sample | null;
  private maxWindow = 0;
  private readonly timer: NodeJS.Timeout | null;
  private readonly t0 = performance.now();
  private readonly loadBefore = loadAverage1();
  private othersBefore = Number.NaN;

  /** A monitor started after sampling others' CPU use for `settleMs` (the idle check before the start). */
  static async afterIdleCheck(settleMs = 5000, windowMs = 5000): Promise<LoadMonitor> {
    const linux = process.platform === 'linux';
    const a = linux ? sample() : null;
    await new Promise((r) => setTimeout(r, settleMs));
    const monitor = new LoadMonitor(windowMs);
    if (a && monitor.start) monitor.othersBefore = othersShare(a, monitor.start);
    return monitor;
  }

  constructor(windowMs = 5000) {
    const linux = process.platform === 'linux';
    this.start = linux ? sample() : null;
    this.last = this.start;
    this.timer = linux ? setInterval(() => this.tick(), windowMs) : null;
    this.timer?.unref();
  }

  private tick(): void {
    const s = sample();
    if (this.last) this.maxWindow = Math.max(this.maxWindow, othersShare(this.last, s));
    this.last = s;
  }

  stop(): LoadRecord {
    if (this.timer) clearInterval(this.timer);
    let share = Number.NaN;
    if (this.start) {
      this.tick();
      share = othersShare(this.start, this.last as Sample);
    }
    return {
      loadAverageBefore: this.loadBefore,
      othersShareBefore: this.othersBefore,
      loadAverageAfter: loadAverage1(),
      othersShare: share,
      othersShareMaxWindow: this.start ? this.maxWindow : Number.NaN,
      cpus: os.availableParallelism(),
      seconds: (performance.now() - this.t0) / 1000,
    };
  }
}

export interface LoadThresholds {
  /** Load average per CPU before the start above which the machine counts as busy (0.25: 0.5 on 2 CPUs). */
  readonly loadAveragePerCpu: number;
  /** Others' share of all CPUs over the run above which it counts as loaded (0.10 = a fifth of a core of 2). */
  readonly othersShare: number;
}

export const DEFAULT_LOAD_THRESHOLDS: LoadThresholds = { loadAveragePerCpu: 0.25, othersShare: 0.1 };

/** loaded = busy before the start, or others used the CPUs during it; a loaded run cannot mark a target met. */
export function loadVerdict(r: LoadRecord, t: LoadThresholds = DEFAULT_LOAD_THRESHOLDS): { loaded: boolean; reasons: string[] } {
  const reasons: string[] = [];
  const limit = t.loadAveragePerCpu * r.cpus;
  if (Number.isFinite(r.othersShareBefore)) {
    if (r.othersShareBefore > t.othersShare)
      reasons.push(
        `other processes (and steal) used ${(r.othersShareBefore * 100).toFixed(0)}% of the ${r.cpus} CPUs just before the start (> ${(t.othersShare * 100).toFixed(0)}%)`,
      );
  } else if (!(r.loadAverageBefore <= limit))
    reasons.push(`1-minute load average ${r.loadAverageBefore.toFixed(2)} before the start (> ${limit.toFixed(2)} on ${r.cpus} CPUs)`);
  if (!Number.isFinite(r.othersShare)) reasons.push("others' CPU use during the run is unknown (no /proc)");
  else if (r.othersShare > t.othersShare)
    reasons.push(
      `other processes (and steal) used ${(r.othersShare * 100).toFixed(0)}% of the ${r.cpus} CPUs during the run (> ${(t.othersShare * 100).toFixed(0)}%; worst ~5 s window ${(r.othersShareMaxWindow * 100).toFixed(0)}%)`,
    );
  return { loaded: reasons.length > 0, reasons };
}
