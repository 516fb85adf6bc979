import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AsyncQueue } from '../../../src/common/async_queue.ts';
import { EngineError } from '../../../src/common/errors.ts';

async function drain<T>(q: AsyncQueue<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of q) out.push(x);
  return out;
}

describe('AsyncQueue', () => {
  it('yields pushed items in order, buffered ones first, then ends', async () => {
    const q = new AsyncQueue<number>();
    q.push(1);
    q.push(2);
    assert.equal(q.size, 2);
    const all = drain(q);
    q.push(3);
    await Promise.resolve();
    q.push(4);
    q.end();
    assert.deepEqual(await all, [1, 2, 3, 4]);
    assert.equal(q.size, 0);
  });

  it('a consumer waiting before any push is woken by the push', async () => {
    const q = new AsyncQueue<string>();
    const first = q.next();
    const second = q.next();
    q.push('a');
    q.push('b');
    assert.deepEqual(await first, { value: 'a', done: false });
    assert.deepEqual(await second, { value: 'b', done: false });
    const third = q.next();
    q.end();
    assert.deepEqual(await third, { value: undefined, done: true });
    assert.deepEqual(await q.next(), { value: undefined, done: true });
  });

  it('end() delivers what is buffered before the end', async () => {
    const q = new AsyncQueue<number>();
    q.push(7);
    q.end();
    q.end();
    assert.equal(q.isClosed, true);
    assert.deepEqual(await drain(q), [7]);
  });

  it('fail() delivers buffered items, then throws the error to the consumer (also to one already waiting)', async () => {
    const q = new AsyncQueue<number>();
    q.push(1);
    q.fail(new Error('worker died'));
    const seen: number[] = [];
    await assert.rejects(async () => {
      for await (const x of q) seen.push(x);
    }, /worker died/);
    assert.deepEqual(seen, [1]);

    const waiting = new AsyncQueue<number>();
    const pending = waiting.next();
    waiting.fail(new Error('gone'));
    await assert.rejects(pending, /gone/);
    waiting.end(); // ignored once failed
    await assert.rejects(waiting.next(), /gone/);
  });

  it('pushing after end() is an invariant violation', () => {
    const q = new AsyncQueue<number>();
    q.end();
    assert.throws(
      () => q.push(1),
      (err: unknown) => err instanceof EngineError && err.code === 'DSV_ERR_INTERNAL',
    );
  });

  it('a consumer that stops early drops the buffer, and later pushes are dropped', async () => {
    const q = new AsyncQueue<number>();
    for (let i = 0; i < 5; i++) q.push(i);
    for await (const x of q) if (x === 1) break;
    assert.equal(q.size, 0);
    q.push(99);
    assert.equal(q.size, 0);
    assert.deepEqual(await q.next(), { value: undefined, done: true });
  });

  it('poll() takes without waiting and keeps order across many items (buffer compaction)', () => {
    const q = new AsyncQueue<number>();
    assert.equal(q.poll(), undefined);
    const n = 5000;
    let expected = 0;
    for (let i = 0; i < n; i++) {
      q.push(i);
      if (i % 3 === 0) assert.equal(q.poll(), expected++);
    }
    for (let x = q.poll(); x !== undefined; x = q.poll()) assert.equal(x, expected++);
    assert.equal(expected, n);
    assert.equal(q.size, 0);
  });
});
