import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultSamplingParams, isGreedy, resolveSamplingParams } from '../../../src/engine/sampling/sampling_params.ts';
import { assertInvalid } from './helpers.ts';

describe('resolveSamplingParams', () => {
  it('fills defaults and freezes the result', () => {
    const p = resolveSamplingParams({});
    assert.deepEqual(p, defaultSamplingParams);
    assert.ok(Object.isFrozen(p));
    assert.ok(Object.isFrozen(p.stopTokenIds));
    assert.equal(isGreedy(p), false);
  });

  it('normalises equivalent spellings', () => {
    const p = resolveSamplingParams({ topK: -1, temperature: 1e-6, logitBias: { '7': 5, '9': 0 }, stopTokenIds: [3, 3, 4] });
    assert.equal(p.topK, 0);
    assert.equal(p.temperature, 0);
    assert.equal(isGreedy(p), true);
    assert.deepEqual([...p.logitBias!], [[7, 5]]);
    assert.deepEqual(p.stopTokenIds, [3, 4]);
    assert.equal(resolveSamplingParams({ logitBias: new Map([[1, 0]]) }).logitBias, null);
    assert.equal(isGreedy(resolveSamplingParams({ topK: 1 })), true);
  });

  it('accepts the range boundaries', () => {
    const p = resolveSamplingParams({
      temperature: 2, topP: 1, topK: 1, minP: 1, seed: -(2 ** 53 - 1), presencePenalty: -2, frequencyPenalty: 2,
      repetitionPenalty: 0.5, logitBias: { '0': -100, '1': 100 }, maxTokens: 1, minTokens: 1, n: 3, logprobs: 0, promptLogprobs: 20,
    });
    assert.equal(p.minTokens, 1);
    assert.equal(p.logprobs, 0);
  });

  it('rejects invalid values, naming the field', () => {
    assertInvalid({ temperature: -0.1 }, 'temperature');
    assertInvalid({ temperature: Number.NaN }, 'temperature');
    assertInvalid({ temperature: Infinity }, 'temperature');
    assertInvalid({ topP: 0 }, 'topP');
    assertInvalid({ topP: 1.01 }, 'topP');
    assertInvalid({ topP: Number.NaN }, 'topP');
    assertInvalid({ topK: -2 }, 'topK');
    assertInvalid({ topK: 2.5 }, 'topK');
    assertInvalid({ minP: -0.01 }, 'minP');
    assertInvalid({ minP: 1.5 }, 'minP');
    assertInvalid({ seed: 1.5 }, 'seed');
    assertInvalid({ seed: 2 ** 60 }, 'seed');
    assertInvalid({ presencePenalty: 2.1 }, 'presencePenalty');
    assertInvalid({ frequencyPenalty: -2.1 }, 'frequencyPenalty');
    assertInvalid({ frequencyPenalty: Number.NaN }, 'frequencyPenalty');
    assertInvalid({ repetitionPenalty: 0 }, 'repetitionPenalty');
    assertInvalid({ repetitionPenalty: -1 }, 'repetitionPenalty');
    assertInvalid({ logitBias: { '5': 101 } }, 'logitBias[5]');
    assertInvalid({ logitBias: { '5': Number.NaN } }, 'logitBias[5]');
    assertInvalid({ logitBias: { abc: 1 } }, 'logitBias');
    assertInvalid({ logitBias: new Map([[-1, 1]]) }, 'logitBias');
    assertInvalid({ maxTokens: 0 }, 'maxTokens');
    assertInvalid({ minTokens: -1 }, 'minTokens');
    assertInvalid({ maxTokens: 4, minTokens: 5 }, 'minTokens');
    assertInvalid({ stopTokenIds: [1, -3] }, 'stopTokenIds');
    assertInvalid({ n: 0 }, 'n');
    assertInvalid({ logprobs: -1 }, 'logprobs');
    assertInvalid({ logprobs: 21 }, 'logprobs');
    assertInvalid({ promptLogprobs: 1.5 }, 'promptLogprobs');
    assertInvalid({ ignoreEos: 'yes' as unknown as boolean }, 'ignoreEos');
  });

  it('checks token ids against the vocab and logprobs against the limit when given', () => {
    assert.throws(() => resolveSamplingParams({ stopTokenIds: [512] }, { vocabSize: 512 }), /'stopTokenIds'.*\[0, 511\]/);
    assert.throws(() => resolveSamplingParams({ logitBias: { '600': 1 } }, { vocabSize: 512 }), /'logitBias'/);
    assert.throws(() => resolveSamplingParams({ logprobs: 6 }, { maxLogprobs: 5 }), /'logprobs'/);
    assert.equal(resolveSamplingParams({ stopTokenIds: [511] }, { vocabSize: 512 }).stopTokenIds[0], 511);
  });
});
