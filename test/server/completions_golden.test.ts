// /v1/completions on the shared fixture with token-id prompts: golden tokens and logprobs through
// the real HTTP stack (the fixture has no tokenizer: tokens come back as token_id:N).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../../src/server/serve.ts';
import { logSumExp } from '../../src/engine/sampling/logprobs.ts';
import { FIXTURE_DIR, Golden } from '../helpers/golden.ts';
import { parseSse, startTestServer } from '../helpers/server.ts';
import { at } from '../helpers/at.ts';

const golden = new Golden();
const VOCAB = 512;

describe('completions on the golden fixture', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer(FIXTURE_DIR);
  });
  after(async () => {
    await server.drainAndClose();
  });

  test('greedy completions of all five prompts return the golden tokens and logprobs', async () => {
    const responses = await Promise.all(
      golden.json.prompts.map((prompt) =>
        server.app.inject({
          method: 'POST',
          url: '/v1/completions',
          payload: { prompt, max_tokens: 16, temperature: 0, logprobs: 2, ignore_eos: true, return_tokens_as_token_ids: true },
        }),
      ),
    );
    responses.forEach((res, p) => {
      assert.equal(res.statusCode, 200, res.body);
      const body = res.json();
      const choice = body.choices[0];
      assert.equal(choice.text, '');
      assert.deepEqual(
        choice.logprobs.tokens,
        golden.greedyTokens(p).map((t) => `token_id:${t}`),
      );
      const steps = golden.floats(`greedy_step_logits.p${p}`);
      choice.logprobs.token_logprobs.forEach((lp: number, n: number) => {
        const row = steps.subarray(n * VOCAB, (n + 1) * VOCAB);
        assert.ok(Math.abs(lp - (at(row, at(golden.greedyTokens(p), n)) - logSumExp(row))) < 1e-4);
      });
      assert.equal(choice.finish_reason, 'length');
      assert.deepEqual(body.usage, {
        prompt_tokens: golden.prompt(p).length,
        completion_tokens: 16,
        total_tokens: golden.prompt(p).length + 16,
        prompt_tokens_details: { cached_tokens: 0 },
      });
    });
  });

  test('echo + logprobs returns prompt-position logprobs matching the golden prefill logits', async () => {
    const prompt = golden.prompt(2);
    const res = await server.app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { prompt, max_tokens: 1, temperature: 0, logprobs: 1, echo: true },
    });
    assert.equal(res.statusCode, 200, res.body);
    const lp = res.json().choices[0].logprobs;
    assert.equal(lp.tokens.length, prompt.length + 1);
    assert.equal(lp.token_logprobs[0], null);
    const g = golden.floats('prefill_logits.p2');
    for (const [t, token] of prompt.entries()) {
      if (t === 0) continue;
      const row = g.subarray((t - 1) * VOCAB, t * VOCAB);
      assert.ok(Math.abs(lp.token_logprobs[t] - (at(row, token) - logSumExp(row))) < 1e-4, `position ${t}`);
    }
  });

  test('streaming: exact SSE framing, finish_reason in the last content chunk, usage chunk, [DONE]', async () => {
    const prompt = golden.prompt(1);
    const res = await server.app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: {
        prompt,
        max_tokens: 16,
        temperature: 0,
        stream: true,
        stream_options: { include_usage: true },
        logprobs: 0,
        return_tokens_as_token_ids: true,
        ignore_eos: true,
      },
    });
    assert.equal(res.statusCode, 200);
    assert.match(res.headers['content-type'] as string, /^text\/event-stream/);
    assert.ok(res.body.endsWith('data: [DONE]\n\n'));
    const { events } = parseSse(res.body);
    assert.equal(events.at(-1), '[DONE]');
    const usage = events.at(-2) as { choices: unknown[]; usage: { completion_tokens: number } };
    assert.deepEqual(usage.choices, []);
    assert.equal(usage.usage.completion_tokens, 16);
    const chunks = events.slice(0, -2) as { choices: { logprobs: { tokens: string[] }; finish_reason: string | null }[]; usage: null }[];
    assert.ok(chunks.every((c) => c.usage === null));
    assert.deepEqual(
      chunks.flatMap((c) => at(c.choices, 0).logprobs.tokens),
      golden.greedyTokens(1).map((t) => `token_id:${t}`),
    );
    assert.equal(at(chunks.at(-1)!.choices, 0).finish_reason, 'length');
    assert.ok(chunks.slice(0, -1).every((c) => at(c.choices, 0).finish_reason === null));
  });

  test('a second identical request reports cached prompt tokens', async () => {
    const prompt = [...golden.prompt(4)].reverse(); // not served before in this suite
    const first = await server.app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt, max_tokens: 2, temperature: 0 } });
    const second = await server.app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt, max_tokens: 2, temperature: 0 } });
    assert.equal(first.json().usage.prompt_tokens_details.cached_tokens, 0);
    assert.ok(second.json().usage.prompt_tokens_details.cached_tokens >= 288);
  });
});
