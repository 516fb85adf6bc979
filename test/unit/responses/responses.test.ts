// /v1/responses pieces without a server: the request schema's refusals, the conversion onto chat
// messages, and the event stream checked by the openai SDK's own accumulator.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { accumulateResponse } from 'openai/lib/responses/ResponseAccumulator';
import type { ResponseStreamEvent } from 'openai/resources/responses/responses';
import { EngineError } from '../../../src/common/errors.ts';
import { ResponseBuilder, type ResponseEvent } from '../../../src/server/responses/response_builder.ts';
import { responsesRequestSchema } from '../../../src/server/responses/schema.ts';
import { responsesToChat } from '../../../src/server/responses/to_chat.ts';
import type { ToolParseEvent } from '../../../src/server/tools/tool_call_parser.ts';
import { at } from '../../helpers/at.ts';

const ECHO = {
  model: 'default',
  instructions: null,
  maxOutputTokens: 64,
  temperature: null,
  topP: null,
  tools: [],
  toolChoice: 'auto',
  parallelToolCalls: true,
  text: { format: { type: 'text' } },
  metadata: null,
  user: null,
};
const USAGE = { inputTokens: 10, cachedTokens: 4, outputTokens: 7 };

function run(parsed: ToolParseEvent[], truncated = false) {
  const b = new ResponseBuilder(ECHO);
  const events: ResponseEvent[] = [...b.start(), ...parsed.flatMap((e) => b.push(e)), ...b.finish(USAGE, truncated)];
  let snapshot: ReturnType<typeof accumulateResponse> | undefined;
  for (const e of events) snapshot = accumulateResponse(e as unknown as ResponseStreamEvent, snapshot);
  return { events, snapshot: snapshot!, final: b.final(USAGE, truncated) as Record<string, unknown> };
}

test('a text answer: the event sequence the SDK accumulates into the final response', () => {
  const { events, snapshot, final } = run([
    { type: 'content', text: 'In the ' },
    { type: 'content', text: 'beginning' },
  ]);
  assert.deepEqual(
    events.map((e) => e.type),
    [
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ],
  );
  assert.deepEqual(
    events.map((e) => e.sequence_number),
    events.map((_, i) => i),
  );
  assert.equal(snapshot.output_text, 'In the beginning');
  assert.deepEqual(snapshot.output, final.output);
  assert.equal(snapshot.status, 'completed');
  assert.deepEqual(snapshot.usage, {
    input_tokens: 10,
    input_tokens_details: { cached_tokens: 4 },
    output_tokens: 7,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: 17,
  });
  assert.equal(final.store, false);
});

test('text then two function calls; a cut-off answer is incomplete', () => {
  const { events, snapshot } = run([
    { type: 'content', text: 'Looking.' },
    { type: 'call_start', index: 0, id: 'call_a', name: 'lookup_verse' },
    { type: 'call_arguments', index: 0, text: '{"book":' },
    { type: 'call_arguments', index: 0, text: ' "John"}' },
    { type: 'call_start', index: 1, id: 'call_b', name: 'now' },
    { type: 'call_arguments', index: 1, text: '{}' },
  ]);
  assert.deepEqual(
    snapshot.output.map((o) => o.type),
    ['message', 'function_call', 'function_call'],
  );
  const calls = snapshot.output.filter((o) => o.type === 'function_call');
  assert.deepEqual(
    calls.map((c) => [c.call_id, c.name, c.arguments, c.status]),
    [
      ['call_a', 'lookup_verse', '{"book": "John"}', 'completed'],
      ['call_b', 'now', '{}', 'completed'],
    ],
  );
  // The message closes before the first call starts.
  const types = events.map((e) => e.type);
  assert.ok(types.indexOf('response.output_item.done') < types.indexOf('response.function_call_arguments.delta'));
  const cut = run([{ type: 'content', text: 'In the' }], true);
  assert.equal(cut.events.at(-1)?.type, 'response.incomplete');
  assert.equal(cut.snapshot.status, 'incomplete');
  assert.deepEqual(cut.snapshot.incomplete_details, { reason: 'max_output_tokens' });
});

test('request schema: stateless and unsupported fields are refused by name, unknown fields too', () => {
  const refuse = (body: object, path: string, message: RegExp) => {
    const r = responsesRequestSchema.safeParse({ input: 'hi', ...body });
    assert.ok(!r.success, JSON.stringify(body));
    const issue = at(r.error.issues, 0, 'issue');
    assert.equal(issue.path.join('.') || (issue as { keys?: string[] }).keys?.join(','), path);
    assert.match(issue.message, message);
  };
  refuse({ previous_response_id: 'resp_1' }, 'previous_response_id', /stateless/);
  refuse({ background: true }, 'background', /not supported/);
  refuse({ reasoning: { effort: 'high' } }, 'reasoning', /not supported/);
  refuse({ truncation: 'auto' }, 'truncation', /./);
  refuse({ tools: [{ type: 'web_search' }] }, 'tools.0.type', /./);
  refuse({ frequency_penalty: 1 }, 'frequency_penalty', /Unrecognized key/);
  assert.ok(responsesRequestSchema.safeParse({ input: 'hi', store: true, background: false, reasoning: {}, truncation: 'disabled' }).success);
});

test('input items become chat messages: instructions, developer = system, calls and their results', () => {
  const body = responsesRequestSchema.parse({
    instructions: 'Be brief.',
    input: [
      { role: 'developer', content: 'Use tools.' },
      { role: 'user', content: [{ type: 'input_text', text: 'Genesis 1:3?' }] },
      { type: 'function_call', call_id: 'c1', name: 'lookup_verse', arguments: '{"chapter":1}' },
      { type: 'function_call', call_id: 'c2', name: 'now', arguments: '{}' },
      { type: 'function_call_output', call_id: 'c1', output: 'And God said' },
      { type: 'function_call_output', call_id: 'c2', output: 'noon' },
    ],
    tools: [
      { type: 'function', name: 'lookup_verse', parameters: { type: 'object' } },
      { type: 'function', name: 'now' },
    ],
    tool_choice: { type: 'function', name: 'now' },
    parallel_tool_calls: false,
    max_output_tokens: 20,
  });
  const chat = responsesToChat(body);
  assert.deepEqual(chat.messages, [
    { role: 'system', content: 'Be brief.' },
    { role: 'system', content: 'Use tools.' },
    { role: 'user', content: 'Genesis 1:3?' },
    {
      role: 'assistant',
      content: '',
      tool_calls: [
        { id: 'c1', type: 'function', function: { name: 'lookup_verse', arguments: '{"chapter":1}' } },
        { id: 'c2', type: 'function', function: { name: 'now', arguments: '{}' } },
      ],
    },
    { role: 'tool', content: 'And God said', tool_call_id: 'c1' },
    { role: 'tool', content: 'noon', tool_call_id: 'c2' },
  ]);
  assert.deepEqual(chat.tools.choice, { name: 'now' });
  assert.equal(chat.tools.parallel, false);
  assert.equal(chat.maxTokens, 20);
  const json = responsesToChat(responsesRequestSchema.parse({ input: 'x', text: { format: { type: 'json_schema', name: 'v', schema: { type: 'object' } } } }));
  assert.deepEqual(json.format, { grammar: { kind: 'json_schema', schema: '{"type":"object"}' }, param: 'text.format' });
});

test('conversation errors name the field', () => {
  const fails = (body: object, param: string) =>
    assert.throws(
      () => responsesToChat(responsesRequestSchema.parse(body)),
      (e: unknown) => e instanceof EngineError && e.param === param && e.code === 'DSV_ERR_INVALID_REQUEST',
    );
  fails({ input: [{ type: 'function_call_output', call_id: 'zz', output: 'x' }] }, 'input[0].tool_call_id');
  fails(
    {
      input: 'x',
      tools: [
        { type: 'function', name: 'a' },
        { type: 'function', name: 'a' },
      ],
    },
    'tools[1]',
  );
  fails({ input: 'x', tools: [{ type: 'function', name: 'a' }], tool_choice: { type: 'function', name: 'b' } }, 'tool_choice');
  fails({ input: 'x', tool_choice: 'required' }, 'tool_choice');
  fails({ input: [{ role: 'user', content: [{ type: 'output_text', text: 'x' }] }] }, 'input[0].content[0].type');
});
