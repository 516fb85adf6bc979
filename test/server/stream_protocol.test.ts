// The SSE protocol shared by both streaming routes, against a scripted engine: the skip rule,
// an engine error or the drain deadline after the stream started, and the order of the closing chunks.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { errorBody } from '../../src/server/http_errors.ts';
import { fakeApp } from '../helpers/fake_engine.ts';
import { parseSse } from '../helpers/server.ts';
import { at } from '../helpers/at.ts';

interface Chunk {
  object: string;
  choices: { index: number; text: string; finish_reason: string | null }[];
  usage?: unknown;
}

describe('streamGeneration protocol', () => {
  test('an engine error after the stream started is an errorBody() data chunk, then usage and [DONE]', async () => {
    const { app } = fakeApp((engine, r) => {
      engine.emitDelta(r.requestId, [7]);
      engine.emitDelta(r.requestId, [], null); // shows nothing: skipped
      engine.emitDelta(r.requestId, [], 'error', 'the step failed');
    });
    const res = await app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { prompt: [5, 6], max_tokens: 4, stream: true, stream_options: { include_usage: true } },
    });
    assert.equal(res.statusCode, 200);
    const { events } = parseSse(res.body);
    assert.equal(events.length, 5, res.body);
    const [token, finish, error, usage, done] = events as [Chunk, Chunk, unknown, Chunk, string];
    assert.equal(at(token.choices, 0).finish_reason, null);
    assert.equal(token.usage, null);
    assert.equal(at(finish.choices, 0).finish_reason, 'error');
    assert.deepEqual(error, errorBody('DSV_ERR_INTERNAL', 'generation failed: the step failed'));
    assert.deepEqual(usage.choices, []);
    assert.equal(done, '[DONE]');
    await app.close();
  });

  test('without include_usage no chunk carries usage; n > 1 choices each end with their finish_reason', async () => {
    const { app } = fakeApp((engine, r) => {
      engine.emitDelta(r.requestId, [3]);
      engine.emitDelta(r.requestId, [4], 'length');
    });
    const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: [5, 6], n: 3, max_tokens: 2, stream: true } });
    const { events } = parseSse(res.body);
    assert.equal(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1) as Chunk[];
    assert.equal(chunks.length, 6);
    assert.ok(chunks.every((c) => c.object === 'text_completion' && !('usage' in c)));
    for (const index of [0, 1, 2]) {
      assert.deepEqual(
        chunks.filter((c) => at(c.choices, 0).index === index).map((c) => at(c.choices, 0).finish_reason),
        [null, 'length'],
      );
    }
    await app.close();
  });

  test('at the drain deadline a stream gets a DSV_ERR_DRAINING error chunk and [DONE]; a non-streamed request a 503', async () => {
    const { app, engine, drain } = fakeApp((e, r) => {
      e.emitDelta(r.requestId, [7]);
      setImmediate(() => drain.abort());
    });
    const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: [5, 6], max_tokens: 100, stream: true } });
    const { events } = parseSse(res.body);
    assert.deepEqual(events.slice(-2), [
      errorBody('DSV_ERR_DRAINING', 'the server shut down before this request finished (drain timeout); retry on another replica'),
      '[DONE]',
    ]);
    assert.equal(at((events.at(-3) as Chunk).choices, 0).finish_reason, 'abort');
    assert.equal(engine.aborted.length, 1);
    const late = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: [5, 6], max_tokens: 100 } });
    assert.equal(late.statusCode, 503);
    assert.equal(late.json().error.code, 'DSV_ERR_DRAINING');
    await app.close();
  });
});
