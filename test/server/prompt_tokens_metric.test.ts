// vllm:prompt_tokens_total counts as vLLM v1 does: each engine request adds its whole prompt
// length once, at its first output token (vllm/v1/metrics/stats.py IterationStats.update_from_output,
// `if is_prefilling: num_prompt_tokens += prompt_len`). A prefix-cache hit does not lower it, a
// preemption's recompute does not add to it, and each of n choices is its own engine request.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../../src/server/serve.ts';
import { FIXTURE_DIR } from '../helpers/golden.ts';
import { metricValue, parsePrometheus } from '../helpers/prometheus.ts';
import { startTestServer } from '../helpers/server.ts';

async function counter(server: RunningServer, name: string): Promise<number> {
  return metricValue(parsePrometheus(await (await fetch(`${server.address}/metrics`)).text()).samples, name);
}

function complete(
  server: RunningServer,
  body: object,
): Promise<{ usage: { prompt_tokens: number; completion_tokens: number; prompt_tokens_details: { cached_tokens: number } } }> {
  return fetch(`${server.address}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(
    async (r) => {
      assert.equal(r.status, 200);
      return r.json() as never;
    },
  );
}

const prompt = (length: number, offset: number) => Array.from({ length }, (_, i) => ((i * 7 + offset) % 500) + 2);

describe('vllm:prompt_tokens_total', () => {
  let server: RunningServer;
  before(async () => {
    // 12 blocks of 16 = 192 tokens: four 140-token requests cannot all run, so some are preempted.
    server = await startTestServer(FIXTURE_DIR, ['--num-kv-blocks', '12', '--max-num-batched-tokens', '64']);
  });
  after(async () => {
    await server.drainAndClose();
  });

  test('a prefix-cache hit still counts the whole prompt', async () => {
    const p = prompt(100, 1);
    const before = await counter(server, 'vllm:prompt_tokens_total');
    await complete(server, { prompt: p, max_tokens: 2, temperature: 0 });
    const second = await complete(server, { prompt: p, max_tokens: 2, temperature: 0 });
    assert.ok(second.usage.prompt_tokens_details.cached_tokens >= 64, 'the second request hit the prefix cache');
    assert.equal((await counter(server, 'vllm:prompt_tokens_total')) - before, 200);
  });

  test('preempted requests count their prompt once', async () => {
    const beforeTokens = await counter(server, 'vllm:prompt_tokens_total');
    const beforePreemptions = await counter(server, 'vllm:num_preemptions_total');
    const prompts = [0, 1, 2, 3].map((i) => prompt(40, 100 + i * 13));
    await Promise.all(prompts.map((p) => complete(server, { prompt: p, max_tokens: 100, temperature: 0, ignore_eos: true })));
    assert.ok((await counter(server, 'vllm:num_preemptions_total')) > beforePreemptions, 'some request was preempted');
    assert.equal((await counter(server, 'vllm:prompt_tokens_total')) - beforeTokens, 160);
  });

  test('each of n choices is one request: n times the prompt', async () => {
    const before = await counter(server, 'vllm:prompt_tokens_total');
    const res = await complete(server, { prompt: prompt(10, 300), n: 3, max_tokens: 2, temperature: 1, seed: 1 });
    assert.equal(res.usage.prompt_tokens, 10);
    assert.equal((await counter(server, 'vllm:prompt_tokens_total')) - before, 30);
  });
});
