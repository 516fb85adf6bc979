import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Rng } from '../../../src/engine/sampling/rng.ts';
import { childSeed } from '../../../src/engine/sampling/sampling_params.ts';
import { SamplingState } from '../../../src/engine/sampling/sampling_state.ts';
import { params } from './helpers.ts';

const draws = (rng: Rng, n: number) => Array.from({ length: n }, () => rng.nextFloat());

describe('Rng', () => {
  it('matches the xoshiro128** reference stream', () => {
    // First outputs of the reference C implementation from state {1, 2, 3, 4}.
    const rng = Rng.fromState([1, 2, 3, 4]);
    assert.deepEqual(
      Array.from({ length: 6 }, () => rng.nextUint32()),
      [11520, 0, 5927040, 70819200, 2031721883, 1637235492],
    );
  });

  it('gives the same stream for the same seed and different streams for different seeds', () => {
    assert.deepEqual(draws(Rng.fromSeed(42), 100), draws(Rng.fromSeed(42), 100));
    const seeds = [0, 1, 2, -1, 2 ** 32, 2 ** 32 + 1, 2 ** 53 - 1, -(2 ** 53 - 1)];
    const firsts = new Set(seeds.map((s) => draws(Rng.fromSeed(s), 2).join()));
    assert.equal(firsts.size, seeds.length);
    assert.notDeepEqual(draws(Rng.fromEntropy(), 4), draws(Rng.fromEntropy(), 4));
  });

  it('resumes exactly from its plain-data state', () => {
    const a = Rng.fromSeed(7);
    draws(a, 13);
    const state = structuredClone(a.state);
    assert.ok(state.every((w) => Number.isInteger(w) && w >= 0 && w < 2 ** 32));
    assert.deepEqual(draws(Rng.fromState(state), 50), draws(a, 50));
    assert.throws(() => Rng.fromState([0, 0, 0, 0]), /all zero/);
  });

  it('derives distinct child seeds for parallel samples, inside the safe-integer range', () => {
    assert.deepEqual(
      [0, 1, 2].map((i) => childSeed(40, i)),
      [40, 41, 42],
    );
    const top = Number.MAX_SAFE_INTEGER;
    const children = [0, 1, 2].map((i) => childSeed(top, i));
    assert.equal(new Set(children).size, 3);
    assert.ok(children.every(Number.isSafeInteger));
  });

  it('nextFloat is uniform on [0, 1)', () => {
    const rng = Rng.fromSeed(123);
    const n = 100_000;
    const bins = new Array<number>(10).fill(0);
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const u = rng.nextFloat();
      assert.ok(u >= 0 && u < 1);
      bins[Math.floor(u * 10)]!++;
      sum += u;
    }
    assert.ok(Math.abs(sum / n - 0.5) < 5 * Math.sqrt(1 / 12 / n));
    const sigma = Math.sqrt(n * 0.1 * 0.9);
    for (const count of bins) assert.ok(Math.abs(count - n / 10) < 5 * sigma, `bin count ${count}`);
  });
});

describe('SamplingState', () => {
  it('counts output tokens incrementally and tracks prompt ∪ output for the repetition penalty', () => {
    const state = SamplingState.create(params({ repetitionPenalty: 1.2, stopTokenIds: [9] }), [1, 2, 2], [0]);
    for (const t of [2, 3, 3, 3]) state.appendToken(t);
    assert.equal(state.numOutputTokens, 4);
    assert.equal(state.outputCounts.numDistinct, 2);
    assert.equal(state.outputCounts.count(3), 3);
    assert.equal(state.outputCounts.count(1), 0);
    assert.deepEqual(
      [...state.repetitionTokenIds!].sort((a, b) => a - b),
      [1, 2, 3],
    );
    assert.deepEqual(
      [...state.minTokensMaskIds].sort((a, b) => a - b),
      [0, 9],
    );
    assert.equal(SamplingState.create(params(), [1], [0]).repetitionTokenIds, null);
    assert.deepEqual(SamplingState.create(params({ ignoreEos: true }), [], [0]).minTokensMaskIds, []);
  });

  it('round-trips through structuredClone as plain data', () => {
    const state = SamplingState.create(params({ seed: 5, repetitionPenalty: 1.1 }), [4, 5], [0]);
    for (const t of [6, 6, 7]) state.appendToken(t);
    state.rng.nextFloat();
    const copy = SamplingState.fromData(structuredClone(state.toData()));
    assert.deepEqual(copy.toData(), state.toData());
    assert.equal(copy.rng.nextFloat(), state.rng.nextFloat());
  });
});
