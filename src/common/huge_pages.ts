// Transparent huge pages for the memory glibc malloc hands out (ArrayBuffers, ONNX Runtime's weights
// and activations). Touching fresh memory costs one page fault per 4 KiB page; on the VMs this server
// targets a fault is slow enough to dominate start-up: writing a fresh 300 MiB buffer took 0.9-1.7 s
// there against 20 ms for the same write again. With THP in "madvise" mode (the common distribution
// default) only regions marked MADV_HUGEPAGE get 2 MiB pages, and glibc (>= 2.35) marks its heap and its
// mmap'd chunks when GLIBC_TUNABLES has glibc.malloc.hugetlb=1. Measured (quiet, 2 alternated runs each):
// a 4-layer bench-lite int4 cut ready from the weights cache in 9.1-10.3 s instead of 19.3-19.7 s (peak
// RSS +4-12%), bench-mini 512-token prefill 1010-1076 tok/s instead of 751-782, decode unchanged.
// The variable must be set before the process starts (glibc reads it once): `npm start`, `npm test` and
// the Docker image set it; this module only detects a start without it and says what it costs.
import { readTextOrNull, type ReadText } from './machine_memory.ts';

export const HUGE_PAGE_TUNABLE = 'glibc.malloc.hugetlb=1';
const THP_ENABLED = '/sys/kernel/mm/transparent_hugepage/enabled';

/** The kernel's THP mode: the bracketed word of the sysfs file ("always", "madvise", "never"), or null. */
export function transparentHugePageMode(readText: ReadText = readTextOrNull): string | null {
  const text = readText(THP_ENABLED);
  return text === null ? null : (/\[(\w+)\]/.exec(text)?.[1] ?? null);
}

/**
 * A start-up warning when malloc'd memory will get 4 KiB pages although 2 MiB ones are one variable
 * away (THP "madvise" and no hugetlb tunable); null when huge pages are in use or unavailable.
 */
export function hugePageWarning(glibcTunables: string, readText: ReadText = readTextOrNull): string | null {
  if (transparentHugePageMode(readText) !== 'madvise') return null;
  if (glibcTunables.includes('glibc.malloc.hugetlb=')) return null;
  return `transparent huge pages are in madvise mode and GLIBC_TUNABLES does not set ${HUGE_PAGE_TUNABLE}: loading and prefill run on 4 KiB pages (measured ~2x slower loading, ~1.35x slower prefill); start with GLIBC_TUNABLES=${HUGE_PAGE_TUNABLE} (npm start does)`;
}
