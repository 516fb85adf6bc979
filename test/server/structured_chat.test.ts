// Structured outputs and tool calls on /v1/chat/completions and /v1/completions through the real
// server with the official openai client, on random weights (fixture weights, trained tokenizer):
// only the grammar can make these outputs valid. Plus the 400s for what cannot be honoured.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import type { RunningServer } from '../../src/server/serve.ts';
import { startTestServer } from '../helpers/server.ts';
import { longTextModelDir } from '../helpers/text_model.ts';
import { at } from '../helpers/at.ts';

const Verse = z.object({ book: z.enum(['Genesis', 'John']), chapter: z.number().int().min(1).max(50), ok: z.boolean() });
const LOOKUP: OpenAI.ChatCompletionFunctionTool = {
  type: 'function',
  function: {
    name: 'lookup_verse',
    parameters: {
      type: 'object',
      properties: { book: { enum: ['Genesis', 'John'] }, chapter: { type: 'integer', minimum: 1, maximum: 50 } },
      required: ['book', 'chapter'],
      additionalProperties: false,
    },
  },
};
const NOW: OpenAI.ChatCompletionFunctionTool = {
  type: 'function',
  function: { name: 'now', parameters: { type: 'object', properties: {}, additionalProperties: false } },
};

function assertLookupArgs(json: string): void {
  const args = JSON.parse(json) as { book: string; chapter: number };
  assert.ok(['Genesis', 'John'].includes(args.book) && Number.isInteger(args.chapter) && args.chapter >= 1 && args.chapter <= 50, json);
}

describe('structured outputs and tools with the openai client', () => {
  let server: RunningServer;
  let client: OpenAI;
  const model = 'tiny-text';
  before(async () => {
    server = await startTestServer(longTextModelDir(), ['--served-model-name', model, '--num-kv-blocks', '512']);
    client = new OpenAI({ baseURL: `${server.address}/v1`, apiKey: 'none', maxRetries: 0 });
  });
  after(async () => {
    await server.drainAndClose();
  });

  test('chat.completions.parse with a zod schema, greedy and sampled, streamed too', async () => {
    for (const temperature of [0, 1]) {
      const r = await client.chat.completions.parse({
        model,
        messages: [{ role: 'user', content: 'Which verse?' }],
        response_format: zodResponseFormat(Verse, 'verse'),
        temperature,
        max_tokens: 300,
      });
      assert.equal(at(r.choices, 0).finish_reason, 'stop', at(r.choices, 0).message.content ?? '');
      assert.deepEqual(Verse.parse(at(r.choices, 0).message.parsed), at(r.choices, 0).message.parsed);
    }
    const stream = client.chat.completions.stream({
      model,
      messages: [
        { role: 'developer', content: 'Answer in JSON.' },
        { role: 'user', content: 'Which verse?' },
      ],
      response_format: zodResponseFormat(Verse, 'verse'),
      temperature: 0,
      max_tokens: 300,
    });
    const final = await stream.finalChatCompletion();
    Verse.parse(at(final.choices, 0).message.parsed);
  });

  test('required tools: a well-formed call, streamed as delta.tool_calls; then a tools round trip', async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Find Genesis 1:3' }];
    const first = await client.chat.completions.create({
      model,
      messages,
      tools: [LOOKUP, NOW],
      tool_choice: 'required',
      parallel_tool_calls: false,
      temperature: 0,
      max_tokens: 400,
    });
    const choice = at(first.choices, 0);
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.tool_calls?.length, 1);
    const call = choice.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
    assert.ok(call.id.startsWith('call_'));
    if (call.function.name === 'lookup_verse') assertLookupArgs(call.function.arguments);
    else assert.deepEqual([call.function.name, JSON.parse(call.function.arguments)], ['now', {}]);

    const stream = client.chat.completions.stream({
      model,
      messages,
      tools: [LOOKUP],
      tool_choice: { type: 'function', function: { name: 'lookup_verse' } },
      temperature: 1,
      seed: 5,
      max_tokens: 400,
    });
    let toolDeltas = 0;
    stream.on('chunk', (c) => (toolDeltas += c.choices[0]?.delta.tool_calls?.length ?? 0));
    const streamed = await stream.finalChatCompletion();
    assert.ok(toolDeltas >= 2, 'name and arguments arrive as separate deltas');
    assert.equal(at(streamed.choices, 0).finish_reason, 'tool_calls');
    const streamedCall = at(streamed.choices, 0).message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
    assert.equal(streamedCall.function.name, 'lookup_verse');
    assertLookupArgs(streamedCall.function.arguments);

    const answer = await client.chat.completions.create({
      model,
      messages: [...messages, choice.message, { role: 'tool', tool_call_id: call.id, content: 'And God said, Let there be light' }],
      tools: [LOOKUP, NOW],
      temperature: 0,
      max_tokens: 8,
    });
    // The prompt now also holds the call and its result.
    assert.ok(answer.usage!.prompt_tokens > first.usage!.prompt_tokens + 20, `${answer.usage!.prompt_tokens} vs ${first.usage!.prompt_tokens}`);
    assert.equal(at(answer.choices, 0).message.role, 'assistant');
  });

  test('completions: guided_json, structured_outputs regex / choice, EBNF', async () => {
    const schema = z.toJSONSchema(Verse);
    const json = await client.completions.create({
      model,
      prompt: 'Verse:',
      max_tokens: 300,
      temperature: 0,
      guided_json: schema,
    } as OpenAI.CompletionCreateParamsNonStreaming);
    Verse.parse(JSON.parse(at(json.choices, 0).text));
    const regex = await client.completions.create({
      model,
      prompt: 'Date:',
      max_tokens: 40,
      temperature: 1,
      seed: 2,
      structured_outputs: { regex: '(19|20)[0-9]{2}-[01][0-9]' },
    } as OpenAI.CompletionCreateParamsNonStreaming);
    assert.match(at(regex.choices, 0).text, /^(19|20)\d{2}-[01]\d$/);
    const choice = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'Light or darkness?' }],
      max_tokens: 20,
      structured_outputs: { choice: ['light', 'darkness'] },
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    assert.ok(['light', 'darkness'].includes(at(choice.choices, 0).message.content!));
    const ebnf = await client.completions.create({
      model,
      prompt: 'x',
      max_tokens: 20,
      n: 3,
      temperature: 1,
      guided_grammar: 'root ::= "Psalm " [1-9] [0-9]?',
    } as OpenAI.CompletionCreateParamsNonStreaming);
    for (const c of ebnf.choices) assert.match(c.text, /^Psalm [1-9][0-9]?$/);
  });

  test('what cannot be honoured is a 400 naming the field', async () => {
    const post = async (url: string, body: object) => {
      const res = await fetch(`${server.address}${url}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model, ...body }),
      });
      return { status: res.status, body: (await res.json()) as { error: { message: string; param: string | null } } };
    };
    const chat = { messages: [{ role: 'user', content: 'x' }] };
    const bad = await post('/v1/chat/completions', { ...chat, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'nope' } } } });
    assert.equal(bad.body.error.param, 'response_format', 'the engine names the field too');
    const cases: [string, object, RegExp][] = [
      [
        '/v1/chat/completions',
        { ...chat, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'nope' } } } },
        /response_format: XGrammar cannot compile.*nope/,
      ],
      ['/v1/completions', { prompt: 'x', guided_regex: '[0-9' }, /guided_regex: XGrammar cannot compile/],
      ['/v1/chat/completions', { ...chat, tools: [LOOKUP], tool_choice: { type: 'function', function: { name: 'missing' } } }, /tool_choice.*missing/],
      [
        '/v1/chat/completions',
        {
          messages: [
            { role: 'user', content: 'x' },
            { role: 'tool', content: 'r', tool_call_id: 'c9' },
          ],
        },
        /tool_call_id.*c9/,
      ],
      [
        '/v1/chat/completions',
        {
          messages: [
            { role: 'user', content: 'x' },
            { role: 'assistant', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'lookup_verse', arguments: '{}' } }] },
            { role: 'tool', content: 'r', tool_call_id: 'c1', name: 'now' },
          ],
        },
        /messages\[2\]\.name: "now" is not the function of call "c1" \("lookup_verse"\)/,
      ],
      ['/v1/chat/completions', { ...chat, tools: [LOOKUP, LOOKUP] }, /duplicate function name/],
      ['/v1/chat/completions', { ...chat, response_format: { type: 'json_object' }, guided_choice: ['a'] }, /guided_choice: only one output constraint/],
      ['/v1/completions', { prompt: 'x', suffix: 'end' }, /suffix.*fill-in-the-middle/],
      ['/v1/completions', { prompt: 'x', best_of: 3 }, /best_of/],
      ['/v1/completions', { prompt: 'x', guided_json: { type: 'object' }, min_tokens: 2 }, /min_tokens/],
      ['/v1/chat/completions', { ...chat, functions: [] }, /functions/],
      ['/v1/chat/completions', { ...chat, stream_options: { continuous_usage_stats: true } }, /continuous_usage_stats/],
    ];
    for (const [url, body, message] of cases) {
      const r = await post(url, body);
      assert.equal(r.status, 400, `${JSON.stringify(body)} -> ${r.status} ${JSON.stringify(r.body)}`);
      assert.match(r.body.error.message, message);
    }
  });
});
