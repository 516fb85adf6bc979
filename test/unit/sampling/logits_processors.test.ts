import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  applyLogitBias,
  applyLogitsProcessors,
  applyMinTokens,
  applyPenalties,
  applyTemperature,
  MAX_PENALIZED_LOGIT,
} from '../../../src/engine/sampling/logits_processors.ts';
import { GREEDY_TEMPERATURE } from '../../../src/engine/sampling/sampling_params.ts';
import { sampleToken } from '../../../src/engine/sampling/sampler.ts';
import { makeState, params } from './helpers.ts';

const EOS = 0;
const row = () => Float32Array.from([3, 2.5, -1.5, 0.75, -0.25, 4, 1]);

describe('min_tokens', () => {
  it('masks EOS and stop ids to -inf until minTokens tokens are generated', () => {
    const p = params({ minTokens: 2, stopTokenIds: [5] });
    const state = makeState(p, [], [EOS]);
    const logits = row();
    applyMinTokens(logits, p, state);
    assert.equal(logits[EOS], -Infinity);
    assert.equal(logits[5], -Infinity);
    assert.deepEqual(Array.from(logits).slice(1, 5), Array.from(row()).slice(1, 5));
    state.appendToken(1);
    state.appendToken(1);
    const after = row();
    applyMinTokens(after, p, state);
    assert.deepEqual(after, row());
  });

  it('leaves EOS alone with ignoreEos but still masks stop ids', () => {
    const p = params({ minTokens: 1, stopTokenIds: [5], ignoreEos: true });
    const logits = row();
    applyMinTokens(logits, p, makeState(p, [], [EOS]));
    assert.equal(logits[EOS], 3);
    assert.equal(logits[5], -Infinity);
  });

  it('keeps greedy sampling off EOS and stop ids until minTokens', () => {
    const p = params({ temperature: 0, minTokens: 3, stopTokenIds: [5] });
    const state = makeState(p, [], [EOS]);
    const logits = Float32Array.from([9, 1, 2, 0, 0, 8, 0]); // EOS best, stop id second
    const tokens: number[] = [];
    for (let i = 0; i < 4; i++) {
      const { tokenId } = sampleToken(logits, p, state);
      tokens.push(tokenId);
      state.appendToken(tokenId);
    }
    assert.deepEqual(tokens, [2, 2, 2, EOS]);
  });
});

describe('logit_bias', () => {
  it('adds the bias to each listed token', () => {
    const p = params({ logitBias: { '1': -100, '3': 2.5 } });
    const logits = row();
    applyLogitBias(logits, p);
    const expected = row();
    expected[1] = Math.fround(2.5 - 100);
    expected[3] = Math.fround(0.75 + 2.5);
    assert.deepEqual(logits, expected);
  });

  it('steers greedy sampling', () => {
    const p = params({ temperature: 0, logitBias: { '2': 10 } });
    assert.equal(sampleToken(row(), p, makeState(p)).tokenId, 2);
  });
});

describe('penalties', () => {
  it('apply repetition over prompt ∪ output, then frequency and presence over output counts', () => {
    const r = 1.3;
    const f = 0.4;
    const pres = 0.7;
    const p = params({ repetitionPenalty: r, frequencyPenalty: f, presencePenalty: pres });
    const state = makeState(p, [1, 2, 2], [EOS]);
    for (const t of [2, 4, 4, 4]) state.appendToken(t);
    const logits = row();
    applyPenalties(logits, p, state);
    // The formulas, rounded to float32 after each step as the row stores them.
    const raw = row();
    const rep = (x: number) => Math.fround(x > 0 ? x / r : x * r);
    const freqPres = (x: number, count: number) => Math.fround(x - (f * count + pres));
    const expected = [raw[0], rep(raw[1]!), freqPres(rep(raw[2]!), 1), raw[3], freqPres(rep(raw[4]!), 3), raw[5], raw[6]];
    assert.deepEqual(Array.from(logits), expected);
    // Sanity against the unrounded formulas.
    assert.ok(Math.abs(logits[4]! - (-0.25 * r - f * 3 - pres)) < 1e-6);
  });

  it('are no-ops at their neutral values', () => {
    const p = params();
    const state = makeState(p, [1, 2], [EOS]);
    state.appendToken(3);
    const logits = row();
    applyLogitsProcessors(logits, p, state);
    assert.deepEqual(logits, row());
  });

  it('any repetition penalty > 0 leaves a finite row, even after the smallest temperature', () => {
    for (const r of [1e-300, Number.MIN_VALUE, 1e300]) {
      const p = params({ repetitionPenalty: r, temperature: GREEDY_TEMPERATURE, minTokens: 1 });
      const state = makeState(p, [0, 1, 2, 3, 4, 5, 6], [EOS]);
      const logits = row();
      applyLogitsProcessors(logits, p, state);
      assert.equal(logits[EOS], -Infinity, `r=${r}: the min_tokens mask survives`);
      for (let i = 1; i < logits.length; i++) assert.ok(Number.isFinite(logits[i]), `r=${r}: logit ${i} = ${logits[i]}`);
      // Sampling works on it: greedy and drawn.
      assert.ok(sampleToken(row(), p, state).tokenId > EOS);
      assert.ok(sampleToken(row(), params({ repetitionPenalty: r, temperature: 0 }), state).tokenId >= 0);
    }
  });

  it('saturates penalised logits at MAX_PENALIZED_LOGIT, exact below it', () => {
    const tiny = params({ repetitionPenalty: 1e-300 });
    const logits = row();
    applyPenalties(logits, tiny, makeState(tiny, [0, 2], [EOS]));
    assert.equal(logits[0], Math.fround(MAX_PENALIZED_LOGIT));
    assert.equal(logits[2], Math.fround(-1.5 * 1e-300));
    const small = params({ repetitionPenalty: 1e-30 });
    const exact = row();
    applyPenalties(exact, small, makeState(small, [0], [EOS]));
    assert.equal(exact[0], Math.fround(3 / 1e-30));
  });

  it('negative presence/frequency penalties encourage repeats', () => {
    const p = params({ presencePenalty: -1, frequencyPenalty: -0.5 });
    const state = makeState(p);
    state.appendToken(6);
    state.appendToken(6);
    const logits = row();
    applyPenalties(logits, p, state);
    assert.equal(logits[6], 1 + 0.5 * 2 + 1);
  });
});

describe('temperature', () => {
  it('divides every logit, and is skipped for greedy requests', () => {
    const logits = row();
    applyTemperature(logits, 0.5);
    assert.deepEqual(
      logits,
      Float32Array.from(row(), (x) => x / 0.5),
    );
    const greedy = params({ temperature: 0 });
    const unchanged = row();
    applyLogitsProcessors(unchanged, greedy, makeState(greedy));
    assert.deepEqual(unchanged, row());
    const topK1 = params({ temperature: 0.5, topK: 1 });
    applyLogitsProcessors(unchanged, topK1, makeState(topK1));
    assert.deepEqual(unchanged, row());
  });

  it('runs after bias and penalties (vLLM order)', () => {
    const p = params({ temperature: 2, logitBias: { '0': 1 }, frequencyPenalty: 1 });
    const state = makeState(p);
    state.appendToken(0);
    const logits = row();
    applyLogitsProcessors(logits, p, state);
    assert.equal(logits[0], (3 + 1 - 1) / 2);
  });
});
