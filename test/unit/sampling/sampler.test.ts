import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EngineError } from '../../../src/common/errors.ts';
import { Rng } from '../../../src/engine/sampling/rng.ts';
import { sampleToken } from '../../../src/engine/sampling/sampler.ts';
import type { SamplingParams } from '../../../src/engine/sampling/sampling_params.ts';
import type { SamplingState } from '../../../src/engine/sampling/sampling_state.ts';
import { logSoftmax, makeState, params, pinUniform, randomRow, rankIds, softmax } from './helpers.ts';

const SMALL = Float32Array.from([1, 0.5, 2, -0.5, 0]);

function drawCounts(row: Float32Array, p: SamplingParams, numDraws: number): number[] {
  const state = makeState(p);
  const counts = new Array<number>(row.length).fill(0);
  for (let i = 0; i < numDraws; i++) counts[sampleToken(row, p, state).tokenId]!++;
  return counts;
}

/**
 * Tokens with expected probability 0 must never be drawn; the others must each lie within 4.5
 * binomial standard deviations, and Pearson's chi-square must stay below the 99.99% quantile.
 */
function assertFrequencies(counts: number[], expected: number[], numDraws: number): void {
  let chi2 = 0;
  let dof = -1;
  counts.forEach((count, id) => {
    const q = expected[id]!;
    if (q === 0) return assert.equal(count, 0, `token ${id} is outside the allowed set but was drawn ${count} times`);
    const mean = numDraws * q;
    const sigma = Math.sqrt(numDraws * q * (1 - q));
    assert.ok(Math.abs(count - mean) <= 4.5 * sigma, `token ${id}: ${count} draws, expected ${mean.toFixed(1)} ± ${sigma.toFixed(1)}`);
    chi2 += (count - mean) ** 2 / mean;
    dof++;
  });
  if (dof === 0) return;
  const chi2Limit = [0, 15.1, 18.4, 21.1, 23.5][dof] ?? 2 * dof + 20; // 99.99% quantiles, dof 1..4
  assert.ok(chi2 < chi2Limit, `chi-square ${chi2.toFixed(2)} with ${dof} dof`);
}

/** Expected distribution after restricting softmax(row / T) to `allowed` and renormalising. */
function restricted(row: ArrayLike<number>, temperature: number, allowed: Set<number>): number[] {
  const probs = softmax(row, temperature).map((q, id) => (allowed.has(id) ? q : 0));
  const z = probs.reduce((a, b) => a + b, 0);
  return probs.map((q) => q / z);
}

/** Reference nucleus over the given probabilities: best first, keep while the mass before < topP. */
function nucleus(probs: number[], topP: number): number[] {
  const ranked = rankIds(probs).filter((id) => probs[id]! > 0);
  const total = ranked.reduce((a, id) => a + probs[id]!, 0);
  const best = ranked[0]!;
  const kept = [best];
  let before = probs[best]!;
  for (let r = 1; r < ranked.length && before < topP * total; r++) {
    const id = ranked[r]!;
    kept.push(id);
    before += probs[id]!;
  }
  return kept;
}

const referenceArgmax = (row: Float32Array) => rankIds(row)[0];

describe('greedy', () => {
  it('equals the argmax of the processed row, ties to the lowest id', () => {
    for (let seed = 0; seed < 20; seed++) {
      const row = randomRow(1000, seed, 3);
      for (const p of [params({ temperature: 0 }), params({ temperature: 0.8, topK: 1 })]) {
        assert.equal(sampleToken(row, p, makeState(p)).tokenId, referenceArgmax(row));
      }
    }
    const tied = Float32Array.from([0, 5, 1, 5, 5]);
    assert.equal(sampleToken(tied, params({ temperature: 0 }), makeState(params())).tokenId, 1);
  });

  it('still advances the RNG by exactly one nextFloat', () => {
    const p = params({ temperature: 0, seed: 9 });
    const state = makeState(p);
    sampleToken(SMALL, p, state);
    const reference = Rng.fromSeed(9);
    reference.nextFloat();
    assert.deepEqual(state.rng.state, reference.state);
  });
});

describe('seeded sampling', () => {
  const rowA = randomRow(2000, 1, 2);
  const rowB = randomRow(2000, 2, 2);
  const pA = params({ seed: 11, temperature: 0.9, topP: 0.95, topK: 200 });
  const pB = params({ seed: 22, temperature: 1.2, minP: 0.01 });
  const run = (row: Float32Array, p: SamplingParams, state: SamplingState) => {
    const { tokenId } = sampleToken(row, p, state);
    state.appendToken(tokenId);
    return tokenId;
  };

  it('is reproducible and independent of interleaving with other requests', () => {
    const alone = (row: Float32Array, p: SamplingParams) => {
      const state = makeState(p);
      return Array.from({ length: 60 }, () => run(row, p, state));
    };
    const soloA = alone(rowA, pA);
    const soloB = alone(rowB, pB);
    assert.deepEqual(alone(rowA, pA), soloA);
    assert.ok(new Set(soloA).size > 5, 'sampling should not be degenerate');

    const stateA = makeState(pA);
    const stateB = makeState(pB);
    const mixedA: number[] = [];
    const mixedB: number[] = [];
    for (let step = 0; step < 60; step++) {
      // Uneven interleaving: B sometimes runs twice before A.
      if (step % 3 === 0) mixedB.push(run(rowB, pB, stateB));
      mixedA.push(run(rowA, pA, stateA));
      if (step % 3 !== 0) mixedB.push(run(rowB, pB, stateB));
    }
    assert.deepEqual(mixedA, soloA);
    assert.deepEqual(mixedB, soloB);
  });

  it('resumes identically after the state crosses a thread boundary as plain data', async () => {
    const { SamplingState } = await import('../../../src/engine/sampling/sampling_state.ts');
    const state = makeState(pA);
    const first = Array.from({ length: 10 }, () => run(rowA, pA, state));
    const moved = SamplingState.fromData(structuredClone(state.toData()));
    const rest = Array.from({ length: 10 }, () => run(rowA, pA, moved));
    const whole = makeState(pA);
    assert.deepEqual(
      Array.from({ length: 20 }, () => run(rowA, pA, whole)),
      [...first, ...rest],
    );
  });
});

describe('temperature sampling', () => {
  for (const temperature of [0.7, 1, 1.6]) {
    it(`draws softmax(logits / ${temperature}) (20000 draws, 5 tokens)`, () => {
      const p = params({ seed: 1234, temperature });
      assertFrequencies(drawCounts(SMALL, p, 20_000), softmax(SMALL, temperature), 20_000);
    });
  }
});

describe('filters', () => {
  it('top-k samples only the k best, renormalised', () => {
    const p = params({ seed: 5, topK: 3, temperature: 1.3 });
    assertFrequencies(drawCounts(SMALL, p, 20_000), restricted(SMALL, 1.3, new Set([2, 0, 1])), 20_000);
  });

  it('top-p keeps the smallest best-first prefix reaching topP, renormalised', () => {
    // softmax(SMALL): 0.203, 0.123, 0.553, 0.045, 0.075; best first 2, 0, 1 with mass before
    // 0, 0.553, 0.756: topP 0.7 keeps {2, 0}, topP 0.5 keeps {2}.
    const p = params({ seed: 6, topP: 0.7 });
    assert.deepEqual(nucleus(softmax(SMALL), 0.7), [2, 0]);
    assertFrequencies(drawCounts(SMALL, p, 20_000), restricted(SMALL, 1, new Set([2, 0])), 20_000);
    const single = params({ seed: 6, topP: 0.5 });
    assertFrequencies(drawCounts(SMALL, single, 2000), restricted(SMALL, 1, new Set([2])), 2000);
  });

  it('min-p drops tokens with p < minP * pmax', () => {
    // p / pmax = exp(l - 2): 0.368, 0.223, 1, 0.082, 0.135
    const p = params({ seed: 7, minP: 0.2 });
    assertFrequencies(drawCounts(SMALL, p, 20_000), restricted(SMALL, 1, new Set([2, 0, 1])), 20_000);
  });

  it('combines min-p, then top-k, then top-p over the renormalised survivors', () => {
    // min-p 0.1 keeps {2, 0, 1, 4}; top-k 3 keeps {2, 0, 1}. Renormalised over those, token 2
    // holds 0.629 >= topP 0.6, so the nucleus is {2}; over the full row (0.553) it would be {2, 0}.
    const p = params({ seed: 8, minP: 0.1, topK: 3, topP: 0.6 });
    assertFrequencies(drawCounts(SMALL, p, 2000), restricted(SMALL, 1, new Set([2])), 2000);
    const wider = params({ seed: 8, minP: 0.1, topK: 3, topP: 0.7 });
    assertFrequencies(drawCounts(SMALL, wider, 20_000), restricted(SMALL, 1, new Set([2, 0])), 20_000);
  });

  it('restricts the support exactly on large vocabularies (heap, quickselect and pruned top-p paths)', () => {
    const vocab = 20_000;
    const row = randomRow(vocab, 3, 1.5);
    const ranked = rankIds(row);
    const probs = softmax(row);
    const maxProb = probs[ranked[0]!]!;
    const cases: [Partial<SamplingParams>, Set<number>][] = [
      [{ topK: 40 }, new Set(ranked.slice(0, 40))],
      [{ topK: 6000 }, new Set(ranked.slice(0, 6000))],
      [{ minP: 0.05 }, new Set(ranked.filter((id) => probs[id]! >= 0.05 * maxProb))],
      [{ minP: 0.01, topK: 500 }, new Set(ranked.filter((id) => probs[id]! >= 0.01 * maxProb).slice(0, 500))],
      [{ topP: 0.6 }, new Set(nucleus(probs, 0.6))],
    ];
    for (const [init, allowed] of cases) {
      const p = params({ seed: 10, ...init });
      const state = makeState(p);
      const seen = new Set<number>();
      for (let i = 0; i < 1000; i++) {
        const { tokenId } = sampleToken(row, p, state);
        assert.ok(allowed.has(tokenId), `${JSON.stringify(init)}: drew ${tokenId}, outside the ${allowed.size} allowed`);
        seen.add(tokenId);
      }
      assert.ok(seen.size > Math.min(allowed.size, 1000) / 10, `${JSON.stringify(init)}: only ${seen.size} distinct draws`);
    }
  });

  it('top-p draws only from the reference nucleus, endpoints included (u swept over [0, 1))', () => {
    for (const [vocab, scale, topP, temperature] of [
      [5000, 3, 0.5, 0.8],
      [50_000, 6, 0.9, 1.3],
      [800, 2, 0.7, 1],
    ] as const) {
      const row = randomRow(vocab, vocab + scale, scale);
      const kept = new Set(nucleus(softmax(Float32Array.from(row, (x) => x / temperature)), topP));
      const p = params({ topP, temperature });
      const drawn = new Set<number>();
      const steps = Math.min(20 * kept.size, 500);
      for (let s = 0; s <= steps; s++) {
        const state = makeState(p);
        pinUniform(state, Math.min(s / steps, 1 - 2 ** -53));
        drawn.add(sampleToken(row, p, state).tokenId);
      }
      // Every draw is inside and the sweep reaches many kept tokens (filters.test.ts checks the
      // exact set).
      for (const id of drawn) assert.ok(kept.has(id), `vocab ${vocab}: drew ${id} outside the nucleus of ${kept.size}`);
      assert.ok(drawn.size >= Math.min(kept.size, steps / 20) * 0.5, `vocab ${vocab}: swept ${drawn.size} of ${kept.size}`);
    }
  });
});

describe('logprobs', () => {
  const row = randomRow(3000, 4, 2);
  const reference = logSoftmax(row);
  const ranked = rankIds(row);

  it('are log_softmax of the raw row for the sampled token, whatever the processing', () => {
    const p = params({ seed: 3, temperature: 0.5, topK: 20, frequencyPenalty: 1, logitBias: { [String(ranked[0])]: -50 }, logprobs: 5 });
    const state = makeState(p);
    for (let i = 0; i < 20; i++) {
      const out = sampleToken(row, p, state);
      state.appendToken(out.tokenId);
      assert.ok(Math.abs(out.logprob! - reference[out.tokenId]!) < 1e-9);
      assert.deepEqual(
        out.topLogprobs!.map((t) => t.tokenId),
        ranked.slice(0, 5),
      );
    }
  });

  it('return the top N best first, as natural-log values', () => {
    const out = sampleToken(row, params({ temperature: 0, logprobs: 20 }), makeState(params()));
    assert.equal(out.tokenId, ranked[0]);
    const top = out.topLogprobs!;
    assert.equal(top.length, 20);
    top.forEach((t, i) => {
      assert.equal(t.tokenId, ranked[i]);
      assert.ok(Math.abs(t.logprob - reference[t.tokenId]!) < 1e-9);
      if (i > 0) assert.ok(t.logprob <= top[i - 1]!.logprob);
    });
    const total = Array.from(reference).reduce((a, x) => a + Math.exp(x), 0);
    assert.ok(Math.abs(total - 1) < 1e-9);
  });

  it('logprobs 0 gives only the sampled token; null gives nothing', () => {
    const zero = sampleToken(row, params({ logprobs: 0, seed: 1 }), makeState(params({ seed: 1 })));
    assert.deepEqual(zero.topLogprobs, []);
    assert.ok(Math.abs(zero.logprob! - reference[zero.tokenId]!) < 1e-9);
    const none = sampleToken(row, params({ seed: 1 }), makeState(params({ seed: 1 })));
    assert.equal(none.logprob, null);
    assert.equal(none.topLogprobs, null);
  });
});

describe('bad rows', () => {
  it('reject NaN and all -inf rows with DSV_ERR_INTERNAL, leaving the raw row untouched', () => {
    const p = params({ seed: 1 });
    const isInternal = (err: unknown) => err instanceof EngineError && err.code === 'DSV_ERR_INTERNAL';
    assert.throws(() => sampleToken(Float32Array.from([0, Number.NaN, 1]), p, makeState(p)), isInternal);
    assert.throws(() => sampleToken(Float32Array.from([-Infinity, -Infinity]), p, makeState(p)), isInternal);
    const raw = Float32Array.from(SMALL);
    sampleToken(raw, params({ temperature: 0.5, logitBias: { '1': 3 } }), makeState(p));
    assert.deepEqual(raw, SMALL);
  });
});
