// The agent-framework clients against the shipped default model (models/default, its own 4096-token
// vocabulary and chat template): the Vercel AI SDK through /v1/responses and LangChain.js through
// /v1/chat/completions get schema-valid objects and tool calls, sampled and greedy. The model was
// trained on KJV text, not JSON: it fills every gap with the most whitespace the grammar allows (16
// characters, json_schema_options.ts), so a budget of 300 tokens covers the worst case of these
// schemas (13 gaps x 16 + the spelled-out keys, values and markup).
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { createOpenAI } from '@ai-sdk/openai';
import { HumanMessage } from '@langchain/core/messages';
import { tool as langchainTool } from '@langchain/core/tools';
import { ChatOpenAI } from '@langchain/openai';
import { generateObject, generateText, tool } from 'ai';
import { z } from 'zod';
import type { RunningServer } from '../../src/server/serve.ts';
import { startTestServer } from '../helpers/server.ts';
import { at } from '../helpers/at.ts';

const MODEL_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../models/default');
const Verse = z.object({ book: z.enum(['Genesis', 'Exodus', 'John']), chapter: z.number().int().min(1).max(50), verse: z.number().int().min(1).max(80) });

describe('agent clients on the default model', () => {
  let server: RunningServer;
  const baseURL = () => `${server.address}/v1`;
  before(async () => {
    server = await startTestServer(MODEL_DIR, ['--served-model-name', 'default', '--num-kv-blocks', '256']);
  });
  after(async () => {
    await server.drainAndClose();
  });

  test('AI SDK: generateText answers in text; generateObject is valid, greedy and sampled', async () => {
    const openai = createOpenAI({ baseURL: baseURL(), apiKey: 'none' });
    const text = await generateText({ model: openai('default'), prompt: 'In the beginning', maxOutputTokens: 12, temperature: 0 });
    assert.ok(/[a-z]{3}/i.test(text.text), text.text);
    for (const temperature of [0, 1]) {
      const { object } = await generateObject({
        model: openai('default'),
        schema: Verse,
        prompt: 'Which verse speaks of light?',
        maxOutputTokens: 300,
        temperature,
        seed: 7,
      });
      assert.deepEqual(Verse.parse(object), object);
    }
  });

  test('AI SDK: a required tool call with valid arguments', async () => {
    const openai = createOpenAI({ baseURL: baseURL(), apiKey: 'none' });
    const r = await generateText({
      model: openai('default'),
      prompt: 'Recite Genesis 1:3',
      toolChoice: 'required',
      maxOutputTokens: 300,
      temperature: 0,
      providerOptions: { openai: { parallelToolCalls: false } },
      tools: { lookup_verse: tool({ description: 'Looks a KJV verse up', inputSchema: Verse }) },
    });
    assert.equal(r.finishReason, 'tool-calls');
    assert.equal(r.toolCalls.length, 1);
    const input = at(r.toolCalls, 0, 'tool call').input;
    assert.deepEqual(Verse.parse(input), input);
  });

  test('LangChain: withStructuredOutput and bindTools', async () => {
    const chat = new ChatOpenAI({ model: 'default', apiKey: 'none', temperature: 0, maxTokens: 300, maxRetries: 0, configuration: { baseURL: baseURL() } });
    const verse = await chat.withStructuredOutput(Verse, { name: 'verse', method: 'jsonSchema' }).invoke('Which verse speaks of light?');
    assert.deepEqual(Verse.parse(verse), verse);
    const lookup = langchainTool(async (a) => `${a.book} ${a.chapter}:${a.verse}`, {
      name: 'lookup_verse',
      description: 'Looks a KJV verse up',
      schema: Verse,
    });
    const message = await chat.bindTools([lookup], { tool_choice: 'required', parallel_tool_calls: false }).invoke([new HumanMessage('Recite Genesis 1:3')]);
    assert.deepEqual(message.invalid_tool_calls ?? [], []);
    assert.equal(message.tool_calls?.length, 1);
    const args = at(message.tool_calls ?? [], 0, 'tool call').args;
    assert.deepEqual(Verse.parse(args), args);
  });
});
