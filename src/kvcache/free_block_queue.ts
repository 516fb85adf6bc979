// Eviction order of the free blocks: a doubly linked list threaded through two Int32Arrays indexed
// by block id. Head = next to be reused (least recently freed), tail = most recently freed.
// Removing a block from the middle (a prefix-cache hit on a free block) is O(1).
import { assert } from '../common/errors.ts';
import type { BlockId } from './types.ts';

const NIL = -1;

export class FreeBlockQueue {
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  // inQueue[id] === 1 iff id is linked into the list; lets remove/has run in O(1).
  private readonly inQueue: Uint8Array;
  private head = NIL;
  private tail = NIL;
  private count = 0;

  /** Starts holding every block, in id order. */
  constructor(readonly capacity: number) {
    this.prev = new Int32Array(capacity).fill(NIL);
    this.next = new Int32Array(capacity).fill(NIL);
    this.inQueue = new Uint8Array(capacity);
    for (let id = 0; id < capacity; id++) this.pushBack(id);
  }

  get size(): number {
    return this.count;
  }

  has(id: BlockId): boolean {
    return this.inQueue[id] === 1;
  }

  popFront(): BlockId {
    assert(this.head !== NIL, 'popFront on an empty free block queue');
    const id = this.head;
    this.remove(id);
    return id;
  }

  pushBack(id: BlockId): void {
    assert(id >= 0 && id < this.capacity, `block id ${id} out of range`);
    assert(this.inQueue[id] === 0, `block ${id} is already in the free queue`);
    this.prev[id] = this.tail;
    this.next[id] = NIL;
    if (this.tail === NIL) this.head = id;
    else this.next[this.tail] = id;
    this.tail = id;
    this.inQueue[id] = 1;
    this.count++;
  }

  remove(id: BlockId): void {
    assert(this.inQueue[id] === 1, `block ${id} is not in the free queue`);
    const p = this.prev[id]!;
    const n = this.next[id]!;
    if (p === NIL) this.head = n;
    else this.next[p] = n;
    if (n === NIL) this.tail = p;
    else this.prev[n] = p;
    this.prev[id] = NIL;
    this.next[id] = NIL;
    this.inQueue[id] = 0;
    this.count--;
  }

  /** Block ids from head (next to be reused) to tail. */
  toArray(): BlockId[] {
    const ids: BlockId[] = [];
    for (let id = this.head; id !== NIL && ids.length <= this.capacity; id = this.next[id]!) ids.push(id);
    return ids;
  }

  /**
   * Throws unless the list is a well-formed chain from head to tail (back links agree, no duplicate,
   * no cycle) whose members are exactly the blocks flagged inQueue, `count` of them.
   */
  checkIntegrity(): void {
    const seen = new Uint8Array(this.capacity);
    let steps = 0;
    let last = NIL;
    for (let id = this.head; id !== NIL; id = this.next[id]!) {
      assert(id >= 0 && id < this.capacity, `free queue links to out-of-range block ${id}`);
      assert(seen[id] === 0, `free queue visits block ${id} twice (duplicate or cycle)`);
      assert(this.inQueue[id] === 1, `block ${id} is linked into the free queue but not flagged`);
      assert(this.prev[id] === last, `free queue back link of block ${id} is ${this.prev[id]}, expected ${last}`);
      seen[id] = 1;
      last = id;
      steps++;
    }
    assert(last === this.tail, `free queue tail is ${this.tail}, walk ended at ${last}`);
    assert(steps === this.count, `free queue holds ${steps} blocks but counts ${this.count}`);
    let flagged = 0;
    for (let id = 0; id < this.capacity; id++) flagged += this.inQueue[id]!;
    assert(flagged === this.count, `${flagged} blocks flagged free but the queue holds ${this.count}`);
  }
}
