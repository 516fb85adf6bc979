// Every error class gets a 4xx/5xx OpenAI error body, and the server keeps serving afterwards.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../../src/server/serve.ts';
import { FIXTURE_DIR } from '../helpers/golden.ts';
import { startTestServer } from '../helpers/server.ts';
import { textModelDir } from '../helpers/text_model.ts';

interface ErrorResponse {
  error: { message: string; type: string; param: string | null; code: string };
}

function post(server: RunningServer, url: string, payload: unknown, headers: Record<string, string> = {}) {
  return server.app.inject({
    method: 'POST',
    url,
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    headers: { 'content-type': 'application/json', ...headers },
  });
}

function expectError(res: { statusCode: number; json: () => unknown; body: string }, status: number, code: string, message?: RegExp, param?: string): void {
  assert.equal(res.statusCode, status, res.body);
  const body = res.json() as ErrorResponse;
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(body.error.code, code);
  if (message) assert.match(body.error.message, message);
  if (param !== undefined) assert.equal(body.error.param, param);
  assert.ok(!/\n\s+at /.test(body.error.message), 'no stack trace');
}

describe('HTTP errors (text model)', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer(textModelDir(), ['--max-request-body', '64KiB', '--max-model-len', '256']);
  });
  after(async () => {
    await server.drainAndClose();
  });

  test('malformed JSON -> 400', async () => {
    expectError(await post(server, '/v1/completions', '{"prompt": "hi",'), 400, 'DSV_ERR_INVALID_REQUEST');
  });

  test('wrong types, negative and huge numbers -> 400 naming the field', async () => {
    expectError(await post(server, '/v1/completions', { prompt: 'hi', max_tokens: 'ten' }), 400, 'DSV_ERR_INVALID_REQUEST', /max_tokens/, 'max_tokens');
    expectError(await post(server, '/v1/completions', { prompt: 'hi', max_tokens: -1 }), 400, 'DSV_ERR_INVALID_REQUEST', /max_tokens/, 'max_tokens');
    expectError(await post(server, '/v1/completions', { prompt: 'hi', temperature: 1e300 }), 400, 'DSV_ERR_INVALID_REQUEST', /temperature/, 'temperature');
    expectError(await post(server, '/v1/completions', { prompt: 'hi', n: 10000 }), 400, 'DSV_ERR_INVALID_REQUEST', /n/, 'n');
    expectError(await post(server, '/v1/completions', { prompt: 'hi', top_p: 0 }), 400, 'DSV_ERR_INVALID_REQUEST', /top_p/, 'top_p');
    expectError(await post(server, '/v1/completions', { prompt: 'hi', logit_bias: { abc: 1 } }), 400, 'DSV_ERR_INVALID_REQUEST', /logit_bias/);
    expectError(await post(server, '/v1/completions', { prompt: 'hi', logprobs: 100 }), 400, 'DSV_ERR_INVALID_REQUEST', /logprobs/);
    expectError(await post(server, '/v1/chat/completions', { messages: [{ role: 'wizard', content: 'x' }] }), 400, 'DSV_ERR_INVALID_REQUEST', /messages/);
  });

  test('NaN / Infinity literals are not JSON -> 400', async () => {
    expectError(await post(server, '/v1/completions', '{"prompt": "hi", "temperature": NaN}'), 400, 'DSV_ERR_INVALID_REQUEST');
    expectError(await post(server, '/v1/completions', '{"prompt": "hi", "temperature": Infinity}'), 400, 'DSV_ERR_INVALID_REQUEST');
  });

  test('empty prompts, unknown token ids -> 400', async () => {
    expectError(await post(server, '/v1/completions', { prompt: '' }), 400, 'DSV_ERR_INVALID_REQUEST', /prompt/);
    expectError(await post(server, '/v1/completions', { prompt: [] }), 400, 'DSV_ERR_INVALID_REQUEST');
    expectError(await post(server, '/v1/completions', { prompt: [1, 2, 99999] }), 400, 'DSV_ERR_INVALID_REQUEST', /99999/);
    expectError(await post(server, '/v1/chat/completions', { messages: [] }), 400, 'DSV_ERR_INVALID_REQUEST', /messages/);
    expectError(await post(server, '/detokenize', { tokens: [700] }), 400, 'DSV_ERR_INVALID_REQUEST', /700/);
  });

  test('a prompt over the context length -> 400 with both numbers', async () => {
    const prompt = Array.from({ length: 250 }, (_, i) => (i % 500) + 2);
    expectError(await post(server, '/v1/completions', { prompt, max_tokens: 10 }), 400, 'DSV_ERR_CONTEXT_LENGTH', /256.*250/);
  });

  test('unknown model or route -> 404', async () => {
    expectError(await post(server, '/v1/completions', { model: 'gpt-7', prompt: 'hi' }), 404, 'DSV_ERR_MODEL_NOT_FOUND', /gpt-7/, 'model');
    expectError(await server.app.inject({ method: 'GET', url: '/v1/nothing' }), 404, 'DSV_ERR_NOT_FOUND');
  });

  test('a body over the limit -> 413; deeply nested and huge bodies -> 4xx', async () => {
    expectError(await post(server, '/v1/completions', { prompt: 'x'.repeat(100 * 1024) }), 413, 'DSV_ERR_BODY_TOO_LARGE');
    const nested = `{"prompt": ${'['.repeat(20000)}1${']'.repeat(20000)}}`;
    const res = await post(server, '/v1/completions', nested);
    assert.ok(res.statusCode >= 400 && res.statusCode < 500, `deep nesting -> ${res.statusCode}`);
  });

  test('the server still serves after all of that', async () => {
    const res = await post(server, '/v1/completions', { prompt: 'Hello', max_tokens: 3 });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal((await server.app.inject({ method: 'GET', url: '/health' })).statusCode, 200);
  });
});

describe('HTTP errors (model without a tokenizer)', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer(FIXTURE_DIR);
  });
  after(async () => {
    await server.drainAndClose();
  });

  test('a string prompt -> 400 saying the model has no tokenizer; token ids still work', async () => {
    expectError(await post(server, '/v1/completions', { prompt: 'hello' }), 400, 'DSV_ERR_NO_TOKENIZER', /no tokenizer/);
    expectError(await post(server, '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] }), 400, 'DSV_ERR_NO_TOKENIZER', /no tokenizer/);
    const ok = await post(server, '/v1/completions', { prompt: [5, 6, 7], max_tokens: 2, return_tokens_as_token_ids: true, logprobs: 0 });
    assert.equal(ok.statusCode, 200);
    assert.match(ok.json().choices[0].logprobs.tokens[0], /^token_id:\d+$/);
  });
});
