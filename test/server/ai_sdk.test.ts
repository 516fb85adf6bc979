// The Vercel AI SDK (`ai` + `@ai-sdk/openai`) against the real server on random weights (the shared
// fixture with a trained tokenizer): its default OpenAI provider calls /v1/responses, `.chat()`
// calls /v1/chat/completions. Only the grammar can make the structured outputs and tool calls valid.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createOpenAI } from '@ai-sdk/openai';
import { generateObject, generateText, stepCountIs, streamText, tool } from 'ai';
import { z } from 'zod';
import type { RunningServer } from '../../src/server/serve.ts';
import { startTestServer } from '../helpers/server.ts';
import { longTextModelDir } from '../helpers/text_model.ts';
import { at } from '../helpers/at.ts';

const Verse = z.object({ book: z.enum(['Genesis', 'John']), chapter: z.number().int().min(1).max(50) });
// No parallel calls: random weights would keep adding calls until max_tokens.
const ONE_CALL = { openai: { parallelToolCalls: false } };

describe('Vercel AI SDK', () => {
  let server: RunningServer;
  let openai: ReturnType<typeof createOpenAI>;
  before(async () => {
    server = await startTestServer(longTextModelDir(), ['--served-model-name', 'tiny-text', '--num-kv-blocks', '512']);
    openai = createOpenAI({ baseURL: `${server.address}/v1`, apiKey: 'none' });
  });
  after(async () => {
    await server.drainAndClose();
  });

  test('generateText through the default provider (/v1/responses) and .chat() agree; streamText too', async () => {
    const viaResponses = await generateText({ model: openai('tiny-text'), prompt: 'Hello', maxOutputTokens: 8, temperature: 0 });
    assert.equal(viaResponses.finishReason, 'length');
    assert.equal(viaResponses.usage.outputTokens, 8);
    assert.ok(viaResponses.usage.inputTokens! > 0);
    const viaChat = await generateText({ model: openai.chat('tiny-text'), prompt: 'Hello', maxOutputTokens: 8, temperature: 0 });
    assert.equal(viaChat.text, viaResponses.text, 'the same prompt renders the same way on both routes');
    const streamed = streamText({ model: openai('tiny-text'), prompt: 'Hello', maxOutputTokens: 8, temperature: 0 });
    let text = '';
    for await (const delta of streamed.textStream) text += delta;
    assert.equal(text, viaResponses.text);
    assert.equal((await streamed.usage).outputTokens, 8);
  });

  test('generateObject with a zod schema, on both routes: parsed and valid', async () => {
    for (const model of [openai('tiny-text'), openai.chat('tiny-text')]) {
      const { object, finishReason } = await generateObject({ model, schema: Verse, prompt: 'Which verse?', maxOutputTokens: 200, temperature: 1, seed: 5 });
      assert.equal(finishReason, 'stop');
      assert.deepEqual(Verse.parse(object), object);
    }
  });

  test('a required tool call is executed and its result goes back (/v1/responses, then chat)', async () => {
    for (const model of [openai('tiny-text'), openai.chat('tiny-text')]) {
      const seen: z.infer<typeof Verse>[] = [];
      const lookupVerse = tool({
        description: 'Looks a verse up',
        inputSchema: Verse,
        execute: async (args) => (seen.push(args), `text of ${args.book} ${args.chapter}`),
      });
      const r = await generateText({
        model,
        prompt: 'Find Genesis 1:3',
        tools: { lookup_verse: lookupVerse },
        toolChoice: 'required',
        maxOutputTokens: 400,
        temperature: 0,
        providerOptions: ONE_CALL,
        stopWhen: stepCountIs(2),
        prepareStep: ({ stepNumber }) => (stepNumber > 0 ? { toolChoice: 'none' as const, maxOutputTokens: 8 } : {}),
      });
      assert.equal(r.steps.length, 2);
      const [call, answer] = [at(r.steps, 0, 'step'), at(r.steps, 1, 'step')];
      assert.equal(call.finishReason, 'tool-calls');
      assert.equal(call.toolCalls.length, 1);
      const input = at(call.toolCalls, 0, 'tool call').input;
      assert.deepEqual(Verse.parse(input), input);
      assert.deepEqual(seen, [input]);
      const verse = at(seen, 0, 'lookup');
      assert.equal(at(call.toolResults, 0, 'tool result').output, `text of ${verse.book} ${verse.chapter}`);
      assert.equal(answer.toolCalls.length, 0);
      assert.equal(answer.finishReason, 'length');
    }
  });

  test('streamText with a required tool: input deltas, then one valid call (/v1/responses and chat)', async () => {
    for (const model of [openai('tiny-text'), openai.chat('tiny-text')]) {
      const r = streamText({
        model,
        prompt: 'Find Genesis 1:3',
        tools: { lookup_verse: tool({ inputSchema: Verse }) },
        toolChoice: 'required',
        maxOutputTokens: 400,
        temperature: 0,
        providerOptions: ONE_CALL,
      });
      const types = new Set<string>();
      let input = '';
      for await (const part of r.fullStream) {
        types.add(part.type);
        if (part.type === 'tool-input-delta') input += part.delta;
        if (part.type === 'error') throw part.error;
      }
      for (const t of ['tool-input-start', 'tool-input-delta', 'tool-input-end', 'tool-call']) assert.ok(types.has(t), `${t} in ${[...types].join(',')}`);
      const calls = await r.toolCalls;
      assert.equal(calls.length, 1);
      const called = at(calls, 0, 'tool call').input;
      assert.deepEqual(Verse.parse(called), called);
      assert.deepEqual(JSON.parse(input), called, 'the deltas add up to the call');
      assert.equal(await r.finishReason, 'tool-calls');
    }
  });
});
