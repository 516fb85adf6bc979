// vLLM's stream_options.continuous_usage_stats through the real server: every choice chunk carries
// its choice's running usage (the chat role chunk counts 0), the closing usage chunk the totals; the
// serving benchmark's own load generator reads it; without include_usage it is refused.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { streamRequest } from '../../bench/compare/load_generator.ts';
import type { RunningServer } from '../../src/server/serve.ts';
import { parseSse, startTestServer } from '../helpers/server.ts';
import { textModelDir } from '../helpers/text_model.ts';
import { at } from '../helpers/at.ts';

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}
interface Chunk {
  choices: { index: number; finish_reason: string | null; delta?: { role?: string } }[];
  usage?: Usage | null;
}

const CONTINUOUS = { include_usage: true, continuous_usage_stats: true };

describe('stream_options.continuous_usage_stats', () => {
  let server: RunningServer;
  const post = (url: string, body: object) =>
    fetch(`${server.address}${url}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const streamed = async (url: string, body: object): Promise<Chunk[]> => {
    const res = await post(url, body);
    const text = await res.text();
    assert.equal(res.status, 200, text);
    const { events } = parseSse(text);
    assert.equal(events.at(-1), '[DONE]');
    return events.slice(0, -1) as Chunk[];
  };
  before(async () => {
    server = await startTestServer(textModelDir(), ['--served-model-name', 'tiny-text']);
  });
  after(async () => {
    await server.drainAndClose();
  });

  test('completions, two prompts x n=2: each chunk has its choice running count and its prompt length', async () => {
    const prompts = [
      [5, 6, 7],
      [8, 9, 10, 11, 12],
    ];
    const chunks = await streamed('/v1/completions', {
      prompt: prompts,
      n: 2,
      max_tokens: 5,
      temperature: 1,
      seed: 3,
      ignore_eos: true,
      stream: true,
      stream_options: CONTINUOUS,
    });
    const final = chunks.at(-1)!;
    assert.deepEqual(final.choices, []);
    const running = [0, 0, 0, 0];
    for (const c of chunks.slice(0, -1)) {
      const choice = at(c.choices, 0, 'choice');
      const u = c.usage!;
      assert.ok(u.completion_tokens > at(running, choice.index, 'choice'), `tokens only grow: ${JSON.stringify(c)}`);
      running[choice.index] = u.completion_tokens;
      assert.equal(u.prompt_tokens, at(prompts, Math.floor(choice.index / 2), 'prompt').length);
      assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
      if (choice.finish_reason !== null) assert.equal(u.completion_tokens, 5);
    }
    assert.deepEqual(running, [5, 5, 5, 5]);
    const { prompt_tokens, completion_tokens, total_tokens } = final.usage!;
    assert.deepEqual(
      { prompt_tokens, completion_tokens, total_tokens },
      { prompt_tokens: 8, completion_tokens: 20, total_tokens: 28 },
      'the totals count each prompt once (vLLM)',
    );
  });

  test('chat: the role chunk counts 0 tokens, then the count runs to the final usage', async () => {
    const chunks = await streamed('/v1/chat/completions', {
      messages: [{ role: 'user', content: 'Hi there' }],
      max_tokens: 6,
      temperature: 0,
      ignore_eos: true,
      stream: true,
      stream_options: CONTINUOUS,
    });
    const [role = assert.fail('no chunks'), ...rest] = chunks;
    const final = rest.pop()!;
    assert.equal(at(role.choices, 0, 'choice').delta?.role, 'assistant');
    assert.equal(role.usage!.completion_tokens, 0);
    assert.ok(role.usage!.prompt_tokens > 0);
    const counts = rest.map((c) => c.usage!.completion_tokens);
    assert.deepEqual(
      counts,
      [...counts].sort((a, b) => a - b),
    );
    assert.equal(counts.at(-1), 6);
    assert.ok(rest.every((c) => c.usage!.prompt_tokens === role.usage!.prompt_tokens));
    assert.equal(final.usage!.completion_tokens, 6);
    assert.equal(final.usage!.prompt_tokens, role.usage!.prompt_tokens);
  });

  test("the serving benchmark's load generator counts every token from the running usage", async () => {
    const record = await streamRequest({ id: 'ours', url: server.address, model: 'tiny-text' }, [5, 6, 7, 8], { outputTokens: 7, bannedTokenIds: [] });
    assert.equal(record.outputTokens, 7);
    assert.equal(
      record.chunks.reduce((s, c) => s + c.tokens, 0),
      7,
    );
  });

  test('include_usage alone keeps usage null in every chunk; continuous_usage_stats without it is a 400', async () => {
    const chunks = await streamed('/v1/completions', {
      prompt: [5, 6],
      max_tokens: 3,
      ignore_eos: true,
      stream: true,
      stream_options: { include_usage: true, continuous_usage_stats: false },
    });
    assert.ok(chunks.slice(0, -1).every((c) => c.usage === null));
    assert.equal(chunks.at(-1)!.usage!.completion_tokens, 3);
    for (const stream_options of [{ continuous_usage_stats: true }, { include_usage: false, continuous_usage_stats: true }]) {
      const res = await post('/v1/completions', { prompt: [5, 6], max_tokens: 3, stream: true, stream_options });
      assert.equal(res.status, 400);
      const body = (await res.json()) as { error: { message: string; param: string } };
      assert.equal(body.error.param, 'stream_options.continuous_usage_stats');
      assert.match(body.error.message, /needs include_usage: true/);
    }
  });
});
