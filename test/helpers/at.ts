// Indexing for tests under noUncheckedIndexedAccess: a missing element is a test failure that says
// which index of how many, not a TypeError on `undefined` several lines later.
import assert from 'node:assert/strict';

/** items[index] (negative counts from the end); fails the test if there is no such element. */
export function at<T>(items: ArrayLike<T> & { at(index: number): T | undefined }, index: number, what = 'element'): T {
  const item = items.at(index);
  assert.ok(item !== undefined, `expected ${what} ${index}, but there are ${items.length}`);
  return item;
}
