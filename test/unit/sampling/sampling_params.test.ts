// The engine's side of sampling parameters: defaults and invariant asserts. User input is
// validated at the edge (test/server/sampling_schema.test.ts); here a violation is a bug.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EngineError } from '../../../src/common/errors.ts';
import {
  defaultSamplingParams,
  isGreedy,
  resolveSamplingParams,
  type SamplingLimits,
  type SamplingParamsInit,
} from '../../../src/engine/sampling/sampling_params.ts';

function assertViolation(init: SamplingParamsInit, field: string, limits: SamplingLimits = {}): void {
  assert.throws(
    () => resolveSamplingParams(init, limits),
    (err: unknown) => err instanceof EngineError && err.code === 'DSV_ERR_INTERNAL' && err.message.includes(`'${field}'`),
    `expected ${JSON.stringify(init)} to violate the '${field}' invariant`,
  );
}

describe('resolveSamplingParams', () => {
  it('fills defaults and freezes the result', () => {
    const p = resolveSamplingParams({});
    assert.deepEqual(p, defaultSamplingParams);
    assert.ok(Object.isFrozen(p));
    assert.ok(Object.isFrozen(p.stopTokenIds));
    assert.equal(isGreedy(p), false);
    assert.equal(isGreedy(resolveSamplingParams({ temperature: 0 })), true);
    assert.equal(isGreedy(resolveSamplingParams({ topK: 1 })), true);
  });

  it('accepts the boundaries of every invariant', () => {
    const p = resolveSamplingParams(
      {
        temperature: 1e-5,
        topP: 1,
        topK: 0,
        minP: 1,
        seed: -(2 ** 53 - 1),
        presencePenalty: -2,
        frequencyPenalty: 2,
        repetitionPenalty: 0.5,
        logitBias: new Map([
          [0, -100],
          [511, 100],
        ]),
        maxTokens: 1,
        minTokens: 1,
        stopTokenIds: [511],
        n: 3,
        logprobs: 0,
        promptLogprobs: 20,
      },
      { vocabSize: 512, maxLogprobs: 20 },
    );
    assert.equal(p.minTokens, 1);
  });

  it('asserts the invariants the sampler relies on (user input never gets here unvalidated)', () => {
    assertViolation({ temperature: 1e-6 }, 'temperature'); // the edge normalises this to 0
    assertViolation({ temperature: -0.1 }, 'temperature');
    assertViolation({ temperature: Number.NaN }, 'temperature');
    assertViolation({ temperature: Infinity }, 'temperature');
    assertViolation({ topP: 0 }, 'topP');
    assertViolation({ topP: 1.01 }, 'topP');
    assertViolation({ topK: -1 }, 'topK'); // the edge normalises -1 to 0
    assertViolation({ topK: 2.5 }, 'topK');
    assertViolation({ minP: 1.5 }, 'minP');
    assertViolation({ seed: 2 ** 60 }, 'seed');
    assertViolation({ frequencyPenalty: Number.NaN }, 'frequencyPenalty');
    assertViolation({ repetitionPenalty: 0 }, 'repetitionPenalty');
    assertViolation({ maxTokens: 0 }, 'maxTokens');
    assertViolation({ maxTokens: 4, minTokens: 5 }, 'minTokens');
    assertViolation({ n: 0 }, 'n');
    assertViolation({ logprobs: -1 }, 'logprobs');
    assertViolation({ promptLogprobs: 1.5 }, 'promptLogprobs');
    assertViolation({ logprobs: 6 }, 'logprobs', { maxLogprobs: 5 });
    assertViolation({ ignoreEos: 'yes' as unknown as boolean }, 'ignoreEos');
    assertViolation({ stopTokenIds: [1, -3] }, 'stopTokenIds');
    assertViolation({ stopTokenIds: [512] }, 'stopTokenIds', { vocabSize: 512 });
    assertViolation({ logitBias: new Map() }, 'logitBias'); // empty is spelled null
    assertViolation({ logitBias: new Map([[600, 1]]) }, 'logitBias', { vocabSize: 512 });
    assertViolation({ logitBias: new Map([[5, Number.NaN]]) }, 'logitBias');
  });
});
