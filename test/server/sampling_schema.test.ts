// The edge: zod turns the sampling fields of both generation routes into the engine's
// SamplingParams (one snake_case -> camelCase map, one set of limits), naming the field at fault.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EngineError } from '../../src/common/errors.ts';
import { assertSamplingParams, defaultSamplingParams } from '../../src/engine/sampling/sampling_params.ts';
import { toHttpError } from '../../src/server/http_errors.ts';
import { chatCompletionRequestSchema, completionRequestSchema } from '../../src/server/schemas/openai.ts';
import { withMaxTokens } from '../../src/server/schemas/sampling.ts';

const limits = { vocabSize: 512, maxLogprobs: 20 };
const completion = completionRequestSchema(limits);
const chat = chatCompletionRequestSchema(limits);
const messages = [{ role: 'user', content: 'hi' }];

function completionParams(fields: object, maxTokens = 16) {
  const { sampling } = completion.parse({ prompt: [5, 6], ...fields });
  const params = withMaxTokens(sampling, maxTokens);
  assertSamplingParams(params, { vocabSize: limits.vocabSize }); // what the engine worker checks
  return params;
}

/** The 400 body a request gets: [param, message]. */
function rejection(schema: typeof completion | typeof chat, body: object): [string | null, string] {
  const r = schema.safeParse(body);
  assert.ok(!r.success, `expected ${JSON.stringify(body)} to be rejected`);
  const [status, err] = toHttpError(r.error);
  assert.equal(status, 400);
  assert.equal(err.error.code, 'DSV_ERR_INVALID_REQUEST');
  return [err.error.param, err.error.message];
}

describe('sampling fields -> SamplingParams', () => {
  it('defaults to the engine defaults, frozen', () => {
    const p = completionParams({});
    assert.deepEqual(p, defaultSamplingParams);
    assert.ok(Object.isFrozen(p));
  });

  it('maps every field once, snake_case to camelCase', () => {
    const p = completionParams(
      {
        temperature: 0.7,
        top_p: 0.9,
        top_k: 40,
        min_p: 0.05,
        seed: 42,
        presence_penalty: 0.5,
        frequency_penalty: -0.5,
        repetition_penalty: 1.1,
        logit_bias: { '7': 5 },
        min_tokens: 2,
        stop_token_ids: [3],
        ignore_eos: true,
        n: 2,
        logprobs: 3,
        echo: true,
      },
      30,
    );
    assert.deepEqual(
      { ...p, logitBias: [...p.logitBias!] },
      {
        temperature: 0.7,
        topP: 0.9,
        topK: 40,
        minP: 0.05,
        seed: 42,
        presencePenalty: 0.5,
        frequencyPenalty: -0.5,
        repetitionPenalty: 1.1,
        logitBias: [[7, 5]],
        maxTokens: 30,
        minTokens: 2,
        stopTokenIds: [3],
        ignoreEos: true,
        n: 2,
        logprobs: 3,
        promptLogprobs: 3,
      },
    );
    const c = withMaxTokens(chat.parse({ messages, logprobs: true, top_logprobs: 4, temperature: 0 }).sampling, 8);
    assert.equal(c.logprobs, 4);
    assert.equal(c.promptLogprobs, null);
    assert.equal(withMaxTokens(chat.parse({ messages, top_logprobs: 4 }).sampling, 8).logprobs, null, 'top_logprobs without logprobs: true');
    assert.equal(withMaxTokens(chat.parse({ messages, logprobs: true }).sampling, 8).logprobs, 0);
  });

  it('normalises equivalent spellings so the engine sees one', () => {
    const p = completionParams({ top_k: -1, temperature: 1e-6, logit_bias: { '7': 5, '9': 0 }, stop_token_ids: [3, 3, 4] });
    assert.equal(p.topK, 0);
    assert.equal(p.temperature, 0);
    assert.deepEqual([...p.logitBias!], [[7, 5]]);
    assert.deepEqual(p.stopTokenIds, [3, 4]);
    assert.equal(completionParams({ logit_bias: { '1': 0 } }).logitBias, null);
    assert.equal(completionParams({ logprobs: 2 }).promptLogprobs, null, 'prompt logprobs only with echo');
  });

  it('accepts the range boundaries', () => {
    const p = completionParams(
      {
        temperature: 100,
        top_p: 1,
        top_k: 1,
        min_p: 1,
        seed: -(2 ** 53 - 1),
        presence_penalty: -2,
        frequency_penalty: 2,
        repetition_penalty: 0.5,
        logit_bias: { '0': -100, '511': 100 },
        min_tokens: 1,
        stop_token_ids: [511],
        n: 64,
        logprobs: 20,
      },
      1,
    );
    assert.equal(p.minTokens, 1);
    assert.equal(p.logprobs, 20);
  });

  it('rejects invalid values with a 400 naming the field (the same limits on both routes)', () => {
    const cases: [object, string][] = [
      [{ temperature: -0.1 }, 'temperature'],
      [{ temperature: 1e300 }, 'temperature'],
      [{ top_p: 0 }, 'top_p'],
      [{ top_p: 1.01 }, 'top_p'],
      [{ top_k: -2 }, 'top_k'],
      [{ top_k: 2.5 }, 'top_k'],
      [{ min_p: -0.01 }, 'min_p'],
      [{ min_p: 1.5 }, 'min_p'],
      [{ seed: 1.5 }, 'seed'],
      [{ seed: 2 ** 60 }, 'seed'],
      [{ presence_penalty: 2.1 }, 'presence_penalty'],
      [{ frequency_penalty: -2.1 }, 'frequency_penalty'],
      [{ repetition_penalty: 0 }, 'repetition_penalty'],
      [{ repetition_penalty: -1 }, 'repetition_penalty'],
      [{ logit_bias: { '5': 101 } }, 'logit_bias.5'],
      [{ logit_bias: { '600': 1 } }, 'logit_bias.600'],
      [{ min_tokens: -1 }, 'min_tokens'],
      [{ n: 0 }, 'n'],
      [{ n: 65 }, 'n'],
      [{ stop_token_ids: [1, -3] }, 'stop_token_ids.1'],
      [{ stop_token_ids: [512] }, 'stop_token_ids.0'],
      [{ ignore_eos: 'yes' }, 'ignore_eos'],
    ];
    for (const [fields, param] of cases) {
      assert.equal(rejection(completion, { prompt: [1], ...fields })[0], param, JSON.stringify(fields));
      assert.equal(rejection(chat, { messages, ...fields })[0], param, JSON.stringify(fields));
    }
    assert.deepEqual(rejection(completion, { prompt: [1], stop_token_ids: [512] }), [
      'stop_token_ids.0',
      'stop_token_ids.0: token id 512 is outside the vocabulary [0, 512)',
    ]);
    assert.equal(rejection(completion, { prompt: [1], logit_bias: { abc: 1 } })[0], 'logit_bias.abc');
  });

  it('logprobs and top_logprobs are bounded by --max-logprobs, with the flag named', () => {
    const message = "logprobs: at most 20 logprobs may be requested (the server's --max-logprobs), got 21";
    assert.deepEqual(rejection(completion, { prompt: [1], logprobs: 21 }), ['logprobs', message]);
    assert.deepEqual(rejection(chat, { messages, logprobs: true, top_logprobs: 21 }), ['top_logprobs', `top_${message}`]);
    assert.equal(rejection(completionRequestSchema({ ...limits, maxLogprobs: 0 }), { prompt: [1], logprobs: 1 })[0], 'logprobs');
  });

  it('min_tokens above max_tokens (given or defaulted) is a 400 naming min_tokens', () => {
    const { sampling } = completion.parse({ prompt: [1], min_tokens: 20 });
    assert.throws(
      () => withMaxTokens(sampling, 16),
      (err: unknown) =>
        err instanceof EngineError && err.code === 'DSV_ERR_INVALID_REQUEST' && err.param === 'min_tokens' && /max_tokens \(16\), got 20/.test(err.message),
    );
    assert.equal(withMaxTokens(sampling, 20).minTokens, 20);
  });
});
