// Speculative decoding delivers several tokens per engine step: stop strings must still end the output
// (text, finish reason, usage) at the token where they end with one token per step.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RequestInit } from '../../src/engine/request.ts';
import { loadTokenizer } from '../../src/server/tokenizer/tokenizer.ts';
import { fakeApp, type FakeEngine } from '../helpers/fake_engine.ts';
import { textModelDir } from '../helpers/text_model.ts';

const tokenizer = loadTokenizer(textModelDir())!;
const OUTPUT = tokenizer.encode(' The quick brown fox jumps over the lazy dog.', { addSpecialTokens: false });

function scripted(perDelta: number): (engine: FakeEngine, request: RequestInit) => void {
  return (engine, request) => {
    for (let i = 0; i < OUTPUT.length; i += perDelta) {
      const last = i + perDelta >= OUTPUT.length;
      engine.emitDelta(request.requestId, OUTPUT.slice(i, i + perDelta), last ? 'length' : null);
    }
  };
}

test('stop strings end multi-token deltas where single-token deltas end them (text, finish reason, usage)', async () => {
  const results = [];
  for (const perDelta of [1, 3, 5]) {
    const { app } = fakeApp(scripted(perDelta), { tokenizer });
    const res = await app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { model: 'fake', prompt: [5, 6], max_tokens: 100, stop: ['fox', 'lazy'] },
    });
    assert.equal(res.statusCode, 200, res.body);
    const body = res.json();
    results.push({
      text: body.choices[0].text,
      finish: body.choices[0].finish_reason,
      stop: body.choices[0].stop_reason,
      tokens: body.usage.completion_tokens,
    });
    await app.close();
  }
  assert.equal(results[0]!.text, ' The quick brown ');
  assert.equal(results[0]!.finish, 'stop');
  for (const r of results.slice(1)) assert.deepEqual(r, results[0]);
});
