// How much memory this process may use: the machine's RAM, or less when a cgroup limits it (a
// container's --memory, a Kubernetes memory limit). Every size planned at start-up (the KV cache
// today, the weights' memory plan next) is checked against this one number.
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface MachineMemory {
  readonly bytes: number;
  /** Where the number came from, for messages: "os.totalmem()" or the cgroup file read. */
  readonly source: string;
}

/** Reads a file's text, or null when it does not exist or cannot be read (injected by tests). */
export type ReadText = (file: string) => string | null;

export const readTextOrNull: ReadText = (file) => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
};

/** cgroup v1 reports "no limit" as a huge page-aligned number (2^63 - 4096 and the like). */
const UNLIMITED_V1 = 2 ** 60;

/**
 * The cgroup directories that may hold this process's memory limit, innermost first: its own
 * cgroup (from /proc/self/cgroup), then the mount root (what a container sees as its own cgroup).
 */
function cgroupCandidates(readText: ReadText): string[] {
  const files: string[] = [];
  for (const line of (readText('/proc/self/cgroup') ?? '').split('\n')) {
    // v2: "0::/path"; v1: "N:memory:/path" (the controller list may name several).
    const [, controllers, cgroupPath] = line.split(':');
    if (controllers === undefined || cgroupPath === undefined || cgroupPath === '/') continue;
    if (controllers === '') files.push(`/sys/fs/cgroup${cgroupPath}/memory.max`);
    else if (controllers.split(',').includes('memory')) files.push(`/sys/fs/cgroup/memory${cgroupPath}/memory.limit_in_bytes`);
  }
  files.push('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes');
  return files;
}

/** The memory this process may use: min(physical memory, the tightest cgroup limit found). */
export function machineMemory(readText: ReadText = readTextOrNull, totalMem: number = os.totalmem()): MachineMemory {
  let best: MachineMemory = { bytes: totalMem, source: 'os.totalmem()' };
  for (const file of cgroupCandidates(readText)) {
    const text = readText(file)?.trim();
    if (text === undefined || !/^\d+$/.test(text)) continue; // "max" (v2) = no limit
    const bytes = Number(text);
    if (bytes > 0 && bytes < UNLIMITED_V1 && bytes < best.bytes) best = { bytes, source: file };
  }
  return best;
}

/** Shorthand for machineMemory().bytes. */
export function machineMemoryBytes(): number {
  return machineMemory().bytes;
}

/**
 * Memory the kernel can still give without swapping: /proc/meminfo's MemAvailable (free memory plus
 * reclaimable page cache), or less when this process's cgroup v2 limit is closer (memory.max minus
 * memory.current). null where neither can be read (not Linux). Unlike machineMemory(), this moves as
 * other processes grow and shrink.
 */
export function availableMemory(readText: ReadText = readTextOrNull): MachineMemory | null {
  const kib = /^MemAvailable:\s+(\d+) kB$/m.exec(readText('/proc/meminfo') ?? '')?.[1];
  let best: MachineMemory | null = kib === undefined ? null : { bytes: Number(kib) * 1024, source: '/proc/meminfo MemAvailable' };
  for (const max of cgroupCandidates(readText).filter((f) => f.endsWith('/memory.max'))) {
    const limit = readText(max)?.trim();
    const current = readText(max.replace(/memory\.max$/, 'memory.current'))?.trim();
    if (limit === undefined || current === undefined || !/^\d+$/.test(limit) || !/^\d+$/.test(current)) continue;
    const room = Math.max(0, Number(limit) - Number(current));
    if (best === null || room < best.bytes) best = { bytes: room, source: `${max} minus memory.current` };
  }
  return best;
}

/** Sizes in messages: GiB with one decimal (25769803776 -> "24.0 GiB"); below 1 GiB, whole MiB rounded up. */
export function formatGiB(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${Math.ceil(bytes / 2 ** 20)} MiB`;
}
