// The forced tool-call grammar, compiled by the engine's XGrammar on the default model's vocabulary
// and driven by random logits: every output parses into calls of the allowed functions whose
// arguments validate against their schemas.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ToolCallFormat } from '../../../src/server/tools/deepseek_markup.ts';
import { parseToolCalls } from '../../../src/server/tools/tool_call_parser.ts';
import { toolCallGrammar, type FunctionTool } from '../../../src/server/tools/tool_grammar.ts';
import { decodeWithGrammar, defaultCompiler, defaultTokenizer } from '../structured/helpers.ts';
import { at } from '../../helpers/at.ts';

const tokenizer = defaultTokenizer();
const LOOKUP: FunctionTool = {
  name: 'lookup_verse',
  parameters: {
    type: 'object',
    properties: { book: { enum: ['Genesis', 'John'] }, chapter: { type: 'integer', minimum: 1, maximum: 50 } },
    required: ['book', 'chapter'],
  },
};
const NOW: FunctionTool = { name: 'now', parameters: null };

async function forcedCalls(format: ToolCallFormat, tools: FunctionTool[], parallel: boolean, seed: number) {
  const matcher = await (await defaultCompiler()).createMatcher(toolCallGrammar(format, tools, parallel));
  const { ids, terminated } = await decodeWithGrammar(matcher, seed, 600);
  matcher.dispose();
  assert.ok(terminated, `not finished: ${tokenizer.decode(ids)}`);
  return parseToolCalls(tokenizer.decode(ids, { skipSpecialTokens: false }));
}

function assertValidCall(call: { name: string; arguments: string }): void {
  const args = JSON.parse(call.arguments) as Record<string, unknown>;
  if (call.name === 'now') return assert.deepEqual(args, {});
  assert.equal(call.name, 'lookup_verse');
  assert.ok(['Genesis', 'John'].includes(args.book as string), call.arguments);
  assert.ok(Number.isInteger(args.chapter) && (args.chapter as number) >= 1 && (args.chapter as number) <= 50, call.arguments);
}

test('required, one call per message: exactly one valid call and no content, in both markups', async () => {
  for (const format of ['v3', 'v3.1'] as const) {
    for (const seed of [1, 2]) {
      const { content, toolCalls } = await forcedCalls(format, [LOOKUP, NOW], false, seed);
      assert.equal(content, null);
      assert.equal(toolCalls.length, 1);
      assertValidCall(at(toolCalls, 0, 'tool call'));
    }
  }
});

test('required with parallel calls: one or more valid calls', async () => {
  const seen = new Set<number>();
  for (const seed of [3, 4, 5]) {
    const { content, toolCalls } = await forcedCalls('v3', [LOOKUP, NOW], true, seed);
    assert.equal(content, null);
    assert.ok(toolCalls.length >= 1);
    toolCalls.forEach(assertValidCall);
    seen.add(toolCalls.length);
  }
  assert.ok(
    [...seen].some((n) => n > 1),
    'these seeds produce several calls in one message',
  );
});

test('a named function: that function only', async () => {
  const { toolCalls } = await forcedCalls('v3', [NOW], false, 6);
  assert.deepEqual(
    toolCalls.map((c) => [c.name, c.arguments]),
    [['now', '{}']],
  );
});
