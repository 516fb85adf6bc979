// This process's memory from /proc/self (Linux): resident bytes now and the peak, and a reset of the peak
// so that a later read is the peak of the phase in between. Shared by the memory benches.
import { readFileSync, writeFileSync } from 'node:fs';

/** VmRSS (resident now) or VmHWM (peak resident) in bytes; NaN where /proc has no such line. */
export function processMemory(key: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${key}:\\s*(\\d+) kB`).exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

/** Resets VmHWM to the current RSS (Linux >= 4.0). */
export function resetPeakRss(): void {
  writeFileSync('/proc/self/clear_refs', '5');
}
