// /v1/responses through the real server with the official openai client, on random weights (the
// shared fixture with a trained tokenizer): plain, streamed, a zod text format and a tool round trip
// are well-formed; only the grammar can make the structured ones valid.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { zodTextFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import type { RunningServer } from '../../src/server/serve.ts';
import { startTestServer } from '../helpers/server.ts';
import { longTextModelDir } from '../helpers/text_model.ts';
import { at } from '../helpers/at.ts';

const Verse = z.object({ book: z.enum(['Genesis', 'John']), chapter: z.number().int().min(1).max(50), ok: z.boolean() });
const LOOKUP: OpenAI.Responses.FunctionTool = {
  type: 'function',
  name: 'lookup_verse',
  strict: true,
  parameters: {
    type: 'object',
    properties: { book: { enum: ['Genesis', 'John'] }, chapter: { type: 'integer', minimum: 1, maximum: 50 } },
    required: ['book', 'chapter'],
    additionalProperties: false,
  },
};

describe('/v1/responses with the openai client', () => {
  let server: RunningServer;
  let client: OpenAI;
  before(async () => {
    server = await startTestServer(longTextModelDir(), ['--served-model-name', 'tiny-text', '--num-kv-blocks', '512']);
    client = new OpenAI({ baseURL: `${server.address}/v1`, apiKey: 'none', maxRetries: 0 });
  });
  after(async () => {
    await server.drainAndClose();
  });

  test('plain and streamed responses agree', async () => {
    const r = await client.responses.create({ model: 'tiny-text', input: 'Hello world', instructions: 'Be brief.', max_output_tokens: 12, temperature: 0 });
    assert.equal(r.object, 'response');
    assert.ok(r.id.startsWith('resp_'));
    assert.ok(['completed', 'incomplete'].includes(r.status!));
    assert.equal(r.output[0]?.type, 'message');
    assert.ok(r.usage!.input_tokens > 0);
    assert.equal(r.usage!.total_tokens, r.usage!.input_tokens + r.usage!.output_tokens);
    const stream = client.responses.stream({ model: 'tiny-text', input: 'Hello world', instructions: 'Be brief.', max_output_tokens: 12, temperature: 0 });
    const types: string[] = [];
    for await (const e of stream) types.push(e.type);
    const final = await stream.finalResponse();
    assert.equal(final.output_text, r.output_text);
    assert.deepEqual(types.slice(0, 4), ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    assert.equal(types.at(-1), r.status === 'completed' ? 'response.completed' : 'response.incomplete');
  });

  test('text.format from a zod schema: parsed and valid on random weights', async () => {
    // Sampled (chat covers greedy); the grammar is the same either way.
    const r = await client.responses.parse({
      model: 'tiny-text',
      input: 'Which verse?',
      text: { format: zodTextFormat(Verse, 'verse') },
      temperature: 1,
      max_output_tokens: 300,
    });
    assert.equal(r.status, 'completed', r.output_text);
    assert.deepEqual(Verse.parse(r.output_parsed), r.output_parsed);
  });

  test('a forced tool call, then its result: a full round trip', async () => {
    const first = await client.responses.create({
      model: 'tiny-text',
      input: 'Find Genesis 1:3',
      tools: [LOOKUP],
      tool_choice: 'required',
      parallel_tool_calls: false,
      temperature: 0,
      max_output_tokens: 400,
    });
    const calls = first.output.filter((o): o is OpenAI.Responses.ResponseFunctionToolCall => o.type === 'function_call');
    assert.equal(calls.length, 1, JSON.stringify(first.output));
    const call = at(calls, 0);
    assert.equal(call.name, 'lookup_verse');
    assert.equal(call.status, 'completed');
    const args = JSON.parse(call.arguments) as { book: string; chapter: number };
    assert.ok(['Genesis', 'John'].includes(args.book) && args.chapter >= 1 && args.chapter <= 50, call.arguments);
    const second = await client.responses.create({
      model: 'tiny-text',
      input: [
        { role: 'user', content: 'Find Genesis 1:3' },
        { type: 'function_call', call_id: call.call_id, name: call.name, arguments: call.arguments },
        { type: 'function_call_output', call_id: call.call_id, output: 'And God said, Let there be light' },
      ],
      tools: [LOOKUP],
      tool_choice: 'auto',
      max_output_tokens: 8,
      temperature: 0,
    });
    // The prompt now also holds the call and its result.
    assert.ok(second.usage!.input_tokens > first.usage!.input_tokens + 20, `${second.usage!.input_tokens} vs ${first.usage!.input_tokens}`);
    assert.ok(second.output.length > 0);
  });

  test('stateless: previous_response_id and unknown fields are 400s naming them', async () => {
    await assert.rejects(client.responses.create({ model: 'tiny-text', input: 'x', previous_response_id: 'resp_123' }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.match(e.message, /previous_response_id.*stateless/);
      return true;
    });
    const res = await fetch(`${server.address}/v1/responses`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input: 'x', frequency_penalty: 1 }),
    });
    assert.equal(res.status, 400);
    assert.match(JSON.stringify(await res.json()), /frequency_penalty/);
  });
});
