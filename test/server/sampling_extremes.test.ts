// Every sampling value the API accepts is computable: the extremes of each field (alone and
// combined), greedy and sampled, through a real socket, answer 200 with the tokens asked for.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../../src/server/serve.ts';
import { FIXTURE_DIR } from '../helpers/golden.ts';
import { startTestServer } from '../helpers/server.ts';
import { at } from '../helpers/at.ts';

const MAX_TOKENS = 4;
// Repeated ids, so the repetition penalty touches tokens of both logit signs.
const PROMPT = [5, 6, 7, 8, 9, 10, 11, 12, 5, 6, 7, 8];

const EXTREMES: Record<string, unknown>[] = [
  { repetition_penalty: 1e-300 },
  { repetition_penalty: Number.MIN_VALUE },
  { repetition_penalty: 1e-30 },
  { repetition_penalty: 100 },
  { temperature: 1e-5 },
  { temperature: 1e-6 },
  { temperature: 100 },
  { top_p: 1e-300 },
  { top_k: 1e9 },
  { top_k: 1 },
  { min_p: 1 },
  { presence_penalty: -2, frequency_penalty: -2 },
  { presence_penalty: 2, frequency_penalty: 2 },
  { logit_bias: Object.fromEntries(PROMPT.map((t) => [String(t), 100])) },
  { logit_bias: Object.fromEntries(Array.from({ length: 300 }, (_, t) => [String(t), -100])) },
  { seed: Number.MAX_SAFE_INTEGER },
  { seed: -Number.MAX_SAFE_INTEGER },
  { min_tokens: MAX_TOKENS, stop_token_ids: Array.from({ length: 64 }, (_, i) => i) },
  // Everything pushing the same way at once: penalised logits, then divided by the smallest temperature.
  { repetition_penalty: 1e-300, temperature: 1e-5, logit_bias: { '5': 100 }, frequency_penalty: -2, presence_penalty: -2 },
  { repetition_penalty: 100, temperature: 1e-5, logit_bias: { '5': -100 }, frequency_penalty: 2, min_p: 1, top_p: 1e-300 },
];

describe('sampling parameter extremes', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer(FIXTURE_DIR);
  });
  after(async () => {
    await server.drainAndClose();
  });

  for (const temperature of [0, 1]) {
    test(`every accepted extreme answers 200 (temperature ${temperature} unless set)`, async () => {
      for (const extreme of EXTREMES) {
        const body = { prompt: PROMPT, max_tokens: MAX_TOKENS, ignore_eos: true, temperature, ...extreme };
        const res = await fetch(`${server.address}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        const text = await res.text();
        assert.equal(res.status, 200, `${JSON.stringify(extreme)}: ${text}`);
        const json = JSON.parse(text) as { usage: { completion_tokens: number }; choices: { finish_reason: string }[] };
        assert.equal(json.usage.completion_tokens, MAX_TOKENS, JSON.stringify(extreme));
        assert.equal(at(json.choices, 0).finish_reason, 'length', JSON.stringify(extreme));
      }
    });
  }
});
