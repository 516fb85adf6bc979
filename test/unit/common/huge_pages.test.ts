// The start-up check for 2 MiB pages: THP mode parsing and when the warning is (not) given.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HUGE_PAGE_TUNABLE, hugePageWarning, transparentHugePageMode } from '../../../src/common/huge_pages.ts';
import type { ReadText } from '../../../src/common/machine_memory.ts';

const thp =
  (text: string | null): ReadText =>
  (file) =>
    file === '/sys/kernel/mm/transparent_hugepage/enabled' ? text : null;

test('the THP mode is the bracketed word of the sysfs file', () => {
  assert.equal(transparentHugePageMode(thp('always [madvise] never\n')), 'madvise');
  assert.equal(transparentHugePageMode(thp('[always] madvise never\n')), 'always');
  assert.equal(transparentHugePageMode(thp('always madvise [never]\n')), 'never');
  assert.equal(transparentHugePageMode(thp(null)), null);
  assert.equal(transparentHugePageMode(thp('garbage')), null);
});

test('warns only under madvise without the hugetlb tunable, naming the variable to set', () => {
  const warning = hugePageWarning('', thp('always [madvise] never\n'));
  assert.ok(warning !== null && warning.includes(`GLIBC_TUNABLES=${HUGE_PAGE_TUNABLE}`), String(warning));
  assert.ok(hugePageWarning('glibc.malloc.arena_max=2', thp('always [madvise] never\n')) !== null);
  assert.equal(hugePageWarning(`glibc.malloc.arena_max=2:${HUGE_PAGE_TUNABLE}`, thp('always [madvise] never\n')), null);
  assert.equal(hugePageWarning('', thp('[always] madvise never\n')), null, 'always: every region gets huge pages already');
  assert.equal(hugePageWarning('', thp('always madvise [never]\n')), null, 'never: nothing to gain');
  assert.equal(hugePageWarning('', thp(null)), null, 'no THP (not Linux, or no sysfs)');
});
