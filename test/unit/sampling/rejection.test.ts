// Speculative sampling keeps the target distribution: chi-square tests (fixed seeds) that tokens emitted
// by accept-or-resample follow p whatever q the drafts come from, that the test can tell a wrong rule
// apart, and that processedDistribution() is the distribution sampleToken() draws from.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Rng } from '../../../src/engine/sampling/rng.ts';
import { drawFromDistribution, processedDistribution } from '../../../src/engine/sampling/distribution.ts';
import { sampleToken, SamplerWorkspace } from '../../../src/engine/sampling/sampler.ts';
import { acceptOrResample } from '../../../src/engine/speculative/rejection.ts';
import { makeState, params, randomRow } from './helpers.ts';

/** Chi-square statistic of counts against probabilities p (bins with p = 0 must be empty). */
function chiSquare(counts: readonly number[], p: ArrayLike<number>, n: number): { chi2: number; df: number } {
  let chi2 = 0;
  let df = -1;
  for (let i = 0; i < counts.length; i++) {
    if (p[i]! === 0) {
      assert.equal(counts[i], 0, `token ${i} has probability 0 but was emitted ${counts[i]} times`);
      continue;
    }
    chi2 += (counts[i]! - n * p[i]!) ** 2 / (n * p[i]!);
    df++;
  }
  return { chi2, df };
}

// 0.999 quantiles of the chi-square distribution by degrees of freedom.
const CHI2_999: Record<number, number> = { 3: 16.27, 4: 18.47, 5: 20.52, 7: 24.32 };

describe('acceptOrResample', () => {
  const p = Float64Array.from([0.3, 0.25, 0.2, 0.15, 0.1, 0]);
  const drafts: readonly [string, Float64Array][] = [
    ['a draft far from the target', Float64Array.from([0.05, 0.1, 0.4, 0.05, 0.2, 0.2])],
    ['a draft on a subset', Float64Array.from([0, 0, 0.5, 0, 0, 0.5])],
    ['the target itself', p],
  ];
  const N = 40_000;

  for (const [name, q] of drafts) {
    it(`emitted tokens follow p with ${name} (chi-square, seed 7)`, () => {
      const rng = Rng.fromSeed(7);
      const counts = new Array<number>(p.length).fill(0);
      let accepted = 0;
      for (let i = 0; i < N; i++) {
        const d = drawFromDistribution(q, rng.nextFloat());
        const r = acceptOrResample(p, q, d, rng.nextFloat(), rng.nextFloat());
        counts[r.tokenId]!++;
        if (r.accepted) accepted++;
      }
      const { chi2, df } = chiSquare(counts, p, N);
      assert.ok(chi2 < CHI2_999[df]!, `chi2 ${chi2.toFixed(2)} (df ${df}) >= ${CHI2_999[df]}`);
      // The acceptance rate is sum_i min(p_i, q_i).
      const want = p.reduce((s, pi, i) => s + Math.min(pi, q[i]!), 0);
      assert.ok(Math.abs(accepted / N - want) < 0.01, `acceptance ${accepted / N} vs ${want}`);
    });
  }

  it('the test has power: keeping every draft (the bug it guards against) fails it', () => {
    const q = drafts[0]![1];
    const rng = Rng.fromSeed(7);
    const counts = new Array<number>(p.length).fill(0);
    for (let i = 0; i < N; i++) counts[drawFromDistribution(q, rng.nextFloat())]!++;
    const pNoZero = Float64Array.from(p, (x) => (x === 0 ? 1e-12 : x));
    assert.ok(
      chiSquare(
        counts.map((c, i) => (p[i] === 0 ? 0 : c)),
        pNoZero,
        N,
      ).chi2 > 1000,
    );
  });
});

describe('processedDistribution', () => {
  it('is the distribution sampleToken draws from (top-k, top-p, min-p, penalties, temperature; chi-square)', () => {
    const vocab = 64;
    const sp = params({ temperature: 0.7, topK: 12, topP: 0.9, minP: 0.02, presencePenalty: 0.8, seed: 3 });
    const state = makeState(sp);
    for (const id of [5, 9, 9, 17]) state.appendToken(id);
    const row = randomRow(vocab, 21, 2);
    const ws = new SamplerWorkspace();
    const p = processedDistribution(row, sp, state, ws);
    assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-12);
    const n = 30_000;
    const counts = new Array<number>(vocab).fill(0);
    for (let i = 0; i < n; i++) counts[sampleToken(row, sp, state, ws).tokenId]!++;
    const { chi2, df } = chiSquare(counts, p, n);
    assert.ok(df >= 3 && df <= 11, `df ${df}`);
    const critical = [0, 0, 0, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88, 29.59, 31.26][df]!;
    assert.ok(chi2 < critical, `chi2 ${chi2.toFixed(2)} (df ${df}) >= ${critical}`);
  });

  it('is one-hot at the processed argmax for greedy requests', () => {
    const sp = params({ temperature: 0, logitBias: { 3: 100 } });
    const p = processedDistribution(randomRow(16, 2), sp, makeState(sp), new SamplerWorkspace());
    assert.deepEqual(
      [...p].map((x, i) => (x > 0 ? i : -1)).filter((i) => i >= 0),
      [3],
    );
  });
});
