// The CPU a benchmark ran on: model name and the SIMD flags that decide MLAS's kernels.
import { readFileSync } from 'node:fs';

export function cpuSummary(): string {
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    const model = /model name\s*:\s*(.*)/.exec(info)?.[1] ?? 'unknown CPU';
    const flags = new Set((/flags\s*:\s*(.*)/.exec(info)?.[1] ?? '').split(' '));
    const simd = ['avx2', 'fma', 'avx512f', 'avx512bw', 'avx512_vnni', 'avx_vnni'].filter((f) => flags.has(f));
    return `${model} [${simd.join(' ')}]`;
  } catch {
    return 'unknown CPU';
  }
}
