// The official `openai` npm client over a real socket: completion, chat completion, both streamed;
// then the raw SSE framing of a streamed chat completion.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import type { RunningServer } from '../../src/server/serve.ts';
import { parseSse, startTestServer } from '../helpers/server.ts';
import { textModelDir } from '../helpers/text_model.ts';
import { at } from '../helpers/at.ts';

describe('openai client against the real server', () => {
  let server: RunningServer;
  let client: OpenAI;
  let model: string;
  before(async () => {
    server = await startTestServer(textModelDir(), ['--served-model-name', 'tiny-text', '--api-key', 'sk-test-key']);
    client = new OpenAI({ baseURL: `${server.address}/v1`, apiKey: 'sk-test-key', maxRetries: 0 });
    model = 'tiny-text';
  });
  after(async () => {
    await server.drainAndClose();
  });

  test('models list', async () => {
    const models = await client.models.list();
    assert.deepEqual(
      models.data.map((m) => m.id),
      ['tiny-text'],
    );
  });

  test('completion', async () => {
    const r = await client.completions.create({ model, prompt: 'Hello world', max_tokens: 8, temperature: 0 });
    assert.equal(r.object, 'text_completion');
    assert.equal(r.choices.length, 1);
    assert.equal(typeof at(r.choices, 0).text, 'string');
    assert.ok(['length', 'stop'].includes(at(r.choices, 0).finish_reason));
    assert.equal(r.usage!.completion_tokens, at(r.choices, 0).finish_reason === 'length' ? 8 : r.usage!.completion_tokens);
    assert.ok(r.usage!.prompt_tokens > 0);
  });

  test('streamed completion concatenates to the non-streamed text', async () => {
    const full = await client.completions.create({
      model,
      prompt: 'The quick brown fox',
      max_tokens: 12,
      temperature: 0,
      ignore_eos: true,
    } as OpenAI.CompletionCreateParamsNonStreaming);
    const stream = await client.completions.create({
      model,
      prompt: 'The quick brown fox',
      max_tokens: 12,
      temperature: 0,
      ignore_eos: true,
      stream: true,
    } as OpenAI.CompletionCreateParamsStreaming);
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(text, at(full.choices, 0).text);
    assert.equal(finish, 'length');
  });

  test('chat completion and streamed chat completion agree', async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hello world' },
    ];
    const r = await client.chat.completions.create({ model, messages, max_tokens: 10, temperature: 0, logprobs: true, top_logprobs: 2 });
    assert.equal(r.object, 'chat.completion');
    assert.equal(at(r.choices, 0).message.role, 'assistant');
    assert.equal(at(r.choices, 0).logprobs!.content!.length, r.usage!.completion_tokens);
    assert.equal(at(at(r.choices, 0).logprobs!.content!, 0).top_logprobs.length, 2);
    const stream = await client.chat.completions.create({
      model,
      messages,
      max_tokens: 10,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let content = '';
    let role: string | undefined;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      role ??= chunk.choices[0]?.delta.role;
      content += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(role, 'assistant');
    assert.equal(content, at(r.choices, 0).message.content);
    assert.equal(usage!.completion_tokens, r.usage!.completion_tokens);
  });

  test('raw SSE framing of a streamed chat completion', async () => {
    const res = await fetch(`${server.address}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer sk-test-key' },
      body: JSON.stringify({
        model,
        messages: [{ role: 'user', content: 'Hi' }],
        max_tokens: 5,
        temperature: 0,
        ignore_eos: true,
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /^text\/event-stream/);
    const body = await res.text();
    const { events, frames } = parseSse(body);
    assert.ok(frames.every((f) => f.startsWith('data: ')));
    assert.equal(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1) as {
      object: string;
      choices: { delta: { role?: string; content?: string }; finish_reason: string | null }[];
      usage: unknown;
    }[];
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
    assert.deepEqual(at(at(chunks, 0).choices, 0).delta, { role: 'assistant', content: '' });
    const usageChunk = chunks.at(-1)!;
    assert.deepEqual(usageChunk.choices, []);
    assert.ok(usageChunk.usage);
    const content = chunks.slice(1, -1);
    assert.equal(at(content.at(-1)!.choices, 0).finish_reason, 'length');
    assert.ok(content.slice(0, -1).every((c) => at(c.choices, 0).finish_reason === null && c.usage === null));
  });

  test('a wrong API key is refused with 401', async () => {
    const bad = new OpenAI({ baseURL: `${server.address}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
    await assert.rejects(bad.models.list(), (err: InstanceType<typeof OpenAI.APIError>) => err.status === 401);
    const health = await fetch(`${server.address}/health`);
    assert.equal(health.status, 200);
  });
});
