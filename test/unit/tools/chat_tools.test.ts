import assert from 'node:assert/strict';
import { test } from 'node:test';
import { z } from 'zod';
import { EngineError } from '../../../src/common/errors.ts';
import {
  chatDelta,
  chatMessageSchema,
  chatToolFields,
  chatToolRequest,
  planTools,
  templateMessages,
  toolFinishReason,
} from '../../../src/server/tools/chat_tools.ts';

const fields = z.strictObject(chatToolFields);
const tools = [
  { type: 'function', function: { name: 'lookup_verse', parameters: { type: 'object', properties: { book: { type: 'string' } } } } },
  { type: 'function', function: { name: 'now' } },
];

test('messages: developer is system, tool calls and results carry over, an unanswered-id tool message is a 400', () => {
  const messages = z.array(chatMessageSchema).parse([
    { role: 'developer', content: 'Use tools.' },
    { role: 'user', content: [{ type: 'text', text: 'Genesis 1:3?' }] },
    { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'lookup_verse', arguments: '{}' } }] },
    { role: 'tool', content: 'And God said', tool_call_id: 'c1' },
  ]);
  assert.deepEqual(templateMessages(messages), [
    { role: 'system', content: 'Use tools.' },
    { role: 'user', content: 'Genesis 1:3?' },
    { role: 'assistant', content: '', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'lookup_verse', arguments: '{}' } }] },
    { role: 'tool', content: 'And God said', tool_call_id: 'c1' },
  ]);
  const orphan = z.array(chatMessageSchema).parse([
    { role: 'user', content: 'x' },
    { role: 'tool', content: 'r', tool_call_id: 'nope' },
  ]);
  assert.throws(
    () => templateMessages(orphan),
    (e: unknown) => e instanceof EngineError && e.param === 'messages[1].tool_call_id',
  );
  assert.ok(!chatMessageSchema.safeParse({ role: 'tool', content: 'r' }).success, 'a tool message needs tool_call_id');
});

test('plans: auto parses without a grammar, required and named force calls, none offers nothing', () => {
  const auto = planTools(chatToolRequest(fields.parse({ tools })), 'v3');
  assert.equal(auto.grammar, null);
  assert.ok(auto.parseCalls && auto.templateTools?.length === 2);
  const required = planTools(chatToolRequest(fields.parse({ tools, tool_choice: 'required', parallel_tool_calls: false })), 'v3');
  assert.equal(required.grammar?.param, 'tools');
  assert.equal(required.grammar?.grammar.kind, 'structural_tag');
  const named = planTools(chatToolRequest(fields.parse({ tools, tool_choice: { type: 'function', function: { name: 'now' } } })), 'v3');
  assert.match(JSON.stringify(named.grammar), /now/);
  assert.doesNotMatch(JSON.stringify(named.grammar), /lookup_verse/);
  assert.deepEqual(planTools(chatToolRequest(fields.parse({ tools, tool_choice: 'none' })), 'v3'), { templateTools: null, grammar: null, parseCalls: false });
  assert.throws(
    () => planTools(chatToolRequest(fields.parse({ tools })), null),
    (e: unknown) => e instanceof EngineError && e.param === 'tools',
  );
  assert.throws(
    () => chatToolRequest(fields.parse({ tools, tool_choice: { type: 'function', function: { name: 'missing' } } })),
    (e: unknown) => e instanceof EngineError && e.param === 'tool_choice',
  );
  assert.throws(
    () => chatToolRequest(fields.parse({ tools: [tools[1], tools[1]] })),
    (e: unknown) => e instanceof EngineError && e.param === 'tools[1]',
  );
});

test('stream deltas and finish reasons in OpenAI shape', () => {
  assert.equal(chatDelta([]), null);
  assert.deepEqual(chatDelta([{ type: 'content', text: 'Hi' }]), { content: 'Hi' });
  assert.deepEqual(
    chatDelta([
      { type: 'call_start', index: 0, id: 'call_x', name: 'now' },
      { type: 'call_arguments', index: 0, text: '{}' },
    ]),
    {
      tool_calls: [
        { index: 0, id: 'call_x', type: 'function', function: { name: 'now', arguments: '' } },
        { index: 0, function: { arguments: '{}' } },
      ],
    },
  );
  assert.equal(toolFinishReason('stop', 1), 'tool_calls');
  assert.equal(toolFinishReason('length', 1), 'length');
  assert.equal(toolFinishReason('stop', 0), 'stop');
});
