// CPU seconds of this process's main thread (Linux: /proc/self/task/<pid>/stat, utime and stime at
// USER_HZ = 100), apart from its worker threads. A load's main thread compiles every graph and is its
// critical path, so its CPU time is a figure of the load that other processes on a shared machine
// disturb far less than the wall time (they delay it; they do not add to it).
import { readFileSync } from 'node:fs';

const USER_HZ = 100;

/** { user, sys } CPU seconds of the main thread so far; NaN where /proc is not there. */
export function mainThreadCpu(): { user: number; sys: number } {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15 (1-based).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(fields[11]) / USER_HZ, sys: Number(fields[12]) / USER_HZ };
  } catch {
    return { user: Number.NaN, sys: Number.NaN };
  }
}
