// A FIFO that a producer pushes into synchronously and one consumer drains asynchronously: the
// hand-off between a message handler (worker messages, engine outputs) and an async loop.
//
// Unbounded by design: every producer here is an event or message handler that cannot wait, so
// push() never blocks and never drops. Memory is bounded by whoever produces: an engine request by
// its max_tokens (and, while its client does not read, by --stream-write-timeout, after which it is
// aborted), the worker inbox by --max-queued-requests. `size` shows what is buffered.
import { assert } from './errors.ts';

type Waiter<T> = { resolve: (r: IteratorResult<T, undefined>) => void; reject: (err: unknown) => void };

export class AsyncQueue<T> implements AsyncIterableIterator<T, undefined> {
  private readonly items: T[] = [];
  private head = 0; // items[head..] are buffered; the prefix is consumed and compacted lazily
  private readonly waiters: Waiter<T>[] = [];
  private ended = false;
  private failure: { error: Error } | null = null;
  private abandoned = false; // the consumer stopped early: pushes are dropped

  /** Items pushed and not yet taken. */
  get size(): number {
    return this.items.length - this.head;
  }

  /** True once end() or fail() was called (items pushed before may still be buffered). */
  get isClosed(): boolean {
    return this.ended || this.failure !== null;
  }

  /**
   * Hands the item to a waiting consumer or buffers it. Pushing after end()/fail() is a bug; after
   * the consumer stopped early (return()) the item is dropped, since nobody will read it.
   */
  push(item: T): void {
    if (this.abandoned) return;
    assert(!this.isClosed, 'AsyncQueue.push after end() or fail()');
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve({ value: item, done: false });
    else this.items.push(item);
  }

  /** No more items: the consumer sees the buffered ones, then the end. Idempotent. */
  end(): void {
    if (this.isClosed) return;
    this.ended = true;
    this.settleWaiters();
  }

  /** The consumer sees the buffered items, then `error` is thrown from next(). Ignored once closed. */
  fail(error: Error): void {
    if (this.isClosed) return;
    this.failure = { error };
    this.settleWaiters();
  }

  /** Takes the next buffered item without waiting; undefined when none is buffered. */
  poll(): T | undefined {
    if (this.head === this.items.length) return undefined;
    const item = this.items[this.head++];
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    return item;
  }

  next(): Promise<IteratorResult<T, undefined>> {
    if (this.size > 0) return Promise.resolve({ value: this.poll() as T, done: false });
    if (this.failure) return Promise.reject(this.failure.error);
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** A consumer that stops early (break, throw) drops the buffer; later pushes are dropped too. */
  return(): Promise<IteratorResult<T, undefined>> {
    this.abandoned = true;
    this.items.length = 0;
    this.head = 0;
    this.end();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private settleWaiters(): void {
    // Waiters exist only while the buffer is empty, so they all see the end or the failure.
    for (const w of this.waiters.splice(0)) {
      if (this.failure) w.reject(this.failure.error);
      else w.resolve({ value: undefined, done: true });
    }
  }
}
