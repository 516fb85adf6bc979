// What a request is told when it cannot be served as sent: a request that can never be admitted is
// a 400 naming the limit (a 429 would invite retries that can never succeed), a request without
// max_tokens gets what fits (never an error about a value the client did not send), and
// /v1/models reports the longest sequence the KV cache can hold.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../../src/server/serve.ts';
import { kvCapacityWarning } from '../../src/server/limits.ts';
import { startTestServer } from '../helpers/server.ts';
import { textModelDir } from '../helpers/text_model.ts';
import { at } from '../helpers/at.ts';

interface Reply {
  status: number;
  body: {
    error?: { code: string; message: string; param: string | null };
    usage?: { prompt_tokens: number; completion_tokens: number };
    choices?: { finish_reason: string }[];
    data?: { max_model_len: number }[];
  };
}

async function post(server: RunningServer, url: string, body: object): Promise<Reply> {
  const res = await fetch(`${server.address}${url}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Reply['body'] };
}

const KV_TOKENS = 8 * 16; // --num-kv-blocks 8 x --block-size 16, below the model's 512 positions
const ids = (length: number, offset = 0) => Array.from({ length }, (_, i) => ((i * 11 + offset) % 500) + 2);

describe('admission semantics', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer(textModelDir(), ['--num-kv-blocks', '8', '--max-queued-requests', '8', '--max-queued-tokens', '200']);
  });
  after(async () => {
    await server.drainAndClose();
  });

  test('more choices than --max-queued-requests can ever queue: 400 naming the limit', async () => {
    const r = await post(server, '/v1/completions', { prompt: [ids(3), ids(3, 1), ids(3, 2)], n: 3, max_tokens: 2 });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.error?.code, 'DSV_ERR_INVALID_REQUEST');
    assert.match(r.body.error!.message, /9 choices.*--max-queued-requests.*8/);
    const ok = await post(server, '/v1/completions', { prompt: [ids(3), ids(3, 1)], n: 4, max_tokens: 2 });
    assert.equal(ok.status, 200, 'exactly 8 choices fit');
  });

  test('more prompt tokens than --max-queued-tokens can ever queue: 400 naming the limit', async () => {
    const r = await post(server, '/v1/completions', { prompt: ids(60), n: 4, max_tokens: 2 });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.match(r.body.error!.message, /240 prompt tokens.*--max-queued-tokens.*200/);
  });

  test('completions without max_tokens: the default 16 shrinks to what the KV cache holds', async () => {
    const r = await post(server, '/v1/completions', { prompt: ids(KV_TOKENS - 5), temperature: 0, ignore_eos: true });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.usage?.completion_tokens, 5);
    assert.equal(at(r.body.choices ?? [], 0).finish_reason, 'length');
  });

  test('chat without max_tokens generates up to what the KV cache holds', async () => {
    const r = await post(server, '/v1/chat/completions', { messages: [{ role: 'user', content: 'Hello world' }], temperature: 0, ignore_eos: true });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.usage!.prompt_tokens + r.body.usage!.completion_tokens, KV_TOKENS);
  });

  test('a prompt that leaves no room: 400 about the prompt, not about max_tokens', async () => {
    const r = await post(server, '/v1/completions', { prompt: ids(KV_TOKENS) });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.error?.code, 'DSV_ERR_CONTEXT_LENGTH');
    assert.match(r.body.error!.message, new RegExp(`prompt has ${KV_TOKENS} tokens.*${KV_TOKENS}`));
    assert.doesNotMatch(r.body.error!.message, /max_tokens/);
  });

  test('/v1/models and /tokenize report the servable length', async () => {
    const models = (await (await fetch(`${server.address}/v1/models`)).json()) as Reply['body'];
    assert.equal(at(models.data ?? [], 0).max_model_len, KV_TOKENS);
    const tok = (await post(server, '/tokenize', { prompt: 'Hello' })).body as { max_model_len?: number };
    assert.equal(tok.max_model_len, KV_TOKENS);
  });
});

test('kvCapacityWarning: only when the KV cache cannot hold one max-model-len sequence', () => {
  assert.equal(kvCapacityWarning(512, 1024), null);
  assert.equal(kvCapacityWarning(512, 512), null);
  assert.match(kvCapacityWarning(512, 128) ?? '', /KV cache holds 128 tokens.*--max-model-len 512.*128/);
});
