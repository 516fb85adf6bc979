// LangChain.js (`@langchain/openai` ChatOpenAI) against the real server on random weights (the shared
// fixture with a trained tokenizer): withStructuredOutput (JSON schema and function calling),
// bindTools with a tools round trip, streamed tool-call chunks, and useResponsesApi. Only the
// grammar can make the structured outputs and tool calls valid.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { AIMessageChunk, HumanMessage, type AIMessage } from '@langchain/core/messages';
import { tool } from '@langchain/core/tools';
import { ChatOpenAI, type ChatOpenAIFields } from '@langchain/openai';
import { z } from 'zod';
import type { RunningServer } from '../../src/server/serve.ts';
import { startTestServer } from '../helpers/server.ts';
import { longTextModelDir } from '../helpers/text_model.ts';
import { at } from '../helpers/at.ts';

const Verse = z.object({ book: z.enum(['Genesis', 'John']), chapter: z.number().int().min(1).max(50) });
const lookupVerse = tool(async (args) => `text of ${args.book} ${args.chapter}`, { name: 'lookup_verse', description: 'Looks a verse up', schema: Verse });

function assertOneValidCall(message: AIMessage): NonNullable<AIMessage['tool_calls']>[number] {
  assert.deepEqual(message.invalid_tool_calls ?? [], []);
  assert.equal(message.tool_calls?.length, 1, JSON.stringify(message));
  const call = at(message.tool_calls ?? [], 0, 'tool call');
  assert.equal(call.name, 'lookup_verse');
  assert.deepEqual(Verse.parse(call.args), call.args);
  return call;
}

describe('LangChain.js ChatOpenAI', () => {
  let server: RunningServer;
  let chat: (fields?: ChatOpenAIFields) => ChatOpenAI;
  before(async () => {
    server = await startTestServer(longTextModelDir(), ['--served-model-name', 'tiny-text', '--num-kv-blocks', '512']);
    chat = (fields = {}) =>
      new ChatOpenAI({
        model: 'tiny-text',
        apiKey: 'none',
        temperature: 0,
        maxTokens: 200,
        maxRetries: 0,
        configuration: { baseURL: `${server.address}/v1` },
        ...fields,
      });
  });
  after(async () => {
    await server.drainAndClose();
  });

  test('withStructuredOutput (JSON schema, function calling; chat and Responses API): parsed and valid', async () => {
    const runs = [
      chat().withStructuredOutput(Verse, { name: 'verse', method: 'jsonSchema', strict: true }),
      chat({ maxTokens: 400 }).withStructuredOutput(Verse, { name: 'verse', method: 'functionCalling' }),
      chat({ useResponsesApi: true }).withStructuredOutput(Verse, { name: 'verse' }),
    ];
    for (const model of runs) {
      const verse = await model.invoke('Which verse?');
      assert.deepEqual(Verse.parse(verse), verse);
    }
  });

  test('bindTools: a required call, then its ToolMessage (with name) in the conversation', async () => {
    const first = await chat({ maxTokens: 400 })
      .bindTools([lookupVerse], { tool_choice: 'required', parallel_tool_calls: false })
      .invoke([new HumanMessage('Find Genesis 1:3')]);
    const call = assertOneValidCall(first);
    const result = await lookupVerse.invoke({ ...call, type: 'tool_call' });
    assert.equal(result.name, 'lookup_verse', 'LangChain sends the function name on tool messages');
    const answer = await chat({ maxTokens: 6 })
      .bindTools([lookupVerse])
      .invoke([new HumanMessage('Find Genesis 1:3'), first, result]);
    assert.equal(answer.response_metadata.finish_reason, 'length');
    assert.equal(answer.usage_metadata?.output_tokens, 6);
  });

  test('streamed tool call: the chunks merge into one valid call', async () => {
    const stream = await chat({ maxTokens: 400 }).bindTools([lookupVerse], { tool_choice: 'required', parallel_tool_calls: false }).stream('Find Genesis 1:3');
    let merged: AIMessageChunk | null = null;
    let numChunks = 0;
    for await (const chunk of stream) {
      merged = merged ? merged.concat(chunk) : chunk;
      numChunks++;
    }
    assert.ok(numChunks > 3, `${numChunks} chunks`);
    assertOneValidCall(merged!);
  });

  test('useResponsesApi: plain text with usage, and a named tool call round trip', async () => {
    const plain = await chat({ useResponsesApi: true, maxTokens: 8 }).invoke('Hello');
    assert.equal(plain.usage_metadata?.output_tokens, 8);
    assert.equal(plain.text, (await chat({ maxTokens: 8 }).invoke('Hello')).text, 'the same as through chat completions');
    // LangChain 1.5 drops a string tool_choice ("required") on the Responses path; a named one goes through.
    const first = await chat({ useResponsesApi: true, maxTokens: 400 })
      .bindTools([lookupVerse], { tool_choice: 'lookup_verse', parallel_tool_calls: false })
      .invoke([new HumanMessage('Find Genesis 1:3')]);
    const call = assertOneValidCall(first);
    const result = await lookupVerse.invoke({ ...call, type: 'tool_call' });
    const answer = await chat({ useResponsesApi: true, maxTokens: 6 })
      .bindTools([lookupVerse])
      .invoke([new HumanMessage('Find Genesis 1:3'), first, result]);
    assert.deepEqual(answer.tool_calls, []);
    assert.equal(answer.usage_metadata?.output_tokens, 6);
  });
});
