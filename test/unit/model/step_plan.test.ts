// planStep's attention groups: the slot span a single sequence's keys occupy (DSA decode may score the key
// pool over that span in place instead of gathering the keys).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planStep, type StepSequence } from '../../../src/engine/model/step_plan.ts';

const BLOCK = 4;

function decode(numComputedTokens: number, blockTable: number[]): StepSequence {
  return { tokenIds: [7], numComputedTokens, blockTable, logits: 'last' };
}

describe('planStep keySlotSpan', () => {
  it('covers consecutive blocks exactly', () => {
    const [group] = planStep([decode(9, [3, 4, 5])], BLOCK, 64).groups;
    assert.deepEqual(group!.keySlotSpan, { first: 12, count: 12 });
    assert.deepEqual(
      Array.from(group!.keySlots),
      Array.from({ length: 10 }, (_, i) => 12 + i),
    );
  });

  it('spans from the lowest to the highest block, whatever their order', () => {
    assert.deepEqual(planStep([decode(9, [6, 2, 3])], BLOCK, 64).groups[0]!.keySlotSpan, { first: 8, count: 20 });
  });

  it('looks only at the blocks the context covers (a reserved block past it may be anywhere)', () => {
    assert.deepEqual(planStep([decode(7, [3, 4, 30])], BLOCK, 64).groups[0]!.keySlotSpan, { first: 12, count: 8 });
  });

  it('is null for a group of several sequences; a prefill chunk of one sequence has one', () => {
    assert.equal(planStep([decode(9, [3, 4, 5]), decode(2, [8])], BLOCK, 64).groups[0]!.keySlotSpan, null);
    const chunk: StepSequence = { tokenIds: [1, 2, 3], numComputedTokens: 4, blockTable: [2, 3], logits: 'last' };
    assert.deepEqual(planStep([chunk], BLOCK, 64).groups[0]!.keySlotSpan, { first: 8, count: 8 });
  });
});
