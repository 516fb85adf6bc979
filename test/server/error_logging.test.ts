// User input is never echoed back at length (404 bodies, the log), and refusals by design (the
// 503 while draining) are not logged as errors with a stack.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { buildApp } from '../../src/server/app.ts';
import type { RunningServer } from '../../src/server/serve.ts';
import { assertOpenAiError } from '../helpers/raw_http.ts';
import { startTestServer } from '../helpers/server.ts';
import { textModelDir } from '../helpers/text_model.ts';

describe('what reaches the client and the log', () => {
  let server: RunningServer;
  let lines: string[];
  let app: ReturnType<typeof buildApp>;
  before(async () => {
    server = await startTestServer(textModelDir());
    lines = [];
    const sink = new Writable({ write: (chunk, _enc, cb) => (lines.push(String(chunk)), cb()) });
    app = buildApp(server.ctx, { bodyLimit: 4 * 2 ** 20, apiKeys: [], logger: pino({ level: 'info' }, sink) });
  });
  after(async () => {
    await app.close();
    await server.drainAndClose();
  });

  test('a long URL is not echoed back whole in the 404', async () => {
    const res = await fetch(`${server.address}/v1/${'x'.repeat(12000)}`);
    assertOpenAiError({ status: res.status, body: await res.text() }, 404, 'DSV_ERR_NOT_FOUND');
    assert.ok(Number(res.headers.get('content-length')) < 1500, `404 body of ${res.headers.get('content-length')} bytes`);
  });

  test('1 MB of user input is echoed neither in the 404 nor in the log', async () => {
    lines.length = 0;
    const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: { model: 'm'.repeat(2 ** 20), prompt: 'hi' } });
    assertOpenAiError({ status: res.statusCode, body: res.body }, 404, 'DSV_ERR_MODEL_NOT_FOUND', /does not exist/);
    assert.ok(res.body.length < 1500, `404 body of ${res.body.length} bytes`);
    const logged = lines.join('').length;
    assert.ok(logged < 10_000, `${logged} bytes logged`);
  });

  test('the 503 while draining is logged below error level, without a stack', async () => {
    lines.length = 0;
    server.ctx.state.draining = true;
    try {
      const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'hi' } });
      assertOpenAiError({ status: res.statusCode, body: res.body }, 503, 'DSV_ERR_DRAINING');
    } finally {
      server.ctx.state.draining = false;
    }
    const entries = lines.map((l) => JSON.parse(l) as { level: number; err?: unknown });
    assert.ok(entries.length > 0);
    for (const e of entries) {
      assert.ok(e.level < 50, `logged at level ${e.level}: ${JSON.stringify(e).slice(0, 300)}`);
      assert.equal(e.err, undefined);
    }
  });
});
