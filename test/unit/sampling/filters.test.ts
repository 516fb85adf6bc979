import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gatherMinP, keepTopK, keepTopP } from '../../../src/engine/sampling/filters.ts';
import { randomRow, rankIds, softmax } from './helpers.ts';

const sorted = (ids: Int32Array, n: number) => Array.from(ids.subarray(0, n)).sort((a, b) => a - b);
const ascending = (xs: number[]) => [...xs].sort((a, b) => a - b);
const lmaxOf = (row: Float32Array) => row.reduce((a, b) => Math.max(a, b), -Infinity);

/** Reference: best first (ties to the lower id), keep rank r while the mass before it < topP. */
function referenceNucleus(row: Float32Array, topP: number): number[] {
  const probs = softmax(row);
  const kept: number[] = [];
  let before = 0;
  for (const id of rankIds(row)) {
    if (kept.length > 0 && before >= topP) break;
    kept.push(id);
    before += probs[id]!;
  }
  return kept;
}

function runTopP(row: Float32Array, topP: number): number[] {
  const lmax = lmaxOf(row);
  const ids = Int32Array.from(row, (_, i) => i);
  const probs = Float64Array.from(row, (x) => Math.exp(x - lmax));
  const kept = keepTopP(row, lmax, ids, ids.length, probs, topP);
  assert.deepEqual(
    sorted(ids, ids.length),
    Array.from(row, (_, i) => i),
    'ids must stay a permutation',
  );
  return sorted(ids, kept);
}

describe('gatherMinP', () => {
  it('keeps exactly the tokens with p >= minP * pmax, in id order', () => {
    const row = randomRow(4000, 1, 2);
    const probs = softmax(row);
    const pmax = Math.max(...probs);
    for (const minP of [1e-4, 0.01, 0.3, 1]) {
      const ids = new Int32Array(row.length);
      const n = gatherMinP(row, lmaxOf(row), minP, ids);
      const expected = probs.flatMap((q, id) => (q >= minP * pmax * (1 - 1e-12) ? [id] : []));
      assert.deepEqual(Array.from(ids.subarray(0, n)), expected, `minP ${minP}`);
    }
  });
});

describe('keepTopK', () => {
  it('keeps the k best of the row (heap and quickselect) or of a candidate list, ties to the lower id', () => {
    const row = randomRow(20_000, 2);
    row.fill(row[17]!, 100, 400); // a block of ties
    const ranked = rankIds(row);
    for (const k of [1, 5, 150, 4096, 4097, 12_000]) {
      const ids = new Int32Array(row.length);
      const n = keepTopK(row, ids, -1, k);
      assert.equal(n, k);
      assert.deepEqual(sorted(ids, n), ascending(ranked.slice(0, k)), `k ${k} over the row`);
    }
    const candidates = Int32Array.from({ length: 5000 }, (_, j) => j * 3);
    const n = keepTopK(row, candidates, candidates.length, 77);
    assert.deepEqual(
      sorted(candidates, n),
      ascending(
        rankIds(row)
          .filter((id) => id % 3 === 0 && id < 15_000)
          .slice(0, 77),
      ),
    );
  });
});

describe('keepTopP', () => {
  it('keeps exactly the reference nucleus', () => {
    for (const [vocab, scale] of [
      [50, 1],
      [3000, 0.5],
      [3000, 3],
      [40_000, 1.5],
      [129_280, 2],
    ] as const) {
      const row = randomRow(vocab, vocab * 7 + Math.round(scale * 10), scale);
      for (const topP of [1e-6, 0.1, 0.5, 0.9, 0.99]) {
        assert.deepEqual(runTopP(row, topP), ascending(referenceNucleus(row, topP)), `vocab ${vocab} scale ${scale} topP ${topP}`);
      }
    }
  });

  it('reaches into the open-ended last bucket (tokens > 32 nats below the max)', () => {
    // One token at 0 and 3000 at -33: the tail holds ~1.4e-11 of the mass, and topP = 1 - 1e-12
    // puts the crossing ~2800 tokens into it.
    const row = new Float32Array(3001).fill(-33);
    row[1234] = 0;
    const kept = runTopP(row, 1 - 1e-12);
    const expected = ascending(referenceNucleus(row, 1 - 1e-12));
    assert.ok(expected.length > 2000 && expected.length < 3001, `reference keeps ${expected.length}`);
    // Each tail token is ~20 ulps of Z, so summation order moves the boundary by a few tokens;
    // dropping the open bucket (the failure this guards against) would keep 1.
    assert.ok(Math.abs(kept.length - expected.length) <= 30, `kept ${kept.length}, reference ${expected.length}`);
    assert.ok(kept.includes(1234));
  });

  it('orders tied tokens by id and always keeps at least the best token', () => {
    const flat = new Float32Array(10).fill(1);
    assert.deepEqual(runTopP(flat, 0.25), [0, 1, 2]); // before: 0, 0.1, 0.2 < 0.25; then 0.3
    assert.deepEqual(runTopP(flat, 0.3), [0, 1, 2]); // 0.1 * 3 rounds to 0.30000000000000004
    assert.deepEqual(runTopP(Float32Array.from([0, 9, 0]), 0.01), [1]);
    assert.deepEqual(runTopP(Float32Array.from([5]), 0.5), [0]);
  });

  it('works on a subset of candidates, renormalising over them', () => {
    const row = Float32Array.from([1, 0.5, 2, -0.5, 0]);
    const ids = Int32Array.from([0, 1, 2]);
    const probs = Float64Array.from(row, (x) => Math.exp(x - 2));
    // Renormalised over {0, 1, 2}: token 2 holds 0.629 >= 0.6.
    assert.equal(keepTopP(row, 2, ids, 3, probs, 0.6), 1);
    assert.equal(ids[0], 2);
  });
});
